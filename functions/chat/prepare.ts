/**
 * A validated chat request to what the engine runs: images fetched and preprocessed, the conversation encoded
 * as token ids by Mistral's instruct rules, the sampling settings resolved against the server's defaults.
 */
import {
  EngineBusyError,
  type GenerateRequest,
  type RequestImage,
  type Sampling,
} from "../../runtime/engine/engine.ts";
import { MAX_BIASED } from "../../runtime/engine/validate.ts";
import { log } from "../../runtime/log.ts";
import { imageTokenLayout } from "../../runtime/images/layout.ts";
import { decodeImage, type ResizeMode } from "../../runtime/images/preprocess.ts";
import { encodeWithTemplate } from "../../runtime/prompt/hf_template.ts";
import { encodeInstruct, type Message, PromptError } from "../../runtime/prompt/instruct.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { TextBudget } from "./long_text.ts";
import { pyAt, type PyValue } from "../../runtime/prompt/pyjson.ts";
import { fetchImageBytes } from "../images/fetch.ts";
import { allOrNone, imageOptions, LOW_DETAIL_SIZE } from "../images/together.ts";
import { type ChatMessage, type ChatRequest, RequestError } from "../schema/chat.ts";
import { loraField, type Service } from "../service.ts";
import {
  fromRequest,
  promptToolCallId,
  type ToolGeneration,
  toolGeneration,
  type ToolUse,
  toolUse,
} from "./tools.ts";

interface PromptImage {
  input: RequestImage;
  tokens: number[];
  /** Where the image sits in the request (for errors found later, by a GPU host behind a gateway). */
  param: string;
}

/**
 * The image URLs of the conversation in order, with where each sits (for error messages) and whether it asks for
 * OpenAI's low detail.
 */
function imageSources(messages: ChatMessage[]): { url: string; low: boolean; param: string }[] {
  const out: { url: string; low: boolean; param: string }[] = [];
  messages.forEach((m, i) => {
    if (m.role !== "user" || typeof m.content === "string") return;
    m.content.forEach((part, j) => {
      if (part.type !== "image_url") return;
      const [url, detail] = typeof part.image_url === "string"
        ? [part.image_url, undefined]
        : [part.image_url.url, part.image_url.detail];
      out.push({ url, low: detail === "low", param: `messages[${i}].content[${j}].image_url` });
    });
  });
  return out;
}

/**
 * Images decoded for one request, by URL (and detail): a request prepared again (cut to fit) decodes each image
 * once.
 */
export type DecodedImages = Map<string, Omit<PromptImage, "param">>;

/**
 * Images a request fetches and decodes at once: 64 images of 20 MiB each fetched together would hold 1.3 GiB;
 * the decoding threads (--image-threads) are fewer anyway.
 */
const IMAGES_AT_ONCE = 8;

async function loadImages(
  messages: ChatMessage[],
  service: Service,
  resize: ResizeMode | undefined,
  signal?: AbortSignal,
  decoded?: DecodedImages,
) {
  const sources = imageSources(messages);
  const policy = service.images;
  if (sources.length === 0) return [];
  if (!policy.enabled) {
    throw new RequestError(
      policy.disabledReason ?? "this model has no vision encoder: images cannot be used",
      sources[0].param,
    );
  }
  if (sources.length > policy.maxImages) {
    throw new RequestError(
      `${sources.length} images in one request; this server takes at most ${policy.maxImages}`,
      sources[policy.maxImages].param,
      "too_many_images",
    );
  }
  return await allOrNone(sources, signal, async ({ url, low, param }, _, each): Promise<PromptImage> => {
    const key = low ? `low ${url}` : url;
    const known = decoded?.get(key);
    if (known) return { ...known, param };
    try {
      const bytes = await fetchImageBytes(url, policy.fetch, each);
      const options = imageOptions(policy, resize ?? policy.resize, low ? LOW_DETAIL_SIZE : Infinity);
      const image = await (policy.prepare ?? decodeImage)(bytes, options, each);
      const prepared = { input: image, tokens: [...await imageTokenLayout(image, policy.tokens)] };
      decoded?.set(key, prepared);
      return { ...prepared, param };
    } catch (err) {
      (err as Error & { param?: string }).param ??= param;
      throw err;
    }
  }, IMAGES_AT_ONCE);
}

