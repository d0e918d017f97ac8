/**
 * The chat completion request as OpenAI and Mistral clients send it, validated with zod.
 *
 * Both dialects are accepted in one schema: OpenAI's `image_url: {url, detail}` and Mistral's `image_url: "..."`,
 * `max_tokens` and `max_completion_tokens`, `seed` and `random_seed`. Unknown fields are ignored (as vLLM and
 * llama.cpp do); the caller logs them. Wrong types are errors that name the field.
 */
import { z } from "zod";
import {
  FormatError,
  JSON_OBJECT,
  jsonSchemaFormat,
  type OutputFormat,
} from "../../runtime/grammar/format.ts";

const textPart = z.object({ type: z.literal("text"), text: z.string() });
const imageUrlPart = z.object({
  type: z.literal("image_url"),
  image_url: z.union([
    z.string(),
    z.object({ url: z.string(), detail: z.enum(["auto", "low", "high"]).optional() }),
  ]),
});
const contentPart = z.discriminatedUnion("type", [textPart, imageUrlPart]);

const message = z.discriminatedUnion("role", [
  z.object({ role: z.literal("system"), content: z.union([z.string(), z.array(textPart)]) }),
  // OpenAI's newer name for the system role.
  z.object({ role: z.literal("developer"), content: z.union([z.string(), z.array(textPart)]) }),
  z.object({ role: z.literal("user"), content: z.union([z.string(), z.array(contentPart)]) }),
  z.object({
    role: z.literal("assistant"),
    content: z.union([z.string(), z.array(textPart), z.null()]),
    prefix: z.boolean().optional(),
  }),
]);

/** The most choices (`n`) one request may ask for; each takes a place in the engine's queue. */
export const MAX_CHOICES = 16;

/**
 * OpenAI's and Mistral's `response_format`, as the OutputFormat the engine enforces (undefined for plain text).
 * A schema is checked here, so that one the server cannot enforce is refused before any work.
 */
const responseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string().nullish(),
      description: z.string().nullish(),
      schema: z.union([z.record(z.string(), z.unknown()), z.boolean()]).nullish(),
      strict: z.boolean().nullish(),
    }),
  }),
]).transform((value, ctx): OutputFormat | undefined => {
  if (value.type === "text") return undefined;
  if (value.type === "json_object") return JSON_OBJECT;
  try {
    return jsonSchemaFormat(value.json_schema.schema ?? {});
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    ctx.issues.push({ code: "custom", message: err.message, input: value, path: ["json_schema", "schema"] });
    return z.NEVER;
  }
});

const probability = z.number().min(0).max(1);
const penalty = z.number().min(-2).max(2);

export const chatRequestSchema = z.object({
  model: z.string().nullish(),
  messages: z.array(message).min(1),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: probability.nullish(),
  top_k: z.number().int().min(-1).nullish(),
  min_p: probability.nullish(),
  seed: z.number().int().nullish(),
  random_seed: z.number().int().nullish(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullish(),
  presence_penalty: penalty.nullish(),
  frequency_penalty: penalty.nullish(),
  repetition_penalty: z.number().positive().max(10).nullish(),
  n: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullish(),
  /** Mistral's guardrail: its safety system prompt goes before the conversation's own. */
  safe_prompt: z.boolean().nullish(),
  /** Constrained decoding: the output follows the format (JSON, or JSON under a schema). */
  response_format: responseFormat.nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
  /** Our extension: which reference's image resizing to reproduce for this request (default: the server's). */
  image_resize: z.enum(["mistral", "hf"]).nullish(),
});

export type ChatRequest = z.infer<typeof chatRequestSchema>;
export type ChatMessage = ChatRequest["messages"][number];
export type ContentPart = z.infer<typeof contentPart>;

/** A request that failed validation: `param` names the field the way OpenAI's errors do (`messages[0].content`). */
export class RequestError extends Error {
  override name = "RequestError";
  constructor(message: string, readonly param: string | null = null, readonly code: string | null = null) {
    super(message);
  }
}

function fieldPath(path: PropertyKey[]): string {
  return path.map((key, i) => typeof key === "number" ? `[${key}]` : `${i ? "." : ""}${String(key)}`).join(
    "",
  );
}

export interface ParsedChatRequest {
  request: ChatRequest;
  /** Top-level fields that were not understood and are ignored. */
  ignored: string[];
}

type Issue = z.core.$ZodIssue;

/** For a value matching no branch of a union, the branch that got furthest explains the mistake best. */
function deepestIssue(issue: Issue): Issue {
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return issue;
  let best: Issue = issue;
  for (const branch of issue.errors) {
    for (const inner of branch) {
      const candidate = deepestIssue({ ...inner, path: [...issue.path, ...inner.path] } as Issue);
      if (candidate.path.length > best.path.length) best = candidate;
    }
  }
  return best;
}

/** Validates `body` against a schema; the first problem becomes a RequestError naming its field. */
export function parseWith<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new RequestError("the request body must be a JSON object");
  }
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = deepestIssue(result.error.issues[0]);
  const param = fieldPath(issue.path);
  throw new RequestError(param ? `${param}: ${issue.message}` : issue.message, param || null);
}

/**
 * Function calling is not served (the spec leaves Pixtral's tool format out). A request that depends on it is
 * refused, as vLLM does without a tool parser, rather than answered as if it had no tools; `tool_choice: "none"`
 * asks for no call, so its tools are ignored.
 */
export function refuseToolUse(body: unknown): void {
  if (typeof body !== "object" || body === null) return;
  const { tools, tool_choice, messages } = body as Record<string, unknown>;
  const unsupported = (what: string, param: string) =>
    new RequestError(
      `${what}: this server does not support function calling`,
      param,
      "unsupported_parameter",
    );
  if (Array.isArray(tools) && tools.length && tool_choice !== "none") throw unsupported("tools", "tools");
  if (!Array.isArray(messages)) return;
  messages.forEach((m: { role?: unknown; tool_calls?: unknown } | null, i) => {
    if (m?.role === "tool") throw unsupported("tool messages", `messages[${i}].role`);
    if (Array.isArray(m?.tool_calls) && m.tool_calls.length) {
      throw unsupported("tool calls", `messages[${i}].tool_calls`);
    }
  });
}

/** Fields this server understands but cannot honour: refused rather than answered as if they were absent. */
function refuseUnsupported(request: ChatRequest): void {
  if (request.logit_bias && Object.keys(request.logit_bias).length) {
    throw new RequestError(
      "logit_bias is not supported by this server",
      "logit_bias",
      "unsupported_parameter",
    );
  }
  if (request.top_logprobs && !request.logprobs) {
    throw new RequestError("top_logprobs needs logprobs: true", "top_logprobs");
  }
}

export function parseChatRequest(body: unknown): ParsedChatRequest {
  refuseToolUse(body);
  const request = parseWith(chatRequestSchema, body);
  refuseUnsupported(request);
  const known = new Set(Object.keys(chatRequestSchema.shape));
  return { request, ignored: Object.keys(body as object).filter((key) => !known.has(key)) };
}
