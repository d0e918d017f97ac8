/**
 * Which network addresses an image URL may reach. Loopback, private, link-local and other non-public ranges are
 * refused unless the operator allows them, so that a request cannot make the server probe its own network
 * (server-side request forgery).
 */

type Range = [bigint, number, number]; // [network, prefix length, bits (32 or 128)]

function parseIPv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) return undefined;
  return parts.reduce((acc, p) => (acc << 8n) | BigInt(p), 0n);
}

function parseIPv6(text: string): bigint | undefined {
  let head = text;
  let tail: bigint | undefined;
  const v4 = text.match(/^(.*:)(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    tail = parseIPv4(v4[2]);
    if (tail === undefined) return undefined;
    head = v4[1] + "0:0";
  }
  const halves = head.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string) => (s ? s.split(":") : []);
  const left = groups(halves[0]), right = halves.length === 2 ? groups(halves[1]) : [];
  const missing = 8 - left.length - right.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const all = [...left, ...Array(halves.length === 2 ? missing : 0).fill("0"), ...right];
  if (all.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  let value = all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
  if (tail !== undefined) value = (value & ~0xffffffffn) | tail;
  return value;
}

/** An IP address as [value, bits], or undefined when `text` is not an IP literal. */
export function parseIp(text: string): [bigint, 32 | 128] | undefined {
  const bare = text.replace(/^\[|\]$/g, "");
  const v4 = parseIPv4(bare);
  if (v4 !== undefined) return [v4, 32];
  const v6 = parseIPv6(bare);
  return v6 === undefined ? undefined : [v6, 128];
}

function cidr(text: string): Range {
  const [address, prefix] = text.split("/");
  const ip = parseIp(address);
  const length = Number(prefix ?? (ip?.[1] ?? 0));
  if (!ip || !Number.isInteger(length) || length < 0 || length > ip[1]) {
    throw new Error(`not an IP address or CIDR range: "${text}"`);
  }
  return [ip[0], length, ip[1]];
}

function inRange([value, bits]: [bigint, number], [network, prefix, rangeBits]: Range): boolean {
  if (bits !== rangeBits) return false;
  const shift = BigInt(bits - prefix);
  return (value >> shift) === (network >> shift);
}

/** Ranges that are not the public internet (IANA special-purpose registries). */
const NON_PUBLIC = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.0.2.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "224.0.0.0/4",
  "240.0.0.0/4",
  "::/128",
  "::1/128",
  "64:ff9b:1::/48",
  "100::/64",
  "2001:db8::/32",
  "fc00::/7",
  "fe80::/10",
  "fec0::/10",
  "2001:2::/48",
  "3fff::/20",
  "ff00::/8",
].map(cidr);

const LOW_32 = (v: bigint) => [v & 0xffffffffn];
/**
 * IPv6 ranges that carry IPv4 addresses, with where: an address there is public only if what it carries is
 * (`[::ffff:127.0.0.1]`, `[2002:7f00:1::]` reach loopback through the host's stack or a relay).
 */
const EMBEDDING: [Range, (v: bigint) => bigint[]][] = [
  [cidr("::ffff:0:0/96"), LOW_32], // IPv4-mapped
  [cidr("::ffff:0:0:0/96"), LOW_32], // IPv4-translated (RFC 2765)
  [cidr("::/96"), LOW_32], // IPv4-compatible (deprecated; :: and ::1 among them)
  [cidr("64:ff9b::/96"), LOW_32], // NAT64
  [cidr("2002::/16"), (v) => [(v >> 80n) & 0xffffffffn]], // 6to4
  [cidr("2001::/32"), (v) => [(v >> 64n) & 0xffffffffn, ~v & 0xffffffffn]], // Teredo: server, client (inverted)
];

export function isPublicAddress(text: string): boolean {
  const ip = parseIp(text);
  if (!ip) return false;
  const embedded = EMBEDDING.find(([range]) => inRange(ip, range));
  if (embedded) return embedded[1](ip[0]).every((v4) => isPublicAddress(ipv4Text(v4)));
  return !NON_PUBLIC.some((range) => inRange(ip, range));
}

function ipv4Text(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join(".");
}

/** Hosts and ranges the operator allows image URLs to reach even though they are not public. */
export class AddressAllowList {
  readonly #hosts = new Set<string>();
  readonly #ranges: Range[] = [];

  /** Entries are hostnames (`images.internal`), IP addresses or CIDR ranges (`10.0.0.0/8`, `::1/128`). */
  constructor(entries: string[] = []) {
    for (const entry of entries.map((e) => e.trim().toLowerCase()).filter(Boolean)) {
      if (parseIp(entry.split("/")[0])) this.#ranges.push(cidr(entry));
      else this.#hosts.add(entry);
    }
  }

  allowsHost(hostname: string): boolean {
    return this.#hosts.has(hostname.toLowerCase());
  }

  allowsAddress(address: string): boolean {
    const ip = parseIp(address);
    return !!ip && this.#ranges.some((range) => inRange(ip, range));
  }
}
