/**
 * Output-format constraints served from a Web Worker of their own (worker_entry.ts runs xgrammar there).
 * Compiling a schema's grammar takes from milliseconds to seconds of xgrammar's WebAssembly, and giving it the
 * vocabulary 0.5-2 s: on the engine's thread that would stall every stream for as long. Here the engine asks for a
 * matcher and goes on stepping the other sequences until it comes; each step's mask is one message away.
 */
import type { Constraints, TokenConstraint } from "../engine/engine.ts";
import { deserializeError, type SerializedError } from "../engine/worker.ts";
import type { Vocabulary } from "./constraints.ts";
import type { OutputFormat } from "./format.ts";

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
  readonly #worker: Worker;
  readonly #calls = new Map<
    number,
    { resolve: (mask?: Uint32Array) => void; reject: (err: Error) => void }
  >();
  #next = 0;
  #closed = false;

  /** Starts the worker and gives xgrammar `vocabulary` at once (no request waits for it later). */
  constructor(vocabulary: Vocabulary, options: { kept?: number } = {}) {
    this.#worker = new Worker(new URL("./worker_entry.ts", import.meta.url), { type: "module" });
    this.#worker.onmessage = ({ data }: MessageEvent<FromGrammarWorker>) => {
      const call = this.#calls.get(data.call);
      this.#calls.delete(data.call);
      if (data.type === "done") call?.resolve(data.mask);
      else call?.reject(deserializeError(data.error));
    };
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#fail(new Error(`the grammar worker failed: ${event.message}`));
    };
    this.#post({ type: "init", vocabulary, kept: options.kept });
  }

  async constrain(format: OutputFormat, stopIds: readonly number[]): Promise<TokenConstraint> {
    const id = ++this.#next;
    await this.#call((call) => ({ type: "constrain", call, id, format, stopIds: [...stopIds] }));
    let mask: Uint32Array | undefined;
    return {
      allowed: async () => mask = (await this.#call((call) => ({ type: "allowed", call, id })))!,
      // The worker's matcher takes exactly the tokens of the mask it sent; should it not, its next mask fails.
      accept: (token) => {
        this.#post({ type: "accept", id, token });
        return mask !== undefined && ((mask[token >> 5] >>> (token & 31)) & 1) === 1;
      },
      release: () => this.#post({ type: "release", id }),
    };
  }

  close(): void {
    this.#closed = true;
    this.#worker.terminate();
    this.#fail(new Error("the grammar worker was closed"));
  }

  #call(message: (call: number) => ToGrammarWorker): Promise<Uint32Array | undefined> {
    if (this.#closed) return Promise.reject(new Error("the grammar worker was closed"));
    const call = ++this.#next;
    const done = new Promise<Uint32Array | undefined>((resolve, reject) =>
      this.#calls.set(call, { resolve, reject })
    );
    this.#post(message(call));
    return done;
  }

  #post(message: ToGrammarWorker): void {
    if (!this.#closed) this.#worker.postMessage(message);
  }

  #fail(err: Error): void {
    for (const call of this.#calls.values()) call.reject(err);
    this.#calls.clear();
  }
}
