/**
 * Linear layers y = x · Wᵀ (+ bias) (+ y): the matrix-vector kernel for decoding (M <= 8 rows,
 * kernels/matvec.wgsl) and the tiled matrix-matrix kernel for prefill (kernels/matmul.wgsl). Weights larger than
 * one binding are processed in row windows.
 */
import { type BlockFormat, type DType, elementBytes } from "../dtype.ts";
import { Params, type Recorder } from "../recorder.ts";
import { joinRows, Tensor } from "../tensor.ts";
import { rowWindows } from "../windows.ts";
import { swiglu } from "./activation.ts";
import { gridBinding } from "./iq.ts";
import { FORMAT_ID } from "./quantize.ts";

/** Weight dtypes the linear kernels read. */
export type WeightType = "f32" | "f16" | BlockFormat;

export interface LinearArgs {
  /** Output [M, N], f32 or f16. */
  y: Tensor;
  /** Input [M, K], f32 or f16. */
  x: Tensor;
  /** Weight [N, K] (PyTorch's [out_features, in_features]). */
  w: Tensor;
  /** Optional f32 bias [N]. */
  bias?: Tensor;
  /** Add the product to y's current contents (a fused residual add). */
  accumulate?: boolean;
  /** A LoRA update to add (runtime/model/lora_modules.ts). */
  lora?: LoraUpdate;
}

/**
 * An adapter's place in a bank of LoRA updates of one product: its rows of A [offset, offset + rank), the first
 * element of its B, and its rank for each weight of the product (q, k, v; w1, w3), which sum to `rank`.
 */
export interface LoraSlot {
  offset: number;
  rank: number;
  b: number;
  ranks: readonly number[];
}

/**
 * LoRA updates of a product, one adapter (or none) per activation row: y[m] += t[m] · B_mᵀ, where t = x · Aᵀ was
 * computed before ([rows, ≥ rank]: row m's update in its first slots[m].rank columns, weight by weight) and B_m
 * (scale applied) is its adapter's, at element slots[m].b of `b` (every adapter's B one after the other): for
 * each weight of the product, [its rows, its rank], so that an output of weight i takes t's columns of weight i
 * only. The matrix-vector kernel adds it in its epilogue when t and B are in x's type; otherwise products of
 * their own per run of rows follow.
 */
export interface LoraUpdate {
  t: Tensor;
  b: Tensor;
  slots: readonly (LoraSlot | undefined)[];
  /** The rows of each weight of the product (at most 3). */
  members: readonly number[];
  /** The first row of the product's outputs that y begins at (a part of stacked weights); default 0. */
  row0?: number;
}

/** The largest M the matrix-vector kernel takes; beyond it linear() uses the tiled kernel. */
export const MATVEC_MAX_ROWS = 8;

function isWeightType(dtype: DType): dtype is WeightType {
  return dtype in FORMAT_ID;
}

/** Shapes and types of a product; `glu`: w is w1|w3 [2N, K] and y [M, N]. */
function check(args: LinearArgs, glu = false): { m: number; n: number; k: number; w: WeightType } {
  const { y, x, w, bias } = args;
  if (!isWeightType(w.dtype)) throw new TypeError(`linear: weights in ${w.dtype} are not supported`);
  if (w.shape.length !== 2) throw new RangeError(`linear: weights must be [N, K], got ${w}`);
  const n = glu ? w.shape[0] / 2 : w.shape[0], k = w.shape[1];
  if (!Number.isInteger(n)) throw new RangeError(`linear: w1|w3 ${w} has an odd number of rows`);
  if (glu && (bias || args.accumulate)) throw new RangeError("linear: no bias or accumulation with SwiGLU");
  for (const [name, t] of [["x", x], ["y", y]] as const) {
    if (t.dtype !== "f32" && t.dtype !== "f16") {
      throw new TypeError(`linear: ${name} must be f32 or f16, got ${t}`);
    }
  }
  if (x.rowLength !== k) {
    throw new RangeError(`linear: x ${x} does not have K = ${k} columns for weights ${w}`);
  }
  if (y.rows !== x.rows || y.rowLength !== n) {
    throw new RangeError(`linear: y ${y} is not [${x.rows}, ${n}] for x ${x} and weights ${w}`);
  }
  if (bias && (bias.dtype !== "f32" || bias.size !== n)) {
    throw new RangeError(`linear: bias must be f32 [${n}]`);
  }
  return { m: x.rows, n, k, w: w.dtype };
}

