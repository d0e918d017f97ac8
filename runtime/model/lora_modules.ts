/**
 * LoRA adapters served per request (vLLM's LoRA modules, llama.cpp's per-request adapters): kept apart from the
 * weights on the GPU, each under a name a request gives as its `model`, and added to the products of that
 * request's rows only: y += (x·Aᵀ)·(s·B)ᵀ. Requests naming different adapters (or none) share the base weights,
 * one batch and one KV pool; an adapter costs small extra products per linear layer where merging (lora.ts) costs
 * nothing, so a server merges its one fine-tune and keeps these for the others.
 *
 * The adapters' updates of one product are banked together (as punica's batched kernels in vLLM): A of every
 * adapter stacked [Σ ranks, k], B of every adapter one after the other, so that a decode step whose rows use any
 * mix of adapters takes one shrink (t = x·Aᵀ, each row against its own adapter's rows of A: kernels/lora.wgsl,
 * or inside the RMSNorm that makes the product's input) and adds t·Bᵀ in the product's own epilogue
 * (kernels/matvec.wgsl). Weights the forward multiplies by one product (q|k|v, w1|w3) take one shrink over their
 * updates' joined A; each keeps its own B [rows, rank], an output reading only its weight's columns of t.
 * Prefill chunks (more than 8 rows) take the tiled kernels, per run of rows of one adapter.
 */
import type { GpuContext } from "../gpu/context.ts";
import { elementBytes, f16Bits, type FloatType } from "../gpu/dtype.ts";
import { linear, loraRuns, type LoraSlot, type LoraUpdate, MATVEC_MAX_ROWS } from "../gpu/ops/linear.ts";
import { loraShrink } from "../gpu/ops/lora.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { ModelConfig } from "./config.ts";
import { expectedTensors } from "./tensors.ts";
import { WeightFileError } from "./weights/errors.ts";
import { type LoraAdapter, lowRankOf } from "./weights/lora.ts";

/** An adapter served per request. */
export interface LoraModule {
  /** The name requests give as `model`. */
  name: string;
  path: string;
  /** Its place in the bank. */
  index: number;
  /** GPU bytes. */
  bytes: number;
}

/** One product's updates by every adapter: A stacked [Σ ranks, k], B of each [rows, rank] one after the other. */
interface BankedProduct {
  a: Tensor;
  b: Tensor;
  /** By adapter index; undefined where the adapter leaves the product alone. */
  slots: (LoraSlot | undefined)[];
  /** The rows of each weight of the product. */
  members: number[];
}

/** The adapters served per request and their updates, by productKey. */
export interface LoraBank {
  modules: LoraModule[];
  products: Map<string, BankedProduct>;
  /** The largest rank of an update. */
  maxRank: number;
  dtype: FloatType;
}

/** The key of weights multiplied by one product (their names joined), as the forward passes name them. */
export const productKey = (names: readonly string[]): string => names.join("+");

/** The weights multiplied in the same product as `name`: q|k|v and w1|w3 of a layer, else `name` alone. */
function productOf(name: string): string[] {
  const m = /^(.*\.)(attention\.w[qkv]|feed_forward\.w[13])\.weight$/.exec(name);
  if (!m) return [name];
  const members = m[2].startsWith("attention") ? ["attention.wq", "attention.wk", "attention.wv"] : [
    "feed_forward.w1",
    "feed_forward.w3",
  ];
  return members.map((n) => `${m[1]}${n}.weight`);
}

/** The products an adapter updates: their keys and the weights each multiplies. */
function productsOf(adapter: LoraAdapter): Map<string, string[]> {
  const products = new Map<string, string[]>();
  for (const weight of adapter.updates.keys()) {
    const members = productOf(weight);
    products.set(productKey(members), members);
  }
  return products;
}

/** The GPU bytes of an adapter served per request with `elementBytes` per value (for the memory plan). */
export function loraModuleBytes(adapter: LoraAdapter, elementBytes: number): number {
  let values = 0;
  for (const u of adapter.updates.values()) values += u.b.shape[1] * (u.spec.shape[1] + u.spec.shape[0]);
  return values * elementBytes;
}

