/**
 * The Engine seam between the HTTP layer and whatever runs the model: a prepared request (token ids with image
 * slots, preprocessed images, sampling settings) in, a stream of tokens out. The GPU host implements it with
 * LocalEngine; the edge build with a client of a GPU host.
 */
import type { OutputFormat } from "../grammar/format.ts";
import type { ResizeMode } from "../images/preprocess.ts";
import type { ImageInput } from "../model/vision.ts";

export interface Sampling {
  /** 0: greedy. */
  temperature: number;
  topP: number;
  /** 0: no limit. */
  topK: number;
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  repetitionPenalty: number;
  /** The random stream; the same seed and request give the same tokens. */
  seed?: number;
  /** Added to these tokens' logits (unique ids; OpenAI's `logit_bias`, -100 to 100). */
  bias?: { ids: number[]; values: number[] };
}

export const GREEDY: Sampling = {
  temperature: 0,
  topP: 1,
  topK: 0,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
};

/**
 * An image an edge gateway measured but did not decode: its file, and the patch grid its header gives under
 * `resize` (the prompt's tokens are laid out for that grid). The GPU host decodes it (functions/routes/internal.ts)
 * before its engine takes the request.
 */
export interface EncodedImage {
  rows: number;
  cols: number;
  bytes: Uint8Array;
  resize: ResizeMode;
  /** The longest side it was measured at: the host decodes it so (below its own for OpenAI's low detail). */
  maxImageSize?: number;
}

export type RequestImage = ImageInput | EncodedImage;

export interface GenerateRequest<Image extends RequestImage = RequestImage> {
  /** The prompt: token ids, with each image's block of [IMG] tokens. */
  ids: readonly number[];
  /**
   * The images in the order of their blocks in `ids`: decoded, for an engine that runs the model; encoded, for one
   * that forwards to GPU hosts.
   */
  images: readonly Image[];
  sampling: Sampling;
  /** Tokens to generate at most. */
  maxTokens: number;
  /** Tokens that end the generation (not emitted): `</s>`. */
  stopIds: readonly number[];
  /** Alternatives to report with each token's log-probability; undefined: no log-probabilities. */
  topLogprobs?: number;
  /** The format the output must follow (constrained decoding); undefined: free text. */
  format?: OutputFormat;
  /**
   * With a format: it applies to what follows this token, wherever the output writes it (a model's own
   * [TOOL_CALLS] begins calls that must follow the tools' schemas, also after some text; text is free). Such a
   * format that cannot be compiled is dropped (the output is free) rather than failing the request.
   */
  trigger?: number;
  /**
   * With a trigger: the format the output follows when its first token is not the trigger (an answer in text
   * under `response_format`, where the model may also call tools). The first token is then this format's or
   * the trigger, and only the first may be the trigger. Unlike the triggered format, one that cannot be compiled
   * fails the request.
   */
  orElse?: OutputFormat;
  /** Tokens never to sample (e.g. [TOOL_CALLS] under `tool_choice: "none"`). */
  banned?: readonly number[];
  /** Stop ids are not sampled before this many tokens (vLLM's `min_tokens`); not with a format. */
  minTokens?: number;
  /**
   * The log-probabilities of the prompt's tokens, each given those before it, with this many alternatives (the
   * most likely tokens): reported with the first event. The whole prompt is computed (no prefix cache).
   */
  promptLogprobs?: number;
  /**
   * A LoRA adapter the engine serves per request (by the name given as the request's `model`), applied to this
   * request alone; undefined: the model as loaded.
   */
  lora?: string;
}

/** A prompt token's log-probability given the tokens before it, and the most likely tokens there. */
export interface PromptLogprob {
  logprob: number;
  top?: { id: number; logprob: number }[];
}

/** Keeps one sequence's output inside its format: which tokens may come next, given those that came. */
export interface TokenConstraint {
  /** The tokens allowed next: bit (id % 32) of word (id >> 5); a stop id once the output is complete. */
  allowed(): Promise<Uint32Array>;
  /** Takes the token sampled; false if the format does not allow it (or its next `allowed()` rejects). */
  accept(id: number): boolean;
  release(): void;
}

