/**
 * POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API, which Anthropic's SDKs and the
 * tools built on them call (llama.cpp's server, vLLM and Ollama answer it too). The request runs as the chat
 * completion it amounts to (functions/chat/messages.ts); the answer is a message of text and tool_use blocks,
 * streamed as Anthropic's named events or not. Errors take Anthropic's shape (functions/errors.ts).
 */
import { type Context, Hono } from "hono";
import { log } from "../../runtime/log.ts";
import { type ChoiceResult, runCompletion } from "../chat/completion.ts";
import { toChat, WORDS } from "../chat/messages.ts";
import { countChat, prepareChat, type PreparedChat } from "../chat/prepare.ts";
import { renamed } from "../chat/responses.ts";
import type { ToolCallOut } from "../chat/tools.ts";
import { parseMessagesRequest } from "../schema/messages.ts";
import { pyJsonLoads, toJs } from "../../runtime/prompt/pyjson.ts";
import type { Service } from "../service.ts";
import { readJsonText, requireEngine, requireModel } from "./common.ts";
import { patientJson } from "./patient.ts";
import { eventStream } from "./sse.ts";

const newId = (prefix: string) => `${prefix}_${crypto.randomUUID().replaceAll("-", "")}`;

/**
 * A call as a tool_use block. Its arguments are JSON as Python writes it (NaN, Infinity for a number past a
 * double): read that way, as a plain object (such numbers as null, as JSON.stringify writes them).
 */
function toolUseBlock(call: ToolCallOut) {
  const input = toJs(pyJsonLoads(call.function.arguments) ?? new Map()) as Record<string, unknown>;
  return { type: "tool_use", id: call.id, name: call.function.name, input };
}

function stopReason(result: Pick<ChoiceResult, "finish" | "stopSequence">): string {
  if (result.finish === "tool_calls") return "tool_use";
  if (result.finish === "length") return "max_tokens";
  return result.stopSequence === undefined ? "end_turn" : "stop_sequence";
}

/** Anthropic's usage: `input_tokens` are the prompt's tokens read anew, those the cache gave are apart. */
function usage(prepared: PreparedChat, outputTokens: number, cachedTokens = 0) {
  return {
    input_tokens: prepared.request.ids.length - cachedTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: cachedTokens,
    output_tokens: outputTokens,
  };
}

/** A stream's failure, as Anthropic's streams end with one. */
const errorEvent = (message: string) => ({ type: "error", error: { type: "api_error", message } });

async function parsed(c: Context, service: Service) {
  const { body, text } = await readJsonText(c);
  const { request, ignored } = parseMessagesRequest(body);
  if (ignored.length) log.info("ignoring unknown request fields", { fields: ignored, path: c.req.path });
  requireModel(service, request.model);
  return { request, ...toChat(request, text) };
}

export function messageRoutes(service: Service): Hono {
  return new Hono()
    .post("/v1/messages/count_tokens", async (c) => {
      const { chat, source, param } = await parsed(c, service);
      try {
        return c.json({ input_tokens: await countChat(chat, service, c.req.raw.signal, source) });
      } catch (err) {
        throw renamed(err, param, WORDS);
      }
    })
    .post("/v1/messages", async (c) => {
      const { request, chat, source, param } = await parsed(c, service);
      requireEngine(service);
      const signal = c.req.raw.signal;
      let prepared: PreparedChat;
      try {
        prepared = await prepareChat(chat, service, signal, source);
      } catch (err) {
        throw renamed(err, param, WORDS);
      }
      prepared.imageParams = prepared.imageParams?.map(param);
      const run = runCompletion(service, [prepared], signal, c.get("requestId"));
      const id = newId("msg");
      const message = {
        id,
        type: "message",
        role: "assistant",
        model: prepared.request.lora ?? service.model.id,
        content: [] as unknown[],
        stop_reason: null as string | null,
        stop_sequence: null as string | null,
        usage: usage(prepared, 0),
      };

      if (!request.stream) {
        return await patientJson(run, {
          id,
          request: c.req.raw,
          answer: ([result]) => ({
            ...message,
            // An empty answer has no blocks, as Anthropic's; calls max_tokens cut stand as far as they went, as
            // a stream leaves them (their input: what of it is whole, or nothing).
            content: [
              ...(result.cutCalls?.text ?? result.text)
                ? [{ type: "text", text: result.cutCalls?.text ?? result.text }]
                : [],
              ...(result.cutCalls?.calls ?? result.toolCalls ?? []).map(toolUseBlock),
            ],
            stop_reason: stopReason(result),
            stop_sequence: result.stopSequence ?? null,
            usage: usage(prepared, result.tokens, result.cachedTokens),
          }),
          failure: (message) => ({ type: "error", error: { type: "api_error", message } }),
        });
      }

      /** The index of the next content block, and which kind of block is open. */
      let blocks = 0, open: "text" | "tool_use" | undefined;
      const close = (events: unknown[]) => {
        if (open) events.push({ type: "content_block_stop", index: blocks++ });
        open = undefined;
      };
      const writeText = (events: unknown[], text: string) => {
        if (open !== "text") {
          close(events);
          events.push({
            type: "content_block_start",
            index: blocks,
            content_block: { type: "text", text: "" },
          });
          open = "text";
        }
        events.push({ type: "content_block_delta", index: blocks, delta: { type: "text_delta", text } });
      };
      return await eventStream(run, {
        id,
        request: c.req.raw,
        // The message begins the stream, as Anthropic's does: sent with its first update, or with the first
        // keep-alive while a long prompt is read, its usage splits the input as the prefix cache did where that
        // is known by then (the message_delta at the end has it always). Pings keep the stream alive; the SDK
        // drops them: while a long prompt is read, a message_delta that changes nothing (no stop reason yet, no
        // tokens: readers that add usage up add nothing) tells Claude Code's idle watchdog the stream lives. Not
        // inside a content block, where none comes at Anthropic's.
        opening:
          () => [{ type: "message_start", message: { ...message, usage: usage(prepared, 0, run.cached()) } }],
        ping: { type: "ping" },
        idle: () =>
          open ? undefined : {
            type: "message_delta",
            delta: { stop_reason: null, stop_sequence: null },
            usage: { output_tokens: 0 },
          },
        events(u) {
          const events: unknown[] = [];
          if ("text" in u) {
            if (u.text) writeText(events, u.text);
          } else if ("toolCall" in u) {
            const { id, name, arguments: args } = u.toolCall;
            if (id !== undefined) {
              close(events);
              events.push({
                type: "content_block_start",
                index: blocks,
                content_block: { type: "tool_use", id, name, input: {} },
              });
              open = "tool_use";
            }
            // The input's JSON as it is written (as Python writes it: ", " and ": "; it reads as the same object).
            if (args) {
              events.push({
                type: "content_block_delta",
                index: blocks,
                delta: { type: "input_json_delta", partial_json: args },
              });
            }
          } else {
            // What was no list of calls goes as text, unless max_tokens cut calls that had begun (they stand as far
            // as they went).
            if (u.callText && (!u.callsBegun || u.finish !== "length")) writeText(events, u.callText);
            close(events);
            events.push({
              type: "message_delta",
              delta: { stop_reason: stopReason(u), stop_sequence: u.stopSequence ?? null },
              // The whole usage, as Anthropic's message_delta carries it: the cached tokens are known by now.
              usage: usage(prepared, u.tokens, u.cachedTokens),
            });
          }
          return events;
        },
        end: () => [{ type: "message_stop" }],
        named: { failed: (reason) => [errorEvent(reason)] },
      });
    });
}