/** Throws when an adapter cannot be applied per request (only merged at load), saying why. */
export function checkServable(adapter: LoraAdapter): void {
  const why = unservable(adapter);
  if (why) throw new WeightFileError("unsupported", adapter.path, `cannot be served per request: ${why}`);
}

function unservable(adapter: LoraAdapter): string | undefined {
  const merge = "load it merged into the weights with --lora instead";
  if (adapter.whole.size) {
    return `it replaces whole tensors (${[...adapter.whole.keys()].slice(0, 3).join(", ")}${
      adapter.whole.size > 3 ? ", ..." : ""
    }), which applies to every request: ${merge}`;
  }
  for (const [name, u] of adapter.updates) {
    if (u.orientation !== "linear") return `it updates the embedding ${name}: ${merge}`;
    if (u.magnitude) return `it is a DoRA adapter (its rows are rescaled after the update): ${merge}`;
  }
  return undefined;
}

/**
 * One adapter's update of one product, f32: A [rank, k] (each weight's rows in turn) and for each weight of the
 * product its B [rows, its rank] (scale applied), one after the other.
 */
interface Block {
  a: Float32Array;
  b: Float32Array;
  ranks: number[];
  k: number;
}

/**
 * Banks the adapters on the GPU, each under its name, in `dtype` (the activations' type), one product at a time
 * (the host holds one product's updates at once); closes their files.
 */
export async function loadLoraBank(
  ctx: GpuContext,
  config: ModelConfig,
  adapters: readonly { name: string; adapter: LoraAdapter }[],
  dtype: FloatType,
): Promise<LoraBank> {
  const bank = newBank(adapters.map(({ name, adapter }) => ({ name, path: adapter.path })), dtype);
  try {
    adapters.forEach(({ adapter }) => checkServable(adapter));
    const rowsOf = new Map(expectedTensors(config).map((s) => [s.name, s.shape[0]]));
    const keys = new Map(adapters.flatMap(({ adapter }) => [...productsOf(adapter)]));
    for (const [key, members] of keys) {
      const blocks: (Block | undefined)[] = [];
      for (const { adapter } of adapters) blocks.push(await blockOf(adapter, members, rowsOf));
      bankProduct(ctx, bank, key, members.map((m) => rowsOf.get(m)!), blocks);
    }
    return bank;
  } catch (err) {
    releaseLoraBank(ctx, bank);
    throw err;
  } finally {
    adapters.forEach(({ adapter }) => adapter.file.close());
  }
}

function newBank(modules: readonly { name: string; path: string }[], dtype: FloatType): LoraBank {
  return {
    modules: modules.map((m, index) => ({ ...m, index, bytes: 0 })),
    products: new Map(),
    maxRank: 0,
    dtype,
  };
}

/** An adapter's update of the product of `members`, or undefined when it updates none of them. */
async function blockOf(
  adapter: LoraAdapter,
  members: readonly string[],
  rowsOf: ReadonlyMap<string, number>,
): Promise<Block | undefined> {
  const parts: { row: number; rows: number; update?: Awaited<ReturnType<typeof lowRankOf>> }[] = [];
  let rows = 0, rank = 0, k = 0;
  for (const member of members) {
    const update = await lowRankOf(member, [adapter]);
    parts.push({ row: rows, rows: rowsOf.get(member)!, update });
    rows += rowsOf.get(member)!;
    if (update) {
      rank += update.rank;
      k = update.right.length / update.rank;
    }
  }
  if (rank === 0) return undefined;
  // A: each member's Aᵀ [k, r] transposed, stacked; B: each member's scaled B [rows, r], one after the other.
  const a = new Float32Array(rank * k);
  const b = new Float32Array(parts.reduce((n, p) => n + p.rows * (p.update?.rank ?? 0), 0));
  let col = 0, at = 0;
  for (const { update } of parts) {
    if (!update) continue;
    const r = update.rank;
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < k; j++) a[(col + i) * k + j] = update.right[j * r + i];
    }
    b.set(update.left, at);
    col += r;
    at += update.left.length;
  }
  return { a, b, ranks: parts.map((p) => p.update?.rank ?? 0), k };
}

