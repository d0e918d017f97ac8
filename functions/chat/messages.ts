/**
 * An Anthropic Messages API request as the chat request it amounts to: the system prompt becomes a system
 * message, a user message's tool_result blocks become tool messages (before the rest of it), an assistant's
 * tool_use blocks its tool calls, a last assistant message the prefix the answer continues (Anthropic's prefill,
 * Mistral's `prefix`), custom tools and `output_format` the chat API's shapes; the result goes through the chat
 * API's own validation. Its errors name the chat fields; `param` names them as the Messages request has them.
 */
import { pyAt, pyJsonLoads, type PyValue } from "../../runtime/prompt/pyjson.ts";
import { type ChatRequest, parseChatRequest, RequestError } from "../schema/chat.ts";
import type { MessagesBlock, MessagesRequest } from "../schema/messages.ts";
import {
  addOpeningTurn,
  answerToContinue,
  dropEmptyAnswers,
  endsInSystemAfterAnswer,
  systemsLifted,
} from "./history.ts";
import { renamed } from "./responses.ts";

/** Where a chat message came from in the Messages request. */
interface Origin {
  /** The message (`messages[3]`), its block (a tool_result's), or `system`. */
  at: string;
  /** The whole content is one string, named by `at`. */
  whole?: boolean;
  /** The block each of the chat message's content parts is. */
  parts?: number[];
  /** The block each of its tool calls is. */
  calls?: number[];
}

export interface MessagesChat {
  chat: ChatRequest;
  /** The tools' schemas and the calls' inputs as Python reads them (see pySource), at the chat request's paths. */
  source?: PyValue;
  /** A chat request's parameter (`messages[2].content[0]`) as the Messages request names it. */
  param(chatParam: string): string;
}

type ImageBlock = Extract<MessagesBlock, { type: "image" }>;

function imagePart(block: ImageBlock, param: string) {
  const { source } = block;
  if (source.type === "file") {
    throw new RequestError(
      "images by file_id need Anthropic's Files API, which this server does not have: send the image as base64 " +
        "or by URL",
      `${param}.source.file_id`,
    );
  }
  const url = source.type === "url" ? source.url : `data:${source.media_type};base64,${source.data}`;
  return { type: "image_url", image_url: { url } };
}

/**
 * A tool_result's content as a tool message's text, and its images: Pixtral's format has text results only, so
 * the images (Claude Code's screenshots, image files it read) go to the user turn after the results.
 */
function resultContent(block: Extract<MessagesBlock, { type: "tool_result" }>, param: string) {
  const content = block.content ?? "";
  if (typeof content === "string") return { text: content, images: [] };
  return {
    text: content.flatMap((part) => part.type === "text" ? [{ type: "text", text: part.text }] : []),
    images: content.flatMap((part, k) =>
      part.type === "image" ? [imagePart(part, `${param}.content[${k}]`)] : []
    ),
  };
}

