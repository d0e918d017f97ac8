/**
 * Load-time weight conversion (kernels/quantize.wgsl): quantize f32/f16/bf16 weights into Q8_0, our Q4, or the
 * k-quants Q4_K, Q5_K and Q6_K,
 * convert between float types, dequantize any weight format; and the CPU codecs that are their reference,
 * written from the GGUF block definitions (ggml-common.h, ggml-quants.c).
 */
import { type BlockFormat, type DType, GGUF_BLOCKS, isBlockFormat, Q4_GROUP, rowBytes } from "../dtype.ts";
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";
import { rowWindows } from "../windows.ts";
import { decodeIqBlock, gridBinding, isIq } from "./iq.ts";

const WG = 256;
/** Threads a workgroup of the k-quants' quantizers (quantize.wgsl K_WG). */
const K_WG = 64;
/** IQ4's 16 levels (ggml's kvalues_iq4nl; lib/weights.wgsl IQ4_LEVELS). */
const IQ4_LEVELS = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** Kernel constants naming a weight format (lib/weights.wgsl) or a float source (quantize.wgsl). */
export const FORMAT_ID: Record<"f32" | "f16" | BlockFormat, number> = {
  f32: 0,
  f16: 1,
  q8_0: 2,
  q4_k: 3,
  q6_k: 4,
  q4: 5,
  iq4_nl: 6,
  iq4_xs: 7,
  q5_k: 8,
  q3_k: 9,
  q2_k: 10,
  iq2_xxs: 11,
  iq2_xs: 12,
  iq2_s: 13,
  iq3_xxs: 14,
  iq3_s: 15,
  iq1_s: 16,
  iq1_m: 17,
  q4_0: 18,
  q4_1: 19,
  q5_0: 20,
  q5_1: 21,
};
const SOURCE_ID = { f32: 0, f16: 1, bf16: 100 } as const;

function floatSource(src: Tensor): 0 | 1 | 100 {
  if (src.dtype !== "f32" && src.dtype !== "f16" && src.dtype !== "bf16") {
    throw new TypeError(`expected f32, f16 or bf16 weights, got ${src}`);
  }
  if (!src.contiguous) throw new RangeError(`${src} must be contiguous`);
  return SOURCE_ID[src.dtype];
}

function sameMatrix(dst: Tensor, src: Tensor, op: string): [number, number] {
  const [rows, k] = [src.rows, src.rowLength];
  if (dst.rows !== rows || dst.rowLength !== k) throw new RangeError(`${op}: ${dst} does not match ${src}`);
  return [rows, k];
}

/** The block formats quantize-on-load produces. */
export type QuantizedType = "q8_0" | "q4" | "q4_k" | "q5_k" | "q6_k";
const QUANTIZED: readonly string[] = ["q8_0", "q4", "q4_k", "q5_k", "q6_k"] satisfies QuantizedType[];

/** dst (q8_0, q4, q4_k, q5_k or q6_k, [N, K]) = quantize(src), src f32, f16 or bf16 [N, K]. */
export function quantize(rec: Recorder, dst: Tensor, src: Tensor): void {
  const source = floatSource(src);
  const [rows, k] = sameMatrix(dst, src, "quantize");
  if (!QUANTIZED.includes(dst.dtype)) {
    throw new TypeError(`quantize: on-load quantization produces ${QUANTIZED.join(", ")}, not ${dst.dtype}`);
  }
  const dstRow = rowBytes(dst.dtype, k);
  const srcRow = src.rowByteStride;
  if (dst.offset % 4) {
    throw new RangeError(
      `quantize: ${dst} starts at byte ${dst.offset}, not on a word, which the kernels write whole: quantize from ` +
        `an even row`,
    );
  }
  // Q8_0 and Q6_K threads write pairs of blocks (whole words): windows start on an even block.
  const perPair = dst.dtype === "q8_0" ? 32 : dst.dtype === "q6_k" ? 256 : 0;
  const multiple = perPair && (k / perPair) % 2 === 1 ? 2 : 1;
  const kernel = rec.ctx.kernel({
    file: "quantize.wgsl",
    entry: `quantize_${dst.dtype}`,
    aliases: { Y: "f32" },
    constants: { SRC: source },
    bindings: ["read", "write"],
  });
  for (const win of rowWindows(rec.ctx.bindingLimits, rows, [srcRow, dstRow], multiple)) {
    const s = rec.bind(src, win.start * srcRow, (win.start + win.count) * srcRow);
    const d = rec.bind(dst, win.start * dstRow, (win.start + win.count) * dstRow);
    // Q8_0 and Q6_K: a pair of blocks a thread; Q4: a pair of groups; Q4_K and Q5_K: a block. The k-quants'
    // threads search scales in a few hundred bytes of arrays each: fewer a workgroup.
    const units = perPair
      ? Math.ceil(win.count * k / perPair / 2)
      : dst.dtype === "q4"
      ? win.count * Math.ceil(k / 64)
      : win.count * k / 256;
    rec.dispatch(
      kernel,
      [s, d],
      new Params().u32(win.count, k, s.offset, d.byteOffset, dstRow),
      Math.ceil(units / (dst.dtype.endsWith("_k") ? K_WG : WG)),
    );
  }
}

