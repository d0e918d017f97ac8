/**
 * A Responses API request as the chat request it amounts to: instructions and input items become messages
 * (function calls join the assistant message before them, their outputs become tool messages), tools and
 * `text.format` take the chat API's shapes, and the result goes through the chat API's own validation. Its
 * errors name the chat fields; `param` names them as the Responses request has them.
 */
import { PromptError } from "../../runtime/prompt/instruct.ts";
import { pyAt, pyJsonLoads, type PyValue } from "../../runtime/prompt/pyjson.ts";
import { type ChatRequest, parseChatRequest, RequestError } from "../schema/chat.ts";
import type { ResponsesPart, ResponsesRequest } from "../schema/responses.ts";
import { summaryTurn } from "./compaction.ts";
import { addOpeningTurn, endsInSystemAfterAnswer, keptFrom, systemsLifted } from "./history.ts";

/** Where a chat message came from in the Responses request. */
interface Origin {
  /** The item (`input[3]`), or the field that is the whole message (`instructions`, a string `input`). */
  at: string;
  whole?: boolean;
  /** What the chat message's `content` is called in the item (`output` for a function call's output). */
  content?: string;
  /** The items of the message's tool calls. */
  calls?: string[];
}

export interface ResponsesChat {
  chat: ChatRequest;
  /** The function tools' parameter schemas as Python reads them (see pySource), at the chat request's paths. */
  source?: PyValue;
  /** A chat request's parameter (`messages[2].content[0]`) as the Responses request names it. */
  param(chatParam: string): string;
  /** A called function's name as the Responses request names it: with its namespace, if in one. */
  callName(name: string): CallName;
}

type ResponsesTool = NonNullable<ResponsesRequest["tools"]>[number];
type FunctionTool = Extract<ResponsesTool, { type: "function" }>;
type CustomTool = Extract<ResponsesTool, { type: "custom" }>;

/** A function or custom tool of the request, where it stands in it, and the name the model knows it by. */
interface FlatTool {
  tool: FunctionTool | CustomTool;
  name: string;
  namespace?: string;
  /** Its path in the request body (`["tools", 4, "tools", 0]`). */
  path: (string | number)[];
}

/**
 * The request's function tools, those of namespace tools and custom tools among them (Pixtral's format has
 * neither): each under its own name, or `namespace__name` where another tool has the name. Web search tools are
 * left out.
 */
export function flatTools(request: ResponsesRequest) {
  const tools: FlatTool[] = [];
  (request.tools ?? []).forEach((tool, i) => {
    if (tool.type === "function" || tool.type === "custom") {
      tools.push({ tool, name: tool.name, path: ["tools", i] });
    }
    if (tool.type === "namespace") {
      tool.tools.forEach((child, j) =>
        tools.push({ tool: child, name: child.name, namespace: tool.name, path: ["tools", i, "tools", j] })
      );
    }
  });
  const count = new Map<string, number>();
  for (const t of tools) count.set(t.name, (count.get(t.name) ?? 0) + 1);
  const flatName = (name: string, namespace?: string | null) =>
    namespace && (count.get(name) ?? 0) > 1 ? `${namespace}__${name}` : name;
  const byFlat = new Map(tools.map((t) => [flatName(t.name, t.namespace), t]));
  return {
    tools,
    flatName,
    callName(flat: string): CallName {
      const t = byFlat.get(flat);
      return t?.namespace
        ? { name: t.name, namespace: t.namespace }
        : t?.tool.type === "custom"
        ? { name: flat, custom: true }
        : { name: flat };
    },
  };
}

/** A called function as the request names it: with its namespace if in one; `custom`: a custom tool's call. */
export interface CallName {
  name: string;
  namespace?: string;
  custom?: boolean;
}

/** Whether the response carries log-probabilities: asked for by `include` or by `top_logprobs`. */
function wantsLogprobs(request: ResponsesRequest): boolean {
  return Boolean(
    request.include?.includes("message.output_text.logprobs") || Number(request.top_logprobs) > 0,
  );
}

/** Where Pixtral's prompt has no place for an image, by the role of the message (a function output: "tool"). */
const NO_IMAGES: Record<string, string> = {
  system: "system and developer messages hold text only",
  developer: "system and developer messages hold text only",
  assistant: "an assistant message holds text only",
};

