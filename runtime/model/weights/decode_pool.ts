/**
 * Compressed-tensors or bitsandbytes codes (scaled.ts) decoded on worker threads while a model loads: a 12B
 * model in FP8 is 12 billion weights, one to two minutes on one thread and a few seconds spread over a server's
 * cores.
 */
import type { ScaledType } from "./dtype.ts";
import { decodeScaled, type Scales } from "./scaled.ts";

/** Codes with the scales of their rows (the first row's at 0). */
export interface ScaledRows {
  type: ScaledType;
  scales: Scales;
}

export interface DecodeJob {
  id: number;
  type: ScaledRows;
  bytes: Uint8Array;
}

/** The values of one job, on whichever thread runs it. */
export function decodeJob(type: DecodeJob["type"], bytes: Uint8Array): Float32Array {
  return decodeScaled(type.type, bytes, 0, type.scales);
}

export type DecodeResult = { id: number; values: Float32Array } | { id: number; error: string };

interface Thread {
  worker: Worker;
  busy: number;
}

/** Threads a load uses: the cores less one (the GPU uploads and the file reads go on meanwhile), at most 16. */
function decodeThreads(): number {
  return Math.max(1, Math.min(16, (navigator.hardwareConcurrency ?? 2) - 1));
}

export class BlockDecoder {
  readonly #threads: Thread[] = [];
  readonly #calls = new Map<number, PromiseWithResolvers<Float32Array>>();
  #next = 0;

  constructor(readonly threads = decodeThreads()) {}

  /** The values of rows of scaled codes, decoded on the least busy thread. */
  decode(type: DecodeJob["type"], bytes: Uint8Array): Promise<Float32Array> {
    if (this.threads <= 1) return Promise.resolve().then(() => decodeJob(type, bytes));
    const thread = this.#threads.length < this.threads
      ? this.#start()
      : this.#threads.reduce((a, b) => b.busy < a.busy ? b : a);
    const id = ++this.#next;
    const call = Promise.withResolvers<Float32Array>();
    this.#calls.set(id, call);
    thread.busy++;
    // A copy goes over: the chunk's buffer stays the caller's.
    const copy = bytes.slice();
    thread.worker.postMessage({ id, type, bytes: copy } satisfies DecodeJob, [copy.buffer]);
    return call.promise.finally(() => thread.busy--);
  }

  close(): void {
    for (const { worker } of this.#threads) worker.terminate();
    this.#threads.length = 0;
    for (const call of this.#calls.values()) call.reject(new Error("the block decoder was closed"));
    this.#calls.clear();
  }

  #start(): Thread {
    const worker = new Worker(new URL("./decode_worker.ts", import.meta.url), { type: "module" });
    worker.onmessage = ({ data }: MessageEvent<DecodeResult>) => {
      const call = this.#calls.get(data.id);
      this.#calls.delete(data.id);
      if ("values" in data) call?.resolve(data.values);
      else call?.reject(new Error(data.error));
    };
    worker.onerror = (event) => {
      event.preventDefault();
      this.close();
    };
    const thread = { worker, busy: 0 };
    this.#threads.push(thread);
    return thread;
  }
}