/** dst (f16 or f32) = src (f32, f16 or bf16), rounding to nearest even. */
export function convert(rec: Recorder, dst: Tensor, src: Tensor): void {
  const source = floatSource(src);
  const [rows, k] = sameMatrix(dst, src, "convert");
  if ((dst.dtype !== "f16" && dst.dtype !== "f32") || !dst.contiguous) {
    throw new TypeError(`convert: the destination must be a contiguous f16 or f32 tensor, got ${dst}`);
  }
  if (dst.offset % 4) throw new RangeError("convert: the destination must start on a 4-byte boundary");
  const kernel = rec.ctx.kernel({
    file: "quantize.wgsl",
    entry: dst.dtype === "f16" ? "convert_to_f16" : "convert_to_f32",
    aliases: { Y: "f32" },
    constants: { SRC: source },
    bindings: ["read", "write"],
  });
  const perThread = dst.dtype === "f16" ? 2 : 1;
  const multiple = dst.dtype === "f16" && k % 2 ? 2 : 1;
  for (
    const win of rowWindows(rec.ctx.bindingLimits, rows, [src.rowByteStride, dst.rowByteStride], multiple)
  ) {
    const s = rec.bind(src, win.start * src.rowByteStride, (win.start + win.count) * src.rowByteStride);
    const d = rec.bind(dst, win.start * dst.rowByteStride, (win.start + win.count) * dst.rowByteStride);
    rec.dispatch(
      kernel,
      [s, d],
      new Params().u32(win.count, k, s.offset, d.byteOffset, 0),
      Math.ceil(Math.ceil(win.count * k / perThread) / WG),
    );
  }
}

/** dst (f32 or f16, [N, K]) = the weights of src in any weight format. */
export function dequantize(rec: Recorder, dst: Tensor, src: Tensor): void {
  const [rows, k] = sameMatrix(dst, src, "dequantize");
  if (src.dtype === "bf16" || src.dtype === "u32" || src.dtype === "i32") {
    throw new TypeError(`dequantize: ${src.dtype} is not a weight format (convert bf16 first)`);
  }
  if ((dst.dtype !== "f16" && dst.dtype !== "f32") || !dst.contiguous || !src.contiguous) {
    throw new TypeError(`dequantize: the destination must be a contiguous f16 or f32 tensor, got ${dst}`);
  }
  const grid = gridBinding(rec, src.dtype);
  const kernel = rec.ctx.kernel({
    file: "quantize.wgsl",
    entry: "dequantize",
    aliases: { Y: dst.dtype },
    constants: { SRC: FORMAT_ID[src.dtype] },
    defines: grid.defines,
    bindings: ["read", "write", ...grid.kinds],
  });
  const srcRow = src.rowByteStride;
  for (const win of rowWindows(rec.ctx.bindingLimits, rows, [srcRow, dst.rowByteStride])) {
    const s = rec.bind(src, win.start * srcRow, (win.start + win.count) * srcRow);
    const d = rec.bind(dst, win.start * dst.rowByteStride, (win.start + win.count) * dst.rowByteStride);
    rec.dispatch(
      kernel,
      [s, d, ...grid.bound],
      new Params().u32(win.count, k, s.byteOffset, d.offset, srcRow),
      Math.ceil(win.count * Math.ceil(k / 8) / WG),
    );
  }
}