function chatPart(part: ResponsesPart, param: string, role: string) {
  if (part.type === "input_image" && role in NO_IMAGES) {
    throw new RequestError(`${param}: ${NO_IMAGES[role]}`, param);
  }
  switch (part.type) {
    case "input_text":
    case "output_text":
      return { type: "text", text: part.text };
    case "refusal":
      return { type: "text", text: part.refusal };
    case "input_image": {
      if (!part.image_url) {
        throw new RequestError(
          part.file_id
            ? "images by file_id need OpenAI's Files API, which this server does not have: send image_url, an " +
              "http(s) URL or a data: URL"
            : "an input_image needs image_url (an http(s) URL or a data: URL)",
          `${param}.${part.file_id ? "file_id" : "image_url"}`,
        );
      }
      const detail = part.detail === "original" ? undefined : part.detail ?? undefined;
      return { type: "image_url", image_url: { url: part.image_url, detail } };
    }
  }
}

function chatContent(content: string | ResponsesPart[], param: string, role: string) {
  return typeof content === "string" ? content : content.map((p, j) => chatPart(p, `${param}[${j}]`, role));
}

/** The messages of the request, each with where it came from (`flatName`: a call's name for the model). */
function chatMessages(
  request: ResponsesRequest,
  flatName: (name: string, namespace?: string | null) => string,
) {
  const messages: Record<string, unknown>[] = [];
  const origins: Origin[] = [];
  /**
   * Images that function outputs returned (Codex's view_image): Pixtral's format has no images in function
   * results, so they follow the run of results as a user turn of their own.
   */
  const returned: { message: Record<string, unknown>; origin: Origin }[] = [];
  const add = (message: Record<string, unknown>, origin: Origin) => {
    if (message.role !== "tool") {
      for (const r of returned.splice(0)) add(r.message, r.origin);
    }
    messages.push(message);
    origins.push(origin);
  };
  if (request.instructions) {
    add({ role: "system", content: request.instructions }, { at: "instructions", whole: true });
  }
  if (typeof request.input === "string") {
    add({ role: "user", content: request.input }, { at: "input", whole: true });
    return { messages, origins };
  }
  /** The call ids of the function_call items so far: an output answers one of them, as OpenAI requires. */
  const called = new Set<string>();
  request.input.forEach((item, i) => {
    const at = `input[${i}]`;
    switch (item.type) {
      case "message":
        return add({ role: item.role, content: chatContent(item.content, `${at}.content`, item.role) }, {
          at,
          content: ".content",
        });
      case "function_call":
      case "custom_tool_call": {
        const call = {
          id: item.call_id,
          type: "function",
          function: item.type === "function_call"
            ? { name: flatName(item.name, item.namespace), arguments: item.arguments }
            : { name: item.name, arguments: JSON.stringify({ input: item.input }) },
        };
        called.add(item.call_id);
        const last = messages.at(-1);
        // Calls belong to the assistant's turn: with its text when the text came just before.
        if (last?.role === "assistant") {
          ((last.tool_calls ??= []) as unknown[]).push(call);
          (origins.at(-1)!.calls ??= []).push(at);
        } else add({ role: "assistant", content: null, tool_calls: [call] }, { at, calls: [at] });
        return;
      }
      case "function_call_output":
      case "custom_tool_call_output":
        if (!called.has(item.call_id)) {
          throw new RequestError(
            `${at}.call_id: no ${item.type.slice(0, -"_output".length)} before it has this call_id`,
            `${at}.call_id`,
            "invalid_input",
          );
        }
        {
          const output = chatContent(item.output, `${at}.output`, "tool");
          const images = typeof output === "string" ? [] : output.filter((p) => p.type === "image_url");
          const text = typeof output === "string" ? output : output.filter((p) => p.type !== "image_url");
          add({ role: "tool", tool_call_id: item.call_id, content: text }, { at, content: ".output" });
          if (images.length) {
            returned.push({
              message: { role: "user", content: images },
              origin: { at: `${at}.output`, whole: true },
            });
          }
          return;
        }
      case "reasoning":
        return; // another model's thoughts: Pixtral has none to continue
      case "compaction": {
        const content = summaryTurn(item.encrypted_content, `${at}.encrypted_content`);
        return add({ role: "user", content }, { at, content: ".encrypted_content" });
      }
    }
  });
  for (const r of returned.splice(0)) add(r.message, r.origin);
  return { messages, origins };
}

