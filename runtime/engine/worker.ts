/**
 * The GPU host's engine on its own thread: a Web Worker loads the model and runs a LocalEngine, and this class
 * forwards requests to it and tokens back. The server's thread then never waits for the GPU: Deno's WebGPU
 * blocks the calling thread in a readback until the GPU is idle (a long prefill holds it for seconds) and a CPU
 * adapter blocks in submit, which in one thread would stall /health, metrics and every other stream meanwhile.
 */
import type { ModelOptions } from "../model/boot.ts";
import type { ImageInput } from "../model/vision.ts";
import { Channel } from "./channel.ts";
import {
  type Engine,
  EngineBusyError,
  EngineClosedError,
  type EngineStats,
  EngineUnavailableError,
  type FinishReason,
  type GenerateRequest,
  InvalidRequestError,
  RequestTooLongError,
  type TokenEvent,
} from "./engine.ts";
import type { LocalEngineOptions } from "./local.ts";
import { type RequestLimits, validateRequest } from "./validate.ts";

/** The engine's options that cross to the worker (it makes the output-format constraints itself). */
export type WorkerLocalOptions = Omit<LocalEngineOptions, "constraints"> & {
  /** Threads for structured outputs' grammars (GrammarPool; default 2). */
  grammarThreads?: number;
};

/** What the worker reports once the model serves. */
export interface WorkerReady {
  /** The weights as loaded: bytes on the GPU, and the decoder's format (see ComponentPlan). */
  weights: { bytes: number; format: string };
  limits: RequestLimits;
  prefillChunk: number;
  adapter: string;
  kvTokens: number;
  stats: EngineStats;
}

export interface SerializedError {
  name: string;
  message: string;
  retryAfter?: number;
}

export type ToWorker =
  | { type: "start"; model: ModelOptions; engine: WorkerLocalOptions }
  | { type: "generate"; id: number; request: GenerateRequest<ImageInput> }
  | { type: "cancel"; id: number }
  | { type: "close"; graceMs: number };

/** Messages about a request carry the engine's statistics as they are once the message's event happened. */
export type FromWorker =
  | { type: "ready"; ready: WorkerReady }
  | { type: "failed"; error: SerializedError }
  | { type: "token"; id: number; event: TokenEvent; stats: EngineStats }
  | { type: "finish"; id: number; reason: FinishReason; stats: EngineStats }
  | { type: "error"; id: number; error: SerializedError; stats: EngineStats }
  | { type: "stats"; stats: EngineStats }
  /** The engine cannot run anything again (its GPU device was lost). */
  | { type: "dead"; reason: string }
  | { type: "closed" };

export function serializeError(err: unknown): SerializedError {
  const e = err as { name?: string; message?: string; retryAfterSeconds?: number };
  return {
    name: e?.name ?? "Error",
    message: e?.message ?? String(err),
    ...(err instanceof EngineBusyError || err instanceof EngineUnavailableError
      ? { retryAfter: err.retryAfterSeconds }
      : {}),
  };
}

/** The engine's errors keep their classes across the thread boundary: the routes map them to HTTP statuses. */
export function deserializeError(e: SerializedError): Error {
  switch (e.name) {
    case "EngineBusyError":
      return new EngineBusyError(e.message, e.retryAfter ?? 1);
    case "InvalidRequestError":
      return new InvalidRequestError(e.message);
    case "RequestTooLongError":
      return new RequestTooLongError(e.message);
    case "EngineClosedError":
      return new EngineClosedError(e.message);
    case "EngineUnavailableError":
      return new EngineUnavailableError(e.message, e.retryAfter ?? 1);
    case "RangeError":
      return new RangeError(e.message);
    case "TypeError":
      return new TypeError(e.message);
    case "AbortError":
      return new DOMException(e.message, "AbortError");
    default:
      return Object.assign(new Error(e.message), { name: e.name });
  }
}

export interface WorkerEngineOptions {
  model: ModelOptions;
  engine?: WorkerLocalOptions;
  /** Called if the worker dies (a crash, a lost device): the engine is closed by then. */
  onFailure?: (message: string) => void;
  /** Aborting stops a load in progress (the start rejects). */
  signal?: AbortSignal;
}

export class WorkerEngine implements Engine {
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly ready: WorkerReady;
  readonly #worker: Worker;
  /** Streams the worker has not ended yet, and how to stop listening to their signals. */
  readonly #calls = new Map<number, { channel: Channel<TokenEvent, FinishReason>; detach: () => void }>();
  readonly #onFailure?: (message: string) => void;
  #stats: EngineStats;
  #sent = 0;
  #closed = false;
  #closing?: PromiseWithResolvers<void>;
  /** Why the worker is gone, once it is. */
  #dead?: string;

