/**
 * Linear layers y = x · Wᵀ (+ bias) (+ y): the matrix-vector kernel for decoding (M <= 8 rows,
 * kernels/matvec.wgsl) and the tiled matrix-matrix kernel for prefill (kernels/matmul.wgsl). Weights larger than
 * one binding are processed in row windows.
 */
import type { DType } from "../dtype.ts";
import { Params, type Recorder } from "../recorder.ts";
import { joinRows, type Tensor } from "../tensor.ts";
import { rowWindows } from "../windows.ts";
import { swiglu } from "./activation.ts";
import { FORMAT_ID } from "./quantize.ts";

/** Weight dtypes the linear kernels read. */
export type WeightType =
  | "f32"
  | "f16"
  | "q8_0"
  | "q3_k"
  | "q4_k"
  | "q5_k"
  | "q6_k"
  | "iq4_nl"
  | "iq4_xs"
  | "q4";

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
  else matmul(rec, args);
}

/**
 * y = x · [W₀; W₁; ...]ᵀ: y's columns are the products with each weight in turn (q|k|v, w1|w3). One product when the
 * weights are consecutive rows of one matrix, as the loader stores them; one per weight otherwise.
 */
export function linearStacked(rec: Recorder, args: { y: Tensor; x: Tensor; w: readonly Tensor[] }): void {
  const { y, x, w } = args;
  const joined = joinRows(w);
  if (joined) return linear(rec, { y, x, w: joined });
  let at = 0;
  for (const part of w) {
    linear(rec, { y: y.sliceCols(at, part.shape[0]), x, w: part });
    at += part.shape[0];
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
  args: { y: Tensor; x: Tensor; w: readonly [Tensor, Tensor]; gateUp: () => Tensor },
): void {
  const { y, x, w } = args;
  const joined = joinRows(w);
  if (
    joined && x.rows <= MATVEC_MAX_ROWS &&
    rowWindows(rec.ctx.bindingLimits, joined.shape[0], [joined.rowByteStride]).length === 1
  ) {
    return matvecKernel(rec, { y, x, w: joined }, true);
  }
  const n = w[0].shape[0], gateUp = args.gateUp();
  linearStacked(rec, { y: gateUp, x, w });
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
  matvecKernel(rec, args, false);
}

/** `glu`: w is w1|w3, bound in one window (linearSwiglu checks), and y = silu(gate) ⊙ up. */
function matvecKernel(rec: Recorder, args: LinearArgs, glu: boolean): void {
  const { m, n, k, w } = check(args, glu);
  if (m > MATVEC_MAX_ROWS) throw new RangeError(`matvec takes at most ${MATVEC_MAX_ROWS} rows, got ${m}`);
  if (m === 0 || n === 0) return;
  const { x } = args;
  const xb = rec.bind(x);
  // The 32-column path reads x as vec4s and f32/f16/q4 weights as aligned vec4s.
  const wide = k % 32 === 0 && xb.offset % 4 === 0 && (m === 1 || x.rowStride % 4 === 0) &&
    args.w.offset % 16 === 0;
  const tpr = threadsPerRow(Math.ceil(k / (wide ? 32 : 8)));
  const kernel = rec.ctx.kernel({
    file: "matvec.wgsl",
    entry: `matvec_${w}`,
    aliases: { X: args.x.dtype as "f32", Y: args.y.dtype as "f32" },
    constants: { M: 2 ** Math.ceil(Math.log2(m)), WIDE: wide ? 1 : 0, GLU: glu ? 1 : 0 },
    bindings: ["read", "read", "read", "write", "read", "read"],
  });
  // With GLU a workgroup computes half as many outputs.
  const outputsPerGroup = 256 / tpr / (glu ? 2 : 1);
  dispatchWindows(rec, args, kernel, (win, wb, xb, bb, yb) => [
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
    ),
    Math.ceil((glu ? n : win.count) / outputsPerGroup),
  ]);
}

export function matmul(rec: Recorder, args: LinearArgs): void {
  const { m, n, k, w } = check(args);
  if (m === 0 || n === 0) return;
  const tile = 64; // kernels/matmul.wgsl TILE
  const kernel = rec.ctx.kernel({
    file: "matmul.wgsl",
    entry: `matmul_${w}`,
    aliases: { X: args.x.dtype as "f32", Y: args.y.dtype as "f32" },
    bindings: ["read", "read", "read", "write"],
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
  });
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
    rec.dispatch(kernel, kernel.bindings.length > 4 ? [...bound, wb, xb] : bound, params, groups);
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
