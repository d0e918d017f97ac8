/**
 * Attention (kernels/attention.wgsl) and the paged KV cache (kernels/kvcache.wgsl), with their CPU reference.
 *
 * A step first builds a plan, which uploads the tile list (and block tables and cache slots) once, then runs
 * every layer with it:
 *
 *   const plan = pagedAttentionPlan(rec, { seqs, headsQ: 32, headsKv: 8, headDim: 128, blockSize: 16 });
 *   for each layer: kvWrite(rec, plan, { k, v, cache }); attention(rec, plan, { q, out, cache });
 *
 * A decode query whose context is long is split over key ranges processed in parallel and merged by a second
 * pass (flash decoding); prefill chunks are tiled by query position.
 */
import type { GpuContext } from "../context.ts";
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";
import { floatType, indexTensor, type Indices, WG } from "./common.ts";
import { frequencyTable, rope } from "./rope.ts";

import { type HeadShape, headShapeProblem, TILE_ROWS } from "./attention_shape.ts";

export type { HeadShape } from "./attention_shape.ts";

const NONE = 0xffffffff;

/** How the KV cache stores keys and values: f16 (default), f32, or 8-bit codes with a scale per token and head. */
export type KvType = "f16" | "f32" | "q8";

/**
 * One layer's paged KV cache: keys and values of `blocks` blocks of `blockSize` tokens. Float caches are
 * [blocks, headsKv, blockSize, headDim] tensors; the 8-bit cache holds u32 words of four codes
 * [blocks, headsKv, blockSize, headDim / 4] and f32 scales [blocks, headsKv, blockSize] (kernels/kvcache.wgsl).
 */
export interface KvCache {
  k: Tensor;
  v: Tensor;
  kScales?: Tensor;
  vScales?: Tensor;
}

export interface KvCacheShape {
  blocks: number;
  blockSize: number;
  headsKv: number;
  headDim: number;
  dtype: KvType;
}

/** Bytes of one layer's cache (keys and values), for memory plans. */
export function kvCacheBytes({ blocks, blockSize, headsKv, headDim, dtype }: KvCacheShape): number {
  const slots = blocks * blockSize * headsKv;
  return 2 * slots * (dtype === "q8" ? headDim + 4 : headDim * (dtype === "f16" ? 2 : 4));
}

/** Allocates one layer's cache (not pooled: it lives as long as the model). */
export function createKvCache(ctx: GpuContext, shape: KvCacheShape): KvCache {
  const { blocks, blockSize, headsKv, headDim, dtype } = shape;
  if (dtype !== "q8") {
    const make = () =>
      ctx.tensor(dtype, [blocks, headsKv, blockSize, headDim], { pooled: false, label: "kv cache" });
    return { k: make(), v: make() };
  }
  if (headDim % 4) {
    throw new RangeError(`an 8-bit KV cache needs a head dimension divisible by 4, got ${headDim}`);
  }
  const codes = () =>
    ctx.tensor("u32", [blocks, headsKv, blockSize, headDim / 4], { pooled: false, label: "kv cache" });
  const scales = () => ctx.tensor("f32", [blocks, headsKv, blockSize], { pooled: false, label: "kv scales" });
  return { k: codes(), v: codes(), kScales: scales(), vScales: scales() };
}

export interface PagedSequence {
  /** First row of this sequence's new tokens in the step's q, k, v (and output) tensors. */
  qStart: number;
  /** New tokens this step: a prefill chunk's length, or 1 for a decode step. */
  qLen: number;
  /** Tokens in the cache once this step's keys are written: past + qLen. Queries sit at ctxLen - qLen ... */
  ctxLen: number;
  /** Cache blocks holding positions [i * blockSize, (i + 1) * blockSize), covering ctxLen. */
  blocks: readonly number[];
}

export interface AttentionPlan {
  readonly kind: "paged" | "dense";
  readonly shape: HeadShape;
  readonly info: Tensor;
  readonly tiles: number;
  readonly combines: number;
  readonly combineBase: number;
  readonly partials: Tensor;
  /** Rows the q, k, v and output tensors must have. */
  readonly tokens: number;
  readonly causal: boolean;
  readonly blockSize: number;
  readonly slotsBase: number;
}

function checkShape(shape: HeadShape): number {
  const problem = headShapeProblem(shape);
  if (problem) throw new RangeError(`attention: ${problem}`);
  return shape.headsQ / shape.headsKv;
}

