/**
 * Output-format constraints served from a Web Worker of their own (worker_entry.ts runs xgrammar there).
 * Compiling a schema's grammar takes from milliseconds to seconds of xgrammar's WebAssembly, and giving it the
 * vocabulary 0.5-2 s: on the engine's thread that would stall every stream for as long. Here the engine asks for a
 * matcher and goes on stepping the other sequences until it comes; each step's mask is one message away.
 */
import type { Constraints, TokenConstraint } from "../engine/engine.ts";
import { deserializeError, type SerializedError } from "../engine/worker.ts";
import type { Vocabulary } from "./vocabulary.ts";
import type { OutputFormat } from "./format.ts";
import { log } from "../log.ts";

export type ToGrammarWorker =
  | { type: "init"; vocabulary: Vocabulary; kept?: number }
  | { type: "constrain"; call: number; id: number; format: OutputFormat; stopIds: number[] }
  | { type: "allowed"; call: number; id: number }
  | { type: "accept"; id: number; token: number }
  | { type: "release"; id: number };

export type FromGrammarWorker =
  | { type: "done"; call: number; mask?: Uint32Array }
  | { type: "failed"; call: number; error: SerializedError };

export class GrammarWorker implements Constraints {
  #worker?: Worker;
  /** Counts the workers started: a matcher belongs to the one that made it. */
  #generation = 0;
  readonly #calls = new Map<
    number,
    { resolve: (mask?: Uint32Array) => void; reject: (err: Error) => void }
  >();
  #next = 0;
  #closed = false;

  /** Starts the worker and gives xgrammar `vocabulary` at once (no request waits for it later). */
  constructor(readonly vocabulary: Vocabulary, readonly options: { kept?: number } = {}) {
    this.#start();
  }

  async constrain(format: OutputFormat, stopIds: readonly number[]): Promise<TokenConstraint> {
    const id = ++this.#next;
    await this.#call((call) => ({ type: "constrain", call, id, format, stopIds: [...stopIds] }));
    const generation = this.#generation;
    const mine = () => generation === this.#generation && !this.#closed;
    let mask: Uint32Array | undefined;
    return {
      allowed: async () => {
        if (!mine()) throw new Error("the grammar worker that held this matcher has stopped");
        return mask = (await this.#call((call) => ({ type: "allowed", call, id })))!;
      },
      // The worker's matcher takes exactly the tokens of the mask it sent; should it not, its next mask fails.
      accept: (token) => {
        if (mine()) this.#worker!.postMessage({ type: "accept", id, token } satisfies ToGrammarWorker);
        return mask !== undefined && ((mask[token >> 5] >>> (token & 31)) & 1) === 1;
      },
      release: () => {
        if (mine()) this.#worker!.postMessage({ type: "release", id } satisfies ToGrammarWorker);
      },
    };
  }

  close(): void {
    this.#closed = true;
    this.#worker?.terminate();
    this.#worker = undefined;
    this.#fail(new Error("the grammar worker was closed"));
  }

  #start(): Worker {
    const worker = new Worker(new URL("./worker_entry.ts", import.meta.url), { type: "module" });
    this.#generation++;
    worker.onmessage = ({ data }: MessageEvent<FromGrammarWorker>) => {
      const call = this.#calls.get(data.call);
      this.#calls.delete(data.call);
      if (data.type === "done") call?.resolve(data.mask);
      else call?.reject(deserializeError(data.error));
    };
    // A worker that threw is dead (Deno does not run it on): its calls fail, its matchers with them, and the
    // next request starts a new one.
    worker.onerror = (event) => {
      event.preventDefault();
      log.error("the grammar worker failed; a new one starts at the next request", { error: event.message });
      worker.terminate();
      if (this.#worker === worker) this.#worker = undefined;
      this.#fail(new Error(`the grammar worker failed: ${event.message}`));
    };
    worker.postMessage(
      { type: "init", vocabulary: this.vocabulary, kept: this.options.kept } satisfies ToGrammarWorker,
    );
    return this.#worker = worker;
  }

  #call(message: (call: number) => ToGrammarWorker): Promise<Uint32Array | undefined> {
    if (this.#closed) return Promise.reject(new Error("the grammar worker was closed"));
    const worker = this.#worker ?? this.#start();
    const call = ++this.#next;
    const done = new Promise<Uint32Array | undefined>((resolve, reject) =>
      this.#calls.set(call, { resolve, reject })
    );
    worker.postMessage(message(call));
    return done;
  }

  #fail(err: Error): void {
    for (const call of this.#calls.values()) call.reject(err);
    this.#calls.clear();
  }
}
