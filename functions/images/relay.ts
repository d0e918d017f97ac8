/**
 * A loopback relay for one image fetch, so that the connection goes to the addresses the host check approved
 * and not to whatever DNS answers a moment later (DNS rebinding: a name that resolves to a public address for
 * the check and to a private one for the connection). fetch() speaks to it as to an HTTP proxy: `CONNECT
 * host:port` for https, whose TLS still runs end to end and is verified for the URL's host name, and an
 * absolute-form request for http, passed on in origin form. It only ever connects to the approved addresses of
 * the one host and port it was opened for.
 */

const MAX_HEAD = 16 * 1024;
/** Time each address has to accept the connection before the next is tried (an unroutable one never refuses). */
const CONNECT_MS = 3000;
const HEAD_END = new Uint8Array([13, 10, 13, 10]);

function indexOfHeadEnd(bytes: Uint8Array): number {
  outer: for (let i = 0; i + 4 <= bytes.length; i++) {
    for (let j = 0; j < 4; j++) if (bytes[i + j] !== HEAD_END[j]) continue outer;
    return i + 4;
  }
  return -1;
}

/** The request head, and the bytes read after it. */
async function readHead(conn: Deno.Conn): Promise<[string, Uint8Array] | undefined> {
  let buffered = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  while (buffered.length < MAX_HEAD) {
    const n = await conn.read(chunk);
    if (n === null) return undefined;
    const next = new Uint8Array(buffered.length + n);
    next.set(buffered);
    next.set(chunk.subarray(0, n), buffered.length);
    buffered = next;
    const end = indexOfHeadEnd(buffered);
    if (end >= 0) return [new TextDecoder().decode(buffered.subarray(0, end)), buffered.subarray(end)];
  }
  return undefined;
}

/** Closes a connection or listener that may have closed already. */
function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch { /* already closed */ }
}

function defaultPort(url: URL): number {
  return Number(url.port || (url.protocol === "https:" ? 443 : 80));
}

export class PinnedRelay {
  readonly client: Deno.HttpClient;
  readonly #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  readonly #conns = new Set<Deno.Conn>();
  /** Aborted on close(): connection attempts still running end with it. */
  readonly #closed = new AbortController();
  readonly #hostname: string;
  readonly #port: number;

  /** A relay to `url`'s host that connects to `addresses` (tried in order) and nowhere else. */
  constructor(url: URL, readonly addresses: string[]) {
    this.#hostname = url.hostname.toLowerCase();
    this.#port = defaultPort(url);
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.client = Deno.createHttpClient({ proxy: { url: `http://127.0.0.1:${this.port}` } });
    this.#accept();
  }

  /** The loopback port fetch() reaches the relay on. */
  get port(): number {
    return this.#listener.addr.port;
  }

  async #accept() {
    try {
      for await (const conn of this.#listener) {
        this.#conns.add(conn);
        this.#relay(conn).catch(() => {}).finally(() => {
          this.#conns.delete(conn);
          closeQuietly(conn);
        });
      }
    } catch { /* the listener was closed */ }
  }

  /** The head to send upstream ("" for a tunnel), or undefined when the request is for another host. */
  #upstreamHead(head: string): string | undefined {
    const [line, ...rest] = head.split("\r\n");
    const [method, target, version] = line.split(" ");
    const url = URL.parse(method === "CONNECT" ? `http://${target}` : target);
    const port = url && (method === "CONNECT" ? Number(url.port || 80) : defaultPort(url));
    if (
      !url || url.protocol !== "http:" || url.hostname.toLowerCase() !== this.#hostname || port !== this.#port
    ) {
      return undefined;
    }
    return method === "CONNECT"
      ? ""
      : [`${method} ${url.pathname}${url.search} ${version}`, ...rest].join("\r\n");
  }

  async #relay(conn: Deno.Conn) {
    const read = await readHead(conn);
    if (!read) return;
    const [head, early] = read;
    const upstreamHead = this.#upstreamHead(head);
    const encoder = new TextEncoder();
    if (upstreamHead === undefined) {
      await conn.write(encoder.encode("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"));
      return;
    }
    let upstream: Deno.Conn | undefined;
    for (const hostname of this.addresses) {
      if (this.#closed.signal.aborted) return;
      const signal = AbortSignal.any([this.#closed.signal, AbortSignal.timeout(CONNECT_MS)]);
      try {
        upstream = await Deno.connect({ hostname, port: this.#port, signal });
        break;
      } catch { /* the next address */ }
    }
    if (upstream && this.#closed.signal.aborted) upstream.close();
    if (!upstream || this.#closed.signal.aborted) {
      await conn.write(encoder.encode("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n"));
      return;
    }
    this.#conns.add(upstream);
    try {
      if (upstreamHead === "") {
        await conn.write(encoder.encode("HTTP/1.1 200 Connection Established\r\n\r\n"));
      } else await upstream.write(encoder.encode(upstreamHead));
      if (early.length) await upstream.write(early);
      await Promise.allSettled([
        conn.readable.pipeTo(upstream.writable),
        upstream.readable.pipeTo(conn.writable),
      ]);
    } finally {
      this.#conns.delete(upstream);
      closeQuietly(upstream);
    }
  }

  close() {
    this.#closed.abort();
    this.client.close();
    closeQuietly(this.#listener);
    for (const conn of this.#conns) {
      closeQuietly(conn);
    }
    this.#conns.clear();
  }
}
