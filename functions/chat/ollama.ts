/**
 * Ollama's `/api/chat` and `/api/generate` requests as the chat request they amount to: a message's base64
 * `images` become image parts before its text (where Ollama puts them), tool calls get ids (Ollama's have none;
 * Pixtral's format links each result to its call) and each tool result the id of the call it answers (by
 * `tool_name`, else in order), `format` becomes `response_format`, and the Modelfile options the chat API's
 * sampling fields. The result goes through the chat API's own validation, whose parameters name the same fields
 * here (messages map one to one).
 */
import { pyAt, type PyValue } from "../../runtime/prompt/pyjson.ts";
import type { Tokenizer } from "../../runtime/tokenizer/tokenizer.ts";
import { type ChatRequest, parseChatRequest, RequestError } from "../schema/chat.ts";
import { renamed } from "./responses.ts";
import { pySource } from "./tools.ts";
import { TextBudget } from "./long_text.ts";
import {
  addOpeningTurn,
  answerToContinue,
  dropEmptyAnswers,
  endsInSystemAfterAnswer,
  keptFrom,
  systemsLifted,
} from "./history.ts";
import type { OllamaChatRequest, OllamaGenerateRequest, OllamaOptions } from "../schema/ollama.ts";

type OllamaMessage = NonNullable<OllamaChatRequest["messages"]>[number];

/** An image as Ollama's clients send it (base64, or a data: URL) as a chat image part. */
function imagePart(image: string, param: string) {
  if (/^\s*https?:/i.test(image)) {
    throw new RequestError(
      `${param}: images are sent as base64 data here, as Ollama takes them, not as URLs`,
      param,
    );
  }
  const url = /^\s*data:/i.test(image) ? image : `data:image;base64,${image}`;
  return { type: "image_url", image_url: { url } };
}

function content(m: Pick<OllamaMessage, "content" | "images">, param: string) {
  if (!m.images?.length) return m.content ?? "";
  return [
    ...m.images.map((image, k) => imagePart(image, `${param}[${k}]`)),
    ...m.content ? [{ type: "text", text: m.content }] : [],
  ];
}

/** The id a call without one is given: the same each time the conversation is sent. */
const callId = (message: number, call: number) => `ollama_${message}_${call}`;

/**
 * The chat messages, and the place in the request of each (`kept`): an assistant message with neither text nor
 * calls is left out (Ollama renders it as an empty turn; Pixtral's format has none, see encodeInstruct, and here
 * a chat template's prompt leaves it out too), and so are the messages before `from` other than
 * system messages (a conversation cut to fit the context, see history.ts).
 */
function chatMessages(messages: OllamaMessage[], from: number) {
  /** The calls of the last assistant message not yet answered: their ids and names. */
  let open: { id: string; name: string }[] = [];
  const inCut = keptFrom(from);
  const shown = messages.flatMap((m, i) =>
    (m.role === "assistant" && !m.content && !m.tool_calls?.length) || !inCut(m, i) ? [] : [i]
  );
  const shownMessages = shown.map((i) => messages[i]);
  const kept = systemsLifted(shownMessages).map((j) => shown[j]);
  const chat: Record<string, unknown>[] = kept.map((i) => messages[i]).map((m, j) => {
    const i = kept[j];
    if (m.role === "assistant") {
      const calls = (m.tool_calls ?? []).map((c, k) => ({
        id: c.id ?? callId(i, k),
        type: "function",
        function: { name: c.function.name, arguments: c.function.arguments ?? {} },
      }));
      open = calls.map((c) => ({ id: c.id, name: c.function.name }));
      if (m.images?.length) {
        throw new RequestError(
          `messages[${i}].images: an assistant message holds no images`,
          `messages[${i}].images`,
        );
      }
      return {
        role: "assistant",
        content: m.content || (calls.length ? null : ""),
        ...calls.length ? { tool_calls: calls } : {},
      };
    }
    if (m.role === "tool") {
      if (m.images?.length) {
        throw new RequestError(
          `messages[${i}].images: a tool result holds text only: Pixtral's prompt format has no images in tool ` +
            "results (send the image in a user message)",
          `messages[${i}].images`,
        );
      }
      const answered = open.find((c) => c.id === m.tool_call_id) ??
        open.find((c) => m.tool_name != null && c.name === m.tool_name) ?? open[0];
      open = open.filter((c) => c !== answered);
      // A result no call is left for (one that begins the conversation) still needs an id in Pixtral's format.
      const id = m.tool_call_id ?? answered?.id ?? `ollama_result_${i}`;
      return { role: "tool", tool_call_id: id, content: m.content ?? "" };
    }
    open = [];
    if (m.role === "system" && m.images?.length) {
      throw new RequestError(
        `messages[${i}].images: a system message holds no images`,
        `messages[${i}].images`,
      );
    }
    return { role: m.role, content: content(m, `messages[${i}].images`) };
  });
  // A last assistant message is continued, as Ollama continues it (Mistral's `prefix`); an empty one, or one that
  // system messages follow, is answered anew.
  if (endsInSystemAfterAnswer(shownMessages)) {
    chat.push({ role: "user", content: "" });
    kept.push(shown.at(-1)!);
  } else {
    dropEmptyAnswers(chat, kept);
    const answer = answerToContinue(chat);
    if (answer) answer.prefix = true;
  }
  addOpeningTurn(chat, kept);
  return { messages: chat, kept };
}