/** Makes constraints for output formats (an engine without one refuses formats). */
export interface Constraints {
  /** Rejects with InvalidRequestError for a format it cannot enforce. */
  constrain(format: OutputFormat, stopIds: readonly number[]): Promise<TokenConstraint>;
}

export interface TokenEvent {
  id: number;
  /** Log-probability of the token under the model (before sampling adjustments), when asked for. */
  logprob?: number;
  top?: { id: number; logprob: number }[];
  /** With the first event of a request asking for them: the prompt's tokens after the first (promptLogprobs). */
  prompt?: PromptLogprob[];
  /** With the first event: the prompt's tokens the prefix cache gave (none computed again), when any. */
  cached?: number;
  /**
   * This token is the stop token that ended the generation at once, sent only to carry `prompt` or `cached`
   * (stop tokens are otherwise not sent).
   */
  stop?: true;
}

export type FinishReason = "stop" | "length";

export interface EngineStats {
  /** Requests waiting to start. */
  waiting: number;
  /** Sequences that may wait at once: more are refused (EngineBusyError). */
  maxWaiting?: number;
  /**
   * GPU submissions so far, for an engine that runs a model: it moves while the engine works, and a GPU host stops
   * its keep-alive lines when it has not moved for long (functions/routes/internal.ts).
   */
  gpuSubmits?: number;
  /** Sequences being prefilled or decoded. */
  running: number;
  /** Fraction of the KV cache in use. */
  kvUsage: number;
  kvBlocks: number;
  kvBlocksUsed: number;
  /** Prompt tokens taken from the prefix cache instead of computed, since the engine started. */
  prefixHitTokens?: number;
  /** Sequences preempted (their KV cache dropped, to be computed again) since the engine started. */
  preemptions?: number;
}

export interface Engine {
  /** Tokens a prompt plus its generation may hold. */
  readonly contextLength: number;
  readonly vocabSize: number;
  /**
   * Throws RequestTooLongError or InvalidRequestError before any work starts. A full queue (EngineBusyError) is
   * thrown at once too, or, by an engine that asks another thread or host, is the stream's first result.
   */
  generate(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<TokenEvent, FinishReason>;
  stats(): EngineStats;
  /**
   * Brings what the engine knows of the workers it forwards to up to date (a gateway's GPU hosts) and says why no
   * request can run now, if none can. Engines that run requests themselves have nothing to refresh.
   */
  refresh?(): Promise<string | undefined>;
  /** Stops taking requests, ends running ones (cancelling them after `graceMs`) and frees the model. */
  close(graceMs?: number): Promise<void>;
}

/** The queue is full: try again later (HTTP 429). */
export class EngineBusyError extends Error {
  override name = "EngineBusyError";
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(message);
  }
}

/** A request the engine cannot run as given: ids outside the vocabulary, image slots that do not match the
 * images, sampling settings out of range (HTTP 400). */
export class InvalidRequestError extends RangeError {
  override name = "InvalidRequestError";
}

/** Prompt plus max tokens exceed the context (HTTP 400). */
export class RequestTooLongError extends Error {
  override name = "RequestTooLongError";
}

/** The engine is closing or closed (HTTP 503). */
export class EngineClosedError extends Error {
  override name = "EngineClosedError";
}

/** No engine can take the request now, e.g. a gateway none of whose GPU hosts is healthy (HTTP 503). */
export class EngineUnavailableError extends EngineClosedError {
  override name = "EngineUnavailableError";
  constructor(message: string, readonly retryAfterSeconds = 1) {
    super(message);
  }
}

/**
 * The 32-bit sampler stream an integer seed names (OpenAI's are 64-bit, and may be negative): seeds below 2³²
 * name their own stream, and the high half is mixed in, so that s, s + 2³² and -s differ.
 */
export function samplerSeed(seed: number): number {
  const bits = BigInt.asUintN(64, BigInt(seed));
  return (Number(bits & 0xffffffffn) ^ mix32(Number(bits >> 32n))) >>> 0;
}

/** murmur3's 32-bit finalizer: a bijection that scatters every input bit (and keeps 0 at 0). */
export function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
