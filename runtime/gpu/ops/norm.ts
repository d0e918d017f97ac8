/**
 * RMSNorm (also with LoRA's shrink of the normalized rows) and DoRA's row rescaling (kernels/norm.wgsl), and their
 * CPU references.
 */
import { type FloatType, roundTo } from "../dtype.ts";
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";
import { floatType, sameShape } from "./common.ts";
import { type LoraSlot, loraTable, MATVEC_MAX_ROWS } from "./linear.ts";

export interface RmsNormArgs {
  /** Output [rows, dim], f32 or f16. */
  y: Tensor;
  /** Input [rows, dim], f32 or f16. */
  x: Tensor;
  /** f32 [dim]. */
  weight: Tensor;
  /** 1e-5 for every Pixtral norm. */
  eps: number;
}

export function rmsNorm(rec: Recorder, { y, x, weight, eps }: RmsNormArgs): void {
  const X = floatType(x, "rmsNorm: x"), Y = floatType(y, "rmsNorm: y");
  sameShape(x, y, "rmsNorm");
  if (weight.dtype !== "f32" || weight.size !== x.rowLength) {
    throw new RangeError(`rmsNorm: weight must be f32 [${x.rowLength}], got ${weight}`);
  }
  rowKernel(rec, "rms_norm", { X, Y }, x, weight, y, eps);
}

/**
 * rmsNorm, and LoRA's shrink of its output in the same dispatch: t[m, j] = y[m] · A[slots[m].offset + j] for
 * j < slots[m].rank (as loraShrink computes it from y), for at most 8 rows; A and t in y's type.
 */
export function rmsNormShrink(
  rec: Recorder,
  args: RmsNormArgs & { a: Tensor; t: Tensor; slots: readonly (LoraSlot | undefined)[] },
): void {
  const { y, x, weight, eps, a, t, slots } = args;
  const X = floatType(x, "rmsNormShrink: x"), Y = floatType(y, "rmsNormShrink: y");
  sameShape(x, y, "rmsNormShrink");
  if (weight.dtype !== "f32" || weight.size !== x.rowLength) {
    throw new RangeError(`rmsNormShrink: weight must be f32 [${x.rowLength}], got ${weight}`);
  }
  if (a.dtype !== Y || t.dtype !== Y || a.rowLength !== x.rowLength || x.rows > MATVEC_MAX_ROWS) {
    throw new RangeError(
      `rmsNormShrink: A ${a} and t ${t} must be in y's type, A [*, ${x.rowLength}], rows <= 8`,
    );
  }
  if (slots.length !== x.rows || t.rows !== x.rows || slots.some((s) => s && s.rank > t.rowLength)) {
    throw new RangeError(
      `rmsNormShrink: ${slots.length} slots and t ${t} (as wide as the ranks) for ${x.rows} rows`,
    );
  }
  rowKernel(rec, "rms_norm_shrink", { X, Y }, x, weight, y, eps, { a, t, slots });
}

/** y = x with each row rescaled to the length norms[row] (DoRA's merge; f32, at load), x and y [rows, dim]. */
export function rowNormScale(rec: Recorder, { y, x, norms }: { y: Tensor; x: Tensor; norms: Tensor }): void {
  if (x.dtype !== "f32" || y.dtype !== "f32") throw new TypeError(`rowNormScale: x and y must be f32`);
  sameShape(x, y, "rowNormScale");
  if (norms.dtype !== "f32" || norms.size !== x.rows) {
    throw new RangeError(`rowNormScale: norms must be f32 [${x.rows}], got ${norms}`);
  }
  rowKernel(rec, "row_norm_scale", { X: "f32", Y: "f32" }, x, norms, y, 0);
}

/** One workgroup per row of x into y, with an f32 vector beside (per column for rms_norm, per row otherwise). */
function rowKernel(
  rec: Recorder,
  entry: string,
  aliases: { X: FloatType; Y: FloatType },
  x: Tensor,
  weight: Tensor,
  y: Tensor,
  eps: number,
  lora?: { a: Tensor; t: Tensor; slots: readonly (LoraSlot | undefined)[] },
): void {
  const bindings = lora
    ? ["read", "read", "write", "read", "write"] as const
    : ["read", "read", "write"] as const;
  const kernel = rec.ctx.kernel({ file: "norm.wgsl", entry, aliases, bindings });
  const [xb, wb, yb] = [rec.bind(x), rec.bind(weight), rec.bind(y)];
  const [ab, tb] = lora ? [rec.bind(lora.a), rec.bind(lora.t)] : [];
  // With the shrink: workgroup (0, row) normalizes the row, (1 + j, row) makes t[row, j].
  const rank = Math.max(0, ...lora?.slots.map((s) => s?.rank ?? 0) ?? []);
  rec.dispatch(
    kernel,
    ab && tb ? [xb, wb, yb, ab, tb] : [xb, wb, yb],
    new Params().u32(x.rows, x.rowLength).f32(eps).u32(
      xb.offset,
      x.rowStride,
      yb.offset,
      y.rowStride,
      wb.offset,
      ...ab && tb ? [ab.offset, tb.offset, lora!.t.rowStride, 0, ...loraTable(lora!.slots)] : [],
    ),
    lora ? [1 + rank, x.rows, 1] : x.rows,
  );
}

/** CPU reference of rowNormScale, in f64. */
export function rowNormScaleRef(
  x: Float32Array,
  norms: Float32Array,
  rows: number,
  dim: number,
): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * dim, (r + 1) * dim);
    const scale = norms[r] / Math.sqrt(row.reduce((s, v) => s + v * v, 0));
    for (let i = 0; i < dim; i++) y[r * dim + i] = row[i] * scale;
  }
  return y;
}

/** CPU reference: f64 mean of squares, normalised value rounded to the activation type, times the weight. */
export function rmsNormRef(
  x: Float32Array,
  weight: Float32Array,
  rows: number,
  dim: number,
  eps: number,
  xType: "f32" | "f16" = "f32",
): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let r = 0; r < rows; r++) {
    const row = x.subarray(r * dim, (r + 1) * dim);
    const scale = 1 / Math.sqrt(row.reduce((s, v) => s + v * v, 0) / dim + eps);
    const normed = roundTo(xType, row.map((v) => v * scale));
    for (let i = 0; i < dim; i++) y[r * dim + i] = normed[i] * weight[i];
  }
  return y;
}
