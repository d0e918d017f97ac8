/**
 * API keys: `Authorization: Bearer <key>` (what OpenAI's and Mistral's clients send), compared in constant time.
 * /health stays open for load balancers, and /metrics for Prometheus scrapers (as vLLM leaves them).
 */
import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "hono/utils/buffer";
import { apiError } from "../errors.ts";

const OPEN = new Set(["/health", "/metrics"]);

export function apiKeyAuth(keys: readonly string[]): MiddlewareHandler {
  return async (c, next) => {
    if (keys.length === 0 || OPEN.has(c.req.path) || c.req.method === "OPTIONS") return await next();
    const header = c.req.header("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header.trim());
    let ok = false;
    // Every key is compared, so the time taken does not tell which one (or whether any) came close.
    for (const key of keys) if (match && await timingSafeEqual(match[1], key)) ok = true;
    if (ok) return await next();
    return apiError(
      c,
      401,
      match ? "Incorrect API key provided." : "Missing API key: send it as 'Authorization: Bearer <key>'.",
      "invalid_request_error",
      "invalid_api_key",
    );
  };
}
