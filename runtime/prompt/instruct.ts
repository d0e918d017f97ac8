/**
 * Chat messages to token ids by Mistral's own instruct rules for Pixtral (tokenizer v3, Tekken), as
 * mistral_common implements them (protocol/instruct/normalize.py and validator.py, tokens/tokenizers/instruct.py;
 * spec section 7), function calling included: the tools as JSON in [AVAILABLE_TOOLS] before the last user
 * message, an assistant's calls as a JSON list after [TOOL_CALLS], each result in [TOOL_RESULTS].
 *
 * The prompt is built as ids, never as a templated string, so user text cannot become a control token.
 */
import { pyJsonDumps, pyJsonLoads, type PyValue, TooDeepError } from "./pyjson.ts";

export type Chunk<Image> = { type: "text"; text: string } | { type: "image"; image: Image };

/** A call an assistant message made: `arguments` as the request gave it (JSON text, or already a value). */
export interface ToolCall {
  id: string;
  name: string;
  arguments: string | PyValue;
}

export interface Message<Image> {
  role: "system" | "user" | "assistant" | "tool";
  content: string | Chunk<Image>[] | null;
  /** An assistant message that the model continues instead of a closed turn (Mistral's `prefix`). */
  prefix?: boolean;
  /** An assistant message's calls. */
  toolCalls?: ToolCall[];
  /** A tool message's answer to: the call's id. */
  toolCallId?: string;
}

/** A function the model may call; `parameters` (a JSON Schema) as Python would hold the request's. */
export interface ToolDefinition {
  name: string;
  description: string;
  parameters: PyValue;
}

export interface InstructEncoder<Image> {
  /** Plain BPE: no BOS/EOS, no special-token parsing. */
  encode(text: string): number[];
  /** The image's block: rows of [IMG] ended by [IMG_BREAK], the last by [IMG_END]. */
  imageTokens(image: Image): number[];
  bos: number;
  eos: number;
  inst: number;
  instEnd: number;
  /** [AVAILABLE_TOOLS], [/AVAILABLE_TOOLS], [TOOL_CALLS], [TOOL_RESULTS], [/TOOL_RESULTS] (if it has them). */
  tools?: { begin: number; end: number; calls: number; resultsBegin: number; resultsEnd: number };
}

export interface EncodedChat<Image> {
  ids: number[];
  /** Images in the order their blocks appear in `ids` (which may differ from the request's order). */
  images: Image[];
}

/** A conversation that Mistral's rules cannot encode (the HTTP layer answers 400); `index` names the message. */
export class PromptError extends Error {
  override name = "PromptError";
  /** `index`: the message at fault; `at`: where in it (`.tool_calls[1].function.name`). */
  constructor(message: string, readonly index?: number, readonly at = "") {
    super(message);
  }
}

/** Function names mistral_common accepts (in tools and in calls). */
export const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

const JOIN = "\n\n";

/**
 * Coalesces the contents of consecutive same-role messages: text from different messages is joined with "\n\n",
 * adjacent text chunks inside a message too, empty text is skipped, images break text runs. Text only gives a
 * string.
 */
function aggregate<Image>(contents: Message<Image>["content"][]): string | Chunk<Image>[] {
  const out: Chunk<Image>[] = [];
  let text: string[] = [];
  const flush = () => {
    if (text.length) out.push({ type: "text", text: text.join("") });
    text = [];
  };
  for (const content of contents) {
    if (!content) continue;
    const chunks: Chunk<Image>[] = typeof content === "string" ? [{ type: "text", text: content }] : content;
    for (const chunk of chunks) {
      if (chunk.type === "text") {
        if (!chunk.text) continue;
        text.push(text.length ? JOIN + chunk.text : chunk.text);
      } else {
        flush();
        out.push(chunk);
      }
    }
  }
  if (out.length === 0) return text.join("");
  flush();
  return out;
}

