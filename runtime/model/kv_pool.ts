/**
 * The decoder's KV cache as one pool of fixed-size blocks per layer, shared by every sequence: a sequence owns a
 * block table (block ids in position order), so sequences of any length fit without per-sequence reservations,
 * and a finished or cancelled sequence returns its blocks at once.
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
  #free: number[];

  constructor(ctx: GpuContext, shape: KvPoolShape) {
    const layer = { ...shape };
    this.layers = Array.from({ length: shape.layers }, () => createKvCache(ctx, layer));
    this.blockSize = shape.blockSize;
    this.blocks = shape.blocks;
    this.#free = Array.from({ length: shape.blocks }, (_, i) => shape.blocks - 1 - i);
  }

  get freeBlocks(): number {
    return this.#free.length;
  }

  get usedBlocks(): number {
    return this.blocks - this.#free.length;
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
    if (needed > this.#free.length) return false;
    for (let i = 0; i < needed; i++) table.push(this.#free.pop()!);
    return true;
  }

  /** Returns a table's blocks to the pool and empties it. */
  release(table: number[]): void {
    this.#free.push(...table.splice(0).reverse());
  }

  destroy(ctx: GpuContext): void {
    for (const cache of this.layers) {
      for (const t of [cache.k, cache.v, cache.kScales, cache.vScales]) if (t) ctx.release(t);
    }
    this.layers.length = 0;
  }
}