/** A call id as the prompt needs it: present (v3 requires one), in Pixtral's 9-character form. */
function callId(id: string | null | undefined, param: string): string {
  if (!id) throw new RequestError("a tool call id is required", param);
  return promptToolCallId(id);
}

/**
 * The request's messages as the prompt encoder takes them, after `offset` messages of the server's own (the safe
 * prompt); `source` holds the request's as Python reads them, for call arguments given as objects.
 */
function toMessages(
  messages: ChatMessage[],
  images: PromptImage[],
  source: PyValue[],
  offset: number,
): Message<PromptImage>[] {
  let next = 0;
  return messages.map((m, at): Message<PromptImage> => {
    const i = at - offset;
    const role = m.role === "developer" ? "system" : m.role;
    const extra: Partial<Message<PromptImage>> = {};
    if (m.role === "assistant") {
      extra.prefix = m.prefix;
      if (m.tool_calls?.length) {
        extra.toolCalls = m.tool_calls.map((c, j) => ({
          id: callId(c.id, `messages[${i}].tool_calls[${j}].id`),
          name: c.function.name,
          arguments: typeof c.function.arguments === "object" && c.function.arguments !== null
            ? pyAt(source[i], "tool_calls", j, "function", "arguments") ??
              fromRequest(c.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`)
            : c.function.arguments ?? "",
        }));
      }
    }
    if (m.role === "tool") extra.toolCallId = callId(m.tool_call_id, `messages[${i}].tool_call_id`);
    const content = m.content ?? null;
    if (typeof content === "string" || content === null) return { role, content, ...extra };
    return {
      role,
      ...extra,
      content: content.map((part) =>
        part.type === "text" ? { type: "text", text: part.text } : { type: "image", image: images[next++] }
      ),
    };
  });
}

export interface PreparedChat {
  request: GenerateRequest;
  /** Choices to generate (`n`), each with its own seed. */
  n: number;
  stop: string[];
  /**
   * With tools the model may call: the [TOOL_CALLS] id, whether the answer begins with it (a forced call), the
   * functions' names, and whether one call at most is asked for.
   */
  tools?: { callsId: number; forced: boolean; names: string[]; single: boolean };
  /** Where each of the request's images sits in the chat request, in the request's order. */
  imageParams?: string[];
}

const specialNames = new WeakMap<Tokenizer, Map<string, number>>();

/** Every special token's name to its id (for chat templates, which write them as text). */
function specials(tokenizer: Tokenizer): Map<string, number> {
  let names = specialNames.get(tokenizer);
  if (!names) {
    names = new Map();
    for (let id = 0; id < tokenizer.numSpecial; id++) names.set(tokenizer.specialName(id)!, id);
    specialNames.set(tokenizer, names);
  }
  return names;
}

/**
 * The conversation as token ids, with its images fetched and preprocessed: by Mistral's instruct rules, or by
 * the server's Hugging Face chat template when it has chosen one.
 */
export interface EncodeOptions {
  signal?: AbortSignal;
  resize?: ResizeMode;
  /** Mistral's guardrail system prompt first (`safe_prompt`). */
  safePrompt?: boolean | null;
  tools?: ToolUse;
  /** The request body as Python reads it (see pySource). */
  source?: PyValue;
  /** For /tokenize: texts beyond the context are counted (up to a limit), not refused. */
  counting?: boolean;
  /** Whether the request gives an output format (response_format), which the tools must leave room for. */
  format?: boolean;
  /** Images this request has decoded already. */
  decoded?: DecodedImages;
}

/**
 * Refuses tools that leave an output format no room (checked before the prompt is encoded). A forced call takes
 * the format's place in this answer, as at OpenAI: agents (OpenAI's Agents SDK, the Vercel AI SDK) send their
 * output type with every turn, and force a call on the first; the format is for the answer in text after them.
 */
function checkToolsWithFormat(generation: ToolGeneration, format: boolean, tools: ToolUse | undefined): void {
  if (format && generation.format && generation.trigger === undefined) {
    log.info("a forced call is this answer: the output format is for answers in text");
  }
  if (format && tools?.choice === "auto" && generation.trigger === undefined) {
    // The text would follow the format from its first token, leaving no way to call the tools.
    throw new RequestError(
      "response_format with these tools under tool_choice auto needs the grammar of their calls, which they are " +
        "too large together to make; send fewer tools or leave response_format out",
      "response_format",
      "unsupported_parameter",
    );
  }
}

export async function encodeChat(
  requested: ChatMessage[],
  service: Service,
  { signal, resize, safePrompt, tools, source, counting, format, decoded }: EncodeOptions = {},
) {
  const { tokenizer } = service;
  const messages = withSafePrompt(requested, safePrompt);
  // Errors name messages by their place in the request, which the safe prompt does not take.
  const offset = messages.length - requested.length;
  if (
    service.chatTemplate &&
    (tools || messages.some((m) => m.role === "tool" || (m.role === "assistant" && m.tool_calls?.length)))
  ) {
    throw new RequestError(
      "function calling needs Mistral's own prompt format; this server uses a chat template, which has none",
      tools ? "tools" : "messages",
      "unsupported_parameter",
    );
  }
  const images = await loadImages(requested, service, resize, signal, decoded);
  const budget = new TextBudget(tokenizer, service.engine?.contextLength ?? Infinity, "messages", counting);
  const encoder = {
    encode: (text: string) => budget.encode(text),
    imageTokens: (image: PromptImage) => image.tokens,
    bos: tokenizer.special("<s>"),
    eos: tokenizer.special("</s>"),
    inst: tokenizer.special("[INST]"),
    instEnd: tokenizer.special("[/INST]"),
    tools: toolTokens(tokenizer),
  };
  // What the tools ask of the answer is checked before the prompt is encoded: a request whose tools cannot be
  // followed is refused for that, not for its length.
  const callsId = encoder.tools?.calls ?? -1;
  const generation = toolGeneration(tools, callsId);
  checkToolsWithFormat(generation, format ?? false, tools);
  const sourceMessages = pyAt(source, "messages");
  const conversation = toMessages(
    messages,
    images,
    Array.isArray(sourceMessages) ? sourceMessages : [],
    offset,
  );
  let encoded;
  try {
    encoded = service.chatTemplate
      ? encodeWithTemplate(service.chatTemplate, conversation, {
        ...encoder,
        specials: specials(tokenizer),
        imageToken: tokenizer.specialName(service.images.tokens.img)!,
      })
      : encodeInstruct(conversation, encoder, tools?.definitions);
  } catch (err) {
    if (err instanceof PromptError && err.index !== undefined) {
      throw new PromptError(err.message, Math.max(0, err.index - offset), err.at);
    }
    throw err;
  }
  return {
    ids: [...encoded.ids, ...generation.lead],
    images: encoded.images.map((i) => i.input),
    imageParams: encoded.images.map((i) => i.param),
    generation,
    callsId,
  };
}

/** The ids of the function-calling control tokens; undefined for a tokenizer without them. */
function toolTokens(tokenizer: Tokenizer) {
  try {
    return {
      begin: tokenizer.special("[AVAILABLE_TOOLS]"),
      end: tokenizer.special("[/AVAILABLE_TOOLS]"),
      calls: tokenizer.special("[TOOL_CALLS]"),
      resultsBegin: tokenizer.special("[TOOL_RESULTS]"),
      resultsEnd: tokenizer.special("[/TOOL_RESULTS]"),
    };
  } catch {
    return undefined;
  }
}

/**
 * A 429 before the request's images are decoded when the engine's queue is full already: the engine would refuse
 * it anyway, after the work. Its figures may be a step old: a request refused so might have been taken a moment
 * later, and is told to come back in a second.
 */
function refuseWhenFull(service: Service): void {
  const stats = service.engine?.stats();
  if (stats?.maxWaiting !== undefined && stats.waiting >= stats.maxWaiting) {
    throw new EngineBusyError(`${stats.waiting} sequences are already waiting`, 1);
  }
}

/** The system prompt Mistral's API puts before the conversation when a request sets `safe_prompt`. */
export const SAFE_PROMPT =
  "Always assist with care, respect, and truth. Respond with utmost utility yet securely. " +
  "Avoid harmful, unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity.";

/** The messages with Mistral's guardrail system prompt first when `safe_prompt` asks for it. */
export function withSafePrompt(messages: ChatMessage[], safe: boolean | null | undefined): ChatMessage[] {
  return safe ? [{ role: "system", content: SAFE_PROMPT }, ...messages] : messages;
}

/**
 * How many tokens a prompt of `length` may be followed by: `asked`, or when not asked the server's default
 * (--max-tokens; none: all the context leaves), raised to `least` (min_tokens). More asked than the context leaves
 * is what it leaves, the answer ending there with finish reason "length", as llama.cpp's server and Ollama answer:
 * agents ask for the most their usual model writes (Claude Code and opencode 32000 with every request), which a
 * self-hosted context may not leave. Only a prompt that leaves no room at all is refused.
 */
export function maxTokens(
  service: Service,
  length: number,
  asked: number | undefined,
  params: { param: string; prompt: string },
  least = 0,
): number {
  const context = service.engine!.contextLength;
  const room = context - length;
  if (room < 1) {
    throw new RequestError(
      `the prompt has ${length} tokens; this server's context is ${context} tokens`,
      params.prompt,
      "context_length_exceeded",
    );
  }
  if (asked !== undefined && asked > room) {
    log.info("the answer may run to the context's end only", { [params.param]: asked, room });
    asked = room;
  }
  // Unasked: the server's default (--max-tokens), as long as min_tokens (`least`) asks, within the context.
  return asked ?? Math.min(room, Math.max(service.defaults.maxTokens ?? room, least));
}

/**
 * What ends a request's answers: the end-of-sequence token (unless `ignore_eos`) and `stop_token_ids`, and how
 * many tokens come before any of them may (`min_tokens`, which a format's own end excludes).
 */
export function stopping(
  request: Pick<ChatRequest, "ignore_eos" | "min_tokens" | "stop_token_ids">,
  service: Service,
  { maxTokens, format, reserved = [] }: {
    maxTokens: number;
    format: boolean;
    /** Tokens the tool choice bans or starts calls with, which cannot also stop. */
    reserved?: number[];
  },
): { stopIds: number[]; minTokens?: number } {
  const vocab = service.engine!.vocabSize;
  const extra = request.stop_token_ids ?? [];
  extra.forEach((id, i) => {
    if (id >= vocab) throw new RequestError(`token ${id} is not in the vocabulary`, `stop_token_ids[${i}]`);
    if (reserved.includes(id)) {
      throw new RequestError(`token ${id} is the tool choice's own ([TOOL_CALLS])`, `stop_token_ids[${i}]`);
    }
  });
  if (request.ignore_eos && format) {
    throw new RequestError(
      "ignore_eos cannot be combined with response_format or tools: the format ends with the end-of-sequence token",
      "ignore_eos",
      "unsupported_parameter",
    );
  }
  const eos = request.ignore_eos ? [] : [service.tokenizer.special("</s>")];
  const stopIds = [...new Set([...eos, ...extra])];
  const minTokens = request.min_tokens ?? 0;
  if (minTokens > maxTokens) {
    throw new RequestError(
      `min_tokens (${minTokens}) is more than the answer may have: ${maxTokens} tokens (max_tokens, or what the ` +
        "context leaves after the prompt)",
      "min_tokens",
    );
  }
  if (minTokens && format) {
    throw new RequestError(
      "min_tokens cannot be combined with response_format or tools: the format decides where the answer ends",
      "min_tokens",
      "unsupported_parameter",
    );
  }
  return minTokens ? { stopIds, minTokens } : { stopIds };
}

/** A request's sampling settings, the server's defaults where it gives none. */
export function samplingOf(
  request:
    & Pick<
      ChatRequest,
      | "temperature"
      | "top_p"
      | "top_k"
      | "min_p"
      | "presence_penalty"
      | "frequency_penalty"
      | "repetition_penalty"
      | "seed"
      | "logit_bias"
    >
    & { random_seed?: number | null },
  service: Service,
): Sampling {
  const sampling: Sampling = {
    temperature: request.temperature ?? service.defaults.temperature,
    topP: request.top_p ?? service.defaults.topP,
    topK: request.top_k != null && request.top_k > 0 ? request.top_k : 0,
    minP: request.min_p ?? 0,
    presencePenalty: request.presence_penalty ?? 0,
    frequencyPenalty: request.frequency_penalty ?? 0,
    repetitionPenalty: request.repetition_penalty ?? 1,
    seed: request.seed ?? request.random_seed ?? undefined,
  };
  if (sampling.topP === 0) throw new RequestError("top_p must be greater than 0", "top_p");
  const bias = Object.entries(request.logit_bias ?? {});
  if (bias.length > MAX_BIASED) {
    throw new RequestError(
      `logit_bias lists ${bias.length} tokens; at most ${MAX_BIASED} may be biased`,
      "logit_bias",
    );
  }
  const vocab = service.engine!.vocabSize;
  for (const [key] of bias) {
    if (!/^\d+$/.test(key) || Number(key) >= vocab) {
      throw new RequestError(
        `logit_bias: ${JSON.stringify(key)} is not a token id (0 to ${vocab - 1})`,
        `logit_bias.${key}`,
      );
    }
  }
  // Keys that name one id twice ("7", "07") keep the last value, as a JSON object would.
  const values = new Map(bias.map(([key, value]) => [Number(key), value]));
  if (values.size) sampling.bias = { ids: [...values.keys()], values: [...values.values()] };
  return sampling;
}

/**
 * The prompt tokens a chat amounts to, its tools and images included, counted beyond the context too (Anthropic's
 * count_tokens, OpenAI's Responses input_tokens).
 */
export async function countChat(
  chat: ChatRequest,
  service: Service,
  signal?: AbortSignal,
  source?: PyValue,
): Promise<number> {
  const tools = toolUse(chat, source);
  const options = { signal, tools, source, resize: chat.image_resize ?? undefined, counting: true };
  return (await encodeChat(chat.messages, service, options)).ids.length;
}

/**
 * `source`: the request body as Python reads it (see pySource), for tools and arguments given as objects.
 */
export async function prepareChat(
  chat: ChatRequest,
  service: Service,
  signal?: AbortSignal,
  source?: PyValue,
  options: { decoded?: DecodedImages } = {},
): Promise<PreparedChat> {
  refuseWhenFull(service);
  const tools = toolUse(chat, source);
  const encoded = await encodeChat(chat.messages, service, {
    signal,
    decoded: options.decoded,
    resize: chat.image_resize ?? undefined,
    safePrompt: chat.safe_prompt,
    tools,
    source,
    format: Boolean(chat.response_format),
  });
  const { generation } = encoded;
  const param = chat.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  const asked = chat.max_completion_tokens ?? chat.max_tokens ?? undefined;
  const most = maxTokens(
    service,
    encoded.ids.length,
    asked,
    { param, prompt: "messages" },
    chat.min_tokens ?? 0,
  );
  const format = Boolean(chat.response_format ?? generation.format);
  return {
    request: {
      ids: encoded.ids,
      images: encoded.images,
      sampling: samplingOf(chat, service),
      maxTokens: most,
      ...stopping(chat, service, {
        maxTokens: most,
        format,
        reserved: [...generation.banned, ...generation.trigger === undefined ? [] : [generation.trigger]],
      }),
      topLogprobs: chat.logprobs ? (chat.top_logprobs ?? 0) : undefined,
      ...(chat.response_format ? { format: chat.response_format } : {}),
      ...(generation.format ? { format: generation.format } : {}),
      ...(generation.trigger === undefined ? {} : { trigger: generation.trigger }),
      // Under "auto" the model answers with calls or with text, and the text follows response_format.
      ...(generation.trigger !== undefined && chat.response_format ? { orElse: chat.response_format } : {}),
      ...(generation.banned.length ? { banned: generation.banned } : {}),
      ...loraField(service, chat.model),
    },
    n: chat.n ?? 1,
    imageParams: encoded.imageParams,
    tools: tools && tools.choice !== "none"
      ? {
        callsId: encoded.callsId,
        forced: generation.lead.length > 0,
        names: tools.callable,
        single: typeof tools.choice === "object" || !tools.parallel,
      }
      : undefined,
    // An empty stop string would match at once; it stops nothing, as in OpenAI's API.
    stop: (chat.stop == null ? [] : typeof chat.stop === "string" ? [chat.stop] : chat.stop).filter(Boolean),
  };
}
