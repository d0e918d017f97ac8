/**
 * POST /tokenize and /detokenize (vLLM's shapes): a prompt or a chat conversation to token ids and their count,
 * and ids back to text. The chat form counts exactly what /v1/chat/completions would send, images and tools
 * included.
 */
import { TextBudget } from "../chat/long_text.ts";
import { Hono } from "hono";
import { z } from "zod";
import { chatConversation } from "../chat/history.ts";
import { encodeChat } from "../chat/prepare.ts";
import { pySource, toolUse } from "../chat/tools.ts";
import { chatRequestSchema, parseWith, refuseMessageImages, RequestError } from "../schema/chat.ts";
import type { Service } from "../service.ts";
import { readJson, readJsonText, requireModel } from "./common.ts";

const promptSchema = z.object({
  model: z.string().nullish(),
  prompt: z.string(),
  add_special_tokens: z.boolean().default(true),
});

const messagesSchema = z.object({
  model: z.string().nullish(),
  messages: chatRequestSchema.shape.messages,
  safe_prompt: chatRequestSchema.shape.safe_prompt,
  tools: chatRequestSchema.shape.tools,
  tool_choice: chatRequestSchema.shape.tool_choice,
  parallel_tool_calls: chatRequestSchema.shape.parallel_tool_calls,
  image_resize: chatRequestSchema.shape.image_resize,
  continue_final_message: chatRequestSchema.shape.continue_final_message,
  add_generation_prompt: chatRequestSchema.shape.add_generation_prompt,
});

const detokenizeSchema = z.object({ model: z.string().nullish(), tokens: z.array(z.number().int()) });

export function tokenizeRoutes(service: Service): Hono {
  const { tokenizer } = service;
  return new Hono()
    .post("/tokenize", async (c) => {
      const { body: raw, text } = await readJsonText(c);
      // A null field is one not given (clients generated from a schema send unused fields as null).
      const given = ["prompt", "messages"].filter((key) => (raw as Record<string, unknown>)?.[key] != null);
      if (given.length !== 1) {
        throw new RequestError(
          given.length
            ? "give prompt or messages, not both"
            : "give prompt (text) or messages (a conversation)",
          given.length ? "messages" : "prompt",
        );
      }
      // The form is known: its own schema names what is wrong in it.
      const body = given[0] === "prompt" ? parseWith(promptSchema, raw) : parseWith(messagesSchema, raw);
      refuseMessageImages((raw as Record<string, unknown>).messages);
      requireModel(service, body.model);
      let ids: number[];
      if ("prompt" in body) {
        ids = [
          ...(body.add_special_tokens ? [tokenizer.special("<s>")] : []),
          ...new TextBudget(tokenizer, service.engine?.contextLength ?? Infinity, "prompt", true).encode(
            body.prompt,
          ),
        ];
      } else {
        // As the chat route takes them: system messages after an answer go first, a last answer is continued.
        const { request, source } = chatConversation(body, pySource(body, text));
        const tools = toolUse(request, source);
        const options = {
          signal: c.req.raw.signal,
          safePrompt: body.safe_prompt,
          tools,
          source,
          resize: body.image_resize ?? undefined,
          counting: true,
        };
        ids = (await encodeChat(request.messages, service, options)).ids;
      }
      // While the model loads the context is not known yet (the memory plan sizes it): null until then.
      return c.json({ count: ids.length, max_model_len: service.engine?.contextLength ?? null, tokens: ids });
    })
    .post("/detokenize", async (c) => {
      const body = parseWith(detokenizeSchema, await readJson(c));
      requireModel(service, body.model);
      const bad = body.tokens.findIndex((id) => id < 0 || id >= tokenizer.vocabSize);
      if (bad >= 0) {
        throw new RequestError(
          `token ${body.tokens[bad]} is not in the vocabulary (0..${tokenizer.vocabSize - 1})`,
          `tokens[${bad}]`,
        );
      }
      return c.json({ prompt: tokenizer.decode(body.tokens) });
    });
}
