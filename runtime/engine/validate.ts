/** The checks every engine runs on a request before it takes it, so that a bad one never disturbs a step. */
import { type GenerateRequest, InvalidRequestError, RequestTooLongError } from "./engine.ts";
import type { ImageInput } from "../model/vision.ts";

/** The most tokens one request may bias. */
export const MAX_BIASED = 1024;
/** The most alternatives a token's (or a prompt token's) log-probability comes with: OpenAI's top_logprobs limit. */
export const MAX_TOP_LOGPROBS = 20;

export interface RequestLimits {
  contextLength: number;
  vocabSize: number;
  /** The [IMG] token's id. */
  imageToken: number;
  /** Whether the model has a vision encoder. */
  vision: boolean;
  /** The LoRA adapters served per request, by name. */
  loras?: readonly string[];
}

/** Also that the images are decoded: the engines that check requests so run the model. */
export function validateRequest(
  request: GenerateRequest,
  limits: RequestLimits,
): asserts request is GenerateRequest<ImageInput> {
  const total = request.ids.length + request.maxTokens;
  if (request.ids.length === 0) throw new RequestTooLongError("the prompt is empty");
  if (total > limits.contextLength) {
    throw new RequestTooLongError(
      `the prompt (${request.ids.length} tokens) plus max_tokens (${request.maxTokens}) is ${total} tokens, ` +
        `more than this server's context of ${limits.contextLength}`,
    );
  }
  if (request.lora !== undefined && !limits.loras?.includes(request.lora)) {
    throw new InvalidRequestError(`no LoRA adapter "${request.lora}" is served here`);
  }
  let imageTokens = 0;
  for (const id of request.ids) {
    if (!Number.isInteger(id) || id < 0 || id >= limits.vocabSize) {
      throw new InvalidRequestError(`token id ${id} is not in the vocabulary`);
    }
    if (id === limits.imageToken) imageTokens++;
  }
  if (request.trigger !== undefined) {
    if (!request.format) throw new InvalidRequestError("a trigger token needs an output format");
    if (!Number.isInteger(request.trigger) || request.trigger < 0 || request.trigger >= limits.vocabSize) {
      throw new InvalidRequestError(`trigger token id ${request.trigger} is not in the vocabulary`);
    }
    if (request.stopIds.includes(request.trigger) || request.banned?.includes(request.trigger)) {
      throw new InvalidRequestError(`the trigger token ${request.trigger} is a stop id or banned`);
    }
  }
  if (request.orElse && request.trigger === undefined) {
    throw new InvalidRequestError("an alternative output format needs a trigger token");
  }
  if (request.minTokens !== undefined) {
    if (
      !Number.isInteger(request.minTokens) || request.minTokens < 0 || request.minTokens > request.maxTokens
    ) {
      throw new InvalidRequestError(`min_tokens ${request.minTokens} is not between 0 and max_tokens`);
    }
    if (request.format && request.minTokens > 0) {
      throw new InvalidRequestError(
        "min_tokens cannot be combined with an output format (it decides the end)",
      );
    }
  }
  for (const [what, n] of [["", request.topLogprobs], ["prompt ", request.promptLogprobs]] as const) {
    if (n !== undefined && !(Number.isInteger(n) && n >= 0 && n <= MAX_TOP_LOGPROBS)) {
      throw new InvalidRequestError(
        `${what}log-probabilities with ${n} alternatives (0 to ${MAX_TOP_LOGPROBS})`,
      );
    }
  }
  // A format ends with a stop token: its grammar needs one.
  if (request.format && request.stopIds.length === 0) {
    throw new InvalidRequestError(
      "an output format needs a stop token (ignore_eos cannot be combined with one)",
    );
  }
  for (const id of request.stopIds) {
    if (!Number.isInteger(id) || id < 0 || id >= limits.vocabSize) {
      throw new InvalidRequestError(`stop token id ${id} is not in the vocabulary`);
    }
  }
  for (const id of request.banned ?? []) {
    if (!Number.isInteger(id) || id < 0 || id >= limits.vocabSize) {
      throw new InvalidRequestError(`banned token id ${id} is not in the vocabulary`);
    }
    if (request.stopIds.includes(id)) {
      throw new InvalidRequestError(`token id ${id} is both a stop id and banned`);
    }
  }
  if (request.images.some((image) => !(image.rows >= 1 && image.cols >= 1))) {
    throw new InvalidRequestError("an image has no patches");
  }
  if (request.images.some((image) => !("pixels" in image))) {
    throw new InvalidRequestError("an image was not decoded: this engine takes pixels");
  }
  const patches = request.images.reduce((n, image) => n + image.rows * image.cols, 0);
  if (imageTokens !== patches) {
    throw new InvalidRequestError(
      `the prompt has ${imageTokens} [IMG] tokens but its images have ${patches} patches`,
    );
  }
  if (request.images.length && !limits.vision) {
    throw new InvalidRequestError("this model has no vision encoder");
  }
  const s = request.sampling;
  if (s.bias) {
    const { ids, values } = s.bias;
    if (ids.length !== values.length || ids.length > MAX_BIASED || new Set(ids).size !== ids.length) {
      throw new InvalidRequestError(
        `a logit bias lists at most ${MAX_BIASED} distinct tokens, each with a value`,
      );
    }
    ids.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= limits.vocabSize) {
        throw new InvalidRequestError(`biased token id ${id} is not in the vocabulary`);
      }
      if (!(Math.abs(values[i]) <= 100)) {
        throw new InvalidRequestError(`a logit bias of ${values[i]} is not in [-100, 100]`);
      }
    });
  }
  const finite = (v: number, lo: number, hi: number) => Number.isFinite(v) && v >= lo && v <= hi;
  if (
    !finite(s.temperature, 0, 100) || !finite(s.topP, Number.MIN_VALUE, 1) || !finite(s.minP, 0, 1) ||
    !finite(s.repetitionPenalty, Number.MIN_VALUE, 100) || !finite(s.presencePenalty, -100, 100) ||
    !finite(s.frequencyPenalty, -100, 100) || !Number.isInteger(s.topK) || s.topK < 0 ||
    (s.seed !== undefined && !Number.isSafeInteger(s.seed)) || !Number.isInteger(request.maxTokens) ||
    request.maxTokens < 1
  ) {
    throw new InvalidRequestError(
      `sampling settings out of range: ${JSON.stringify({ ...s, maxTokens: request.maxTokens })}`,
    );
  }
}
