/**
 * A non-streamed answer. Deno reports a client that leaves before the response begins only for a request of up
 * to about 512 bytes that came in one packet (denoland/deno#21653; httpx, under the OpenAI and Ollama Python
 * clients, sends a body in a packet of its own); another would run to max_tokens after its client gave up, or
 * wait in the queue for its turn. So an answer still running HOLD_MS after its request came (queued, reading its
 * prompt or writing) begins its response then, and sends a space each second until the JSON is ready (leading
 * whitespace is valid JSON; OpenRouter keeps connections alive the same way): the write after a client leaves
 * fails, which stops the generation, and proxies that close idle connections keep it. Anything that fails before
 * that still gets its own status (400, 429, 503, which clients raise on or retry); after it, the status line is
 * sent: the error is the body, in the route's error shape (for people reading it), and the body then breaks off,
 * so that clients raise rather than take it for an answer (the OpenAI SDK returned an object without choices).
 * A client that leaves costs at most about HOLD_MS and a second (the first space's write finds it gone).
 */
import { EngineClosedError } from "../../runtime/engine/engine.ts";
import { log } from "../../runtime/log.ts";
import type { ChoiceResult, CompletionRun } from "../chat/completion.ts";
import { before } from "../deadline.ts";
import { beforeKeepAlive, holdFor } from "./sse.ts";

const encoder = new TextEncoder();
const SPACE = encoder.encode(" ");

/** How long an answer keeps its status: most answers end within it. */
const HOLD_MS = 5000;

export async function patientJson(
  run: CompletionRun,
  options: {
    id: string;
    request: Request;
    answer(results: ChoiceResult[]): unknown;
    /** The body of a failure after the status went, in the route's error shape (default OpenAI's). */
    failure?: (message: string) => unknown;
    holdMs?: number;
  },
): Promise<Response> {
  let next: Awaited<ReturnType<typeof run.updates.next>> | undefined;
  let pending: ReturnType<typeof run.updates.next> | undefined;
  const deadline = performance.now() + holdFor(options.request, options.holdMs ?? HOLD_MS);
  while (!next?.done) {
    pending ??= run.updates.next();
    const got = await before(pending, deadline);
    if (!got) break;
    pending = undefined;
    next = got;
  }
  if (next?.done) return Response.json(options.answer(next.value));
  /** When the last space went: tokens keep coming, and the spaces count from there. */
  let sent = performance.now();
  /** Set when the client went away: the run's end is then its doing, and nobody reads what follows. */
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        while (!next?.done) {
          pending ??= run.updates.next();
          const got = await beforeKeepAlive(pending, sent);
          if (!got) {
            sent = performance.now();
            return controller.enqueue(SPACE);
          }
          pending = undefined;
          next = got;
        }
        controller.enqueue(encoder.encode(JSON.stringify(options.answer(next.value))));
        controller.close();
      } catch (err) {
        const left = cancelled || options.request.signal.aborted;
        const level = left ? "debug" : err instanceof EngineClosedError ? "warn" : "error";
        log[level]("answer failed", { id: options.id, error: String(err) });
        if (cancelled) return;
        const message = err instanceof Error ? err.message : String(err);
        const body = options.failure?.(message) ??
          { error: { message, type: "server_error", param: null, code: "generation_failed" } };
        controller.enqueue(encoder.encode(JSON.stringify(body)));
        // Deno writes what a body breaks off with to stderr, stack and all: one line (the log line above has it).
        const broken = new Error(`an answer broke off after its status went: ${message}`);
        broken.stack = broken.message;
        controller.error(broken);
      }
    },
    async cancel() {
      cancelled = true;
      run.cancel();
      // A pending update settles once the choices stop; it is nobody's to read.
      pending?.catch(() => {});
      await run.updates.return([]);
    },
  });
  return new Response(body, { headers: { "content-type": "application/json" } });
}
