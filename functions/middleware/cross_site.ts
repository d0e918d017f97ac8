/**
 * Cross-site requests a browser sends without asking first: a web page can POST a form or a `text/plain` fetch
 * to any address, the server's on localhost too, with no CORS preflight, and a server without API keys would run
 * it (a page a user visits making their GPU generate, or fetch image URLs). Such a request carries the page's
 * `Origin`: one that is neither this server's nor allowed (cors.ts: local pages, `--cors`) is refused (403) unless
 * its body is typed as JSON, which a browser only sends cross-site after a preflight answered for allowed origins.
 * Clients outside a browser send no `Origin` and are not concerned (`curl -d` sends form-typed JSON and works).
 */
import type { MiddlewareHandler } from "hono";
import { apiError } from "../errors.ts";
import { allowHint, type OriginCheck } from "./cors.ts";
import { requestHost } from "./host_guard.ts";

/** The content types a browser sends cross-site without a preflight (the Fetch standard's safelisted ones). */
const SIMPLE = new Set(["", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]);

export function crossSiteGuard(allowed: OriginCheck): MiddlewareHandler {
  return async (c, next) => {
    const origin = c.req.header("origin");
    if (origin === undefined || ["GET", "HEAD", "OPTIONS"].includes(c.req.method)) return await next();
    const type = (c.req.header("content-type") ?? "").split(";")[0].trim().toLowerCase();
    if (
      !SIMPLE.has(type) || allowed(origin) || sameHost(origin, c.req.raw)
    ) {
      return await next();
    }
    const site = origin.slice(0, 200);
    return apiError(
      c,
      403,
      `a cross-site request from ${site} with a body a browser sends without asking first ` +
        `(${type || "no content type"}) is refused; ${allowHint(site)}`,
      "invalid_request_error",
      "cross_site_request",
    );
  };
}

/** Whether the page is served from the host the request was sent to. */
function sameHost(origin: string, request: Request): boolean {
  try {
    return new URL(origin).host === requestHost(request);
  } catch {
    return false; // "null" (a sandboxed frame, a file), or not a URL
  }
}