class InfoBuilder {
  readonly words: number[] = [];
  tile(
    qRow0: number,
    qCount: number,
    qPos0: number,
    kBegin: number,
    kEnd: number,
    keyBase: number,
    slot: number,
  ) {
    this.words.push(qRow0, qCount, qPos0, kBegin, kEnd, keyBase, slot, 0);
  }
}

/**
 * The plan of a decoder step over the paged cache: a batch of sequences, each with its new tokens (prefill chunk
 * or one decode token) at rows [qStart, qStart + qLen) of q, k, v.
 */
export function pagedAttentionPlan(
  rec: Recorder,
  options: HeadShape & { seqs: readonly PagedSequence[]; blockSize: number; splitKeys?: number },
): AttentionPlan {
  const { seqs, blockSize } = options;
  const splitKeys = options.splitKeys ?? 512;
  const group = checkShape(options);
  const positions = TILE_ROWS / group;
  const tokens = Math.max(0, ...seqs.map((s) => s.qStart + s.qLen));
  const tiles = new InfoBuilder();
  const combines: number[] = [];
  const tables: number[][] = [];
  let slots = 0;
  for (const [i, s] of seqs.entries()) {
    if (s.qLen < 0 || s.qLen > s.ctxLen || s.qStart < 0) {
      throw new RangeError(`attention: sequence ${i} has ${s.qLen} new tokens in a context of ${s.ctxLen}`);
    }
    if (s.blocks.length * blockSize < s.ctxLen) {
      throw new RangeError(
        `attention: sequence ${i}'s ${s.blocks.length} blocks hold fewer than ${s.ctxLen} tokens`,
      );
    }
    tables.push(s.blocks.slice(0, Math.ceil(s.ctxLen / blockSize)) as number[]);
  }
  const tableBase: number[] = [];
  // Tiles first (8 words each), then combine entries (4), then one cache slot per token row, then block tables.
  const tileCount = seqs.reduce((n, s) => n + tilesOf(s, positions, splitKeys), 0);
  const combineCount = seqs.filter((s) => splitsOf(s, positions, splitKeys) > 1).length;
  const slotsBase = tileCount * 8 + combineCount * 4;
  let tableAt = slotsBase + tokens;
  for (const table of tables) {
    tableBase.push(tableAt);
    tableAt += table.length;
  }
  for (const [i, s] of seqs.entries()) {
    const splits = splitsOf(s, positions, splitKeys);
    if (splits > 1) {
      combines.push(s.qStart, s.qLen, slots, splits);
      for (let c = 0; c < splits; c++) {
        tiles.tile(
          s.qStart,
          s.qLen,
          s.ctxLen - s.qLen,
          c * splitKeys,
          Math.min(s.ctxLen, (c + 1) * splitKeys),
          tableBase[i],
          slots++,
        );
      }
      continue;
    }
    for (let i0 = 0; i0 < s.qLen; i0 += positions) {
      const qCount = Math.min(positions, s.qLen - i0);
      tiles.tile(s.qStart + i0, qCount, s.ctxLen - s.qLen + i0, 0, s.ctxLen, tableBase[i], NONE);
    }
  }
  const slotWords = new Array<number>(tokens).fill(NONE);
  for (const s of seqs) {
    for (let i = 0; i < s.qLen; i++) {
      const pos = s.ctxLen - s.qLen + i;
      if (slotWords[s.qStart + i] !== NONE) {
        throw new RangeError(`attention: row ${s.qStart + i} is in two sequences`);
      }
      slotWords[s.qStart + i] = s.blocks[Math.floor(pos / blockSize)] * blockSize + (pos % blockSize);
    }
  }
  const words = Uint32Array.from([...tiles.words, ...combines, ...slotWords, ...tables.flat()]);
  return {
    kind: "paged",
    shape: options,
    info: rec.upload("u32", [Math.max(1, words.length)], words.length ? words : new Uint32Array(1)),
    tiles: tileCount,
    combines: combineCount,
    combineBase: tileCount * 8,
    partials: rec.scratch("f32", [Math.max(1, slots * options.headsKv * TILE_ROWS * (options.headDim + 2))]),
    tokens,
    causal: true,
    blockSize,
    slotsBase,
  };
}