  /** Starts the worker and loads the model in it; resolves once it serves, rejects with the load's error. */
  static start(options: WorkerEngineOptions): Promise<WorkerEngine> {
    const worker = new Worker(new URL("./worker_entry.ts", import.meta.url), { type: "module" });
    const started = Promise.withResolvers<WorkerEngine>();
    const fail = (error: Error, ended = false) => {
      options.signal?.removeEventListener("abort", abort);
      if (!ended) worker.terminate();
      started.reject(error);
    };
    const abort = () => fail(new EngineClosedError("the model load was stopped"));
    options.signal?.addEventListener("abort", abort);
    worker.onerror = (e) => {
      e.preventDefault();
      fail(new Error(`the engine worker failed while loading: ${e.message}`));
    };
    worker.onmessage = (e: MessageEvent<FromWorker>) => {
      if (e.data.type !== "ready" && e.data.type !== "failed") return;
      options.signal?.removeEventListener("abort", abort);
      if (e.data.type === "ready") started.resolve(new WorkerEngine(worker, e.data.ready, options.onFailure));
      else fail(deserializeError(e.data.error), true); // the worker ends itself
    };
    worker.postMessage(
      { type: "start", model: options.model, engine: options.engine ?? {} } satisfies ToWorker,
    );
    if (options.signal?.aborted) abort();
    return started.promise;
  }

  private constructor(worker: Worker, ready: WorkerReady, onFailure?: (message: string) => void) {
    this.#worker = worker;
    this.ready = ready;
    this.contextLength = ready.limits.contextLength;
    this.vocabSize = ready.limits.vocabSize;
    this.#stats = ready.stats;
    this.#onFailure = onFailure;
    worker.onmessage = (e: MessageEvent<FromWorker>) => this.#receive(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      this.#die(`the engine worker failed: ${e.message}`);
    };
  }

  stats(): EngineStats {
    return { ...this.#stats };
  }

  generate(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<TokenEvent, FinishReason> {
    if (this.#closed) throw new EngineClosedError(this.#dead ?? "the server is shutting down");
    // Checked here too, so that a bad request throws at once; a full queue is the worker's to judge, and its
    // EngineBusyError arrives as the stream's first result (as a remote engine's does).
    validateRequest(request, this.ready.limits);
    const id = ++this.#sent;
    const channel = new Channel<TokenEvent, FinishReason>();
    const abort = () => this.#post({ type: "cancel", id });
    const detach = () => signal?.removeEventListener("abort", abort);
    this.#calls.set(id, { channel, detach });
    this.#post({ type: "generate", id, request });
    signal?.addEventListener("abort", abort);
    if (signal?.aborted) abort();
    return this.#stream(id, channel);
  }

  async *#stream(
    id: number,
    channel: Channel<TokenEvent, FinishReason>,
  ): AsyncGenerator<TokenEvent, FinishReason> {
    try {
      return yield* channel.drain();
    } finally {
      // A consumer that stopped early: the worker frees the sequence; its last messages are dropped.
      if (!channel.closed) this.#post({ type: "cancel", id });
      this.#end(id);
    }
  }

  /** Forgets a stream the worker ended (its channel keeps what the consumer has yet to read). */
  #end(id: number): void {
    this.#calls.get(id)?.detach();
    this.#calls.delete(id);
  }

  #receive(message: FromWorker): void {
    if ("stats" in message) this.#stats = message.stats;
    switch (message.type) {
      case "token":
        this.#calls.get(message.id)?.channel.push(message.event);
        break;
      case "finish":
        this.#calls.get(message.id)?.channel.close(message.reason);
        this.#end(message.id);
        break;
      case "error":
        this.#calls.get(message.id)?.channel.fail(deserializeError(message.error));
        this.#end(message.id);
        break;
      case "dead":
        this.#die(message.reason);
        break;
      case "closed":
        this.#closing?.resolve();
        break;
    }
  }

  /** Nothing new once closing; cancellations still reach a closing worker, so that it need not wait for them. */
  #post(message: ToWorker): void {
    if (this.#dead === undefined && (!this.#closed || message.type !== "generate")) {
      this.#worker.postMessage(message);
    }
  }

  /** The worker is gone: every stream ends with an error, and the host learns why unless it was closing it. */
  #die(reason: string): void {
    if (this.#dead !== undefined) return;
    this.#dead = reason;
    this.#worker.terminate();
    for (const id of [...this.#calls.keys()]) {
      this.#calls.get(id)!.channel.fail(new EngineClosedError(reason));
      this.#end(id);
    }
    if (this.#closing) return this.#closing.resolve();
    this.#closed = true;
    this.#onFailure?.(reason);
  }

  /** Lets the worker end its streams (cancelling them after `graceMs`) and free the model, then stops it. */
  async close(graceMs = 0): Promise<void> {
    if (this.#closing) return this.#closing.promise;
    this.#closing = Promise.withResolvers<void>();
    if (this.#dead !== undefined) return this.#closing.resolve();
    this.#post({ type: "close", graceMs });
    this.#closed = true;
    await this.#closing.promise;
    this.#die("the engine closed");
  }
}