function renamer(origins: Origin[], tools: FlatTool[], allowed: number[]) {
  return (param: string): string => {
    const message = /^messages\[(\d+)\](.*)$/.exec(param);
    if (message) {
      const origin = origins[Number(message[1])];
      const rest = message[2];
      if (!origin) return "input";
      const call = /^\.tool_calls\[(\d+)\](.*)$/.exec(rest);
      if (call) {
        return (origin.calls?.[Number(call[1])] ?? origin.at) +
          call[2].replace(/^\.function/, "").replace(/^\.id/, ".call_id");
      }
      if (rest === ".tool_call_id") return `${origin.at}.call_id`;
      if (origin.whole) return origin.at;
      return origin.at + (origin.content ? rest.replace(/^\.content/, origin.content) : rest);
    }
    const tool = /^tools\[(\d+)\]\.(?:function|custom)(.*)$/.exec(param);
    if (tool) {
      const path = tools[Number(tool[1])]?.path ?? ["tools", Number(tool[1])];
      return path.map((key, i) => typeof key === "number" ? `[${key}]` : `${i ? "." : ""}${key}`).join("") +
        tool[2].replace(/^\.format\.grammar\./, ".format.");
    }
    if (param === "messages") return "input";
    if (param === "max_completion_tokens") return "max_output_tokens";
    if (param === "logprobs") return "top_logprobs";
    if (param === "tool_choice.function.name") return "tool_choice.name";
    const entry = /^tool_choice\.allowed_tools\.tools\[(\d+)\]\.function\.name$/.exec(param);
    if (entry) return `tool_choice.tools[${allowed[Number(entry[1])]}].name`;
    if (param.startsWith("tool_choice.allowed_tools")) return "tool_choice" + param.slice(25);
    if (param.startsWith("response_format")) {
      return "text.format" + param.slice("response_format".length).replace(/^\.json_schema/, "");
    }
    return param;
  };
}

/** A tool as the chat API's, named `name`: function tools strict unless they say otherwise, as in the Responses API. */
function chatTool({ tool }: FlatTool, name: string) {
  if (tool.type === "function") {
    const { description, parameters, strict } = tool;
    return { type: "function", function: { name, description, parameters, strict: strict ?? true } };
  }
  const { format } = tool;
  return {
    type: "custom",
    custom: {
      name,
      description: tool.description,
      format: format?.type === "grammar"
        ? { type: "grammar", grammar: { syntax: format.syntax, definition: format.definition } }
        : format,
    },
  };
}

/** The places in `tool_choice.tools` of the allowed tools that are functions or custom tools. */
function allowedCallable(choice: ResponsesRequest["tool_choice"]): number[] {
  if (typeof choice !== "object" || choice?.type !== "allowed_tools") return [];
  // A hosted tool's entry (web search, MCP) names none of the tools the model is given.
  return choice.tools.flatMap((t, i) => t.name && (t.type === "function" || t.type === "custom") ? [i] : []);
}

/** The request's tool_choice as the chat API's. */
function toolChoice(
  choice: ResponsesRequest["tool_choice"],
  flatName: (name: string, namespace?: string | null) => string,
) {
  if (typeof choice !== "object" || !choice) return choice;
  if (choice.type !== "allowed_tools") return { type: "function", function: { name: choice.name } };
  return {
    type: "allowed_tools",
    allowed_tools: {
      mode: choice.mode,
      tools: allowedCallable(choice).map((i) => ({
        type: "function",
        function: { name: flatName(choice.tools[i].name!, choice.tools[i].namespace) },
      })),
    },
  };
}

function responseFormat(format: NonNullable<ResponsesRequest["text"]>["format"]) {
  if (!format || format.type !== "json_schema") return format ?? undefined;
  const { name, description, schema, strict } = format;
  return { type: "json_schema", json_schema: { name, description, schema, strict } };
}

/**
 * `text`: the request body as sent, for the tools' parameter schemas as Python reads them. `from`: where a
 * conversation cut to fit the context (`truncation: "auto"`, see history.ts) begins, in the chat request's
 * messages (system messages lifted, see systemsLifted).
 */
