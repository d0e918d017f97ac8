/**
 * Rotary position embeddings (kernels/rope.wgsl), in place on q and k in the native interleaved layout:
 * 1D for the decoder (spec §3.2; Hugging Face q/k rows are permuted into this layout by the weight loader, GGUF
 * is already native) and 2D for the vision encoder (spec §2.5). And their CPU references.
 */
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";
import { count, floatType, indexTensor, type Indices, WG } from "./common.ts";

/**
 * Base frequencies f_i = 1 / θ^(2i/D), i < D/2, in f32 as the reference computes them
 * (`1.0 / (theta ** (arange(0, D, 2).float() / D))`).
 */
export function ropeFrequencies(theta: number, headDim: number): Float32Array<ArrayBuffer> {
  const f = Math.fround;
  return Float32Array.from(
    { length: headDim / 2 },
    (_, i) => f(1 / f(Math.pow(theta, f((2 * i) / headDim)))),
  );
}

/** The 2D table: row frequencies f_0, f_2, ... then column frequencies f_1, f_3, ... */
export function rope2dFrequencies(theta: number, headDim: number): Float32Array<ArrayBuffer> {
  const base = ropeFrequencies(theta, headDim);
  return Float32Array.from([...base.filter((_, i) => i % 2 === 0), ...base.filter((_, i) => i % 2 === 1)]);
}

/** The frequency table on the GPU, made once per context. */
export function frequencyTable(rec: Recorder, theta: number, headDim: number, twoD = false): Tensor {
  return rec.ctx.constant(
    `rope:${twoD ? "2d" : "1d"}:${theta}:${headDim}`,
    () =>
      rec.ctx.fromFloats("f32", [headDim / 2], (twoD ? rope2dFrequencies : ropeFrequencies)(theta, headDim), {
        pooled: false,
        label: "rope frequencies",
      }),
  );
}

export interface RopeArgs {
  /** [tokens, heads * headDim] (a view: e.g. the q and k columns of a fused q|k|v projection). */
  x: Tensor;
  headDim: number;
  theta: number;
  /** rope: one absolute position per token. rope2d: (row, column) per token, flattened. */
  positions: Indices;
}

function dispatch(rec: Recorder, { x, headDim, theta, positions }: RopeArgs, twoD: boolean): void {
  const X = floatType(x, "rope: x");
  if (headDim % (twoD ? 4 : 2) !== 0 || x.rowLength % headDim !== 0) {
    throw new RangeError(`rope: rows of ${x.rowLength} are not whole heads of an even size ${headDim}`);
  }
  const perToken = twoD ? 2 : 1;
  if (count(positions) !== x.rows * perToken) {
    throw new RangeError(
      `rope: ${x.rows} tokens need ${x.rows * perToken} positions, got ${count(positions)}`,
    );
  }
  const freqs = frequencyTable(rec, theta, headDim, twoD);
  const pos = indexTensor(rec, positions, "rope positions");
  const kernel = rec.ctx.kernel({
    file: "rope.wgsl",
    entry: twoD ? "rope_2d" : "rope",
    aliases: { X },
    bindings: ["read", "read", "write"],
  });
  const [fb, pb, xb] = [rec.bind(freqs), rec.bind(pos), rec.bind(x)];
  const heads = x.rowLength / headDim;
  rec.dispatch(
    kernel,
    [fb, pb, xb],
    new Params().u32(x.rows, heads, headDim, xb.offset, x.rowStride, pb.offset),
    Math.ceil(x.rows * heads * headDim / 2 / WG),
  );
}

/** Decoder RoPE: rotates pairs (x[2i], x[2i+1]) of every head by pos · f_i. */
export function rope(rec: Recorder, args: RopeArgs): void {
  dispatch(rec, args, false);
}

/** Vision 2D RoPE: the first D/4 pairs by row · f_{2k}, the rest by column · f_{2k+1}. */
export function rope2d(rec: Recorder, args: RopeArgs): void {
  dispatch(rec, args, true);
}

/**
 * CPU reference on [tokens, heads, headDim] values: angle φ = fround(position · freq) (the f32 product the
 * reference computes), rotation in f64.
 */
export function ropeRef(
  x: Float32Array,
  tokens: number,
  headDim: number,
  theta: number,
  positions: ArrayLike<number>,
  twoD = false,
): Float64Array {
  const freqs = twoD ? rope2dFrequencies(theta, headDim) : ropeFrequencies(theta, headDim);
  const out = Float64Array.from(x);
  const rowLength = x.length / tokens;
  const half = headDim / 4;
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < rowLength / headDim; h++) {
      for (let i = 0; i < headDim / 2; i++) {
        const pos = twoD ? positions[2 * t + (i < half ? 0 : 1)] : positions[t];
        const phi = Math.fround(pos * freqs[i]);
        const e = t * rowLength + h * headDim + 2 * i;
        const [a, b] = [x[e], x[e + 1]];
        out[e] = a * Math.cos(phi) - b * Math.sin(phi);
        out[e + 1] = a * Math.sin(phi) + b * Math.cos(phi);
      }
    }
  }
  return out;
}
