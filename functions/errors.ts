/**
 * Errors in OpenAI's shape, `{"error": {message, type, param, code}}`, which every OpenAI and Mistral client parses;
 * on Anthropic's Messages routes in Anthropic's, `{"type": "error", "error": {type, message}}`; on Ollama's routes
 * in Ollama's, `{"error": message}`.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

declare module "hono" {
  interface ContextVariableMap {
    /** The message of the error the request was answered with, for its log line. */
    refusal: string;
  }
}

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

/** Whether `path` is one of Ollama's routes, which answer in Ollama's shape. */
export function isOllamaPath(path: string): boolean {
  return path === "/api" || path.startsWith("/api/");
}

/** An error message that names its field, as Anthropic's and Ollama's errors do (they have no `param`). */
function named(message: string, param: string | null): string {
  return param && !/^[\w.[\]]+: /.test(message) ? `${param}: ${message}` : message;
}

/** What the details of a refused thread add: the features it could not thread (the thread itself). */
const THREAD_REFUSED: Record<string, { unsupported: string[] }> = {
  thread_unsupported_request: { unsupported: ["thread"] },
};

/** The most of an error message sent and logged: some echo what the request had (a model name of 100 KB). */
const MESSAGE_CHARS = 2000;

/** `text` cut at MESSAGE_CHARS, before a UTF-16 pair's high half rather than inside the pair. */
export function clipped(text: string): string {
  if (text.length <= MESSAGE_CHARS) return text;
  const cut = /[\ud800-\udbff]/.test(text[MESSAGE_CHARS - 1]) ? MESSAGE_CHARS - 1 : MESSAGE_CHARS;
  return `${text.slice(0, cut)}… (${text.length} characters)`;
}

export function apiError(
  c: Context,
  status: ContentfulStatusCode,
  text: string,
  type: string,
  code: string | null = null,
  param: string | null = null,
): Response {
  const message = clipped(text);
  c.set("refusal", named(message, param));
  if (isOllamaPath(c.req.path)) return c.json({ error: named(message, param) }, status);
  if (isAnthropicPath(c.req.path)) {
    const error = {
      type: ANTHROPIC_TYPES[status] ?? "invalid_request_error",
      message: named(message, param),
      // Anthropic's SDKs read the code here (a `thread` refused with thread_unsupported_request is sent again
      // whole, without it).
      // The features it cannot thread: its log line names them.
      ...code ? { details: { error_code: code, ...THREAD_REFUSED[code] } } : {},
    };
    return c.json({ type: "error", error, request_id: c.get("requestId") ?? null }, status);
  }
  return c.json<ApiErrorBody>({ error: { message, type, param, code } }, status);
}