export function toChat(request: ResponsesRequest, text: string, from = 0): ResponsesChat {
  const flat = flatTools(request);
  const all = chatMessages(request, flat.flatName);
  const roles = all.messages as unknown as { role: string }[];
  const inCut = keptFrom(from);
  // Cut in the order given to the model (the chat request's messages, where `from` counts).
  const kept = systemsLifted(roles).filter((i, at) => inCut(roles[i], at));
  const messages = kept.map((i) => all.messages[i]);
  const origins = kept.map((i) => all.origins[i]);
  if (endsInSystemAfterAnswer(roles)) {
    messages.push({ role: "user", content: "" });
    origins.push(all.origins.at(-1)!);
  }
  addOpeningTurn(messages, origins);
  const param = renamer(origins, flat.tools, allowedCallable(request.tool_choice));
  const tool = request.tool_choice;
  const body = {
    model: request.model,
    messages,
    max_completion_tokens: request.max_output_tokens,
    temperature: request.temperature,
    top_p: request.top_p,
    logprobs: wantsLogprobs(request) || undefined,
    top_logprobs: request.top_logprobs,
    response_format: responseFormat(request.text?.format),
    tools: flat.tools.length
      ? flat.tools.map((t) => chatTool(t, flat.flatName(t.name, t.namespace)))
      : undefined,
    tool_choice: toolChoice(tool, flat.flatName),
    parallel_tool_calls: request.parallel_tool_calls,
    seed: request.seed,
    top_k: request.top_k,
    min_p: request.min_p,
    presence_penalty: request.presence_penalty,
    frequency_penalty: request.frequency_penalty,
    repetition_penalty: request.repetition_penalty,
    stop: request.stop,
    logit_bias: request.logit_bias,
    image_resize: request.image_resize,
  };
  let chat: ChatRequest;
  try {
    chat = parseChatRequest(body).request;
  } catch (err) {
    throw renamed(err, param);
  }
  let source: PyValue | undefined;
  if (flat.tools.length) {
    const read = pyJsonLoads(text);
    source = new Map([[
      "tools",
      flat.tools.map(({ path, tool }): PyValue => {
        // A custom tool's parameters are its input's, whatever else it carries.
        const parameters = tool.type === "custom" ? undefined : pyAt(read, ...path, "parameters");
        return new Map([["function", new Map(parameters === undefined ? [] : [["parameters", parameters]])]]);
      }),
    ]]);
  }
  return { chat, source, param, callName: flat.callName };
}

/** The chat API's words in error messages, as the Responses API says them. */
const WORDS: [RegExp, string][] = [
  [/max_completion_tokens/g, "max_output_tokens"],
  [/response_format/g, "text.format"],
  [
    /the last message must be from the user or a tool, or an assistant message with prefix: true to be continued/,
    "the input must end with a user message or a function_call_output",
  ],
  [
    /a tool message's tool_call_id names no call of the assistant message before it/,
    "no function_call before it has this call_id",
  ],
  [
    /the tool messages do not answer the (previous|last) assistant message's calls/,
    "the function_call_output items do not answer the function calls before them",
  ],
  [/a tool message's content must be text/, "a function_call_output's output must be text"],
  [/\btool message/g, "function_call_output"],
];

/** `err` with its parameter and message in the terms of the request it came as (by default a Responses one). */
export function renamed(
  err: unknown,
  param: (chatParam: string) => string,
  vocabulary: [RegExp, string][] = WORDS,
): unknown {
  const words = (message: string) => vocabulary.reduce((m, [from, to]) => m.replace(from, to), message);
  if (err instanceof PromptError) {
    const at = param(err.index === undefined ? "messages" : `messages[${err.index}]${err.at}`);
    return new RequestError(`${at}: ${words(err.message)}`, at, "invalid_input");
  }
  if (!(err instanceof Error)) return err;
  const before = (err as { param?: unknown }).param;
  const after = typeof before === "string" ? param(before) : undefined;
  const lead = after !== undefined && err.message.startsWith(`${before}:`);
  const message = words(lead ? after + err.message.slice(String(before).length) : err.message);
  if (err instanceof RequestError) return new RequestError(message, after ?? err.param, err.code);
  try {
    if (after !== undefined) (err as { param?: string }).param = after;
    err.message = message;
  } catch {
    // A DOMException's message cannot be set (an AbortError: the client left); it names no field anyway.
  }
  return err;
}