/** The chat messages of the request, each with where it came from. */
function chatMessages(request: MessagesRequest) {
  const messages: Record<string, unknown>[] = [];
  const origins: Origin[] = [];
  const add = (message: Record<string, unknown>, origin: Origin) => {
    messages.push(message);
    origins.push(origin);
  };
  const { system } = request;
  if (typeof system === "string" ? system : system?.length) {
    const content = typeof system === "string"
      ? system
      : system!.map((b) => ({ type: "text", text: b.text }));
    add({ role: "system", content }, { at: "system", whole: typeof system === "string" });
  }
  request.messages.forEach((m, i) => {
    const at = `messages[${i}]`;
    if (typeof m.content === "string") return add({ role: m.role, content: m.content }, { at, whole: true });
    const content: unknown[] = [];
    const parts: number[] = [];
    if (m.role === "system") {
      m.content.forEach((block, b) => {
        const param = `${at}.content[${b}]`;
        if (block.type !== "text") {
          throw new RequestError(`${param}: a system message holds text blocks only`, `${param}.type`);
        }
        content.push({ type: "text", text: block.text }), parts.push(b);
      });
      return add({ role: "system", content }, { at, parts });
    }
    if (m.role === "user") {
      m.content.forEach((block, b) => {
        const param = `${at}.content[${b}]`;
        if (block.type === "tool_result") {
          const before = messages.findLast((earlier) => earlier.role !== "system");
          if (!(before?.role === "tool" || (before?.role === "assistant" && before.tool_calls))) {
            throw new RequestError(
              `${param}: a tool_result must answer a tool_use block of the assistant message just before it`,
              `${param}.tool_use_id`,
            );
          }
          const { text, images } = resultContent(block, param);
          for (const image of images) content.push(image), parts.push(b);
          return add({ role: "tool", tool_call_id: block.tool_use_id, content: text }, { at: param });
        }
        if (block.type === "text") content.push({ type: "text", text: block.text }), parts.push(b);
        else if (block.type === "image") content.push(imagePart(block, param)), parts.push(b);
        else if (block.type === "tool_use") {
          throw new RequestError(`${param}: tool_use blocks belong in assistant messages`, `${param}.type`);
        }
      });
      // Tool results alone make no user turn of their own.
      if (content.length || !m.content.some((b) => b.type === "tool_result")) {
        add({ role: "user", content }, { at, parts });
      }
      return;
    }
    const calls: unknown[] = [];
    const callBlocks: number[] = [];
    m.content.forEach((block, b) => {
      const param = `${at}.content[${b}]`;
      if (block.type === "text") content.push({ type: "text", text: block.text }), parts.push(b);
      else if (block.type === "tool_use") {
        calls.push({
          id: block.id,
          type: "function",
          function: { name: block.name, arguments: block.input },
        });
        callBlocks.push(b);
      } else if (block.type === "image" || block.type === "tool_result") {
        throw new RequestError(`${param}: ${block.type} blocks belong in user messages`, `${param}.type`);
      }
      // Thinking blocks: another model's thoughts, which Pixtral has none of to continue.
    });
    add(
      {
        role: "assistant",
        content: content.length ? content : null,
        ...(calls.length ? { tool_calls: calls } : {}),
      },
      { at, parts, calls: callBlocks },
    );
  });
  // System messages after an answer (Claude Code's) go up with the others, and a new answer comes after them.
  const roles = messages as unknown as { role: string }[];
  const answerAfter = endsInSystemAfterAnswer(roles);
  const order = systemsLifted(roles);
  const lifted = { messages: order.map((j) => messages[j]), origins: order.map((j) => origins[j]) };
  messages.splice(0, messages.length, ...lifted.messages);
  origins.splice(0, origins.length, ...lifted.origins);
  if (answerAfter) add({ role: "user", content: "" }, origins.at(-1)!);
  // The answer continues a last assistant message, as Anthropic's prefill; an empty one (or of thinking blocks
  // only) is no prefill, as Anthropic takes it.
  dropEmptyAnswers(messages, origins);
  const answer = answerToContinue(messages);
  if (answer && typeof answer.content === "string" && /\s$/.test(answer.content)) {
    const at = origins.at(-1)!.at;
    throw new RequestError(`${at}: final assistant content cannot end with trailing whitespace`, at);
  }
  // A last tool_use is marked too, for the prompt's refusal of it (worded as Anthropic's, below).
  const last = messages.at(-1);
  if (last?.role === "assistant") last.prefix = true;
  addOpeningTurn(messages, origins);
  return { messages, origins };
}

function renamer(origins: Origin[], formatField: string) {
  return (param: string): string => {
    const message = /^messages\[(\d+)\](.*)$/.exec(param);
    if (message) {
      const origin = origins[Number(message[1])];
      const rest = message[2];
      if (!origin) return "messages";
      const call = /^\.tool_calls\[(\d+)\](.*)$/.exec(rest);
      if (call) {
        const block = origin.calls?.[Number(call[1])];
        const field = call[2].replace(/^\.function\.arguments/, ".input").replace(/^\.function/, "");
        return block === undefined ? origin.at : `${origin.at}.content[${block}]${field}`;
      }
      if (rest === ".tool_call_id") return `${origin.at}.tool_use_id`;
      if (origin.whole) return origin.at;
      const part = /^\.content\[(\d+)\](.*)$/.exec(rest);
      if (part && origin.parts) {
        const field = part[2].replace(/^\.image_url(\.url)?/, ".source");
        return `${origin.at}.content[${origin.parts[Number(part[1])]}]${field}`;
      }
      return origin.at + rest;
    }
    const tool = /^tools\[(\d+)\]\.function(.*)$/.exec(param);
    if (tool) return `tools[${tool[1]}]${tool[2].replace(/^\.parameters/, ".input_schema")}`;
    if (param === "max_completion_tokens") return "max_tokens";
    if (param === "stop") return "stop_sequences";
    if (param === "tool_choice.function.name") return "tool_choice.name";
    if (param.startsWith("response_format")) {
      return formatField + param.slice("response_format".length).replace(/^\.json_schema/, "");
    }
    return param;
  };
}

