/**
 * Conversations as the lenient APIs (Ollama's, OpenAI's Responses) take them, made ones Pixtral's format takes.
 *
 * A conversation longer than the context is cut to fit: the oldest messages are left out, the system messages
 * kept, the last message always kept, and a tool result never without the call it answers. Ollama cuts every
 * conversation so (unless `truncate: false`), OpenAI's Responses API those with `truncation: "auto"`. Unlike
 * Ollama, whose runner then shifts the context as the answer grows, a cut here leaves the answer room (see
 * answerRoom). A conversation of more images than this server takes (Ollama has no such limit) is cut alike.
 *
 * A system message after an answer or a tool result, which mistral_common's checks refuse, sends every system
 * message first, in order (systemsLifted): Pixtral's format puts them all in the last user turn anyway.
 *
 * A conversation that ends with an answer, which mistral_common refuses unless it is marked `prefix: true`, has that
 * answer continued (continuedAnswer); the chat API's route and /tokenize take both steps (chatConversation).
 */
import { log } from "../../runtime/log.ts";
import { pyAt, type PyValue } from "../../runtime/prompt/pyjson.ts";
import { type ChatRequest, RequestError } from "../schema/chat.ts";
import type { Service } from "../service.ts";
import type { PreparedChat } from "./prepare.ts";

/** The room a cut leaves an answer of no asked length: a long answer's tokens, the rest of the context history. */
const ANSWER_ROOM = 4096;

interface Message {
  role: string;
  tool_calls?: readonly unknown[] | null;
}

const isSystem = (m: Message) => m.role === "system" || m.role === "developer";

/**
 * The tokens a cut leaves the answer: what the request asks, up to half the context; else (more asked, as agents
 * ask 32000 whatever the context) the server's --max-tokens, else ANSWER_ROOM, at most a quarter of the context.
 * An answer asked longer than what is left runs to the context's end (maxTokens).
 */
export function answerRoom(service: Service, asked: number | undefined): number {
  const context = service.engine!.contextLength;
  if (asked !== undefined && asked <= context / 2) return asked;
  return Math.min(asked ?? service.defaults.maxTokens ?? ANSWER_ROOM, Math.floor(context / 4));
}

/**
 * The places where a cut conversation may begin, earliest first: any message, except that tool results begin
 * with the assistant message whose calls they answer (system messages between go up anyway), and that a user
 * message or a tool result must be left (not an answer to continue alone).
 */
export function historyStarts(messages: Message[]): number[] {
  const calls = (i: number) => messages[i]?.role === "assistant" && Boolean(messages[i].tool_calls?.length);
  const starts = messages.map((m, i) => {
    if (m.role !== "tool") return i;
    let start = i;
    while (start > 0 && (messages[start - 1].role === "tool" || isSystem(messages[start - 1]))) start--;
    return calls(start - 1) ? start - 1 : i;
  });
  const asked = messages.findLastIndex((m) => m.role === "user" || m.role === "tool");
  return [...new Set(starts)].filter((i) => i === 0 || i <= asked);
}

/**
 * An empty user turn before an answer that opens the conversation (after its system messages), in `messages` and
 * at the same place in `origins` (the answer's origin): Pixtral's format puts one there anyway, and
 * mistral_common's serving checks, which count no calls in a conversation's first message, then see the calls an
 * agent's history (or a cut) begins with.
 */
export function addOpeningTurn<T>(messages: Record<string, unknown>[], origins: T[]): void {
  const first = messages.findIndex((m) => !isSystem(m as unknown as Message));
  if (messages[first]?.role !== "assistant") return;
  messages.splice(first, 0, { role: "user", content: "" });
  origins.splice(first, 0, origins[first]);
}

/**
 * The order of the messages: as they are, unless a system message follows an answer or a tool result (after any
 * system messages between), which mistral_common refuses; then every system message first, in their order (the
 * system prompt reads as written).
 */
