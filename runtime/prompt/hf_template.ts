/**
 * Chat messages to token ids through a Hugging Face chat template (Jinja, rendered with @huggingface/jinja), for
 * servers that choose the template a model folder ships instead of Mistral's own rules.
 *
 * Rendering a template gives a string that Hugging Face tokenizes with special-token parsing, which would let a
 * user who types "[INST]" or "[IMG]" inject control tokens. Here user text enters the template as opaque markers:
 * special tokens are recognized only in the template's own text, and each run of text between them (template
 * text and user text together, as Hugging Face would see it) is BPE-encoded as one piece. Each [IMG] placeholder
 * becomes its image's block of [IMG]/[IMG_BREAK]/[IMG_END] tokens, as the Hugging Face processor expands it.
 *
 * Known differences from Mistral's rules (spec 7.4): no image-first reordering, the system prompt only when it is
 * the first message (and only in the last user turn), roles must alternate, and adjacent text chunks are joined
 * as the template joins them (with nothing in between for Pixtral's template).
 */
import { Template } from "@huggingface/jinja";
import {
  append,
  checkContinuation,
  type EncodedChat,
  type InstructEncoder,
  type Message,
  PromptError,
} from "./instruct.ts";

const OPEN = "\uE000", CLOSE = "\uE001";

export interface TemplateEncoder<Image> extends InstructEncoder<Image> {
  /** Special tokens the template writes as text, by name (`<s>`, `[INST]`, `[IMG]`...), to their ids. */
  specials: ReadonlyMap<string, number>;
  imageToken: string;
}

export function encodeWithTemplate<Image>(
  source: string,
  messages: Message<Image>[],
  enc: TemplateEncoder<Image>,
): EncodedChat<Image> {
  checkContinuation(messages);
  const texts: string[] = [];
  const images: Image[] = [];
  const marker = (text: string) => `${OPEN}${texts.push(text) - 1}${CLOSE}`;
  // An assistant message to be continued (`prefix`): rendered without a generation prompt and cut after its text,
  // as transformers' continue_final_message does, so that no end of turn or EOS follows it.
  const continued = messages.at(-1)?.role === "assistant" && messages.at(-1)!.prefix === true;
  const final = messages.at(-1)?.content;
  if (continued && !(typeof final === "string" ? final : final?.some((c) => c.type === "text" && c.text))) {
    throw new PromptError(
      "the assistant message to be continued (prefix: true) has no text",
      messages.length - 1,
    );
  }
  let rendered = (() => {
    try {
      return new Template(source).render({
        messages: messages.map((m) => ({
          role: m.role,
          content: typeof m.content === "string" || m.content === null
            ? marker(m.content ?? "")
            : m.content.map(
              (chunk) => {
                if (chunk.type === "image") {
                  images.push(chunk.image);
                  return { type: "image" };
                }
                const text = marker(chunk.text);
                return { type: "text", text, content: text };
              },
            ),
        })),
        bos_token: "<s>",
        eos_token: "</s>",
        add_generation_prompt: !continued,
      });
    } catch (err) {
      throw new PromptError(`the chat template refused the conversation: ${(err as Error).message}`);
    }
  })();
  if (continued) {
    const last = `${OPEN}${texts.length - 1}${CLOSE}`;
    const at = rendered.lastIndexOf(last);
    if (at < 0) throw new PromptError("the chat template left out the assistant message to be continued");
    rendered = rendered.slice(0, at + last.length);
  }

  // Split the template's own text at special tokens; user text (between markers) stays whole.
  const names = [...enc.specials.keys()].sort((a, b) => b.length - a.length);
  const ids: number[] = [];
  const ordered: Image[] = [];
  let run = "";
  const flush = () => {
    if (run) append(ids, enc.encode(run));
    run = "";
  };
  for (const part of rendered.split(new RegExp(`(${OPEN}\\d+${CLOSE})`))) {
    if (part.startsWith(OPEN)) {
      run += texts[Number(part.slice(1, -1))];
      continue;
    }
    let at = 0;
    while (at < part.length) {
      const name = names.find((n) => part.startsWith(n, at));
      if (!name) {
        run += part[at++];
        continue;
      }
      flush();
      if (name === enc.imageToken) {
        const image = images[ordered.length];
        if (image === undefined) {
          throw new PromptError("the chat template wrote more [IMG] than there are images");
        }
        ordered.push(image);
        append(ids, enc.imageTokens(image));
      } else {
        ids.push(enc.specials.get(name)!);
      }
      at += name.length;
    }
  }
  flush();
  if (ordered.length !== images.length) {
    throw new PromptError(`the chat template placed ${ordered.length} of ${images.length} images`);
  }
  return { ids, images: ordered };
}

/** The chat template a Hugging Face model folder ships: chat_template.jinja, chat_template.json or tokenizer_config.json. */
export async function findChatTemplate(dir: string): Promise<string | undefined> {
  const read = async (name: string) => {
    try {
      return await Deno.readTextFile(`${dir}/${name}`);
    } catch {
      return undefined;
    }
  };
  const jinja = await read("chat_template.jinja");
  if (jinja) return jinja;
  for (const file of ["chat_template.json", "tokenizer_config.json"]) {
    const text = await read(file);
    if (!text) continue;
    const template = JSON.parse(text).chat_template;
    if (typeof template === "string") return template;
    if (Array.isArray(template)) return template.find((t) => t.name === "default")?.template;
  }
  return undefined;
}