/** Puts every adapter's block of one product (its weights of `members` rows each) on the GPU, stacked. */
function bankProduct(
  ctx: GpuContext,
  bank: LoraBank,
  key: string,
  members: number[],
  blocks: readonly (Block | undefined)[],
): void {
  const k = blocks.find((b) => b)!.k;
  const rankOf = (block: Block) => block.ranks.reduce((n, r) => n + r, 0);
  const a = new Float32Array(blocks.reduce((n, b) => n + (b ? rankOf(b) : 0), 0) * k);
  const b = new Float32Array(blocks.reduce((n, b) => n + (b?.b.length ?? 0), 0));
  const slots: (LoraSlot | undefined)[] = [];
  let offset = 0, at = 0;
  for (const [i, block] of blocks.entries()) {
    if (!block) {
      slots.push(undefined);
      continue;
    }
    const rank = rankOf(block);
    // The kernels' table packs the first two weights' ranks in 16 bits each.
    if (block.ranks.some((r) => r >= 1 << 15)) throw new RangeError(`LoRA ${key}: a rank of 32768 or more`);
    a.set(block.a, offset * k);
    b.set(block.b, at);
    slots.push({ offset, rank, b: at, ranks: block.ranks });
    bank.modules[i].bytes += (block.a.length + block.b.length) * elementBytes(bank.dtype);
    bank.maxRank = Math.max(bank.maxRank, rank);
    offset += rank;
    at += block.b.length;
  }
  const product = {
    a: ctx.fromFloats(bank.dtype, [offset, k], a, { label: `LoRA ${key} A` }),
    b: ctx.tensor(bank.dtype, [b.length], { label: `LoRA ${key} B` }),
    slots,
    members,
  };
  bank.products.set(key, product);
  ctx.write(product.b, bank.dtype === "f32" ? b : f16Bits(b));
}

/**
 * A bank of `count` adapters of seeded random values, rank `rank` on every linear layer of the decoder but the
 * output head (the usual target), for benchmarks at Pixtral 12B's size without files.
 */
export function randomLoraBank(
  ctx: GpuContext,
  config: ModelConfig,
  count: number,
  rank: number,
  dtype: FloatType,
): LoraBank {
  const bank = newBank(
    Array.from({ length: count }, (_, i) => ({ name: `lora${i}`, path: "random" })),
    dtype,
  );
  const shapes = new Map(
    expectedTensors(config)
      .filter((s) => s.component === "decoder" && s.role === "linear" && s.name !== "output.weight")
      .map((s) => [s.name, s.shape]),
  );
  let state = 1;
  const random = (n: number, scale: number) =>
    Float32Array.from({ length: n }, () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return (state / 2 ** 32 - 0.5) * scale;
    });
  const products = new Map([...shapes.keys()].map((w) => [productKey(productOf(w)), productOf(w)]));
  for (const [key, members] of products) {
    const k = shapes.get(members[0])![1], rows = members.map((m) => shapes.get(m)![0]);
    const blocks = Array.from({ length: count }, () => ({
      a: random(rank * members.length * k, 2 / Math.sqrt(k)),
      b: random(rows.reduce((n, r) => n + r, 0) * rank, 0.02),
      ranks: members.map(() => rank),
      k,
    }));
    bankProduct(ctx, bank, key, rows, blocks);
  }
  return bank;
}

export function releaseLoraBank(ctx: GpuContext, bank: LoraBank): void {
  for (const { a, b } of bank.products.values()) {
    ctx.release(a);
    ctx.release(b);
  }
  bank.products.clear();
}

