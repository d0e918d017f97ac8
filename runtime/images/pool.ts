/**
 * Images preprocessed on worker threads, each with its own WASM instance:
 * - a large image (tens of megapixels, seconds of decoding) does not stop the event loop that answers /health
 *   and writes every stream;
 * - a decoder that traps (out of memory on hostile input) takes down its own instance only: the thread is
 *   replaced, and the tokenizer, which lives in the main thread's instance, is untouched;
 * - a decode that runs past the time limit is stopped by ending its thread;
 * - a thread whose instance grew large (a large image, decoded or not) is replaced too, since WebAssembly memory
 *   never shrinks.
 */
import {
  ImageDecodeError,
  ImageError,
  ImageFormatError,
  ImageSizeError,
  ImageTooLargeError,
} from "./errors.ts";
import { EngineClosedError } from "../engine/engine.ts";
import type { PreprocessedImage, PreprocessOptions } from "./preprocess.ts";

export interface ImageJob {
  id: number;
  bytes: Uint8Array;
  options: PreprocessOptions;
}

/** A thread's answer, with the size of its instance's memory after the image; or that it has loaded. */
export type ImageResult =
  | { ready: true }
  | { id: number; image: PreprocessedImage; memoryBytes: number }
  /** `trapped`: the WASM instance aborted, and may not be used again. */
  | { id: number; error: { name: string; message: string; trapped: boolean }; memoryBytes: number };

export interface ImagePoolOptions {
  /** Threads at most (default 2); they start when first needed. */
  threads?: number;
  /** Time one image may take once a thread has it and has loaded (default 30 s). */
  timeoutMs?: number;
  /** A thread whose instance's memory grew past this is replaced after its image (default 512 MiB). */
  recycleBytes?: number;
}

const ERRORS: Record<string, new (message: string) => Error> = {
  ImageError,
  ImageFormatError,
  ImageDecodeError,
  ImageSizeError,
  ImageTooLargeError,
  RangeError,
};

interface Pending {
  job: ImageJob;
  done: PromiseWithResolvers<PreprocessedImage>;
}

interface Thread {
  worker: Worker;
  /** Whether its WASM instance has loaded: an image's time limit runs from then. */
  ready?: boolean;
  /** The job it runs, with the timer that stops it (before the thread is ready, the timer of its start). */
  running?: { pending: Pending; timer: ReturnType<typeof setTimeout> };
}

/** How long a thread may take to start (load its module and WASM): seconds on a busy machine. */
const START_LIMIT_MS = 120_000;

export class ImagePool {
  readonly #threads: Thread[] = [];
  readonly #queue: Pending[] = [];
  readonly #threadCount: number;
  readonly #timeoutMs: number;
  readonly #recycleBytes: number;
  #next = 0;
  #closed = false;

  constructor(options: ImagePoolOptions = {}) {
    this.#threadCount = options.threads ?? 2;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#recycleBytes = options.recycleBytes ?? 512 * 1024 * 1024;
  }

  /** Threads running now. */
  get threads(): number {
    return this.#threads.length;
  }

  /**
   * `preprocessImage` on a thread. A signal that aborts takes the image out of the queue, or ends the thread
   * decoding it (a decode cannot be interrupted otherwise).
   */
  preprocess(
    bytes: Uint8Array,
    options: PreprocessOptions = {},
    signal?: AbortSignal,
  ): Promise<PreprocessedImage> {
    if (this.#closed) return Promise.reject(new EngineClosedError("the server is shutting down"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const pending: Pending = { job: { id: ++this.#next, bytes, options }, done: Promise.withResolvers() };
    const leave = () => {
      const at = this.#queue.indexOf(pending);
      if (at >= 0) this.#queue.splice(at, 1);
      const thread = this.#threads.find((t) => t.running?.pending === pending);
      if (thread) {
        clearTimeout(thread.running!.timer);
        this.#end(thread);
      }
      pending.done.reject(signal!.reason);
    };
    signal?.addEventListener("abort", leave, { once: true });
    this.#queue.push(pending);
    this.#dispatch();
    return pending.done.promise.finally(() => signal?.removeEventListener("abort", leave));
  }

  close(): void {
    this.#closed = true;
    for (const thread of this.#threads.splice(0)) {
      if (thread.running) clearTimeout(thread.running.timer);
      thread.running?.pending.done.reject(new EngineClosedError("the server is shutting down"));
      thread.worker.terminate();
    }
    for (const pending of this.#queue.splice(0)) {
      pending.done.reject(new EngineClosedError("the server is shutting down"));
    }
  }

  #dispatch(): void {
    while (this.#queue.length) {
      const thread = this.#threads.find((t) => !t.running) ??
        (this.#threads.length < this.#threadCount ? this.#start() : undefined);
      if (!thread) return;
      const pending = this.#queue.shift()!;
      thread.running = { pending, timer: this.#timer(thread, pending) };
      // A copy goes over: the caller keeps its bytes.
      const bytes = pending.job.bytes.slice();
      thread.worker.postMessage({ ...pending.job, bytes } satisfies ImageJob, [bytes.buffer]);
    }
  }

  /** The image's time limit on a ready thread; on one starting, a limit on its start (a hang is the server's). */
  #timer(thread: Thread, pending: Pending): ReturnType<typeof setTimeout> {
    const ms = thread.ready ? this.#timeoutMs : START_LIMIT_MS;
    return setTimeout(() => {
      this.#end(thread);
      pending.done.reject(
        thread.ready
          ? new ImageDecodeError(`the image took longer than ${this.#timeoutMs / 1000} s to decode`)
          : new Error(`an image thread did not start within ${START_LIMIT_MS / 1000} s`),
      );
    }, ms);
  }

  #start(): Thread {
    const worker = new Worker(new URL("./pool_worker.ts", import.meta.url), { type: "module" });
    const thread: Thread = { worker };
    worker.onmessage = ({ data }: MessageEvent<ImageResult>) => {
      const running = thread.running;
      // Starting a thread (loading its module and WASM: seconds on a busy machine) is not the image's time.
      if ("ready" in data) {
        thread.ready = true;
        if (running) {
          clearTimeout(running.timer);
          running.timer = this.#timer(thread, running.pending);
        }
        return;
      }
      if (!running || running.pending.job.id !== data.id) return;
      clearTimeout(running.timer);
      thread.running = undefined;
      // A trap leaves the instance unusable (its allocator may be corrupt); a large one holds its memory.
      if (("error" in data && data.error.trapped) || data.memoryBytes > this.#recycleBytes) this.#end(thread);
      if ("image" in data) running.pending.done.resolve(data.image);
      else running.pending.done.reject(new (ERRORS[data.error.name] ?? Error)(data.error.message));
      this.#dispatch();
    };
    worker.onerror = (event) => {
      event.preventDefault();
      const running = thread.running;
      this.#end(thread);
      if (running) {
        clearTimeout(running.timer);
        // The thread itself failed (it could not load, say): the server's fault, not the image's.
        running.pending.done.reject(new Error(`an image thread failed: ${event.message}`));
      }
      this.#dispatch();
    };
    this.#threads.push(thread);
    return thread;
  }

  /** Ends a thread; the next image that needs one starts a fresh one. */
  #end(thread: Thread): void {
    thread.worker.terminate();
    const at = this.#threads.indexOf(thread);
    if (at >= 0) this.#threads.splice(at, 1);
    if (!this.#closed) queueMicrotask(() => this.#dispatch());
  }
}