function splitsOf(s: PagedSequence, positions: number, splitKeys: number): number {
  return s.qLen > 0 && s.qLen <= positions && s.ctxLen > 2 * splitKeys ? Math.ceil(s.ctxLen / splitKeys) : 1;
}

function tilesOf(s: PagedSequence, positions: number, splitKeys: number): number {
  const splits = splitsOf(s, positions, splitKeys);
  return splits > 1 ? splits : Math.ceil(s.qLen / positions);
}

/**
 * The plan of bidirectional attention within segments (the vision encoder: one segment per image, rows of
 * consecutive images one after the other): a query attends only to the keys of its own segment.
 */
export function denseAttentionPlan(
  rec: Recorder,
  options: HeadShape & { segments: readonly number[]; causal?: boolean },
): AttentionPlan {
  const group = checkShape(options);
  const positions = TILE_ROWS / group;
  const tiles = new InfoBuilder();
  let start = 0;
  for (const length of options.segments) {
    if (!Number.isInteger(length) || length < 0) throw new RangeError(`attention: segment length ${length}`);
    for (let i0 = 0; i0 < length; i0 += positions) {
      tiles.tile(start + i0, Math.min(positions, length - i0), i0, 0, length, start, NONE);
    }
    start += length;
  }
  const words = Uint32Array.from(tiles.words);
  return {
    kind: "dense",
    shape: options,
    info: rec.upload("u32", [Math.max(1, words.length)], words.length ? words : new Uint32Array(1)),
    tiles: words.length / 8,
    combines: 0,
    combineBase: 0,
    partials: rec.scratch("f32", [1]),
    tokens: start,
    causal: options.causal ?? false,
    blockSize: 0,
    slotsBase: 0,
  };
}

function checkRows(t: Tensor, rows: number, width: number, what: string): void {
  if (t.rows !== rows || t.rowLength !== width) {
    throw new RangeError(`attention: ${what} ${t} is not [${rows}, ${width}]`);
  }
}

/** Checks a paged cache against the plan; returns whether it is the 8-bit kind. */
function checkCache(cache: KvCache, plan: AttentionPlan): boolean {
  const { headsKv, headDim } = plan.shape;
  const q8 = cache.k.dtype === "u32";
  const width = q8 ? headDim / 4 : headDim;
  for (const [what, t] of [["k cache", cache.k], ["v cache", cache.v]] as const) {
    const [, heads, block, dim] = t.shape;
    if (t.shape.length !== 4 || heads !== headsKv || block !== plan.blockSize || dim !== width) {
      throw new RangeError(
        `attention: ${what} ${t} is not [blocks, ${headsKv}, ${plan.blockSize}, ${width}]`,
      );
    }
    if (q8 ? t.dtype !== "u32" : (floatType(t, `attention: ${what}`), t.dtype !== cache.k.dtype)) {
      throw new TypeError(`attention: the k and v caches differ in type`);
    }
  }
  if (q8) {
    const [blocks] = cache.k.shape;
    for (const scales of [cache.kScales, cache.vScales]) {
      if (!scales || scales.dtype !== "f32" || scales.size !== blocks * headsKv * plan.blockSize) {
        throw new RangeError(
          `attention: an 8-bit cache needs f32 scales [${blocks}, ${headsKv}, ${plan.blockSize}]`,
        );
      }
    }
  }
  return q8;
}

/** Writes the step's keys and values ([tokens, headsKv * headDim] views) into their cache slots. */
export function kvWrite(
  rec: Recorder,
  plan: AttentionPlan,
  { k, v, cache }: { k: Tensor; v: Tensor; cache: KvCache },
): void {
  if (plan.kind !== "paged") throw new TypeError("kvWrite needs a paged plan");
  const { headsKv, headDim } = plan.shape;
  checkRows(k, plan.tokens, headsKv * headDim, "k");
  checkRows(v, plan.tokens, headsKv * headDim, "v");
  const q8 = checkCache(cache, plan);
  if (k.dtype !== v.dtype) throw new TypeError("kvWrite: k and v dtypes differ");
  const kernel = rec.ctx.kernel({
    file: "kvcache.wgsl",
    entry: q8 ? "kv_write_q8" : "kv_write",
    aliases: { X: floatType(k, "kvWrite: k"), KV: q8 ? "u32" : floatType(cache.k, "kvWrite: cache") },
    bindings: q8
      ? ["read", "read", "read", "write", "write", "write", "write"]
      : ["read", "read", "read", "write", "write"],
  });
  const tensors = [plan.info, k, v, cache.k, cache.v, ...(q8 ? [cache.kScales!, cache.vScales!] : [])];
  const b = tensors.map((t) => rec.bind(t));
  rec.dispatch(
    kernel,
    b,
    new Params().u32(
      plan.tokens,
      headsKv,
      headDim,
      plan.blockSize,
      b[0].offset + plan.slotsBase,
      b[1].offset,
      k.rowStride,
      b[2].offset,
      v.rowStride,
      b[3].offset,
      b[4].offset,
      q8 ? b[5].offset : 0,
      q8 ? b[6].offset : 0,
    ),
    Math.ceil(plan.tokens * headsKv * (q8 ? 1 : headDim) / WG),
  );
}

