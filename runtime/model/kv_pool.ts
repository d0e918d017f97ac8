/**
 * The decoder's KV cache as one pool of fixed-size blocks per layer, shared by every sequence: a sequence owns a
 * block table (block ids in position order), so sequences of any length fit without per-sequence reservations,
 * and a finished or cancelled sequence returns its blocks at once. Full blocks can be published under a digest
 * of the tokens they end: later sequences with the same prefix share them instead of recomputing it, and a
 * published block no sequence holds stays cached until a reservation needs the room (least recently used
 * first).
 */
import type { GpuContext } from "../gpu/context.ts";
import { createKvCache, type KvCache, type KvType } from "../gpu/ops/attention.ts";

export interface KvPoolShape {
  layers: number;
  blocks: number;
  blockSize: number;
  headsKv: number;
  headDim: number;
  dtype: KvType;
}

export class KvPool {
  readonly layers: KvCache[];
  readonly blockSize: number;
  readonly blocks: number;
  /** Blocks holding nothing anyone may look up, most recently freed last. */
  #free: number[];
  /** Tables holding each block. */
  readonly #refs: Uint32Array;
  /** Published blocks by content key, and each published block's key. */
  readonly #byKey = new Map<string, number>();
  readonly #keyOf: (string | undefined)[];
  /** Published blocks no table holds, least recently used first: free, but kept for lookups until needed. */
  readonly #cached = new Set<number>();

  constructor(ctx: GpuContext, shape: KvPoolShape) {
    const layer = { ...shape };
    this.layers = Array.from({ length: shape.layers }, () => createKvCache(ctx, layer));
    this.blockSize = shape.blockSize;
    this.blocks = shape.blocks;
    this.#free = Array.from({ length: shape.blocks }, (_, i) => shape.blocks - 1 - i);
    this.#refs = new Uint32Array(shape.blocks);
    this.#keyOf = new Array(shape.blocks);
  }

  /** Blocks a reservation can take: the empty ones and the cached ones no table holds. */
  get freeBlocks(): number {
    return this.#free.length + this.#cached.size;
  }

  get usedBlocks(): number {
    return this.blocks - this.freeBlocks;
  }

  /** Published blocks no table holds. */
  get cachedBlocks(): number {
    return this.#cached.size;
  }

  /** Tokens the pool can hold in all. */
  get capacity(): number {
    return this.blocks * this.blockSize;
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /** Grows `table` to cover `tokens` positions; false, taking nothing, when too few blocks are free. */
  reserve(table: number[], tokens: number): boolean {
    const needed = this.blocksFor(tokens) - table.length;
    if (needed <= 0) return true;
    if (needed > this.freeBlocks) return false;
    for (let i = 0; i < needed; i++) {
      const block = this.#take();
      this.#refs[block] = 1;
      table.push(block);
    }
    return true;
  }

  /** An empty block if there is one, else the least recently used cached block, forgotten. */
  #take(): number {
    if (this.#free.length) return this.#free.pop()!;
    const block: number = this.#cached.values().next().value!;
    this.#cached.delete(block);
    this.#byKey.delete(this.#keyOf[block]!);
    this.#keyOf[block] = undefined;
    return block;
  }

  /** Drops a table's hold on its blocks and empties it; a published block stays cached until it is needed. */
  release(table: number[]): void {
    for (const block of table.splice(0).reverse()) {
      if (this.#refs[block] === 0) throw new Error(`KV block ${block} released twice`);
      if (--this.#refs[block] > 0) continue;
      if (this.#keyOf[block] !== undefined) this.#cached.add(block);
      else this.#free.push(block);
    }
  }

  /**
   * Makes a full block's content findable under `key`, a digest of every token up to its end (see
   * runtime/engine/prefix.ts). The first block published under a key keeps it.
   */
  publish(block: number, key: string): void {
    if (this.#byKey.has(key) || this.#keyOf[block] !== undefined) return;
    this.#byKey.set(key, block);
    this.#keyOf[block] = key;
  }

  /** Blocks of `table` that no other table holds: what releasing it frees. */
  exclusiveBlocks(table: readonly number[]): number {
    return table.reduce((n, block) => n + (this.#refs[block] === 1 ? 1 : 0), 0);
  }

  /** Whether a block is published under `key`. */
  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  /** Appends the published blocks of `keys` (each one `has`) to `table`, which then holds them too. */
  share(table: number[], keys: readonly string[]): void {
    for (const key of keys) {
      const block = this.#byKey.get(key)!;
      if (this.#refs[block]++ === 0) this.#cached.delete(block);
      table.push(block);
    }
  }

  destroy(ctx: GpuContext): void {
    for (const cache of this.layers) {
      for (const t of [cache.k, cache.v, cache.kScales, cache.vScales]) if (t) ctx.release(t);
    }
    this.layers.length = 0;
  }
}
