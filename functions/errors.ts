/**
 * Errors in OpenAI's shape, `{"error": {message, type, param, code}}`, which every OpenAI and Mistral client parses;
 * on Anthropic's Messages routes in Anthropic's, `{"type": "error", "error": {type, message}}`.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export interface ApiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** Anthropic's error types by status. */
const ANTHROPIC_TYPES: Record<number, string> = {
  400: "invalid_request_error",
  401: "authentication_error",
  403: "permission_error",
  404: "not_found_error",
  413: "request_too_large",
  429: "rate_limit_error",
  500: "api_error",
  503: "overloaded_error",
};

/** Whether `path` is one of Anthropic's Messages routes, which answer in Anthropic's shapes. */
export function isAnthropicPath(path: string): boolean {
  return path === "/v1/messages" || path.startsWith("/v1/messages/");
}

export function apiError(
  c: Context,
  status: ContentfulStatusCode,
  message: string,
  type: string,
  code: string | null = null,
  param: string | null = null,
): Response {
  if (isAnthropicPath(c.req.path)) {
    // Anthropic's errors have no `param`: the message names the field (unless it begins with one already).
    const named = param && !/^[\w.[\]]+: /.test(message) ? `${param}: ${message}` : message;
    const error = { type: ANTHROPIC_TYPES[status] ?? "invalid_request_error", message: named };
    return c.json({ type: "error", error, request_id: c.get("requestId") ?? null }, status);
  }
  return c.json<ApiErrorBody>({ error: { message, type, param, code } }, status);
}