/** mistral_common's checks of a conversation's structure (serving mode), before anything is merged. */
function validate<Image>(messages: Message<Image>[]): void {
  const follows: Record<Message<Image>["role"], Message<Image>["role"][]> = {
    system: ["user", "assistant", "system"],
    user: ["assistant", "system", "user"],
    assistant: ["assistant", "user", "tool"],
    tool: ["assistant", "tool", "user"],
  };
  if (messages.length === 1 && messages[0].role !== "user" && messages[0].role !== "system") {
    throw new PromptError("a conversation of one message must be a user or system message", 0);
  }
  let expectedResults = 0;
  // The ids of the calls of the last assistant message: each tool message answers one of them.
  let callIds: string[] = [];
  messages.forEach((m, i) => {
    if (m.role === "assistant") callIds = m.toolCalls?.map((c) => c.id) ?? [];
    if (m.role === "tool" && m.content) jsonDepth(aggregate([m.content]), i, ".content");
    m.toolCalls?.forEach((call, j) => jsonDepth(call.arguments, i, `.tool_calls[${j}].function.arguments`));
    if (m.role === "assistant" && m.toolCalls?.length) {
      if (m.prefix) throw new PromptError("an assistant message with tool_calls cannot be a prefix", i);
      m.toolCalls.forEach((call, j) => {
        if (!FUNCTION_NAME.test(call.name)) {
          throw new PromptError(
            `the function name ${JSON.stringify(call.name)} is not 1-64 of a-z, A-Z, 0-9, _ and -`,
            i,
            `.tool_calls[${j}].function.name`,
          );
        }
      });
    }
    if (
      m.role === "tool" && m.content !== null && typeof m.content !== "string" &&
      m.content.some((c) => c.type !== "text")
    ) {
      throw new PromptError("a tool message's content must be text", i);
    }
    if (i === 0) return;
    const previous = messages[i - 1].role;
    if (!follows[previous].includes(m.role)) {
      const a = (role: string) => (role === "assistant" ? `an ${role}` : `a ${role}`);
      throw new PromptError(`${a(m.role)} message cannot follow ${a(previous)} message`, i);
    }
    if (m.role === "tool" && !callIds.includes(m.toolCallId!)) {
      throw new PromptError(
        "a tool message's tool_call_id names no call of the assistant message before it",
        i,
        ".tool_call_id",
      );
    }
    // Every call of an assistant message is answered by one tool message before the next assistant message.
    if (m.role === "tool") expectedResults--;
    else if (m.role === "assistant") {
      if (expectedResults !== 0) {
        throw new PromptError(
          "the tool messages do not answer the previous assistant message's calls one for one",
          i,
        );
      }
      expectedResults = m.toolCalls?.length ?? 0;
    }
  });
  if (messages.length > 1 && expectedResults !== 0) {
    throw new PromptError(
      "the tool messages do not answer the last assistant message's calls one for one",
      messages.length - 1,
    );
  }
}

type Turn<Image> =
  | { role: "user"; content: string | Chunk<Image>[] }
  | { role: "assistant"; content: string | Chunk<Image>[]; toolCalls: ToolCall[]; prefix: boolean }
  | { role: "tool"; content: string; toolCallId: string };

function normalize<Image>(messages: Message<Image>[]) {
  // Empty system messages ("" or no parts) are dropped, as mistral_common does; a part with empty text is not.
  const systems = messages.filter((m) => m.role === "system" && m.content?.length)
    .map((m) => aggregate([m.content]) as string);
  const systemPrompt = systems.length ? systems.join(JOIN) : undefined;

  // Runs of one role merge, but tool messages stay one turn each; a system message ends a run (and contributes
  // nothing to the turns).
  const turns: Turn<Image>[] = [];
  let run: Message<Image>[] = [];
  const close = () => {
    const role = run[0]?.role;
    if (role === "user") turns.push({ role, content: aggregate(run.map((m) => m.content)) });
    if (role === "assistant") {
      turns.push({
        role,
        content: aggregate(run.map((m) => m.content)),
        toolCalls: run.flatMap((m) => m.toolCalls ?? []),
        prefix: run.some((m) => m.prefix),
      });
    }
    if (role === "tool") {
      for (const m of run) {
        turns.push({ role, content: aggregate([m.content]) as string, toolCallId: m.toolCallId! });
      }
    }
    run = [];
  };
  for (const message of messages) {
    if (run.length && run[0].role !== message.role) close();
    run.push(message);
  }
  close();
  if (turns.length === 0 || turns[0].role !== "user") turns.unshift({ role: "user", content: "" });
  return { systemPrompt, turns };
}

/** Appends `more` to `ids` (a spread into push() runs out of stack for a long text's tokens). */
export function append(ids: number[], more: ArrayLike<number>): void {
  for (let i = 0; i < more.length; i++) ids.push(more[i]);
}

/** JSON text as mistral_common reads it into a prompt: as its value when it parses (null too), else as a string. */
function jsonContent(text: string | PyValue): PyValue {
  if (typeof text !== "string") return text;
  const value = pyJsonLoads(text || "{}");
  return value === undefined ? text : value;
}

/**
 * Refuses JSON text nested deeper than this server reads (MAX_DEPTH): mistral_common would put it in the prompt
 * as its value (up to Python's own limit, near 1000 levels), and as a string it would make another prompt.
 */
function jsonDepth(text: string | PyValue | Chunk<unknown>[], index: number, at: string): void {
  if (typeof text !== "string") return;
  try {
    pyJsonLoads(text, { tooDeep: "throw" });
  } catch (err) {
    if (!(err instanceof TooDeepError)) throw err;
    // Only JSON: other deep text (unclosed brackets) goes in as a string, as json.loads fails on it too.
    // (JSON.parse does not recurse into the stack.)
    try {
      JSON.parse(text);
    } catch {
      return;
    }
    throw new PromptError(`the JSON text is ${err.message}`, index, at);
  }
}

