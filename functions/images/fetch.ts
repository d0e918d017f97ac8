/**
 * Image bytes from what a chat message carries: a `data:` URL (base64) or an http(s) URL fetched with limits on
 * size, time and redirects, and only from public addresses unless the operator allows more.
 */
import { AddressAllowList, isPublicAddress, parseIp } from "./address.ts";
import { PinnedRelay } from "./relay.ts";

export interface ImageFetchOptions {
  /** Largest image accepted, in bytes (encoded, as received). */
  maxBytes: number;
  /** Time for the whole fetch, redirects and body included. */
  timeoutMs: number;
  maxRedirects: number;
  /** Non-public hosts and ranges that may still be fetched. */
  allow: AddressAllowList;
  /** Whether http(s) URLs are fetched at all (data: URLs always work). */
  fetchUrls: boolean;
  /** Hostname to addresses; the default asks DNS. Replaceable where the host has no DNS API. */
  resolve?: (hostname: string) => Promise<string[]>;
}

export const DEFAULT_IMAGE_FETCH: ImageFetchOptions = {
  maxBytes: 20 * 1024 * 1024,
  timeoutMs: 10_000,
  maxRedirects: 3,
  allow: new AddressAllowList(),
  fetchUrls: true,
};

/** An image that cannot be had: the request is at fault (400), or it is too large (413). */
export class ImageSourceError extends Error {
  override name = "ImageSourceError";
  constructor(message: string, readonly status: 400 | 413 = 400) {
    super(message);
  }
}

export function decodeDataUrl(url: string, maxBytes: number): Uint8Array {
  const comma = url.indexOf(",");
  const header = url.slice(5, comma < 0 ? undefined : comma).toLowerCase();
  if (comma < 0 || !header.endsWith(";base64")) {
    throw new ImageSourceError("a data: URL image must be base64-encoded (data:image/png;base64,...)");
  }
  // The declared media type is not read, as mistral_common does not read it (clients send data:image;base64
  // and text/plain): the bytes' own signature says what they are, and the decoder refuses what is no image.
  const payload = url.slice(comma + 1).replace(/\s+/g, "");
  if (Math.floor(payload.length * 3 / 4) > maxBytes + 2) {
    throw new ImageSourceError(`the image is larger than the limit of ${maxBytes} bytes`, 413);
  }
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(payload);
  } catch {
    throw new ImageSourceError("the data: URL image is not valid base64");
  }
  if (bytes.length === 0) {
    throw new ImageSourceError("the data: URL holds no image (nothing after the comma)");
  }
  return bytes;
}

async function resolveDns(hostname: string): Promise<string[]> {
  if (hostname === "localhost" || hostname.endsWith(".localhost")) return ["127.0.0.1", "::1"];
  const lookups = await Promise.allSettled([
    Deno.resolveDns(hostname, "A"),
    Deno.resolveDns(hostname, "AAAA"),
  ]);
  return lookups.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
}

/**
 * Refuses a host that resolves to a non-public address the operator has not allowed. Returns the addresses to
 * connect to when the host is a name that DNS could answer differently a moment later.
 */
async function checkHost(url: URL, options: ImageFetchOptions): Promise<string[] | undefined> {
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  if (options.allow.allowsHost(hostname)) return undefined;
  const literal = parseIp(hostname) !== undefined;
  const addresses = literal ? [hostname] : await (options.resolve ?? resolveDns)(hostname);
  if (addresses.length === 0) throw new ImageSourceError(`cannot resolve the image host "${hostname}"`);
  const refused = addresses.find((a) => !isPublicAddress(a) && !options.allow.allowsAddress(a));
  if (refused) {
    throw new ImageSourceError(
      `image URLs may not point to a private, loopback or link-local address (${hostname} is ${refused}); ` +
        "the server's operator can allow it",
    );
  }
  // IPv4 first: a host without an IPv6 route would wait out each AAAA address.
  return literal
    ? undefined
    : addresses.toSorted((a, b) => Number(a.includes(":")) - Number(b.includes(":")));
}

