/** Errors in OpenAI's shape, `{"error": {message, type, param, code}}`, which every OpenAI and Mistral client parses. */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

export interface ApiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function apiError(
  c: Context,
  status: ContentfulStatusCode,
  message: string,
  type: string,
  code: string | null = null,
  param: string | null = null,
): Response {
  return c.json<ApiErrorBody>({ error: { message, type, param, code } }, status);
}