/** y = x · Wᵀ: the matrix-vector kernel for M <= 8, the tiled kernel above. */
export function linear(rec: Recorder, args: LinearArgs): void {
  if (args.x.rows <= MATVEC_MAX_ROWS) matvec(rec, args);
  else {
    matmul(rec, args);
    if (args.lora) addLora(rec, args.y, args.lora);
  }
}

/** y += t · Bᵀ as products of their own, one per run of rows of one adapter and weight of the product. */
export function addLora(rec: Recorder, y: Tensor, { t, b, slots, members, row0 = 0 }: LoraUpdate): void {
  const n = y.rowLength, element = elementBytes(b.dtype as "f32");
  for (const { start, count, slot } of loraRuns(slots)) {
    let first = 0, col = 0, base = slot.b;
    members.forEach((rows, i) => {
      const r = slot.ranks[i], lo = Math.max(first, row0), hi = Math.min(first + rows, row0 + n);
      if (r > 0 && lo < hi) {
        linear(rec, {
          y: y.sliceRows(start, count).sliceCols(lo - row0, hi - lo),
          x: t.sliceRows(start, count).sliceCols(col, r),
          w: new Tensor(b.buffer, b.dtype, [hi - lo, r], b.offset + (base + (lo - first) * r) * element),
          accumulate: true,
        });
      }
      first += rows;
      col += r;
      base += rows * r;
    });
  }
}

/** Consecutive rows of one adapter. */
export function loraRuns(
  slots: readonly (LoraSlot | undefined)[],
): { start: number; count: number; slot: LoraSlot }[] {
  const out: { start: number; count: number; slot: LoraSlot }[] = [];
  slots.forEach((slot, i) => {
    if (!slot) return;
    const last = out.at(-1);
    const same = last && last.slot.offset === slot.offset && last.slot.b === slot.b;
    if (same && last.start + last.count === i) last.count++;
    else out.push({ start: i, count: 1, slot });
  });
  return out;
}

/**
 * Each row's (A offset, rank, B's first element, ranks of the product's first two weights as 16-bit halves) as a
 * vec4: the shrinks' and the epilogue's table.
 */
export function loraTable(slots: readonly (LoraSlot | undefined)[]): number[] {
  return Array.from({ length: MATVEC_MAX_ROWS }, (_, i) => {
    const slot = slots[i];
    return slot
      ? [slot.offset, slot.rank, slot.b, slot.ranks[0] | ((slot.ranks[1] ?? 0) << 16)]
      : [0, 0, 0, 0];
  }).flat();
}

/** Where the product's second and third weights begin among its rows (none: 2³² - 1). */
function memberBounds(members: readonly number[]): [number, number] {
  if (members.length > 3) throw new RangeError(`linear: a LoRA update of ${members.length} stacked weights`);
  const none = 0xffffffff;
  return [members.length > 1 ? members[0] : none, members.length > 2 ? members[0] + members[1] : none];
}

/** Whether the matrix-vector kernel can add these updates in its epilogue (B bound whole, in x's type). */
function fusable(rec: Recorder, x: Tensor, lora: LoraUpdate | undefined): lora is LoraUpdate {
  return lora !== undefined && lora.t.dtype === x.dtype && lora.b.dtype === x.dtype &&
    lora.slots.length <= MATVEC_MAX_ROWS &&
    lora.b.byteLength <= rec.ctx.bindingLimits.maxStorageBufferBindingSize;
}

/**
 * y = x · [W₀; W₁; ...]ᵀ: y's columns are the products with each weight in turn (q|k|v, w1|w3). One product for
 * each run of weights that are consecutive rows of one matrix, as the loader stores those of one type (all of
 * them, or q|k when v has another type); one per weight otherwise.
 */