/**
 * Refuses a conversation that ends with a closed assistant message, or continues one that is not the last: the
 * messages as sent, before any are merged, as mistral_common checks them (an assistant message with prefix: true
 * followed by another assistant message is refused, not merged into one to continue).
 */
export function checkContinuation(messages: readonly { role: string; prefix?: boolean }[]): void {
  const last = messages.at(-1);
  if (last?.role === "assistant" && !last.prefix) {
    throw new PromptError(
      "the last message must be from the user or a tool, or an assistant message with prefix: true to be continued",
      messages.length - 1,
    );
  }
  const early = messages.findIndex((m, i) => m.role === "assistant" && m.prefix && i !== messages.length - 1);
  if (early >= 0) {
    throw new PromptError("only the last message can be an assistant message with prefix: true", early);
  }
}

/** An assistant message with neither calls nor text (empty text parts are dropped, as mistral_common drops them). */
const noAnswer = <Image>(m: Message<Image>) =>
  m.role === "assistant" && !m.toolCalls?.length && (!m.content || aggregate([m.content]).length === 0);

/**
 * The conversation's prompt. An assistant message with neither text nor calls is left out, where mistral_common
 * refuses it: clients send back the empty answers they were given (one cut by a stop string at its start), and
 * Pixtral's format has no empty turn. Errors name the messages as sent.
 */
export function encodeInstruct<Image>(
  messages: Message<Image>[],
  enc: InstructEncoder<Image>,
  tools: readonly ToolDefinition[] = [],
): EncodedChat<Image> {
  let kept = messages.flatMap((m, i) => noAnswer(m) ? [] : [i]);
  // Nothing but empty answers: refused as sent.
  if (kept.length === 0) kept = messages.map((_, i) => i);
  try {
    return encodeAnswered(kept.map((i) => messages[i]), enc, tools);
  } catch (err) {
    if (err instanceof PromptError && err.index !== undefined) {
      throw new PromptError(err.message, kept[err.index], err.at);
    }
    throw err;
  }
}

function encodeAnswered<Image>(
  messages: Message<Image>[],
  enc: InstructEncoder<Image>,
  tools: readonly ToolDefinition[],
): EncodedChat<Image> {
  validate(messages);
  const toolIds = enc.tools;
  if (!toolIds && (tools.length || messages.some((m) => m.role === "tool" || m.toolCalls?.length))) {
    throw new PromptError("this model's tokenizer has no function-calling tokens");
  }
  checkContinuation(messages);
  const { systemPrompt, turns } = normalize(messages);
  const lastUser = turns.findLastIndex((t) => t.role === "user");
  const ids = [enc.bos];
  const images: Image[] = [];
  const json = (value: PyValue) => enc.encode(pyJsonDumps(value));

  turns.forEach((turn, i) => {
    if (turn.role === "tool") {
      const result = new Map([["content", jsonContent(turn.content)], ["call_id", turn.toolCallId]]);
      ids.push(toolIds!.resultsBegin);
      append(ids, json(result));
      ids.push(toolIds!.resultsEnd);
      return;
    }
    if (turn.role === "assistant") {
      if (typeof turn.content !== "string") throw new PromptError("assistant messages must be text");
      // Text and calls together (mistral_common refuses them) are what the model writes when it says something
      // before calling, and what this server then answers: encoded as written, the text, then the calls.
      if (turn.content) append(ids, enc.encode(turn.content.replace(/ +$/, "")));
      if (turn.toolCalls.length) {
        const calls = turn.toolCalls.map((c) =>
          new Map<string, PyValue>([["name", c.name], ["arguments", jsonContent(c.arguments)], ["id", c.id]])
        );
        ids.push(toolIds!.calls);
        append(ids, json(calls));
      }
      if (!turn.prefix) ids.push(enc.eos);
      return;
    }
    const system = i === lastUser ? systemPrompt : undefined;
    if (i === lastUser && tools.length) {
      const definitions = tools.map((t) =>
        new Map<string, PyValue>([
          ["type", "function"],
          [
            "function",
            new Map<string, PyValue>([["name", t.name], ["description", t.description], [
              "parameters",
              t.parameters,
            ]]),
          ],
        ])
      );
      ids.push(toolIds!.begin);
      append(ids, json(definitions));
      ids.push(toolIds!.end);
    }
    ids.push(enc.inst);
    if (typeof turn.content === "string") {
      append(ids, enc.encode(system ? system + JOIN + turn.content : turn.content));
    } else {
      let chunks = turn.content;
      // A text followed by one image is encoded image first (mistral_common's force_img_first).
      if (chunks.length === 2 && chunks[0].type === "text" && chunks[1].type === "image") {
        chunks = [chunks[1], chunks[0]];
      }
      if (system) append(ids, enc.encode(system + JOIN));
      for (const chunk of chunks) {
        if (chunk.type === "text") append(ids, enc.encode(chunk.text));
        else {
          append(ids, enc.imageTokens(chunk.image));
          images.push(chunk.image);
        }
      }
    }
    ids.push(enc.instEnd);
  });
  return { ids, images };
}