/** A shrink for the kernel making a product's input to compute (rmsNormShrink's operands). */
export interface Shrink {
  a: Tensor;
  t: Tensor;
  slots: readonly (LoraSlot | undefined)[];
}

/** The adapters of a pass's rows (a decoder step's sequences, an image's patches), and their products. */
export class LoraRows {
  readonly #bank: LoraBank;
  /** Each row's adapter index, -1 for none. */
  readonly #rows: readonly number[];
  /** The shrinks' output, one per recorder: [rows, largest rank]. */
  #scratch?: { rec: Recorder; t: Tensor };

  private constructor(bank: LoraBank, rows: readonly number[]) {
    this.#bank = bank;
    this.#rows = rows;
  }

  /** Undefined when no row has an adapter. */
  static of(
    bank: LoraBank | undefined,
    parts: readonly { module?: LoraModule; start: number; count: number }[],
  ): LoraRows | undefined {
    if (!bank || parts.every((p) => !p.module || p.count === 0)) return undefined;
    const rows: number[] = [];
    for (const { module, start, count } of parts) {
      for (let i = 0; i < count; i++) rows[start + i] = module?.index ?? -1;
    }
    return new LoraRows(bank, Array.from(rows, (r) => r ?? -1));
  }

  /** Rows [start, start + count), counted from `start`. */
  slice(start: number, count: number): LoraRows | undefined {
    const rows = this.#rows.slice(start, start + count);
    return rows.some((r) => r >= 0) ? new LoraRows(this.#bank, rows) : undefined;
  }

  /**
   * The shrink of the product of the weights `key` names for a kernel that makes its input (rmsNormShrink), in a
   * decode step whose rows have updates of it; undefined otherwise. Give it to `product`.
   */
  shrinkOf(rec: Recorder, key: string, input: FloatType): Shrink | undefined {
    const product = this.#bank.products.get(key);
    const slots = this.#rows.map((r) => r < 0 ? undefined : product?.slots[r]);
    if (!product || slots.every((s) => !s) || slots.length > MATVEC_MAX_ROWS || input !== product.a.dtype) {
      return undefined;
    }
    return { a: product.a, t: this.#shrunk(rec).sliceRows(0, slots.length), slots };
  }

  /**
   * Records a product of the weights `key` names (`record`, given the update it is to add) with the rows'
   * updates: t = x · Aᵀ first (each row against its adapter's A; done already with `shrunk`, from shrinkOf),
   * then the product, which adds t · Bᵀ.
   */
  product(rec: Recorder, key: string, x: Tensor, record: (lora?: LoraUpdate) => void, shrunk?: Shrink): void {
    const product = this.#bank.products.get(key);
    const slots = this.#rows.map((r) => r < 0 ? undefined : product?.slots[r]);
    if (!product || slots.every((s) => !s)) return record();
    const t = shrunk?.t ?? this.#shrink(rec, x, product.a, slots);
    record({ t, b: product.b, slots, members: product.members });
  }

  /** t = x · Aᵀ, each row against its adapter's rows of A: one dispatch for a decode step, else one per run. */
  #shrink(rec: Recorder, x: Tensor, a: Tensor, slots: readonly (LoraSlot | undefined)[]): Tensor {
    const t = this.#shrunk(rec).sliceRows(0, x.rows);
    if (x.rows <= MATVEC_MAX_ROWS && x.dtype === a.dtype) {
      loraShrink(rec, { t, x, a, slots });
      return t;
    }
    for (const run of loraRuns(slots)) {
      linear(rec, {
        y: t.sliceRows(run.start, run.count).sliceCols(0, run.slot.rank),
        x: x.sliceRows(run.start, run.count),
        w: a.sliceRows(run.slot.offset, run.slot.rank),
      });
    }
    return t;
  }

  #shrunk(rec: Recorder): Tensor {
    if (this.#scratch?.rec !== rec) {
      this.#scratch = { rec, t: rec.scratch(this.#bank.dtype, [this.#rows.length, this.#bank.maxRank]) };
    }
    return this.#scratch.t;
  }
}