export function linearStacked(
  rec: Recorder,
  args: { y: Tensor; x: Tensor; w: readonly Tensor[]; lora?: LoraUpdate },
): void {
  const { y, x, w, lora } = args;
  let at = 0;
  for (let first = 0; first < w.length;) {
    let last = first + 1;
    while (last < w.length && joinRows(w.slice(first, last + 1))) last++;
    const part = last - first === 1 ? w[first] : joinRows(w.slice(first, last))!;
    const n = part.shape[0];
    linear(rec, {
      y: w.length === last - first ? y : y.sliceCols(at, n),
      x,
      w: part,
      lora: lora && at ? { ...lora, row0: (lora.row0 ?? 0) + at } : lora,
    });
    at += n;
    first = last;
  }
  if (at !== y.rowLength) throw new RangeError(`linearStacked: y ${y} does not have ${at} columns`);
}

/**
 * y = silu(x · W₁ᵀ) ⊙ (x · W₃ᵀ), the input side of SwiGLU. When w1 and w3 are consecutive rows of one matrix (as
 * the loader stores them) and x has at most 8 rows, one matrix-vector product applies the activation as each
 * output's gate and up rows finish; otherwise both products go into `gateUp()` ([M, 2N], asked for only then)
 * and the swiglu kernel follows. Either way the result is the same, bit for bit.
 */
export function linearSwiglu(
  rec: Recorder,
  args: { y: Tensor; x: Tensor; w: readonly [Tensor, Tensor]; gateUp: () => Tensor; lora?: LoraUpdate },
): void {
  const { y, x, w, lora } = args;
  const joined = joinRows(w);
  if (
    joined && x.rows <= MATVEC_MAX_ROWS && (!lora || fusable(rec, x, lora)) &&
    rowWindows(rec.ctx.bindingLimits, joined.shape[0], [joined.rowByteStride]).length === 1
  ) {
    return matvecKernel(rec, { y, x, w: joined, lora }, true);
  }
  const n = w[0].shape[0], gateUp = args.gateUp();
  linearStacked(rec, { y: gateUp, x, w, lora });
  swiglu(rec, { y, gate: gateUp.sliceCols(0, n), up: gateUp.sliceCols(n, n) });
}

/** Threads per output row: a power of two giving each about 4 steps over K, at most 64. */
function threadsPerRow(steps: number): number {
  let tpr = 1;
  while (tpr < 64 && tpr * 8 <= steps) tpr *= 2;
  return tpr;
}

/** The matrix-vector kernel (M <= 8). */
export function matvec(rec: Recorder, args: LinearArgs): void {
  if (!args.lora || fusable(rec, args.x, args.lora)) return matvecKernel(rec, args, false);
  matvecKernel(rec, { ...args, lora: undefined }, false);
  addLora(rec, args.y, args.lora);
}

/** `glu`: w is w1|w3, bound in one window (linearSwiglu checks), and y = silu(gate) ⊙ up. */
function matvecKernel(rec: Recorder, args: LinearArgs, glu: boolean): void {
  const { m, n, k, w } = check(args, glu);
  if (m > MATVEC_MAX_ROWS) throw new RangeError(`matvec takes at most ${MATVEC_MAX_ROWS} rows, got ${m}`);
  if (m === 0 || n === 0) return;
  const { x, lora } = args;
  const xb = rec.bind(x);
  // The 32-column path reads x as vec4s and f32/f16/q4 weights as aligned vec4s.
  const wide = k % 32 === 0 && xb.offset % 4 === 0 && (m === 1 || x.rowStride % 4 === 0) &&
    args.w.offset % 16 === 0;
  const tpr = threadsPerRow(Math.ceil(k / (wide ? 32 : 8)));
  const grid = gridBinding(rec, w);
  const kernel = rec.ctx.kernel({
    file: "matvec.wgsl",
    entry: `matvec_${w}`,
    aliases: { X: args.x.dtype as "f32", Y: args.y.dtype as "f32" },
    constants: { M: 2 ** Math.ceil(Math.log2(m)), WIDE: wide ? 1 : 0, GLU: glu ? 1 : 0, LORA: lora ? 1 : 0 },
    defines: grid.defines,
    // An i-quant's grid takes w4's place (binding 5): its kernels never read w4.
    bindings: ["read", "read", "read", "write", "read", "read", "read", "read"],
  });
  // With GLU a workgroup computes half as many outputs.
  const outputsPerGroup = 256 / tpr / (glu ? 2 : 1);
  const tb = lora && rec.bind(lora.t), lb = lora && rec.bind(lora.b);
  if (lora && lora.slots.length !== m) {
    throw new RangeError(`linear: LoRA slots for ${lora.slots.length} rows, not ${m}`);
  }
  const table = lora ? loraTable(lora.slots) : [];
  dispatchWindows(
    rec,
    args,
    kernel,
    (win, wb, xb, bb, yb) => [
      new Params().u32(
        glu ? n : win.count,
        k,
        m,
        tpr,
        xb.offset,
        args.x.rowStride,
        yb.offset + win.start,
        args.y.rowStride,
        wb.byteOffset,
        args.w.rowByteStride,
        bb.offset + win.start,
        args.bias ? 1 : 0,
        args.accumulate ? 1 : 0,
        // The LoRA fields only where the kernel reads them (each dispatch has a whole parameter slot).
        ...tb && lb
          ? [
            tb.offset,
            lora!.t.rowStride,
            lb.offset,
            (lora!.row0 ?? 0) + win.start,
            ...memberBounds(lora!.members),
            0,
            ...table,
          ]
          : [],
      ),
      Math.ceil((glu ? n : win.count) / outputsPerGroup),
    ],
    grid.bound[0],
    { lora: tb && lb && [tb, lb] },
  );
}

