/**
 * Several grammar threads. A thread compiling a schema answers nothing else until it is done (xgrammar's compile
 * is one WebAssembly call), so the masks of every stream whose matcher lives there wait; with a pool, a schema
 * to compile goes to a thread that neither compiles nor holds a running stream's matcher (starting one while
 * there are fewer than `threads`), else to the idle one holding the fewest, and the streams on the others keep
 * their pace. Matchers stay on the thread that made them; a schema goes back to the thread that compiled it last
 * (which keeps its grammar: no compile), or compiles it now (a request's n choices share one compile), unless
 * that one is compiling something else. Threads start when first needed: one that is always idle costs nothing.
 */
import type { Constraints, TokenConstraint } from "../engine/engine.ts";
import { formatKey, type OutputFormat } from "./format.ts";

/** One thread's constraints; `close` ends the thread. */
export type GrammarThread = Constraints & { close(): void };

interface Slot {
  thread: GrammarThread;
  /** The formats whose matchers are being made there (a compile, or a grammar it keeps), and how many of each. */
  pending: Map<string, number>;
  /** Matchers made there and not released: streams whose masks a compile there would hold. */
  live: number;
  /** The formats it compiled, most recent last (as many as it keeps). */
  formats: string[];
}

/** Matchers being made on a slot's thread. */
const making = (slot: Slot) => [...slot.pending.values()].reduce((a, b) => a + b, 0);

export class GrammarPool implements Constraints {
  readonly #slots: Slot[] = [];
  #closed = false;

  /**
   * `start` makes a thread; the first starts now (it loads the vocabulary while the model loads), others when
   * every thread is busy, up to `threads`.
   */
  constructor(
    readonly start: () => GrammarThread,
    readonly options: { threads?: number; kept?: number } = {},
  ) {
    this.#add();
  }

  /** Threads started so far. */
  get threads(): number {
    return this.#slots.length;
  }

  async constrain(format: OutputFormat, stopIds: readonly number[]): Promise<TokenConstraint> {
    if (this.#closed) throw new Error("the grammar threads were closed");
    const key = formatKey(format);
    const home = this.#slots.find((s) => s.formats.includes(key));
    const fewest = (slots: Slot[], by: (s: Slot) => number) =>
      slots.reduce<Slot | undefined>((a, b) => a && by(a) <= by(b) ? a : b, undefined);
    // Home when it makes nothing, or makes this very format: the n choices of a request share one compile.
    const slot = home && (home.pending.size === 0 || home.pending.has(key))
      ? home
      : this.#slots.find((s) => s.pending.size === 0 && s.live === 0) ??
        (this.#slots.length < (this.options.threads ?? 2)
          ? this.#add()
          : fewest(this.#slots.filter((s) => s.pending.size === 0), (s) => s.live) ?? home ??
            fewest(this.#slots, making)!);
    // Its home from now, unless it fails to compile.
    slot.formats = [...slot.formats.filter((k) => k !== key), key].slice(-(this.options.kept ?? 4));
    slot.pending.set(key, (slot.pending.get(key) ?? 0) + 1);
    let constraint: TokenConstraint;
    try {
      constraint = await slot.thread.constrain(format, stopIds);
    } catch (err) {
      slot.formats = slot.formats.filter((k) => k !== key);
      throw err;
    } finally {
      const left = slot.pending.get(key)! - 1;
      if (left) slot.pending.set(key, left);
      else slot.pending.delete(key);
    }
    slot.live++;
    let released = false;
    return {
      ...constraint,
      release: () => {
        if (!released) slot.live--;
        released = true;
        constraint.release();
      },
    };
  }

  close(): void {
    this.#closed = true;
    for (const slot of this.#slots) slot.thread.close();
  }

  #add(): Slot {
    const slot = { thread: this.start(), pending: new Map(), live: 0, formats: [] };
    this.#slots.push(slot);
    return slot;
  }
}