/**
 * The decoder's RoPE and cache write for a step's fused q|k|v rows ([tokens, (headsQ + 2·headsKv)·D]): q rotated
 * in place, rotated k and v stored at their cache slots. One dispatch for float caches (kernels/rope_kv.wgsl,
 * which leaves k in `qkv` unrotated); the 8-bit cache takes rope (k rotated in place) then kvWrite.
 */
export function ropeKvWrite(
  rec: Recorder,
  plan: AttentionPlan,
  { qkv, cache, theta, positions }: { qkv: Tensor; cache: KvCache; theta: number; positions: Indices },
): void {
  if (plan.kind !== "paged") throw new TypeError("ropeKvWrite needs a paged plan");
  const { headsQ, headsKv, headDim } = plan.shape;
  const qDim = headsQ * headDim, kvDim = headsKv * headDim;
  checkRows(qkv, plan.tokens, qDim + 2 * kvDim, "q|k|v");
  if (checkCache(cache, plan)) {
    rope(rec, { x: qkv.sliceCols(0, qDim + kvDim), headDim, theta, positions });
    kvWrite(rec, plan, { k: qkv.sliceCols(qDim, kvDim), v: qkv.sliceCols(qDim + kvDim, kvDim), cache });
    return;
  }
  const kernel = rec.ctx.kernel({
    file: "rope_kv.wgsl",
    entry: "rope_kv_write",
    aliases: { X: floatType(qkv, "ropeKvWrite: q|k|v"), KV: floatType(cache.k, "ropeKvWrite: cache") },
    bindings: ["read", "read", "read", "write", "write", "write"],
  });
  const pos = indexTensor(rec, positions, "rope positions");
  if (pos.size !== plan.tokens) {
    throw new RangeError(`ropeKvWrite: ${plan.tokens} tokens need as many positions`);
  }
  const b = [frequencyTable(rec, theta, headDim), pos, plan.info, qkv, cache.k, cache.v].map((t) =>
    rec.bind(t)
  );
  rec.dispatch(
    kernel,
    b,
    new Params().u32(
      plan.tokens,
      headsQ,
      headsKv,
      headDim,
      b[3].offset,
      qkv.rowStride,
      b[1].offset,
      b[2].offset + plan.slotsBase,
      plan.blockSize,
      b[4].offset,
      b[5].offset,
    ),
    Math.ceil(plan.tokens * (headsQ + headsKv) * headDim / 2 / WG),
  );
}

/**
 * out = softmax(q · kᵀ / sqrt(D)) · v over the plan's keys: the paged cache (`cache`), or for a dense plan the
 * step's own k and v ([tokens, headsKv * D] views).
 */