export function systemsLifted(messages: Message[]): number[] {
  let after: string | undefined;
  const misplaced = messages.some((m) => {
    if (!isSystem(m)) after = m.role;
    return isSystem(m) && (after === "assistant" || after === "tool");
  });
  const order = messages.map((_, i) => i);
  if (!misplaced) return order;
  return [...order.filter((i) => isSystem(messages[i])), ...order.filter((i) => !isSystem(messages[i]))];
}

/**
 * Whether the conversation ends with system messages after an answer: lifted, they leave the answer last, which
 * would be continued; an empty user turn after it takes them (Pixtral's format puts the system prompt in the last
 * user turn) and asks for a new answer, as Ollama's templates and OpenAI answer such a conversation.
 */
export function endsInSystemAfterAnswer(messages: Message[]): boolean {
  let i = messages.length - 1;
  if (i < 0 || !isSystem(messages[i])) return false;
  while (i >= 0 && isSystem(messages[i])) i--;
  return messages[i]?.role === "assistant";
}

/** Whether a message is kept in a conversation cut to begin at `from`. */
export const keptFrom = (from: number) => (m: Message, i: number) => i >= from || isSystem(m);

/** What a cut mends: a prompt longer than the context, or more images than the server takes (--max-images). */
const tooLong = (err: unknown) =>
  err instanceof RequestError && (err.code === "context_length_exceeded" || err.code === "too_many_images");

/**
 * The conversation prepared whole, or cut to the latest beginning that leaves the answer `room` tokens.
 * `prepare(from)`: the request with the messages before `from` left out (see keptFrom), prepared.
 */
export async function cutToFit(
  messages: Message[],
  room: number,
  service: Service,
  prepare: (from: number) => Promise<PreparedChat>,
): Promise<PreparedChat> {
  const context = service.engine!.contextLength;
  const attempt = async (from: number): Promise<PreparedChat | RequestError> => {
    try {
      return await prepare(from);
    } catch (err) {
      // A cut the request's own checks refuse does not fit either (the whole's refusal is the request's fault).
      if (tooLong(err) || (from > 0 && err instanceof RequestError)) return err as RequestError;
      throw err;
    }
  };
  const fits = (tried: PreparedChat | RequestError) =>
    !(tried instanceof RequestError) && context - tried.request.ids.length >= room;
  const whole = await attempt(0);
  const starts = historyStarts(messages);
  if (fits(whole) || starts.length < 2) return settled(whole);
  // Leaving out more messages never lengthens the prompt: the first beginning that fits is found by halves.
  let [low, high] = [1, starts.length - 1];
  let best = await attempt(starts[high]);
  if (!fits(best)) return settled(best);
  while (low < high) {
    const middle = (low + high) >> 1;
    const tried = await attempt(starts[middle]);
    if (fits(tried)) [high, best] = [middle, tried];
    else low = middle + 1;
  }
  log.info("left out the oldest messages", {
    messages: messages.slice(0, starts[high]).filter((m) => !isSystem(m)).length,
    // Why: the whole was longer than the context, held more images than --max-images, or left the answer no room.
    reason: whole instanceof RequestError ? whole.code : "answer_room",
    tokens: (best as PreparedChat).request.ids.length,
    context,
  });
  return best as PreparedChat;
}

function settled(tried: PreparedChat | RequestError): PreparedChat {
  if (tried instanceof RequestError) throw tried;
  return tried;
}

/**
 * A system message after an answer or a tool result, which mistral_common refuses and OpenAI takes: every system
 * message goes first, in order, as the other routes place them, and after a last answer an empty
 * user turn takes them. `param` names a chat message as the request placed it.
 */
