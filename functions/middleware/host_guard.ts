/**
 * DNS rebinding: a page at `http://evil.example:8080` whose name the attacker then points at 127.0.0.1 makes
 * the browser send its requests to a server on loopback as same-origin ones, past CORS and the cross-site
 * guard, and read the answers. Such a request names the attacker's host in `Host`. A server listening on
 * loopback alone is reached by its users as localhost or by address, so any other name is refused there
 * (403), as Ollama does; `--allowed-host` adds names (a proxy in front that keeps the Host header).
 */
import type { MiddlewareHandler } from "hono";
import { apiError } from "../errors.ts";

/** Whether a `--host` address accepts connections from this machine only. */
export function isLoopback(address: string): boolean {
  const host = address.replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "").toLowerCase();
  return host === "localhost" || /^(0{0,4}:){2,7}0{0,3}1$/.test(host) ||
    /^(::ffff:)?127(\.\d{1,3}){3}$/.test(host);
}

/**
 * Requests must give, in `Host`, an IP address (a page cannot rebind an address), `localhost` or a name under
 * it, this machine's name, a `.local` or `.internal` name (no public DNS answers those), or one of `allowed`
 * ("*": any).
 */
export function hostGuard(allowed: readonly string[], machine = machineName()): MiddlewareHandler {
  const names = new Set(allowed.map(hostName)); // "App.example.:8443" is "app.example"
  return async (c, next) => {
    const given = requestHost(c.req.raw);
    const name = hostName(given);
    if (names.has("*") || names.has(name) || localName(name, machine)) return await next();
    const shown = given.slice(0, 200);
    return apiError(
      c,
      403,
      `this server listens on loopback and answers to its address or localhost, not to Host ${shown}: a web ` +
        `page can reach a server on loopback under a name of its own (DNS rebinding); start it with ` +
        `--allowed-host ${name.slice(0, 200)} to be served under that name`,
      "invalid_request_error",
      "host_not_allowed",
    );
  };
}

/** The host a request was sent to, as its Host header says (a proxy in front keeps it), else its URL. */
export function requestHost(request: Request): string {
  return request.headers.get("host") ?? new URL(request.url).host;
}

/** The name of a Host header without its port or a final dot, lower case ("[::1]:8080" is "[::1]"). */
function hostName(host: string): string {
  const ipv6 = /^(\[[0-9a-f:.]*\])(?::\d*)?$/i.exec(host);
  return (ipv6 ? ipv6[1] : host.replace(/:\d*$/, "").replace(/\.$/, "")).toLowerCase();
}

function localName(name: string, machine: string | undefined): boolean {
  if (name === "localhost" || name === machine) return true;
  if ([".localhost", ".local", ".internal"].some((suffix) => name.endsWith(suffix))) return true;
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || /^\[[0-9a-f:.]*\]$/.test(name); // IPv4, IPv6
}

/** This machine's name, or undefined without --allow-sys=hostname (asked first: Deno would prompt for it). */
function machineName(): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "sys", kind: "hostname" }).state !== "granted") return undefined;
    return Deno.hostname().toLowerCase();
  } catch {
    return undefined;
  }
}
