/**
 * Chat messages to token ids by Mistral's own instruct rules for Pixtral (tokenizer v3, Tekken), as
 * mistral_common implements them (protocol/instruct/normalize.py, tokens/tokenizers/instruct.py; spec section 7).
 *
 * The prompt is built as ids, never as a templated string, so user text cannot become a control token.
 */

export type Chunk<Image> = { type: "text"; text: string } | { type: "image"; image: Image };

export interface Message<Image> {
  role: "system" | "user" | "assistant";
  content: string | Chunk<Image>[] | null;
  /** An assistant message that the model continues instead of a closed turn (Mistral's `prefix`). */
  prefix?: boolean;
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
}

export interface EncodedChat<Image> {
  ids: number[];
  /** Images in the order their blocks appear in `ids` (which may differ from the request's order). */
  images: Image[];
}

/** A conversation that Mistral's rules cannot encode (the HTTP layer answers 400). */
export class PromptError extends Error {
  override name = "PromptError";
}

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

function normalize<Image>(messages: Message<Image>[]) {
  // Empty system messages ("" or no parts) are dropped, as mistral_common does; a part with empty text is not.
  const systems = messages.filter((m) => m.role === "system" && m.content?.length)
    .map((m) => aggregate([m.content]) as string);
  const systemPrompt = systems.length ? systems.join(JOIN) : undefined;

  // Runs of one role merge; a system message ends a run (and contributes nothing to the turns).
  const turns: { role: "user" | "assistant"; content: string | Chunk<Image>[]; prefix: boolean }[] = [];
  let run: Message<Image>[] = [];
  const close = () => {
    const role = run[0]?.role;
    if (role === "user" || role === "assistant") {
      turns.push({ role, content: aggregate(run.map((m) => m.content)), prefix: run.some((m) => m.prefix) });
    }
    run = [];
  };
  for (const message of messages) {
    if (run.length && run[0].role !== message.role) close();
    run.push(message);
  }
  close();
  if (turns.length === 0 || turns[0].role !== "user") {
    turns.unshift({ role: "user", content: "", prefix: false });
  }
  return { systemPrompt, turns };
}

export function encodeInstruct<Image>(
  messages: Message<Image>[],
  enc: InstructEncoder<Image>,
): EncodedChat<Image> {
  const { systemPrompt, turns } = normalize(messages);
  const last = turns.at(-1)!;
  if (last.role === "assistant" && !last.prefix) {
    throw new PromptError(
      "the last message must be from the user, or an assistant message with prefix: true to be continued",
    );
  }
  if (turns.some((t, i) => t.prefix && i !== turns.length - 1)) {
    throw new PromptError("only the last message can be an assistant message with prefix: true");
  }
  const lastUser = turns.findLastIndex((t) => t.role === "user");
  const ids = [enc.bos];
  const images: Image[] = [];

  turns.forEach((turn, i) => {
    if (turn.role === "assistant") {
      if (typeof turn.content !== "string") throw new PromptError("assistant messages must be text");
      if (!turn.content) throw new PromptError("an assistant message has empty content");
      ids.push(...enc.encode(turn.content.replace(/ +$/, "")));
      if (!turn.prefix) ids.push(enc.eos);
      return;
    }
    const system = i === lastUser ? systemPrompt : undefined;
    ids.push(enc.inst);
    if (typeof turn.content === "string") {
      ids.push(...enc.encode(system ? system + JOIN + turn.content : turn.content));
    } else {
      let chunks = turn.content;
      // A text followed by one image is encoded image first (mistral_common's force_img_first).
      if (chunks.length === 2 && chunks[0].type === "text" && chunks[1].type === "image") {
        chunks = [chunks[1], chunks[0]];
      }
      if (system) ids.push(...enc.encode(system + JOIN));
      for (const chunk of chunks) {
        if (chunk.type === "text") ids.push(...enc.encode(chunk.text));
        else {
          ids.push(...enc.imageTokens(chunk.image));
          images.push(chunk.image);
        }
      }
    }
    ids.push(enc.instEnd);
  });
  return { ids, images };
}