export function systemsFirst<R extends { messages: Message[] }>(chat: R, source: PyValue | undefined) {
  const order = systemsLifted(chat.messages);
  if (order.every((j, i) => j === i)) return { request: chat, source };
  const empty = { role: "user" as const, content: "" };
  const after = endsInSystemAfterAnswer(chat.messages);
  const messages = [...order.map((j) => chat.messages[j]), ...after ? [empty] : []];
  const sourceMessages = pyAt(source, "messages");
  if (source instanceof Map && Array.isArray(sourceMessages)) {
    const emptySource: PyValue = new Map([["role", "user"], ["content", ""]]);
    source = new Map([...source, ["messages", [
      ...order.map((j) => sourceMessages[j]),
      ...after ? [emptySource] : [],
    ]]]);
  }
  const param = (p: string) =>
    p.replace(/^messages\[(\d+)\]/, (_, i) => `messages[${order[Number(i)] ?? chat.messages.length - 1}]`);
  return { request: { ...chat, messages: messages as R["messages"] }, source, param };
}

/** A message of any route's shape (the chat API's, or one a route made). */
interface Answer {
  role?: unknown;
  content?: unknown;
  tool_calls?: unknown;
  prefix?: unknown;
}

/** An assistant message without calls: an answer that may be continued. */
function isAnswer(m: Answer | undefined): boolean {
  return m?.role === "assistant" && !(Array.isArray(m.tool_calls) && m.tool_calls.length);
}

/** A message's text: its string, or its parts' texts. */
function textOf(m: Answer): string {
  if (typeof m.content === "string") return m.content;
  return Array.isArray(m.content)
    ? m.content.map((part) => typeof part?.text === "string" ? part.text : "").join("")
    : "";
}

/**
 * Leaves out the answers without text that end the conversation (and their entries in `alongside`, a list kept
 * beside it): they continue nothing, and the question is answered anew (as Anthropic takes an empty prefill).
 */
export function dropEmptyAnswers(messages: Answer[], alongside: unknown[] = []): void {
  while (isAnswer(messages.at(-1)) && !textOf(messages.at(-1)!)) {
    messages.pop();
    alongside.pop();
  }
}

/** The last message, when it is an answer with text: the one the model is to continue. */
export function answerToContinue<M extends Answer>(
  messages: readonly M[],
): (M & { prefix?: boolean }) | undefined {
  const last = messages.at(-1);
  return isAnswer(last) && textOf(last!) ? last as M & { prefix?: boolean } : undefined;
}

/**
 * The conversation as the chat API takes it (its route and /tokenize alike): system messages first
 * (systemsFirst), a last answer continued (continuedAnswer).
 */
export function chatConversation<
  R extends Pick<ChatRequest, "messages" | "continue_final_message" | "add_generation_prompt">,
>(chat: R, source: PyValue | undefined) {
  const lifted = systemsFirst(chat, source);
  return { ...lifted, request: continuedAnswer(lifted.request) };
}

/**
 * A conversation that ends with an answer (`prefix` not given) has it continued, as Ollama, llama.cpp's server and
 * vLLM's `continue_final_message` continue it and as clients' "continue" buttons (Open WebUI's) expect: Pixtral's
 * format has no answer right after an answer. `continue_final_message: true` asks for it and needs such an end;
 * `prefix: false` says the answer is closed, which stays an error. vLLM's `add_generation_prompt` changes nothing:
 * Pixtral's format has no generation prompt (`[/INST]` closes the user's turn).
 */
function continuedAnswer<
  R extends Pick<ChatRequest, "messages" | "continue_final_message" | "add_generation_prompt">,
>(chat: R): R {
  const asked = chat.continue_final_message === true;
  if (asked && chat.add_generation_prompt) {
    throw new RequestError(
      "continue_final_message and add_generation_prompt cannot both be true",
      "continue_final_message",
    );
  }
  const messages = [...chat.messages];
  dropEmptyAnswers(messages);
  const answer = answerToContinue(messages);
  if (asked && (!answer || answer.prefix === false)) {
    throw new RequestError(
      answer
        ? "continue_final_message: true asks to continue the last message, which says prefix: false"
        : "continue_final_message: true continues the last message, which must be an assistant message with " +
          "text and without tool_calls",
      "continue_final_message",
    );
  }
  if (answer && answer.prefix === undefined) {
    messages[messages.length - 1] = { ...answer, prefix: true } as typeof answer;
  }
  return { ...chat, messages };
}
