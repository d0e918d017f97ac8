/**
 * Weights from a WeightSource onto the GPU, tensor by tensor in file order and chunk by chunk, converted or
 * quantized on the GPU as they arrive: the decoder's linear layers (embedding and output head included) to
 * `quant` (q4 by default), the vision encoder and adapter to `visionQuant` (f16 by default: quantizing the
 * vision tower costs accuracy), norms and biases to f32. GGUF blocks of every type stay as stored, since the
 * kernels read them directly and re-quantizing them would only lose precision (unless a LoRA adapter is merged
 * into them).
 */
import type { GpuContext } from "../gpu/context.ts";
import { type DType, isBlockFormat, rowBytes } from "../gpu/dtype.ts";
import { linear } from "../gpu/ops/linear.ts";
import { rowNormScale } from "../gpu/ops/norm.ts";
import { convert, dequantize, quantize } from "../gpu/ops/quantize.ts";
import { randomUniform } from "../gpu/ops/random.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { Progress } from "../progress.ts";
import type { ModelConfig } from "./config.ts";
import {
  decodedFormat,
  type Explicit,
  floatFormat,
  mixFormat,
  rowFormat,
  type TensorFormat,
  type WeightFormat,
} from "./plan.ts";
import { expectedTensors } from "./tensors.ts";
import { syntheticScale } from "./weights/synthetic.ts";
import { BlockDecoder } from "./weights/decode_pool.ts";
import {
  type DType as StoredType,
  isRequantized,
  isScaled,
  type ScaledType,
  tensorBytes,
} from "./weights/dtype.ts";
import { exactBlockFormat, scaleRows, toBlocks } from "./weights/scaled.ts";
import { WeightFileError } from "./weights/errors.ts";
import type { LowRank } from "./weights/lora.ts";
import type { TensorInfo, WeightSource } from "./weights/source.ts";

export interface LoadOptions {
  quant: WeightFormat;
  visionQuant: WeightFormat;
  /** The decoder's layer count, which places a recipe's formats (plan.ts mixFormat). */
  layers: number;
  /**
   * The most bytes a piece of a tensor takes, staged or as f32 (default: CHUNK_BYTES as stored, MERGED_BYTES with
   * a LoRA update, DECODED_BYTES per decoding thread); tests make it small to load tensors in many pieces.
   */
  pieceBytes?: number;
  /** Which of the two flags gave (they then apply to codes stored quantized too). */
  explicit?: Explicit;
  progress?: Progress;
}

const FORMATS: Record<TensorFormat, DType> = {
  q4: "q4",
  q4k: "q4_k",
  q5k: "q5_k",
  q6k: "q6_k",
  q8: "q8_0",
  f16: "f16",
  f32: "f32",
};
/** The GPU type of each stored type the kernels read (codes with scales are decoded, see loadScaled). */
export const STORED: Record<Exclude<StoredType, ScaledType | "I32" | "I64" | "U8">, DType> = {
  F32: "f32",
  F16: "f16",
  BF16: "bf16",
  Q8_0: "q8_0",
  Q4_0: "q4_0",
  Q4_1: "q4_1",
  Q5_0: "q5_0",
  Q5_1: "q5_1",
  Q2_K: "q2_k",
  Q3_K: "q3_k",
  Q4_K: "q4_k",
  Q5_K: "q5_k",
  Q6_K: "q6_k",
  IQ4_NL: "iq4_nl",
  IQ4_XS: "iq4_xs",
  IQ3_S: "iq3_s",
  IQ3_XXS: "iq3_xxs",
  IQ2_S: "iq2_s",
  IQ2_XS: "iq2_xs",
  IQ2_XXS: "iq2_xxs",
  IQ1_M: "iq1_m",
  IQ1_S: "iq1_s",
};
const CHUNK_BYTES = 64 << 20;
/** The most f32 bytes one piece of a tensor decoded on the CPU becomes. */
const DECODED_BYTES = 16 << 20;
/** The most f32 bytes a chunk of a tensor with a LoRA merged in becomes on the GPU. */
const MERGED_BYTES = 32 << 20;

/** The tensor as the kernels see it: a matrix [rows, K] (a vector is one row; the patch conv is [out, C·P·P]). */
export function matrixShape(shape: readonly number[]): [number, number] {
  const k = shape.at(-1)!;
  if (shape.length === 1) return [1, k];
  if (shape.length === 4) return [shape[0], shape[1] * shape[2] * k];
  return [shape.slice(0, -1).reduce((a, b) => a * b, 1), k];
}