function toolChoice(choice: MessagesRequest["tool_choice"]) {
  if (!choice) return undefined;
  if (choice.type === "any") return "required";
  if (choice.type === "tool") return { type: "function", function: { name: choice.name } };
  return choice.type;
}

/** `text`: the request body as sent, for the tools' schemas and the calls' inputs as Python reads them. */
export function toChat(request: MessagesRequest, text: string): MessagesChat {
  if (request.output_config?.format && request.output_format) {
    throw new RequestError(
      "give output_config.format or output_format (its older name), not both",
      "output_format",
    );
  }
  const { messages, origins } = chatMessages(request);
  const param = renamer(origins, request.output_config?.format ? "output_config.format" : "output_format");
  const format = request.output_config?.format ?? request.output_format;
  const choice = request.tool_choice;
  const body = {
    model: request.model,
    messages,
    max_completion_tokens: request.max_tokens,
    temperature: request.temperature,
    top_p: request.top_p,
    top_k: request.top_k,
    stop: request.stop_sequences ?? undefined,
    response_format: format
      ? { type: "json_schema", json_schema: { name: "output", schema: format.schema, strict: true } }
      : undefined,
    // Anthropic's tools are enforced when `strict`; otherwise, as OpenAI's, what the grammar can of them.
    tools: request.tools?.map(({ name, description, input_schema, strict }) => ({
      type: "function",
      function: { name, description, parameters: input_schema, strict: strict ?? false },
    })),
    tool_choice: toolChoice(choice),
    parallel_tool_calls: choice && "disable_parallel_tool_use" in choice && choice.disable_parallel_tool_use
      ? false
      : undefined,
    seed: request.seed,
    min_p: request.min_p,
    presence_penalty: request.presence_penalty,
    frequency_penalty: request.frequency_penalty,
    repetition_penalty: request.repetition_penalty,
    logit_bias: request.logit_bias,
    image_resize: request.image_resize,
  };
  let chat: ChatRequest;
  try {
    chat = parseChatRequest(body).request;
  } catch (err) {
    throw renamed(err, param, WORDS);
  }
  return { chat, source: pythonSource(request, text, origins), param };
}

/** The chat API's words in error messages, as the Messages API says them. */
export const WORDS: [RegExp, string][] = [
  [/max_completion_tokens/g, "max_tokens"],
  [/response_format/g, "output_format"],
  [
    /an assistant message with tool_calls cannot be a prefix/,
    "the messages end with an assistant's tool_use: send its tool_result in a user message",
  ],
  [
    /a tool message's tool_call_id names no call of the assistant message before it/,
    "a tool_result's tool_use_id names no tool_use of the assistant message before it",
  ],
  [
    /the tool messages do not answer the (previous|last) assistant message's calls one for one/,
    "the tool_result blocks do not answer the assistant message's tool_use blocks one for one",
  ],
  [/tool message/g, "tool_result"],
];

/** The tools' input schemas and the assistant's tool_use inputs as Python reads them, where the chat has them. */
function pythonSource(request: MessagesRequest, text: string, origins: Origin[]): PyValue | undefined {
  const inputs = origins.some((o) => o.calls?.length);
  if (!request.tools?.length && !inputs) return undefined;
  const read = pyJsonLoads(text);
  const at = (path: string) => /^messages\[(\d+)\]$/.exec(path);
  const messages = origins.map((origin): PyValue => {
    const i = at(origin.at)?.[1];
    if (!origin.calls?.length || i === undefined) return new Map();
    const calls = origin.calls.map((block): PyValue =>
      new Map([[
        "function",
        new Map([["arguments", pyAt(read, "messages", Number(i), "content", block, "input") ?? null]]),
      ]])
    );
    return new Map([["tool_calls", calls]]);
  });
  const tools = (request.tools ?? []).map((_, i): PyValue =>
    new Map([["function", new Map([["parameters", pyAt(read, "tools", i, "input_schema") ?? null]])]])
  );
  return new Map<string, PyValue>([["messages", messages], ["tools", tools]]);
}
