/**
 * Which browser pages may call the server (CORS). An origin is allowed by a pattern: written out
 * (`https://app.example`), `*` for any, or with `*` for any host name or part of one (`https://*.example.com`,
 * `chrome-extension://*`) or any port (`http://localhost:*`). Local pages and desktop apps' web views are allowed
 * without a flag on a server, as Ollama allows them: a chat UI on `http://localhost:3000` (Open WebUI's direct
 * connections), Tauri, Electron and VS Code webviews; `none` leaves them out too. API keys, not origins, are what
 * keeps other programs of the machine out.
 */
import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { apiError } from "../errors.ts";

/** Ollama's default origins (its envconfig), and IPv6's loopback beside its IPv4 one. */
export const LOCAL_ORIGINS: readonly string[] = [
  ...["localhost", "127.0.0.1", "[::1]", "0.0.0.0"].flatMap((host) =>
    ["http", "https"].flatMap((scheme) => [`${scheme}://${host}`, `${scheme}://${host}:*`])
  ),
  "app://*",
  "file://*",
  "tauri://*",
  "vscode-webview://*",
  "vscode-file://*",
];

/** Whether a page of `origin` may call the server, for these patterns. */
export type OriginCheck = (origin: string) => boolean;

/** The pattern that allows no origin, not even local ones. */
export const NO_ORIGINS = "none";

export function originCheck(patterns: readonly string[]): OriginCheck {
  if (patterns.includes("*")) return () => true;
  const exact = new Set<string>();
  const wild: RegExp[] = [];
  for (const pattern of patterns) {
    if (pattern === NO_ORIGINS) continue;
    const written = pattern.replace(/\/+$/, "");
    // A browser's Origin is scheme://host[:port]: a path or a missing scheme would never match, silently.
    if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*$/i.test(written)) {
      throw new Error(`the CORS origin "${pattern}" is not scheme://host[:port] (e.g. https://app.example)`);
    }
    if (!written.includes("*")) {
      exact.add(asBrowserWrites(written));
      continue;
    }
    // `*` as the port: digits; elsewhere, what a host name holds (so that it spans no port, user or path).
    const source = written.toLowerCase().split(/(:\*$|\*)/).map((part) =>
      part === ":*" ? ":\\d+" : part === "*" ? "[a-z0-9._~-]*" : part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")
    ).join("");
    wild.push(new RegExp(`^${source}$`));
  }
  return (origin) => exact.has(origin) || wild.some((re) => re.test(origin));
}

/** What to do to let a site call the server, for the refusals. */
export function allowHint(site: string): string {
  return `start the server with --cors ${site} (at the edge, PIXTRAL_CORS) to let that site call it`;
}

/** As a browser writes an Origin: "https://App.example/" is "https://app.example". */
function asBrowserWrites(origin: string): string {
  try {
    // Schemes without hosts of the web's kind (an extension's, an app's) have no URL origin: as written.
    const { origin: written } = new URL(origin);
    return written === "null" ? origin.toLowerCase().replace(/\/+$/, "") : written;
  } catch {
    return origin;
  }
}

/**
 * CORS headers for the allowed origins; a preflight from another is a 403 that names the flag (a browser shows it
 * in its network panel) rather than a bare answer without headers. A preflight for a page on the public internet
 * calling a private address (Chrome's Private Network Access) is allowed for allowed origins.
 */
export function corsFor(allowed: OriginCheck, anyOrigin: boolean): MiddlewareHandler {
  const headers = cors({
    origin: (origin) => allowed(origin) ? (anyOrigin ? "*" : origin) : null,
    exposeHeaders: ["X-Request-Id", "request-id", "Retry-After"],
  });
  return async (c, next) => {
    const origin = c.req.header("origin");
    const preflight = c.req.method === "OPTIONS" && origin !== undefined &&
      c.req.header("access-control-request-method") !== undefined;
    if (preflight && !allowed(origin)) {
      const site = origin.slice(0, 200);
      return apiError(
        c,
        403,
        `browser requests from ${site} are not allowed; ${allowHint(site)}`,
        "invalid_request_error",
        "cross_site_request",
      );
    }
    const answer = await headers(c, next);
    if (answer instanceof Response && c.req.header("access-control-request-private-network") === "true") {
      answer.headers.set("Access-Control-Allow-Private-Network", "true");
    }
    return answer;
  };
}