function responseFormat(format: OllamaChatRequest["format"]) {
  if (!format) return undefined;
  if (format === "json") return { type: "json_object" };
  return { type: "json_schema", json_schema: { name: "format", schema: format, strict: true } };
}

/** The options as the chat API's fields. */
function sampling(options: OllamaOptions) {
  const predict = options.num_predict;
  return {
    // Ollama's -1 and -2, and 0, set no limit: the context's end is the limit.
    max_tokens: predict != null && predict > 0 ? Math.min(predict, Number.MAX_SAFE_INTEGER) : undefined,
    temperature: options.temperature,
    top_p: options.top_p,
    // Ollama's top_k 0 takes every token, as the chat API's -1 does.
    top_k: options.top_k === 0 ? -1 : options.top_k,
    min_p: options.min_p,
    seed: options.seed,
    stop: options.stop ?? undefined,
    repetition_penalty: options.repeat_penalty,
    presence_penalty: options.presence_penalty,
    frequency_penalty: options.frequency_penalty,
  };
}

/** The chat API's name for a field, as Ollama's request has it (`kept`: each chat message's place in it). */
export function ollamaParam(param: string, kept?: number[]): string {
  const message = /^messages\[(\d+)\]/.exec(param);
  if (message && kept) {
    param = `messages[${kept[Number(message[1])] ?? message[1]}]${param.slice(message[0].length)}`;
  }
  const names: Record<string, string> = {
    max_tokens: "options.num_predict",
    temperature: "options.temperature",
    top_p: "options.top_p",
    top_k: "options.top_k",
    min_p: "options.min_p",
    seed: "options.seed",
    stop: "options.stop",
    repetition_penalty: "options.repeat_penalty",
    presence_penalty: "options.presence_penalty",
    frequency_penalty: "options.frequency_penalty",
  };
  const head = /^[a-z_]+/.exec(param)?.[0] ?? "";
  if (head in names) return names[head] + param.slice(head.length);
  if (head === "response_format") return "format";
  // Images are a user message's first parts, its text the last.
  return param.replace(/\.content\[(\d+)\]\.image_url(\.url)?$/, ".images[$1]").replace(
    /\.content\[\d+\].*$/,
    ".content",
  );
}

/** The chat API's words in error messages, as Ollama's request says them. */
export const OLLAMA_WORDS: [RegExp, string][] = [
  [/max_tokens/g, "num_predict"],
  [/repetition_penalty/g, "repeat_penalty"],
  [/response_format/g, "format"],
];

function parsed(body: Record<string, unknown>, param: (chatParam: string) => string): ChatRequest {
  try {
    return parseChatRequest(body).request;
  } catch (err) {
    throw renamed(err, param, OLLAMA_WORDS);
  }
}

export interface OllamaChat {
  chat: ChatRequest;
  /** The tools' schemas and the calls' arguments as Python reads them (see pySource), at the chat's paths. */
  source?: PyValue;
  /** A chat request's parameter as Ollama's request names it. */
  param(chatParam: string): string;
}

/**
 * `text`: the request body as sent, for the tools' schemas and the calls' arguments as Python reads them. `from`:
 * where the conversation begins when cut to fit (one of historyStarts; the system messages before it are kept).
 */