/** `merged`: a LoRA adapter updates the tensor, so GGUF blocks are quantized again rather than kept as stored. */
function targetType(
  info: Pick<TensorInfo, "name" | "dtype" | "role" | "component" | "shape">,
  options: LoadOptions,
  besideCodes = false,
  merged = false,
): DType {
  const decoder = info.component === "decoder";
  const quant = mixFormat(decoder ? options.quant : options.visionQuant, info.name, options.layers);
  const [, k] = matrixShape(info.shape);
  if (isScaled(info.dtype) || (merged && isRequantized(info.dtype))) {
    const explicit = decoder ? options.explicit?.quant : options.explicit?.visionQuant;
    return FORMATS[rowFormat(decodedFormat(info.dtype, quant, explicit), k)];
  }
  const stored = STORED[info.dtype as keyof typeof STORED];
  if (isBlockFormat(stored)) return stored;
  if (info.role === "norm" || info.role === "bias") return "f32";
  const wanted = decoder ? floatFormat(quant, options.explicit?.quant, besideCodes) : quant;
  return FORMATS[rowFormat(wanted, k, info.role === "conv")];
}

export interface LoadedWeights {
  /** Every tensor by name; q/k/v and w1/w3 may be row views of one matrix (see FUSED). */
  tensors: Map<string, Tensor>;
  /** The tensors that own GPU buffers, to release. */
  owned: Tensor[];
}

/**
 * Matrices that multiply the same input, stored as consecutive rows of one tensor so that one product (one
 * dispatch) computes them all: the forward pass finds them with joinRows. Fused from the first member on while
 * they have its type and K (all three, or q|k when a recipe gives v another type), each but the last ending on a
 * 16-byte boundary (the next starts aligned for writes and vec4 reads).
 */
const FUSED = [
  ["attention.wq.weight", "attention.wk.weight", "attention.wv.weight"],
  ["feed_forward.w1.weight", "feed_forward.w3.weight"],
];

interface Wanted {
  name: string;
  dtype: DType;
  rows: number;
  k: number;
}

function allocate(ctx: GpuContext, wanted: readonly Wanted[]): LoadedWeights {
  const byName = new Map(wanted.map((t) => [t.name, t]));
  const weights: LoadedWeights = { tensors: new Map(), owned: [] };
  const own = (dtype: DType, rows: number, k: number, label: string) => {
    const t = ctx.tensor(dtype, [rows, k], { pooled: false, label });
    weights.owned.push(t);
    return t;
  };
  try {
    for (const names of FUSED) {
      for (const t of wanted) {
        if (!t.name.endsWith(names[0])) continue;
        const prefix = t.name.slice(0, -names[0].length);
        // The members of t's type and K from the first on (q|k where a recipe gives v another type).
        const members: Wanted[] = [];
        for (const name of names) {
          const m = byName.get(prefix + name);
          const last = members.at(-1);
          if (!m || m.dtype !== t.dtype || m.k !== t.k) break;
          if (last && rowBytes(last.dtype, last.k) * last.rows % 16 !== 0) break;
          members.push(m);
        }
        const rows = members.reduce((n, m) => n + m.rows, 0);
        if (members.length < 2 || rowBytes(t.dtype, t.k) * rows > ctx.maxBufferSize) continue;
        const joined = own(
          t.dtype,
          rows,
          t.k,
          `${prefix}{${members.map((m) => m.name.slice(prefix.length))}}`,
        );
        let at = 0;
        for (const m of members) {
          weights.tensors.set(m.name, joined.sliceRows(at, m.rows));
          at += m.rows;
        }
      }
    }
    for (const t of wanted) {
      if (!weights.tensors.has(t.name)) weights.tensors.set(t.name, own(t.dtype, t.rows, t.k, t.name));
    }
  } catch (err) {
    for (const t of weights.owned) ctx.release(t);
    throw err;
  }
  return weights;
}

