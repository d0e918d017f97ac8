/**
 * A completion run as server-sent events, in OpenAI's two styles: chat and completions send `data:` events ending
 * with `data: [DONE]`; Responses names each event by its type and ends with its terminal event. Comments go out
 * while nothing comes. Or as Ollama streams: one JSON object per line.
 */
import { EngineClosedError } from "../../runtime/engine/engine.ts";
import { log } from "../../runtime/log.ts";
import { before } from "../deadline.ts";
import type { ChoiceResult, ChoiceUpdate, CompletionRun } from "../chat/completion.ts";

const encoder = new TextEncoder();

/**
 * A stream with nothing to send for this long sends an SSE comment, which clients skip: proxies that close idle
 * connections keep it, and a client that left is noticed at the write, so its generation stops.
 */
const KEEP_ALIVE_MS = 1000;

/** What `pending` gives, or undefined if a keep-alive is due first (KEEP_ALIVE_MS after the last write, `sent`). */
export function beforeKeepAlive<T>(pending: Promise<T>, sent: number): Promise<T | undefined> {
  return before(pending, sent + KEEP_ALIVE_MS);
}

const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");
/**
 * A stream that sent no event for this long sends its `idle` event in place of a keep-alive: the idle watchdogs of
 * agents (Codex's, Claude Code's: 300 s by default) count events their SDK passes on, which comments and
 * Anthropic's `ping` are not, and a long prompt read on a slow GPU or a long wait in the queue outlasted them.
 */
export const IDLE_EVENT_MS = 10_000;
const SPACE = encoder.encode(" ");

/** Requests answered in this process (`pixtral batch`): no client can leave them. */
const IN_PROCESS = new WeakSet<Request>();

/** `request`, marked as answered in this process: its response keeps its status to the end. */
export function inProcess(request: Request): Request {
  IN_PROCESS.add(request);
  return request;
}

/**
 * How long a response may wait before it begins: `ms`, since Deno would not see its client leave until then
 * (denoland/deno#21653: it reports a disconnect before the response only for a request of up to about 512 bytes
 * that came in one packet, and httpx, under the OpenAI and Ollama Python clients, sends the body in a packet of
 * its own); without limit for a request answered in this process.
 */
export function holdFor(request: Request, ms: number): number {
  return IN_PROCESS.has(request) ? Infinity : ms;
}

/** How long a stream waits for its first update, keeping its status for a failure, before it begins anyway. */
const FIRST_HOLD_MS = 2000;

export interface EventStreamOptions {
  /** The completion's id, for the logs. */
  id: string;
  /** The request: a stream that fails after the client left is not a server error. */
  request: Request;
  /** The events of an update. */
  events(update: ChoiceUpdate): unknown[];
  /** Events after the last update (the usage), before [DONE]. */
  end(results: ChoiceResult[]): unknown[];
  /**
   * Responses' style: each event goes out named by its `type`, without `data: [DONE]`, and a failure as these
   * events. Otherwise a failure is one chunk with an error, as OpenAI's chat streams fail.
   */
  named?: { failed(message: string): unknown[] };
  /**
   * Ollama's style: a JSON object per line, a failure as these lines. A keep-alive is a space, which begins the
   * next line (JSON readers skip it; an empty line would break them).
   */
  lines?: { failed(message: string): unknown[] };
  /**
   * Events that begin the stream (Anthropic's message_start), made when its first update or keep-alive goes and
   * sent before it.
   */
  opening?: () => unknown[];
  /** A keep-alive as an event rather than a comment (Anthropic's `ping`). */
  ping?: unknown;
  /** The event that goes out when none has for IDLE_EVENT_MS (see there), made when sent; none: a keep-alive. */
  idle?: () => unknown | undefined;
}

/**
 * The response streaming `run`. It waits for the first update, so that a request no engine could start (a
 * gateway's GPU hosts all down or busy) gets its 503 or 429 instead of a stream that fails at once; but only
 * FIRST_HOLD_MS (holdFor), then it begins with keep-alives, so that a client that leaves while its request is
 * queued or its prompt is read is seen, and its place given up.
 */
export async function eventStream(run: CompletionRun, options: EventStreamOptions): Promise<Response> {
  const chunk = (data: unknown) => {
    if (options.lines) return encoder.encode(`${JSON.stringify(data)}\n`);
    const name = options.named ? `event: ${(data as { type: string }).type}\n` : "";
    return encoder.encode(`${name}data: ${JSON.stringify(data)}\n\n`);
  };
  const keepAlive = options.lines ? SPACE : options.ping ? chunk(options.ping) : KEEP_ALIVE;
  let opening = options.opening;
  let pending: ReturnType<typeof run.updates.next> | undefined = run.updates.next();
  let first = await before(pending, performance.now() + holdFor(options.request, FIRST_HOLD_MS));
  if (first) pending = undefined;
  /** When the stream last sent something: the keep-alive counts from there, however many updates were silent. */
  let sent = performance.now();
  /** When it last sent an event (not a keep-alive): the idle event counts from there. */
  let evented = sent;
  /** Set when the client went away: the run's end is then its doing, and nobody reads what follows. */
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const send = (bytes: Uint8Array) => {
        controller.enqueue(bytes);
        sent = performance.now();
      };
      const sendEvent = (event: unknown) => {
        send(chunk(event));
        evented = sent;
      };
      /** The opening events, once, before anything else (their numbers come first where events are numbered). */
      const begin = () => {
        const events = opening?.() ?? [];
        opening = undefined;
        for (const event of events) sendEvent(event);
      };
      try {
        // A pull that enqueues nothing is not called again: updates without events (text held back) are skipped.
        while (true) {
          let next = first;
          first = undefined;
          if (!next) {
            pending ??= run.updates.next();
            next = await beforeKeepAlive(pending, sent);
            begin();
            if (!next) {
              const idle = performance.now() - evented >= IDLE_EVENT_MS ? options.idle?.() : undefined;
              return idle === undefined ? send(keepAlive) : sendEvent(idle);
            }
            pending = undefined;
          }
          begin();
          if (next.done) {
            for (const event of options.end(next.value)) sendEvent(event);
            if (!options.named && !options.lines) send(encoder.encode("data: [DONE]\n\n"));
            controller.close();
            return;
          }
          const events = options.events(next.value);
          for (const event of events) sendEvent(event);
          if (events.length) return;
        }
      } catch (err) {
        // The status line is sent already: the error travels as the last event, so no client takes a
        // truncated stream for a finished one.
        // A client that went away is not a server error, nor is a shutdown that outlasted the grace period.
        const left = cancelled || options.request.signal.aborted;
        const level = left ? "debug" : err instanceof EngineClosedError ? "warn" : "error";
        log[level]("stream failed", { id: options.id, error: String(err) });
        if (cancelled) return;
        const message = err instanceof Error ? err.message : String(err);
        const failed = (options.named ?? options.lines)?.failed(message) ??
          [{ error: { message, type: "server_error", param: null, code: "stream_error" } }];
        for (const event of failed) controller.enqueue(chunk(event));
        controller.close();
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
  // The charset said, as OpenAI and vLLM say it: a client decoding lines itself (Python's requests) takes
  // ISO-8859-1 for a text type that names none.
  const type = options.lines ? "application/x-ndjson" : "text/event-stream; charset=utf-8";
  return new Response(body, {
    headers: { "content-type": type, "cache-control": "no-cache", connection: "keep-alive" },
  });
}