export function matmul(rec: Recorder, args: LinearArgs): void {
  const { m, n, k, w } = check(args);
  if (m === 0 || n === 0) return;
  const tile = 64; // kernels/matmul.wgsl TILE
  const grid = gridBinding(rec, w);
  const kernel = rec.ctx.kernel({
    file: "matmul.wgsl",
    entry: `matmul_${w}`,
    aliases: { X: args.x.dtype as "f32", Y: args.y.dtype as "f32" },
    defines: grid.defines,
    bindings: ["read", "read", "read", "write", ...grid.kinds],
  });
  dispatchWindows(rec, args, kernel, (win, wb, xb, bb, yb) => {
    const tilesN = Math.ceil(win.count / tile);
    return [
      new Params().u32(
        m,
        win.count,
        k,
        xb.offset,
        args.x.rowStride,
        yb.offset + win.start,
        args.y.rowStride,
        wb.byteOffset,
        args.w.rowByteStride,
        bb.offset + win.start,
        args.bias ? 1 : 0,
        args.accumulate ? 1 : 0,
        tilesN,
      ),
      tilesN * Math.ceil(m / tile),
    ];
  }, grid.bound[0]);
}

type Bound = ReturnType<Recorder["bind"]>;

function dispatchWindows(
  rec: Recorder,
  args: LinearArgs,
  kernel: ReturnType<Recorder["ctx"]["kernel"]>,
  make: (
    win: { start: number; count: number },
    wb: Bound,
    xb: Bound,
    bb: Bound,
    yb: Bound,
  ) => [Params, number],
  /** An i-quant's grid table (gridBinding). */
  grid?: Bound,
  /** The matrix-vector kernel's bindings: w and x again as vec4s, and a LoRA update's t and B. */
  vectors?: { lora?: [Bound, Bound] },
): void {
  const { x, y, w, bias } = args;
  const xb = rec.bind(x);
  const yb = rec.bind(y);
  const bb = bias ? rec.bind(bias) : xb;
  const row = w.rowByteStride;
  for (const win of rowWindows(rec.ctx.bindingLimits, w.shape[0], [row])) {
    const wb = rec.bind(w, win.start * row, (win.start + win.count) * row);
    const [params, groups] = make(win, wb, xb, bb, yb);
    const bound = [wb, xb, bias ? bb : xb, yb];
    // The matrix-vector kernel's extra bindings (an i-quant's grid as w4, x unread where there is no update);
    // the tiled kernel takes an i-quant's grid last.
    const extra = vectors ? [grid ?? wb, xb, ...vectors.lora ?? [xb, xb]] : grid ? [grid] : [];
    rec.dispatch(kernel, [...bound, ...extra], params, groups);
  }
}

/** CPU reference: y = x · Wᵀ (+ bias) (+ y0), in f64, from already decoded weights [N, K]. */
export function linearRef(
  x: Float32Array,
  w: Float32Array,
  m: number,
  n: number,
  k: number,
  bias?: Float32Array,
  y0?: Float32Array,
): Float64Array {
  const y = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += x[i * k + c] * w[j * k + c];
      y[i * n + j] = s + (bias ? bias[j] : 0) + (y0 ? y0[i * n + j] : 0);
    }
  }
  return y;
}