export async function loadWeights(
  ctx: GpuContext,
  source: WeightSource,
  options: LoadOptions,
): Promise<LoadedWeights> {
  const infos = [...source.tensors()];
  const besideCodes = infos.some((t) => isScaled(t.dtype));
  const merged = source.merged ?? new Set<string>();
  const weights = allocate(
    ctx,
    infos.map((info) => {
      const [rows, k] = matrixShape(info.shape);
      return {
        name: info.name,
        dtype: targetType(info, options, besideCodes, merged.has(info.name)),
        rows,
        k,
      };
    }),
  );
  let decoder: BlockDecoder | undefined;
  try {
    for (const info of infos) {
      const dst = weights.tensors.get(info.name)!;
      const target = dst.dtype, k = dst.rowLength;
      const update = merged.has(info.name) ? await source.lowRank?.(info.name) : undefined;
      const put = async (stored: DType, first: number, count: number, bytes: Uint8Array) => {
        const rec = ctx.record(`load ${info.name}`);
        let src = rec.upload(stored, [count, k], bytes);
        if (update) src = addLowRank(rec, src, update, first);
        const part = dst.sliceRows(first, count);
        if (isBlockFormat(target)) quantize(rec, part, src);
        else convert(rec, part, src);
        await rec.submit();
      };
      if (isScaled(info.dtype)) {
        await loadScaled(ctx, source, info, dst, put, () => decoder ??= new BlockDecoder(), {
          merged: update !== undefined,
          progress: options.progress,
          pieceBytes: options.pieceBytes,
        });
        continue;
      }
      const stored = STORED[info.dtype as keyof typeof STORED];
      const storedRow = rowBytes(stored, k);
      const budget = update
        ? Math.floor((options.pieceBytes ?? MERGED_BYTES) / (4 * k))
        : Math.floor((options.pieceBytes ?? CHUNK_BYTES) / storedRow);
      const chunkBytes = pieceRows(budget, target, k) * storedRow;
      for await (const chunk of source.chunks(info.name, chunkBytes)) {
        const first = chunk.byteOffset / storedRow, count = chunk.bytes.byteLength / storedRow;
        if (stored === target && !update) ctx.write(dst, chunk.bytes, chunk.byteOffset);
        else await put(stored, first, count, chunk.bytes);
        options.progress?.add(chunk.bytes.byteLength);
      }
    }
  } catch (err) {
    for (const t of weights.owned) ctx.release(t);
    throw err;
  } finally {
    decoder?.close();
  }
  return weights;
}

/**
 * Rows a piece of a tensor quantized or converted into `target` piece by piece takes: `rows`, at least one, but
 * even where `target`'s rows are not whole words (Q8_0 and Q6_K rows of an odd number of blocks), since the
 * quantize kernels write whole words from the piece's first byte.
 */
export function pieceRows(rows: number, target: DType, k: number): number {
  const even = rowMultiple(target, k);
  return Math.max(even, Math.floor(rows / even) * even);
}

function rowMultiple(target: DType, k: number): 1 | 2 {
  return rowBytes(target, k) % 4 === 0 ? 1 : 2;
}

/** Bytes of stored rows a chunk decoded on the CPU takes: one piece per thread, each at most DECODED_BYTES as f32. */
function decodedChunkBytes(
  pool: BlockDecoder,
  k: number,
  storedRow: number,
  target: DType,
  pieceBytes = DECODED_BYTES,
): number {
  return pieceRows(Math.floor(pool.threads * pieceBytes / (4 * k)), target, k) * storedRow;
}

/**
 * A chunk of rows from row `first` of a weight plus their LoRA update, as f32: W + left · rightᵀ, each row then
 * rescaled to its DoRA magnitude where the update has one.
 */
function addLowRank(rec: Recorder, src: Tensor, update: LowRank, first: number): Tensor {
  const [count, k] = src.shape, r = update.rank;
  const sum = src.dtype === "f32" ? src : rec.scratch("f32", [count, k]);
  if (isBlockFormat(src.dtype)) dequantize(rec, sum, src);
  else if (sum !== src) convert(rec, sum, src);
  linear(rec, {
    y: sum,
    x: rec.upload("f32", [count, r], update.left.subarray(first * r, (first + count) * r)),
    w: rec.upload("f32", [k, r], update.right),
    accumulate: true,
  });
  if (!update.magnitude) return sum;
  const rescaled = rec.scratch("f32", [count, k]);
  rowNormScale(rec, {
    y: rescaled,
    x: sum,
    norms: rec.upload("f32", [count], update.magnitude.subarray(first, first + count)),
  });
  return rescaled;
}

/**
 * `count` rows from row `first` decoded on every thread of the pool at once (`decode(r, n)`: n rows from the
 * chunk's row r; `multiple`: of rows each piece but the last holds, see pieceRows) and uploaded in order as they
 * come; a failure names the file and the tensor.
 */
