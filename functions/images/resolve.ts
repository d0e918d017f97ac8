/**
 * Hostnames to addresses where the runtime has no DNS API (workerd, Cloudflare Workers): DNS over HTTPS in the
 * JSON form that Cloudflare's and Google's public resolvers answer (`?name=...&type=A`, `application/dns-json`).
 * The image fetcher needs the addresses to refuse URLs that lead into private networks.
 */

const TYPES = { A: 1, AAAA: 28 } as const;

interface DnsJson {
  Status: number;
  Answer?: { type: number; data: string }[];
}

export function dohResolver(endpoint: string, timeoutMs = 5000): (hostname: string) => Promise<string[]> {
  const ask = async (hostname: string, type: keyof typeof TYPES): Promise<string[]> => {
    const url = new URL(endpoint);
    url.searchParams.set("name", hostname);
    url.searchParams.set("type", type);
    const res = await fetch(url, {
      headers: { accept: "application/dns-json" },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw new Error(`the DNS resolver answered HTTP ${res.status}`);
    const answer = await res.json() as DnsJson;
    // CNAME records come with the chain's addresses after them: keep the addresses only.
    return (answer.Answer ?? []).filter((a) => a.type === TYPES[type]).map((a) => a.data);
  };
  return async (hostname) => {
    const lookups = await Promise.allSettled([ask(hostname, "A"), ask(hostname, "AAAA")]);
    return lookups.flatMap((r) => (r.status === "fulfilled" ? r.value : []));
  };
}
