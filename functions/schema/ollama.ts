/**
 * Ollama's own API requests (`POST /api/chat`, `/api/generate`, `/api/show`), validated with zod: messages with
 * base64 `images` beside their text, tool calls whose arguments are objects, tool results named by `tool_name`,
 * `format` ("json" or a JSON schema) and the sampling `options` of a Modelfile.
 *
 * Options that only tune Ollama's own runner (`num_ctx`, `num_gpu`, `num_thread`, `use_mmap`...) or samplers this
 * server does not have (`mirostat`, `typical_p`, `tfs_z`) are ignored, as Ollama ignores options it does not know;
 * the log names them. Other unknown fields are ignored too, as in the chat API.
 */
import { z } from "zod";
import { droppedKeys } from "./dropped.ts";
import { parseWith, RequestError } from "./chat.ts";

const whole = z.number().transform(Math.trunc).nullish();

/** The options this server follows; the others are named in the log as ignored. */
const optionsSchema = z.object({
  temperature: z.number().min(0).nullish(),
  top_p: z.number().nullish(),
  // Whole-number options take a fraction's whole part, as Ollama reads them.
  top_k: whole,
  min_p: z.number().nullish(),
  seed: whole,
  /** -1 (no limit) and -2 (to the end of the context) are Ollama's; 0 is no limit too, as in Ollama's runner. */
  num_predict: whole,
  stop: z.union([z.string(), z.array(z.string())]).nullish(),
  repeat_penalty: z.number().nullish(),
  presence_penalty: z.number().nullish(),
  frequency_penalty: z.number().nullish(),
});

const FORMAT = 'format is "json" or a JSON schema (an object)';
const format = z.union([
  z.enum(["", "json"], { error: FORMAT }),
  z.record(z.string(), z.unknown(), { error: FORMAT }),
], {
  error: FORMAT,
}).nullish();

const common = {
  model: z.string().min(1),
  format,
  options: z.record(z.string(), z.unknown()).nullish(),
  stream: z.boolean().nullish(),
  /** How long Ollama keeps the model loaded: this server keeps it for as long as it runs. */
  keep_alive: z.union([z.string(), z.number()]).nullish(),
  /** Pixtral does not think: answered without thinking, as the Messages API takes `thinking`. */
  think: z.union([z.boolean(), z.string()]).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
};

const toolCall = z.object({
  id: z.string().nullish(),
  function: z.object({
    index: z.number().int().nullish(),
    name: z.string(),
    arguments: z.union([z.record(z.string(), z.unknown()), z.string()]).nullish(),
  }),
});

const message = z.object({
  role: z.enum(["system", "user", "assistant", "tool"]),
  content: z.string().nullish(),
  images: z.array(z.string()).nullish(),
  tool_calls: z.array(toolCall).nullish(),
  tool_name: z.string().nullish(),
  /** Not Ollama's, but some clients send it (OpenAI's name for it). */
  tool_call_id: z.string().nullish(),
  /** Another model's thoughts, which Pixtral has none of to continue: skipped. */
  thinking: z.string().nullish(),
});

export const ollamaChatSchema = z.object({
  ...common,
  messages: z.array(message).nullish(),
  /** false: a conversation longer than the context is an error rather than cut (functions/chat/history.ts). */
  truncate: z.boolean().nullish(),
  /** Ollama's context shift while answering, which this server does not do: an answer ends at the context's end. */
  shift: z.boolean().nullish(),
  /** OpenAI's function tools; checked as the chat API checks them. */
  tools: z.array(z.unknown()).nullish(),
});

export const ollamaGenerateSchema = z.object({
  ...common,
  prompt: z.string().nullish(),
  suffix: z.string().nullish(),
  images: z.array(z.string()).nullish(),
  system: z.string().nullish(),
  template: z.string().nullish(),
  context: z.array(z.number()).nullish(),
  raw: z.boolean().nullish(),
});

export const ollamaShowSchema = z.object({
  model: z.string().min(1).nullish(),
  /** Ollama's older name for `model`. */
  name: z.string().min(1).nullish(),
  verbose: z.boolean().nullish(),
});

export type OllamaChatRequest = z.infer<typeof ollamaChatSchema>;
export type OllamaGenerateRequest = z.infer<typeof ollamaGenerateSchema>;
export type OllamaOptions = z.infer<typeof optionsSchema>;

/** `body` as `schema` reads it, with the fields (and options) it ignores. */
export function parseOllama<S extends typeof ollamaChatSchema | typeof ollamaGenerateSchema>(
  schema: S,
  body: unknown,
): { request: z.infer<S>; options: OllamaOptions; ignored: string[] } {
  const request = parseWith(schema, body) as z.infer<S>;
  const raw = body as Record<string, unknown>;
  let options: OllamaOptions;
  try {
    options = parseWith(optionsSchema, request.options ?? {});
  } catch (err) {
    if (!(err instanceof RequestError)) throw err;
    const param = err.param === null ? "options" : `options.${err.param}`;
    throw new RequestError(err.param === null ? err.message : `options.${err.message}`, param);
  }
  const known = new Set(Object.keys(schema.shape));
  const ignored = [
    ...Object.keys(raw).filter((key) => !known.has(key)),
    ...Object.keys(request.options ?? {}).filter((key) => !(key in optionsSchema.shape)).map((k) =>
      `options.${k}`
    ),
    ..."messages" in request ? droppedKeys(raw.messages, request.messages, "messages") : [],
  ];
  return { request, options, ignored };
}