async function decodeRows(
  info: TensorInfo,
  pool: BlockDecoder,
  count: number,
  put: (stored: DType, first: number, count: number, bytes: Uint8Array) => Promise<void>,
  decode: (r: number, n: number) => Promise<Float32Array>,
  first: number,
  multiple: number,
): Promise<void> {
  const rows = Math.ceil(count / Math.min(count, pool.threads) / multiple) * multiple;
  const parts = [];
  for (let r = 0; r < count; r += rows) {
    const n = Math.min(rows, count - r);
    const values = decode(r, n);
    values.catch(() => {}); // an earlier part's failure is the one thrown
    parts.push({ r, n, values });
  }
  for (const { r, n, values } of parts) {
    let decoded: Float32Array;
    try {
      decoded = await values;
    } catch (err) {
      throw new WeightFileError("format", info.file, (err as Error).message, info.name, info.storedName);
    }
    await put("f32", first + r, n, new Uint8Array(decoded.buffer));
  }
}

/**
 * A compressed-tensors or bitsandbytes weight: its codes copied into q4 / q8_0 blocks where those hold them exactly, else decoded
 * to float32 on the block decoder's threads (a piece of at most DECODED_BYTES each) and quantized or converted on
 * the GPU.
 */
async function loadScaled(
  ctx: GpuContext,
  source: WeightSource,
  info: TensorInfo,
  dst: Tensor,
  put: (stored: DType, first: number, count: number, bytes: Uint8Array) => Promise<void>,
  decoder: () => BlockDecoder,
  { merged, progress, pieceBytes }: { merged: boolean; progress?: Progress; pieceBytes?: number },
): Promise<void> {
  const type = info.dtype as ScaledType, k = dst.rowLength;
  const scales = await source.scales(info.name);
  // Codes are copied as they are unless a LoRA update must be added to their values first.
  const exact = !merged && exactBlockFormat(type, scales) === dst.dtype
    ? dst.dtype as "q4" | "q8_0"
    : undefined;
  const codeRow = tensorBytes(type, [k])!, target = rowBytes(dst.dtype, k);
  const pool = exact ? undefined : decoder();
  const chunkBytes = pool
    ? decodedChunkBytes(pool, k, codeRow, dst.dtype, pieceBytes)
    : pieceRows(Math.floor((pieceBytes ?? CHUNK_BYTES) / codeRow), dst.dtype, k) * codeRow;
  for await (const chunk of source.chunks(info.name, chunkBytes)) {
    const first = chunk.byteOffset / codeRow, count = chunk.bytes.byteLength / codeRow;
    if (!pool) {
      ctx.write(dst, toBlocks(exact!, chunk.bytes, first, scales, target), first * target);
    } else {
      await decodeRows(
        info,
        pool,
        count,
        put,
        (r, n) =>
          pool.decode(
            { type, scales: scaleRows(scales, first + r, n) },
            chunk.bytes.subarray(r * codeRow, (r + n) * codeRow),
          ),
        first,
        rowMultiple(dst.dtype, k),
      );
    }
    progress?.add(chunk.bytes.byteLength);
  }
}

/**
 * Random weights of a config made directly on the GPU (seeded uniform values of the synthetic recipe's scales,
 * converted or quantized like loaded ones): a model of Pixtral 12B's real size for benchmarks, without files.
 */
export async function randomWeights(
  ctx: GpuContext,
  config: ModelConfig,
  options: LoadOptions,
  seed = 0,
): Promise<LoadedWeights> {
  const specs = expectedTensors(config);
  const weights = allocate(
    ctx,
    specs.map((spec) => {
      const [rows, k] = matrixShape(spec.shape);
      return { name: spec.name, dtype: targetType({ ...spec, dtype: "F32" }, options), rows, k };
    }),
  );
  try {
    for (const [index, spec] of specs.entries()) {
      const dst = weights.tensors.get(spec.name)!;
      const target = dst.dtype, [rows, k] = dst.shape;
      const { mean, std } = syntheticScale(spec);
      const step = pieceRows(Math.floor((options.pieceBytes ?? CHUNK_BYTES) / (4 * k)), target, k);
      for (let first = 0; first < rows; first += step) {
        const count = Math.min(step, rows - first);
        const rec = ctx.record(`random ${spec.name}`);
        const values = target === "f32" ? dst.sliceRows(first, count) : rec.scratch("f32", [count, k]);
        randomUniform(rec, {
          y: values,
          seed: seed + index,
          start: first * k,
          scale: 2 * Math.sqrt(3) * std,
          offset: mean,
        });
        if (target !== "f32") {
          if (isBlockFormat(target)) quantize(rec, dst.sliceRows(first, count), values);
          else convert(rec, dst.sliceRows(first, count), values);
        }
        await rec.submit();
        options.progress?.add(count * k * 2);
      }
    }
  } catch (err) {
    for (const t of weights.owned) ctx.release(t);
    throw err;
  }
  return weights;
}