export function chatOfOllama(
  request: OllamaChatRequest,
  options: OllamaOptions,
  text: string,
  from = 0,
): OllamaChat {
  const { messages, kept } = chatMessages(request.messages ?? [], from);
  const param = (chatParam: string) => ollamaParam(chatParam, kept);
  const chat = parsed({
    model: request.model,
    messages,
    tools: request.tools ?? undefined,
    response_format: responseFormat(request.format),
    logprobs: request.logprobs ?? undefined,
    top_logprobs: request.logprobs ? request.top_logprobs ?? undefined : undefined,
    ...sampling(options),
  }, param);
  let source: PyValue | undefined;
  const read = pySource(chat, text);
  if (read !== undefined) {
    source = new Map<string, PyValue>([
      ["messages", kept.map((i) => pyAt(read, "messages", i) ?? new Map())],
      ["tools", pyAt(read, "tools") ?? []],
    ]);
  }
  return { chat, source, param };
}

/** `/api/generate` without `raw`: the system prompt and the prompt, with its images, as a conversation. */
export function chatOfGenerate(
  request: OllamaGenerateRequest,
  options: OllamaOptions,
): { chat: ChatRequest; param(chatParam: string): string } {
  const messages = [
    ...request.system ? [{ role: "system", content: request.system }] : [],
    { role: "user", content: content({ content: request.prompt, images: request.images }, "images") },
  ];
  const user = request.system ? 1 : 0;
  const param = (chatParam: string) => {
    const image = new RegExp(`^messages\\[${user}\\]\\.content\\[(\\d+)\\]\\.image_url`).exec(chatParam);
    if (image) return `images[${image[1]}]`;
    if (chatParam === "messages" || chatParam.startsWith(`messages[${user}]`)) return "prompt";
    if (user && chatParam.startsWith("messages[0]")) return "system";
    return ollamaParam(chatParam);
  };
  const chat = parsed({
    model: request.model,
    messages,
    response_format: responseFormat(request.format),
    logprobs: request.logprobs ?? undefined,
    top_logprobs: request.logprobs ? request.top_logprobs ?? undefined : undefined,
    ...sampling(options),
  }, param);
  return { chat, param };
}

/**
 * `/api/generate` with `raw`: the prompt (its token ids, rawPromptIds) as a text completion's, as Ollama passes it
 * to the model unformatted.
 */
export function completionOfGenerate(request: OllamaGenerateRequest, options: OllamaOptions, ids: number[]) {
  const { max_tokens, top_k, ...rest } = sampling(options);
  return {
    model: request.model,
    prompt: ids,
    // A text completion's default is 16 tokens; Ollama's is no limit.
    max_tokens: max_tokens ?? null,
    top_k,
    ...rest,
    response_format: responseFormat(request.format),
    logprobs: request.logprobs ? request.top_logprobs ?? 0 : undefined,
  };
}

const SPECIALS = new WeakMap<Tokenizer, RegExp>();

/**
 * A raw prompt's token ids as Ollama's tokenizers read it: control tokens written as text (`[INST]`, `</s>`) are
 * the control tokens, so that a raw prompt can write Pixtral's format; a BOS token first unless it has one.
 */
export function rawPromptIds(tokenizer: Tokenizer, text: string, context: number): number[] {
  let pattern = SPECIALS.get(tokenizer);
  if (!pattern) {
    const names = Array.from({ length: tokenizer.numSpecial }, (_, id) => tokenizer.specialName(id))
      .filter((name): name is string => Boolean(name))
      .sort((a, b) => b.length - a.length)
      .map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    pattern = new RegExp(names.join("|"), "g");
    SPECIALS.set(tokenizer, pattern);
  }
  const budget = new TextBudget(tokenizer, context, "prompt");
  const images = ["[IMG]", "[IMG_BREAK]", "[IMG_END]"].flatMap((name) => {
    try {
      return [tokenizer.special(name)];
    } catch {
      return [];
    }
  });
  const ids: number[] = [];
  let at = 0;
  for (const match of text.matchAll(pattern)) {
    // Pushed one by one: a prompt near a 128k context is too many arguments for one call.
    if (match.index > at) { for (const id of budget.encode(text.slice(at, match.index))) ids.push(id); }
    const id = tokenizer.special(match[0]);
    if (images.includes(id)) {
      throw new RequestError(
        `prompt: a raw prompt cannot hold ${match[0]}: images go to /api/chat or /api/generate without raw`,
        "prompt",
      );
    }
    ids.push(id);
    at = match.index + match[0].length;
  }
  if (at < text.length) { for (const id of budget.encode(text.slice(at))) ids.push(id); }
  const bos = tokenizer.special("<s>");
  return ids[0] === bos ? ids : [bos, ...ids];
}