export function attention(
  rec: Recorder,
  plan: AttentionPlan,
  args: { q: Tensor; out: Tensor } & ({ cache: KvCache } | { k: Tensor; v: Tensor }),
): void {
  const { q, out } = args;
  const { headsQ, headsKv, headDim } = plan.shape;
  checkRows(q, plan.tokens, headsQ * headDim, "q");
  checkRows(out, plan.tokens, headsQ * headDim, "out");
  if (out.dtype !== q.dtype) throw new TypeError(`attention: out ${out} must have q's type ${q.dtype}`);
  let k: Tensor, v: Tensor, q8 = false, scales: Tensor[] = [plan.info, plan.info];
  if ("cache" in args) {
    if (plan.kind !== "paged") throw new TypeError("attention: a dense plan takes k and v, not a cache");
    q8 = checkCache(args.cache, plan);
    ({ k, v } = args.cache);
    if (q8) scales = [args.cache.kScales!, args.cache.vScales!];
  } else {
    if (plan.kind !== "dense") throw new TypeError("attention: a paged plan takes the cache");
    ({ k, v } = args);
    checkRows(k, plan.tokens, headsKv * headDim, "k");
    checkRows(v, plan.tokens, headsKv * headDim, "v");
    if (k.rowStride !== v.rowStride) throw new RangeError("attention: k and v need the same row stride");
    if (k.dtype !== v.dtype) throw new TypeError("attention: k and v types differ");
  }
  const spec = (entry: string) =>
    rec.ctx.kernel({
      file: "attention.wgsl",
      entry,
      aliases: { Q: floatType(q, "attention: q"), KV: q8 ? "u32" : floatType(k, "attention: k") },
      constants: { Q8: q8 ? 1 : 0 },
      bindings: ["read", "read", "read", "read", "write", "write", "read", "read"],
    });
  const b = [plan.info, q, k, v, out, plan.partials, ...scales].map((t) => rec.bind(t));
  const params = (tiles: number, base: number) =>
    new Params().u32(tiles, b[0].offset + base, headsKv, headsQ / headsKv, headDim)
      .f32(1 / Math.sqrt(headDim))
      .u32(
        b[1].offset,
        q.rowStride,
        b[4].offset,
        out.rowStride,
        b[2].offset,
        b[3].offset,
        k.rowStride,
        plan.blockSize,
        plan.causal ? 1 : 0,
        q8 ? b[6].offset : 0,
        q8 ? b[7].offset : 0,
      );
  const entry = plan.kind === "paged" ? "attention_paged" : "attention_dense";
  rec.dispatch(spec(entry), b, params(plan.tiles, 0), plan.tiles * headsKv);
  if (plan.combines > 0) {
    rec.dispatch(
      spec("attention_combine"),
      b,
      params(plan.combines, plan.combineBase),
      plan.combines * headsKv,
    );
  }
}

/**
 * CPU reference: out[i] = softmax_j(q_i · k_j / sqrt(D)) v_j over the keys `allowed(i, j)` permits, in f64, with
 * q [rows, headsQ * D], k and v [keys, headsKv * D], query head h reading KV head floor(h / G).
 */
export function attentionRef(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  shape: HeadShape & { rows: number; keys: number; allowed: (i: number, j: number) => boolean },
): Float64Array {
  const { headsQ, headsKv, headDim: D, rows, keys } = shape;
  const group = headsQ / headsKv;
  const out = new Float64Array(rows * headsQ * D);
  const scores = new Float64Array(keys);
  for (let i = 0; i < rows; i++) {
    for (let h = 0; h < headsQ; h++) {
      const kh = Math.floor(h / group);
      let max = -Infinity;
      for (let j = 0; j < keys; j++) {
        if (!shape.allowed(i, j)) {
          scores[j] = -Infinity;
          continue;
        }
        let s = 0;
        for (let d = 0; d < D; d++) s += q[(i * headsQ + h) * D + d] * k[(j * headsKv + kh) * D + d];
        scores[j] = s / Math.sqrt(D);
        max = Math.max(max, scores[j]);
      }
      let sum = 0;
      for (let j = 0; j < keys; j++) {
        sum += scores[j] = scores[j] === -Infinity ? 0 : Math.exp(scores[j] - max);
      }
      for (let j = 0; j < keys; j++) {
        if (scores[j] === 0) continue;
        for (let d = 0; d < D; d++) {
          out[(i * headsQ + h) * D + d] += scores[j] / sum * v[(j * headsKv + kh) * D + d];
        }
      }
    }
  }
  return out;
}

/** CPU reference of the 8-bit cache's quantization of one head vector: codes (as int8) and the scale. */
export function quantizeKvRef(x: ArrayLike<number>): { codes: Int8Array; scale: number } {
  const f = Math.fround;
  let amax = 0;
  for (let i = 0; i < x.length; i++) amax = Math.max(amax, Math.abs(x[i]));
  const scale = f(amax / 127), inv = scale > 0 ? f(1 / scale) : 0;
  const codes = Int8Array.from(x, (v) => {
    const y = f(v * inv);
    return Math.sign(y) * Math.floor(Math.abs(y) + 0.5);
  });
  return { codes, scale };
}
