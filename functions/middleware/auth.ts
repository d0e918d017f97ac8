/**
 * API keys: `Authorization: Bearer <key>` (what OpenAI's and Mistral's clients send) or `x-api-key: <key>`
 * (Anthropic's), compared in constant time.
 * /health stays open for load balancers, / for liveness probes, and /metrics for Prometheus scrapers (as vLLM
 * leaves them).
 */
import type { MiddlewareHandler } from "hono";
import { timingSafeEqual } from "hono/utils/buffer";
import { apiError } from "../errors.ts";

const OPEN = new Set(["/", "/health", "/metrics"]);

export function apiKeyAuth(keys: readonly string[]): MiddlewareHandler {
  return async (c, next) => {
    if (keys.length === 0 || OPEN.has(c.req.path) || c.req.method === "OPTIONS") return await next();
    // Anthropic's clients send the key as `x-api-key`; either header may carry it.
    const bearer = /^Bearer\s+(.+)$/i.exec((c.req.header("authorization") ?? "").trim())?.[1];
    const given = [bearer, c.req.header("x-api-key")?.trim() || undefined].filter((k) => k !== undefined);
    let ok = false;
    // Every key is compared, so the time taken does not tell which one (or whether any) came close.
    for (const key of keys) for (const k of given) if (await timingSafeEqual(k, key)) ok = true;
    if (ok) return await next();
    return apiError(
      c,
      401,
      given.length
        ? "Incorrect API key provided."
        : "Missing API key: send it as 'Authorization: Bearer <key>' (or 'x-api-key: <key>').",
      "invalid_request_error",
      "invalid_api_key",
    );
  };
}
