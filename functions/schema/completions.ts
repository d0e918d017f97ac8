/** OpenAI's legacy text completions request (`POST /v1/completions`), as vLLM and llama.cpp's server take it. */
import { z } from "zod";
import {
  chatRequestSchema,
  MAX_CHOICES,
  outputFormatOf,
  parseWith,
  RequestError,
  vllmStructured,
} from "./chat.ts";

/** The most prompts one request may send (each runs `n` choices, each a place in the engine's queue). */
const MAX_PROMPTS = MAX_CHOICES;

const chat = chatRequestSchema.shape;

type Prompt = string | string[] | number[] | number[][];

/** A token id list: non-empty, non-negative integers (`param` names it in errors). */
function checkIds(ids: unknown[], param: string): void {
  if (ids.length === 0) throw new RequestError(`${param}: a prompt of token ids needs at least one`, param);
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || (id as number) < 0) {
      throw new RequestError(`${param}[${i}]: a token id is an integer from 0`, `${param}[${i}]`);
    }
  });
}

/** OpenAI's forms of `prompt`, checked by hand: a zod union's errors would name the wrong form. */
function checkPrompt(value: unknown): asserts value is Prompt {
  if (typeof value === "string") return;
  if (!Array.isArray(value) || value.length === 0) {
    throw new RequestError(
      "prompt: a string, a list of token ids, or a list of up to 16 of either",
      "prompt",
    );
  }
  if (value.every((p) => typeof p === "number")) return checkIds(value, "prompt");
  if (value.length > MAX_PROMPTS) {
    throw new RequestError(
      `prompt: ${value.length} prompts; at most ${MAX_PROMPTS} in one request`,
      "prompt",
    );
  }
  if (value.every((p) => typeof p === "string")) return;
  value.forEach((p, i) => {
    if (!Array.isArray(p)) {
      throw new RequestError(
        `prompt[${i}]: a list of prompts holds only strings or only lists of token ids`,
        `prompt[${i}]`,
      );
    }
    checkIds(p, `prompt[${i}]`);
  });
}

export const completionRequestSchema = z.object({
  model: chat.model,
  /** Text (a BOS token goes first, as vLLM adds it), token ids as they are, or a list of either. */
  prompt: z.custom<Prompt>((value) => value !== undefined, "prompt is required"),
  max_tokens: z.number().int().positive().nullish(),
  temperature: chat.temperature,
  top_p: chat.top_p,
  top_k: chat.top_k,
  min_p: chat.min_p,
  seed: chat.seed,
  stop: chat.stop,
  ignore_eos: chat.ignore_eos,
  min_tokens: chat.min_tokens,
  stop_token_ids: chat.stop_token_ids,
  presence_penalty: chat.presence_penalty,
  frequency_penalty: chat.frequency_penalty,
  repetition_penalty: chat.repetition_penalty,
  n: chat.n,
  /** The log-probabilities of this many most likely tokens at each step (0: the chosen token's alone). */
  logprobs: z.number().int().min(0).max(20).nullish(),
  /** The prompt's text before the completion. */
  echo: z.boolean().nullish(),
  stream: chat.stream,
  stream_options: chat.stream_options,
  response_format: chat.response_format,
  ...vllmStructured,
  best_of: z.number().int().min(1).max(MAX_CHOICES).nullish(),
  suffix: z.string().nullish(),
  logit_bias: chat.logit_bias,
  user: z.string().nullish(),
});

export type CompletionRequest = z.infer<typeof completionRequestSchema>;

/** The request, checked, and the top-level fields it had that are not understood (ignored). */
export function parseCompletionRequest(body: unknown): { request: CompletionRequest; ignored: string[] } {
  const request = parseWith(completionRequestSchema, body);
  request.response_format = outputFormatOf(request);
  checkPrompt(request.prompt);
  // Each prompt's n choices queue on their own; together they must fit an empty queue (--max-queue is at least
  // MAX_CHOICES), or the request would be refused as busy however long the client waited.
  const prompts = Array.isArray(request.prompt) && request.prompt.some((p) => typeof p !== "number")
    ? request.prompt.length
    : 1;
  if (prompts * (request.n ?? 1) > MAX_CHOICES) {
    throw new RequestError(
      `${prompts} prompts with n = ${request.n} ask for ${
        prompts * request.n!
      } choices; at most ${MAX_CHOICES} ` +
        "in one request",
      "n",
    );
  }
  const unsupported = (message: string, param: string) =>
    new RequestError(message, param, "unsupported_parameter");
  if (request.suffix) throw unsupported("suffix (fill in the middle) is not supported by Pixtral", "suffix");
  if (request.best_of != null && request.best_of !== (request.n ?? 1)) {
    throw unsupported("best_of other than n is not supported; ask for n choices instead", "best_of");
  }
  if (request.stream_options && !request.stream) {
    throw new RequestError("stream_options is only allowed with stream: true", "stream_options");
  }
  const known = new Set(Object.keys(completionRequestSchema.shape));
  return { request, ignored: Object.keys(body as object).filter((key) => !known.has(key)) };
}
