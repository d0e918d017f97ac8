/**
 * A text completion's prompt (`/v1/completions`) to what the engine runs: no chat format, the text tokenized as
 * it is after a BOS token (as vLLM encodes it for Mistral's tokenizer, and as /tokenize counts it), or token ids
 * taken as they are (control tokens included: the way to write Pixtral's format by hand).
 */
import { TextBudget } from "./long_text.ts";
import type { CompletionRequest } from "../schema/completions.ts";
import { RequestError } from "../schema/chat.ts";
import { loraField, type Service } from "../service.ts";
import { maxTokens, type PreparedChat, samplingOf, stopping } from "./prepare.ts";

/** OpenAI's default for `max_tokens` in text completions (vLLM's too). */
const DEFAULT_MAX_TOKENS = 16;

/** The request's prompts, one or a list, as text or as token ids. */
export function promptsOf(prompt: CompletionRequest["prompt"]): (string | number[])[] {
  if (typeof prompt === "string") return [prompt];
  if (prompt.every((p) => typeof p === "number")) return [prompt as number[]];
  return prompt as (string | number[])[];
}

export interface PreparedPrompt extends PreparedChat {
  /** The prompt as text (what `echo` puts first). */
  text: string;
}

/**
 * One prompt of the request (`param` names it in errors), prepared to run; `defaultMaxTokens` when `max_tokens` is
 * not given (OpenAI's 16; Ollama's raw prompts have no limit).
 */
export function preparePrompt(
  request: CompletionRequest,
  prompt: string | number[],
  param: string,
  service: Service,
  defaultMaxTokens = DEFAULT_MAX_TOKENS,
): PreparedPrompt {
  const { tokenizer } = service;
  let ids: number[];
  if (typeof prompt === "string") {
    const budget = new TextBudget(tokenizer, service.engine?.contextLength ?? Infinity, param);
    ids = [tokenizer.special("<s>"), ...budget.encode(prompt)];
  } else {
    const bad = prompt.findIndex((id) => id >= tokenizer.vocabSize);
    if (bad >= 0) {
      throw new RequestError(`token ${prompt[bad]} is not in the vocabulary`, `${param}[${bad}]`);
    }
    ids = prompt;
  }
  const params = { param: "max_tokens", prompt: param };
  const asked = request.max_tokens ?? undefined;
  // Unasked: OpenAI's default, or as many as the context leaves.
  const checked = maxTokens(service, ids.length, asked, params);
  const most = asked === undefined ? Math.min(defaultMaxTokens, checked) : checked;
  return {
    text: typeof prompt === "string" ? prompt : tokenizer.decode(ids),
    request: {
      ids,
      images: [],
      sampling: samplingOf(request, service),
      maxTokens: most,
      ...stopping(request, service, { maxTokens: most, format: Boolean(request.response_format) }),
      topLogprobs: request.logprobs ?? undefined,
      // Echoed with log-probabilities: the prompt's too (what evaluation harnesses score).
      ...(request.echo && request.logprobs != null ? { promptLogprobs: request.logprobs } : {}),
      ...(request.response_format ? { format: request.response_format } : {}),
      ...loraField(service, request.model),
    },
    n: request.n ?? 1,
    stop: (request.stop == null ? [] : typeof request.stop === "string" ? [request.stop] : request.stop)
      .filter(Boolean),
  };
}