/**
 * Whether connections can be pinned to checked addresses: a Deno host (not a Workers-style one) that may listen
 * on loopback, without an egress proxy in the environment, which would resolve names itself.
 */
function canPin(): boolean {
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (typeof deno?.listen !== "function" || typeof deno.createHttpClient !== "function") return false;
  try {
    if (deno.permissions.querySync({ name: "net", host: "127.0.0.1" }).state !== "granted") return false;
  } catch {
    return false;
  }
  try {
    return !["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"].some((name) =>
      deno.env.get(name) || deno.env.get(name.toLowerCase())
    );
  } catch {
    return true; // no permission to read the environment: Deno cannot read a proxy from it either
  }
}

async function readLimited(body: ReadableStream<Uint8Array>, maxBytes: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > maxBytes) {
      throw new ImageSourceError(`the image is larger than the limit of ${maxBytes} bytes`, 413);
    }
    chunks.push(chunk);
  }
  const out = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

export async function fetchImageBytes(
  source: string,
  options: ImageFetchOptions = DEFAULT_IMAGE_FETCH,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  // As a URL parser reads it: control characters and spaces around it dropped, the scheme in any case (RFC 3986).
  // deno-lint-ignore no-control-regex
  const trimmed = source.replace(/^[\x00-\x20]+|[\x00-\x20]+$/g, "");
  if (/^data:/i.test(trimmed)) return decodeDataUrl(trimmed, options.maxBytes);
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new ImageSourceError(`the image URL is not a valid URL: "${source.slice(0, 100)}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ImageSourceError(`image URLs must be http(s) or data: URLs, not ${url.protocol}`);
  }
  if (!options.fetchUrls) {
    throw new ImageSourceError("this server does not fetch image URLs: send data: URLs");
  }

  const timeout = AbortSignal.timeout(options.timeoutMs);
  const abort = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const relays: PinnedRelay[] = [];
  try {
    for (let hop = 0;; hop++) {
      const addresses = await checkHost(url, options);
      const relay = addresses && canPin() ? new PinnedRelay(url, addresses) : undefined;
      if (relay) relays.push(relay);
      const res = await fetch(url, {
        redirect: "manual",
        signal: abort,
        headers: { accept: "image/*" },
        client: relay?.client,
      });
      const location = res.headers.get("location");
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel();
        if (hop >= options.maxRedirects) {
          throw new ImageSourceError(`the image URL redirects more than ${hop} times`);
        }
        url = new URL(location, url);
        if (url.protocol !== "http:" && url.protocol !== "https:") {
          throw new ImageSourceError(`the image URL redirects to a ${url.protocol} URL`);
        }
        continue;
      }
      if (!res.ok || !res.body) {
        await res.body?.cancel();
        throw new ImageSourceError(`fetching the image URL failed: HTTP ${res.status}`);
      }
      const type = res.headers.get("content-type")?.split(";")[0].trim().toLowerCase();
      if (type && !type.startsWith("image/") && type !== "application/octet-stream") {
        await res.body.cancel();
        throw new ImageSourceError(`the image URL returned ${type}, not an image`);
      }
      const length = Number(res.headers.get("content-length"));
      if (length > options.maxBytes) {
        await res.body.cancel();
        throw new ImageSourceError(`the image is larger than the limit of ${options.maxBytes} bytes`, 413);
      }
      return await readLimited(res.body, options.maxBytes);
    }
  } catch (err) {
    if (err instanceof ImageSourceError) throw err;
    if (timeout.aborted) {
      throw new ImageSourceError(`fetching the image URL took longer than ${options.timeoutMs} ms`);
    }
    if (signal?.aborted) throw err;
    throw new ImageSourceError(`fetching the image URL failed: ${(err as Error).message}`);
  } finally {
    for (const relay of relays) relay.close();
  }
}
