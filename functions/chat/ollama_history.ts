/**
 * A conversation longer than the context, cut to fit as Ollama cuts it: the oldest messages are left out, the
 * system messages kept, the last message always kept, and a tool result never without the call it answers
 * (`truncate: false` asks for the context error instead). A conversation of more images than this server takes
 * (Ollama has no such limit) is cut alike. Unlike Ollama, whose runner then shifts the context as
 * the answer grows, a cut here leaves room for the answer: `num_predict` tokens, else the server's --max-tokens,
 * else ANSWER_ROOM, at most a quarter of the context.
 */
import { log } from "../../runtime/log.ts";
import { RequestError } from "../schema/chat.ts";
import type { OllamaChatRequest, OllamaOptions } from "../schema/ollama.ts";
import type { Service } from "../service.ts";
import { type DecodedImages, prepareChat, type PreparedChat } from "./prepare.ts";
import { chatOfOllama, OLLAMA_WORDS } from "./ollama.ts";
import { renamed } from "./responses.ts";

/** The room a cut leaves an answer of no asked length: a long answer's tokens, the rest of the context history. */
const ANSWER_ROOM = 4096;

type Message = Pick<NonNullable<OllamaChatRequest["messages"]>[number], "role" | "tool_calls">;

/**
 * The places where a cut conversation may begin, earliest first: any message, except that tool results begin
 * with the assistant message whose calls they answer, and that only a system message may come before calls
 * (mistral_common's serving checks count no calls in a conversation's first message).
 */
export function historyStarts(messages: Message[]): number[] {
  const calls = (i: number) => messages[i]?.role === "assistant" && Boolean(messages[i].tool_calls?.length);
  const starts = messages.map((m, i) => {
    if (m.role !== "tool") return i;
    let start = i;
    while (start > 0 && messages[start - 1].role === "tool") start--;
    return calls(start - 1) ? start - 1 : i;
  });
  const system = messages.findIndex((m) => m.role === "system");
  return [...new Set(starts)].filter((i) => i === 0 || !calls(i) || (system >= 0 && system < i));
}

/** What a cut mends: a prompt longer than the context, or more images than the server takes (--max-images). */
const tooLong = (err: unknown) =>
  err instanceof RequestError && (err.code === "context_length_exceeded" || err.code === "too_many_images");

/** The request prepared whole, or cut to the latest beginning that leaves the answer its room. */
export async function preparedHistory(
  request: OllamaChatRequest,
  options: OllamaOptions,
  text: string,
  service: Service,
  signal: AbortSignal,
): Promise<PreparedChat> {
  const context = service.engine!.contextLength;
  const asked = options.num_predict != null && options.num_predict > 0 ? options.num_predict : undefined;
  const room = Math.min(asked ?? service.defaults.maxTokens ?? ANSWER_ROOM, Math.floor(context / 4));
  const decoded: DecodedImages = new Map();
  /** The chat from `from` prepared, or the context error it meets. */
  const attempt = async (from: number): Promise<PreparedChat | RequestError> => {
    const { chat, source, param } = chatOfOllama(request, options, text, from);
    try {
      return await prepareChat(chat, service, signal, source, { fitMaxTokens: true, decoded });
    } catch (err) {
      if (tooLong(err)) return renamed(err, param, OLLAMA_WORDS) as RequestError;
      throw renamed(err, param, OLLAMA_WORDS);
    }
  };
  const fits = (tried: PreparedChat | RequestError) =>
    !(tried instanceof RequestError) && context - tried.request.ids.length >= room;
  const whole = await attempt(0);
  const starts = historyStarts(request.messages ?? []);
  if (fits(whole) || request.truncate === false || starts.length < 2) return settled(whole);
  // Leaving out more messages never lengthens the prompt: the first beginning that fits is found by halves.
  let [low, high] = [1, starts.length - 1];
  let best: PreparedChat | RequestError = await attempt(starts[high]);
  if (!fits(best)) return settled(best);
  while (low < high) {
    const middle = (low + high) >> 1;
    const tried = await attempt(starts[middle]);
    if (fits(tried)) [high, best] = [middle, tried];
    else low = middle + 1;
  }
  const messages = request.messages ?? [];
  log.info("left out the oldest messages to fit the context", {
    messages: messages.slice(0, starts[high]).filter((m) => m.role !== "system").length,
    tokens: (best as PreparedChat).request.ids.length,
    context,
  });
  return best as PreparedChat;
}

function settled(tried: PreparedChat | RequestError): PreparedChat {
  if (tried instanceof RequestError) throw tried;
  return tried;
}
