/** POST /v1/chat/completions: OpenAI's and Mistral's chat API, streamed as server-sent events or not. */
import { Hono } from "hono";
import { EngineClosedError } from "../../runtime/engine/engine.ts";
import { log } from "../../runtime/log.ts";
import { runCompletion, usage } from "../chat/completion.ts";
import { prepareChat } from "../chat/prepare.ts";
import { parseChatRequest, RequestError } from "../schema/chat.ts";
import type { Service } from "../service.ts";
import { readJsonText, requireEngine, requireModel } from "./common.ts";

const encoder = new TextEncoder();

/**
 * A stream with nothing to send for this long sends an SSE comment, which clients skip: proxies that close idle
 * connections keep it, and a client that left is noticed at the write, so its generation stops.
 */
const KEEP_ALIVE_MS = 1000;
const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");

function completionId(): string {
  return `chatcmpl-${crypto.randomUUID().replaceAll("-", "")}`;
}

export function chatRoutes(service: Service): Hono {
  return new Hono().post("/v1/chat/completions", async (c) => {
    const { body: json, text } = await readJsonText(c);
    const { request: chat, ignored } = parseChatRequest(json);
    if (ignored.length) log.info("ignoring unknown request fields", { fields: ignored, path: c.req.path });
    requireModel(service, chat.model);
    requireEngine(service);
    if (chat.stream_options && !chat.stream) {
      throw new RequestError("stream_options is only allowed with stream: true", "stream_options");
    }
    const signal = c.req.raw.signal;
    const prepared = await prepareChat(chat, service, signal, text);
    const run = runCompletion(service, prepared, signal);
    const id = completionId(), created = Math.floor(Date.now() / 1000), model = service.model.id;
    const head = { id, object: "chat.completion.chunk", created, model };

    if (!chat.stream) {
      let next;
      while (!(next = await run.updates.next()).done);
      const results = next.value;
      return c.json({
        id,
        object: "chat.completion",
        created,
        model,
        choices: results.map((r) => ({
          index: r.index,
          message: r.toolCalls
            ? { role: "assistant", content: r.text || null, tool_calls: r.toolCalls }
            : { role: "assistant", content: r.text },
          logprobs: r.logprobs ? { content: r.logprobs } : null,
          finish_reason: r.finish,
        })),
        usage: usage(prepared, results),
      });
    }

    const includeUsage = chat.stream_options?.include_usage ?? false;
    const chunk = (data: unknown) => encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
    const roleSent = new Set<number>();
    // The status line waits for the first update, so that a request no engine could start (a gateway's GPU
    // hosts all down or busy) gets its 503 or 429 instead of a stream that fails at once.
    let pending: ReturnType<typeof run.updates.next> | undefined;
    let first: Awaited<ReturnType<typeof run.updates.next>> | undefined = await run.updates.next();
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        try {
          let next = first;
          first = undefined;
          if (!next) {
            pending ??= run.updates.next();
            let timer: ReturnType<typeof setTimeout> | undefined;
            const idle = new Promise<undefined>((resolve) =>
              timer = setTimeout(() => resolve(undefined), KEEP_ALIVE_MS)
            );
            next = await Promise.race([pending, idle]).finally(() => clearTimeout(timer));
            if (!next) return controller.enqueue(KEEP_ALIVE);
            pending = undefined;
          }
          if (next.done) {
            if (includeUsage) {
              controller.enqueue(chunk({ ...head, choices: [], usage: usage(prepared, next.value) }));
            }
            controller.enqueue(encoder.encode("data: [DONE]\n\n"));
            controller.close();
            return;
          }
          const u = next.value;
          const delta: Record<string, unknown> = {};
          if (!roleSent.has(u.index)) {
            roleSent.add(u.index);
            delta.role = "assistant";
          }
          if ("text" in u) delta.content = u.text;
          if ("toolCalls" in u) delta.tool_calls = u.toolCalls.map((call, i) => ({ index: i, ...call }));
          controller.enqueue(chunk({
            ...head,
            choices: [{
              index: u.index,
              delta,
              logprobs: "logprobs" in u && u.logprobs ? { content: u.logprobs } : null,
              finish_reason: "finish" in u ? u.finish : null,
            }],
            ...(includeUsage ? { usage: null } : {}),
          }));
        } catch (err) {
          // The status line is sent already: the error travels as the last event, so no client takes a
          // truncated stream for a finished one.
          // A client that went away is not a server error, nor is a shutdown that outlasted the grace period.
          const level = signal.aborted ? "debug" : err instanceof EngineClosedError ? "warn" : "error";
          log[level]("stream failed", { id, error: String(err) });
          const message = err instanceof Error ? err.message : String(err);
          controller.enqueue(
            chunk({ error: { message, type: "server_error", param: null, code: "stream_error" } }),
          );
          controller.close();
        }
      },
      async cancel() {
        run.cancel();
        // A pending update settles once the choices stop; it is nobody's to read.
        pending?.catch(() => {});
        await run.updates.return([]);
      },
    });
    return new Response(body, {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" },
    });
  });
}