// ---- CPU reference codecs ----

/** Q3_K's 6-bit scale of sub-block i (of 16) from its 12 packed bytes, less 32, as ggml unpacks them. */
function q3kScale(q: Uint8Array, i: number): number {
  const low = i < 8 ? q[i] & 0xf : q[i - 8] >> 4;
  const high = (q[8 + (i & 3)] >> (2 * (i >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

/** ggml's get_scale_min_k4 (Q4_K, Q5_K): the 6-bit scale and min of sub-block j from 12 packed bytes. */
function scaleMinK4(q: Uint8Array, j: number): [number, number] {
  if (j < 4) return [q[j] & 63, q[j + 4] & 63];
  return [(q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)];
}

function i8(byte: number): number {
  return byte >= 128 ? byte - 256 : byte;
}

/** The weights of `rows` rows of `k` values stored in `dtype`, decoded exactly as ggml's dequantize_row_*. */
export function dequantizeRef(dtype: DType, bytes: Uint8Array, rows: number, k: number): Float32Array {
  const out = new Float32Array(rows * k);
  const f = Math.fround;
  if (!isBlockFormat(dtype)) {
    const copy = bytes.slice(0, rows * rowBytes(dtype, k));
    if (dtype === "f32") return new Float32Array(copy.buffer);
    if (dtype === "f16") return Float32Array.from(new Float16Array(copy.buffer));
    if (dtype === "bf16") {
      const u16 = new Uint16Array(copy.buffer);
      return new Float32Array(Uint32Array.from(u16, (h) => h << 16).buffer);
    }
    throw new TypeError(`${dtype} is not a weight format`);
  }
  const stride = rowBytes(dtype, k);
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let r = 0; r < rows; r++) {
    const row = bytes.subarray(r * stride, (r + 1) * stride);
    const f16 = (at: number) => data.getFloat16(r * stride + at, true);
    const y = out.subarray(r * k, (r + 1) * k);
    if (dtype === "q4") {
      for (let j = 0; j < k; j++) {
        const code = (row[j >> 1] >> (4 * (j & 1))) & 15;
        y[j] = f((code - 8) * f16(k / 2 + 2 * Math.floor(j / Q4_GROUP)));
      }
      continue;
    }
    const block = GGUF_BLOCKS[dtype];
    for (let b = 0; b < k / block.size; b++) {
      const x = row.subarray(b * block.bytes, (b + 1) * block.bytes);
      const v = y.subarray(b * block.size, (b + 1) * block.size);
      const at = b * block.bytes;
      if (dtype === "q8_0") {
        const d = f16(at);
        for (let j = 0; j < 32; j++) v[j] = f(d * i8(x[2 + j]));
      } else if (dtype === "q4_0" || dtype === "q4_1" || dtype === "q5_0" || dtype === "q5_1") {
        // d, (m,) (qh,) then the nibbles: weight j < 16 the low nibble of qs[j], j + 16 its high one.
        const min = dtype === "q4_1" || dtype === "q5_1", five = dtype === "q5_0" || dtype === "q5_1";
        const d = f16(at), m = min ? f16(at + 2) : 0;
        const qh = five ? data.getUint32(r * stride + at + (min ? 4 : 2), true) : 0;
        const qs = x.subarray(block.bytes - 16);
        for (let j = 0; j < 16; j++) {
          const q0 = (qs[j] & 0xf) | (((qh >>> j) & 1) << 4),
            q1 = (qs[j] >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          const offset = five ? 16 : 8;
          v[j] = min ? f(f(q0 * d) + m) : f((q0 - offset) * d);
          v[j + 16] = min ? f(f(q1 * d) + m) : f((q1 - offset) * d);
        }
      } else if (isIq(dtype)) {
        decodeIqBlock(dtype, x, v);
      } else if (dtype === "q2_k") {
        // scales[16] at 0, qs[64] at 16, d and dmin at 80.
        const d = f16(at + 80), dmin = f16(at + 82);
        for (let n = 0; n < 2; n++) {
          for (let j = 0; j < 4; j++) {
            for (let l = 0; l < 32; l++) {
              const sc = x[8 * n + 2 * j + (l >> 4)];
              const code = (x[16 + 32 * n + l] >> (2 * j)) & 3;
              v[128 * n + 32 * j + l] = f(f(f(d * (sc & 0xf)) * code) - f(dmin * (sc >> 4)));
            }
          }
        }
      } else if (dtype === "iq4_nl" || dtype === "iq4_xs") {
        // Per 32 weights: d (for XS, the block's d times its 6-bit scale less 32), then 16 bytes of codes.
        for (let s = 0; s < block.size / 32; s++) {
          const ls = ((x[4 + (s >> 1)] >> (4 * (s & 1))) & 0xf) |
            ((((x[2] | (x[3] << 8)) >> (2 * s)) & 3) << 4);
          const d = dtype === "iq4_nl" ? f16(at) : f(f16(at) * (ls - 32));
          const qs = x.subarray(dtype === "iq4_nl" ? 2 : 8 + 16 * s);
          for (let l = 0; l < 16; l++) {
            v[32 * s + l] = f(d * IQ4_LEVELS[qs[l] & 0xf]);
            v[32 * s + l + 16] = f(d * IQ4_LEVELS[qs[l] >> 4]);
          }
        }
      } else if (dtype === "q3_k") {
        // hmask[32] at 0, qs[64] at 32, scales[12] at 96, d at 108.
        const d = f16(at + 108);
        const scales = Array.from({ length: 16 }, (_, i) => f(d * q3kScale(x.subarray(96), i)));
        for (let n = 0; n < 2; n++) {
          for (let j = 0; j < 4; j++) {
            for (let l = 0; l < 32; l++) {
              const dl = scales[8 * n + 2 * j + (l >> 4)];
              const code = ((x[32 + 32 * n + l] >> (2 * j)) & 3) - ((x[l] >> (4 * n + j)) & 1 ? 0 : 4);
              v[128 * n + 32 * j + l] = f(dl * code);
            }
          }
        }
      } else if (dtype === "q5_k") {
        const d = f16(at), dmin = f16(at + 2);
        const scales = x.subarray(4, 16), qh = x.subarray(16, 48), qs = x.subarray(48);
        for (let j = 0; j < 4; j++) {
          const [sc1, m1] = scaleMinK4(scales, 2 * j);
          const [sc2, m2] = scaleMinK4(scales, 2 * j + 1);
          const d1 = f(d * sc1), min1 = f(dmin * m1), d2 = f(d * sc2), min2 = f(dmin * m2);
          for (let l = 0; l < 32; l++) {
            const low = (qh[l] >> (2 * j)) & 1, high = (qh[l] >> (2 * j + 1)) & 1;
            v[64 * j + l] = f(f(d1 * ((qs[32 * j + l] & 0xf) | (low << 4))) - min1);
            v[64 * j + 32 + l] = f(f(d2 * ((qs[32 * j + l] >> 4) | (high << 4))) - min2);
          }
        }
      } else if (dtype === "q4_k") {
        const d = f16(at), dmin = f16(at + 2);
        const scales = x.subarray(4, 16), qs = x.subarray(16);
        for (let j = 0; j < 4; j++) {
          const [sc1, m1] = scaleMinK4(scales, 2 * j);
          const [sc2, m2] = scaleMinK4(scales, 2 * j + 1);
          const d1 = f(d * sc1), min1 = f(dmin * m1), d2 = f(d * sc2), min2 = f(dmin * m2);
          for (let l = 0; l < 32; l++) {
            v[64 * j + l] = f(f(d1 * (qs[32 * j + l] & 0xf)) - min1);
            v[64 * j + 32 + l] = f(f(d2 * (qs[32 * j + l] >> 4)) - min2);
          }
        }
      } else {
        const ql = x.subarray(0, 128), qh = x.subarray(128, 192), sc = x.subarray(192, 208);
        const d = f16(at + 208);
        for (let n = 0; n < 2; n++) {
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const h = qh[32 * n + l];
            const q1 = ((ql[64 * n + l] & 0xf) | (((h >> 0) & 3) << 4)) - 32;
            const q2 = ((ql[64 * n + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
            const q3 = ((ql[64 * n + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const q4 = ((ql[64 * n + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            v[128 * n + l] = f(f(d * i8(sc[8 * n + is])) * q1);
            v[128 * n + l + 32] = f(f(d * i8(sc[8 * n + is + 2])) * q2);
            v[128 * n + l + 64] = f(f(d * i8(sc[8 * n + is + 4])) * q3);
            v[128 * n + l + 96] = f(f(d * i8(sc[8 * n + is + 6])) * q4);
          }
        }
      }
    }
  }
  return out;
}

/**
 * ggml's reference quantizers, in f32 arithmetic: Q8_0 (quantize_row_q8_0_ref), our Q4 (quantize_row_q4_0_ref's
 * rule, in our layout), Q4_K, Q5_K and Q6_K (quantize_row_q4_K_ref, ..._q5_K_ref, ..._q6_K_ref). `values` are
 * the source weights as f32.
 */
export function quantizeRef(
  dtype: QuantizedType,
  values: Float32Array,
  rows: number,
  k: number,
): Uint8Array<ArrayBuffer> {
  const f = Math.fround;
  const stride = rowBytes(dtype, k);
  const out = new Uint8Array(rows * stride);
  const view = new DataView(out.buffer);
  if (dtype === "q4_k" || dtype === "q5_k" || dtype === "q6_k") {
    const bytes = GGUF_BLOCKS[dtype].bytes;
    for (let b = 0; b < rows * k / 256; b++) {
      const x = values.subarray(256 * b, 256 * b + 256);
      if (dtype === "q6_k") quantizeQ6kBlock(x, out, bytes * b);
      else quantizeQ45kBlock(x, out, bytes * b, dtype === "q5_k");
    }
    return out;
  }
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < k / 32; g++) {
      const x = values.subarray(r * k + 32 * g, r * k + 32 * g + 32);
      if (dtype === "q8_0") {
        const amax = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        const d = f(amax / 127);
        const id = d ? f(1 / d) : 0;
        const at = r * stride + 34 * g;
        view.setFloat16(at, d, true);
        for (let j = 0; j < 32; j++) {
          const v = f(x[j] * id);
          view.setInt8(at + 2 + j, Math.sign(v) * Math.floor(Math.abs(v) + 0.5));
        }
      } else {
        let amax = 0, vmax = 0;
        for (const v of x) if (Math.abs(v) > amax) [amax, vmax] = [Math.abs(v), v];
        const d = f(vmax / -8);
        const id = d ? f(1 / d) : 0;
        const at = r * stride;
        for (let j = 0; j < 32; j++) {
          const code = Math.min(15, Math.trunc(f(f(x[j] * id) + 8.5)));
          out[at + 16 * g + (j >> 1)] |= code << (4 * (j & 1));
        }
        view.setFloat16(at + k / 2 + 2 * g, d, true);
      }
    }
  }
  return out;
}

/** ggml's nearest_int: round half to even. */
function rint(v: number): number {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 ? 2 * Math.round(v / 2) : r;
}

/**
 * ggml's make_qkx2_quants(32, nmax, x, weights, L, &min, Laux, rmin, 0.1, nstep, false), in f32 operation by
 * operation: Q4_K's with 15, -1, 20; Q5_K's with 31, -0.5, 15.
 */
function fitK(
  x: Float32Array,
  nmax: number,
  rmin: number,
  nstep: number,
): { scale: number; min: number; codes: Uint8Array } {
  const f = Math.fround;
  let sumX2 = 0;
  for (const v of x) sumX2 = f(sumX2 + f(v * v));
  const avX = f(Math.sqrt(f(sumX2 / 32)));
  const w = x.map((v) => f(avX + Math.abs(v)));
  let lo = x[0], hi = x[0], sumW = w[0], sumX = f(w[0] * x[0]);
  for (let i = 1; i < 32; i++) {
    lo = Math.min(lo, x[i]);
    hi = Math.max(hi, x[i]);
    sumW = f(sumW + w[i]);
    sumX = f(sumX + f(w[i] * x[i]));
  }
  lo = Math.min(lo, 0);
  const codes = new Uint8Array(32);
  if (hi === lo) return { scale: 0, min: -lo, codes };
  let iscale = f(nmax / f(hi - lo)), scale = f(1 / iscale), best = 0;
  for (let i = 0; i < 32; i++) {
    codes[i] = Math.max(0, Math.min(nmax, rint(f(iscale * f(x[i] - lo)))));
    const diff = f(f(f(scale * codes[i]) + lo) - x[i]);
    best = f(best + f(w[i] * f(diff * diff)));
  }
  const trial = new Uint8Array(32);
  for (let step = 0; step <= nstep; step++) {
    iscale = f(f(f(rmin + f(f(0.1) * step)) + nmax) / f(hi - lo));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < 32; i++) {
      const l = Math.max(0, Math.min(nmax, rint(f(iscale * f(x[i] - lo)))));
      trial[i] = l;
      sumL = f(sumL + f(w[i] * l));
      sumL2 = f(sumL2 + f(f(w[i] * l) * l));
      sumXL = f(sumXL + f(f(w[i] * l) * x[i]));
    }
    const det = f(f(sumW * sumL2) - f(sumL * sumL));
    if (det > 0) {
      let thisScale = f(f(f(sumW * sumXL) - f(sumX * sumL)) / det);
      let thisMin = f(f(f(sumL2 * sumX) - f(sumL * sumXL)) / det);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = f(sumXL / sumL2);
      }
      let err = 0;
      for (let i = 0; i < 32; i++) {
        const diff = f(f(f(thisScale * trial[i]) + thisMin) - x[i]);
        err = f(err + f(w[i] * f(diff * diff)));
      }
      if (err < best) {
        codes.set(trial);
        best = err;
        scale = thisScale;
        lo = thisMin;
      }
    }
  }
  return { scale, min: -lo, codes };
}

/**
 * ggml's quantize_row_q4_K_ref (or with `five`, quantize_row_q5_K_ref) for one block of 256 weights, written at
 * out[at..at + 144] (176).
 */
function quantizeQ45kBlock(x: Float32Array, out: Uint8Array, at: number, five: boolean): void {
  const f = Math.fround;
  const [nmax, rmin, nstep] = five ? [31, -0.5, 15] : [15, -1, 20];
  const fits = Array.from({ length: 8 }, (_, j) => fitK(x.subarray(32 * j, 32 * j + 32), nmax, rmin, nstep));
  let maxScale = 0, maxMin = 0;
  for (const t of fits) {
    if (t.scale > maxScale) maxScale = t.scale;
    if (t.min > maxMin) maxMin = t.min;
  }
  const invScale = maxScale > 0 ? f(63 / maxScale) : 0, invMin = maxMin > 0 ? f(63 / maxMin) : 0;
  const scales = out.subarray(at + 4, at + 16);
  const ls = fits.map((t) => Math.max(0, Math.min(63, rint(f(invScale * t.scale)))));
  const lm = fits.map((t) => Math.max(0, Math.min(63, rint(f(invMin * t.min)))));
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      scales[j] = ls[j];
      scales[j + 4] = lm[j];
    } else {
      scales[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
      scales[j - 4] |= (ls[j] >> 4) << 6;
      scales[j] |= (lm[j] >> 4) << 6;
    }
  }
  const view = new DataView(out.buffer, out.byteOffset);
  view.setFloat16(at, f(maxScale / 63), true);
  view.setFloat16(at + 2, f(maxMin / 63), true);
  const d = view.getFloat16(at, true), dmin = view.getFloat16(at + 2, true);
  for (let j = 0; j < 8; j++) {
    const dl = f(d * ls[j]), dm = f(dmin * lm[j]);
    const codes = dl === 0
      ? fits[j].codes
      : Uint8Array.from(x.subarray(32 * j, 32 * j + 32), (v) =>
        Math.max(0, Math.min(nmax, rint(f(f(v + dm) / dl)))));
    // Sub-blocks 2h and 2h + 1 share 32 bytes: low nibbles and high nibbles; Q5_K's fifth bits are bit j of
    // qh[l], the 32 bytes before them.
    const q = at + (five ? 48 : 16) + 32 * (j >> 1);
    for (let l = 0; l < 32; l++) {
      out[q + l] |= (codes[l] & 15) << (4 * (j & 1));
      if (five) out[at + 16 + l] |= (codes[l] >> 4) << j;
    }
  }
}

/** ggml's GROUP_MAX_EPS: a sub-block or block of smaller magnitude is all zeros. */
const GROUP_MAX_EPS = Math.fround(1e-15);

/** ggml's make_qx_quants(16, 32, x, L, 1, NULL), in f32 operation by operation: a scale and codes l + 32. */
function fitQ6k(x: Float32Array): { scale: number; codes: Uint8Array } {
  const f = Math.fround;
  let max = 0, amax = 0;
  for (const v of x) if (Math.abs(v) > amax) [amax, max] = [Math.abs(v), v];
  const codes = new Uint8Array(16);
  if (amax < GROUP_MAX_EPS) return { scale: 0, codes };
  let scale = 0, best = 0;
  // The plain scale -32 / max (step 0), then 32 moved by tenths, kept where the least-squares gain is larger.
  for (const step of [0, -9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9]) {
    const iscale = f(-f(32 + f(f(0.1) * step)) / max);
    const l = Array.from(x, (v) => Math.max(-32, Math.min(31, rint(f(iscale * v)))));
    let sumLx = 0, sumL2 = 0;
    x.forEach((v, i) => {
      const w = f(v * v);
      sumLx = f(sumLx + f(f(w * v) * l[i]));
      sumL2 = f(sumL2 + f(f(w * l[i]) * l[i]));
    });
    if (step === 0 || (sumL2 > 0 && f(sumLx * sumLx) > f(best * sumL2))) {
      scale = sumL2 ? f(sumLx / sumL2) : 0;
      best = f(scale * sumLx);
      codes.set(l.map((c) => c + 32));
    }
  }
  return { scale, codes };
}

/** ggml's quantize_row_q6_K_ref for one block of 256 weights, written at out[at..at + 210]. */
function quantizeQ6kBlock(x: Float32Array, out: Uint8Array, at: number): void {
  const f = Math.fround;
  const fits = Array.from({ length: 16 }, (_, j) => fitQ6k(x.subarray(16 * j, 16 * j + 16)));
  let maxScale = 0, maxAbs = 0;
  for (const t of fits) if (Math.abs(t.scale) > maxAbs) [maxAbs, maxScale] = [Math.abs(t.scale), t.scale];
  if (maxAbs < GROUP_MAX_EPS) return; // all zeros, d too
  const iscale = f(-128 / maxScale);
  const view = new DataView(out.buffer, out.byteOffset);
  view.setFloat16(at + 208, f(1 / iscale), true);
  const d = view.getFloat16(at + 208, true);
  const codes = new Uint8Array(256);
  for (let j = 0; j < 16; j++) {
    const sc = Math.min(127, rint(f(iscale * fits[j].scale)));
    view.setInt8(at + 192 + j, sc);
    const dl = f(d * sc);
    // A sub-block whose scale quantized to 0 keeps the fit's codes.
    codes.set(
      dl === 0
        ? fits[j].codes
        : Array.from(x.subarray(16 * j, 16 * j + 16), (v) =>
          Math.max(-32, Math.min(31, rint(f(v / dl)))) + 32),
      16 * j,
    );
  }
  // Per half n of 128 weights: ql bytes l and 32 + l hold the low nibbles of codes (l, l + 64) and (l + 32, l + 96);
  // qh byte l the high two bits of all four.
  for (let n = 0; n < 2; n++) {
    const c = codes.subarray(128 * n);
    for (let l = 0; l < 32; l++) {
      out[at + 64 * n + l] = (c[l] & 15) | ((c[l + 64] & 15) << 4);
      out[at + 64 * n + 32 + l] = (c[l + 32] & 15) | ((c[l + 96] & 15) << 4);
      out[at + 128 + 32 * n + l] = (c[l] >> 4) | ((c[l + 32] >> 4) << 2) | ((c[l + 64] >> 4) << 4) |
        ((c[l + 96] >> 4) << 6);
    }
  }
}
