/**
 * Checkpoints quantized with compressed-tensors, what llm-compressor writes (neuralmagic/pixtral-12b-FP8-dynamic,
 * ...-quantized.w8a8, W4A16 repositories): a quantized linear layer `P` is stored as codes, `P.weight` (FP8 E4M3
 * or int8) or `P.weight_packed` (int32 words of 4- or 8-bit codes, `P.weight_shape` giving the matrix shape),
 * beside `P.weight_scale` (one scale for the tensor, a row, a group of columns or a block), for asymmetric
 * schemes `P.weight_zero_point`, and for GPTQ's activation order `P.weight_g_idx` (the group of each column):
 *
 *   weight[r, c] = (code[r, c] - zero[r, g]) * scale[r, g],   g = g_idx[c], else c / group size
 *
 * Layers the recipe left alone (the vision tower, the adapter, lm_head) are plain tensors. Decoding follows
 * compressed-tensors' unpack_from_int32 and dequantize, in float64 rounded once to float32; bitsandbytes' layers
 * (bnb.ts) join the same path with a table of levels, nested scales and a factor, rounded as it rounds them.
 */
import type { QuantizationHint } from "./quantization_config.ts";
import { toFloat32 } from "./convert.ts";
import { isScaled, type ScaledType, tensorBytes } from "./dtype.ts";
import { WeightFileError } from "./errors.ts";
import type { BinaryFile } from "./file.ts";
import { rotateHalfToInterleaved } from "./permute.ts";
import type { StoredTensor } from "./safetensors.ts";

/** The tensors beside a weight's codes, checked against its shape when the files are opened. */
export interface ScaledParts {
  scale: StoredTensor;
  zeroPoint?: StoredTensor;
  groupIndex?: StoredTensor;
  /** What the stored codes have added (packed words hold them unsigned: 8 for 4-bit, 128 for 8-bit). */
  offset: number;
  /** Scales stored: [rows, columns] of them, and the weight rows and columns each covers. */
  grid: { rows: number; cols: number; rowSpan: number; colSpan: number };
  /** bitsandbytes (bnb.ts): the 16 levels of 4-bit codes, and scales stored as 8-bit codes themselves. */
  levels?: StoredTensor;
  nested?: NestedScales;
  /** bitsandbytes' int8: each weight is also multiplied by this (float32 1/127), after its scale. */
  factor?: number;
}

/** bitsandbytes' double quantization: scale j = round(round(map[code j] · absmax[j / blocksize]) + offset). */
export interface NestedScales {
  map: StoredTensor;
  absmax: StoredTensor;
  blocksize: number;
  offset: number;
  /** Whether each step rounds to bfloat16 (nested_dtype), else float32. */
  bf16: boolean;
}

/** A weight's scales in the rows' order: one row of groups per weight row. */
export interface Scales {
  rows: number;
  k: number;
  groups: number;
  /** Columns per group in natural order (the last group may be short). */
  groupSize: number;
  /** [rows, groups] */
  scale: Float32Array;
  /** [rows, groups], absent for symmetric schemes. */
  zero?: Float32Array;
  /** The group of each column, where activation order permuted them. */
  groupOf?: Int32Array;
  /** What the stored codes have added (ScaledParts.offset). */
  offset: number;
  /** N4's 16 levels. */
  levels?: Float32Array;
  /** ScaledParts.factor */
  factor?: number;
}

/**
 * Companions that carry nothing for weights computed in floating point: static activation scales, and the
 * attention layers' KV cache scales (kv_cache_scheme; this server keeps its own cache).
 */
const ACTIVATION_PARAMS = /\.(input|output)_(scale|zero_point|global_scale)$|\.self_attn\.[kv]_scale$/;
/** What only a quantized weight's codes have beside them. */
const COMPANION = /\.weight_(shape|zero_point|g_idx)$/;

/** A checkpoint's files, each with its tensors by name (what the joins rewrite). */
export type TensorFiles = { file: BinaryFile; tensors: Map<string, StoredTensor> }[];

/**
 * Every tensor of the files by name (a name stored twice is an error), `take` to remove one from its file's map
 * (a companion joined into its weight) and `put` to add one there (the joined weight).
 */
export function tensorIndex(files: TensorFiles) {
  const all = new Map<string, StoredTensor>();
  for (const t of files.flatMap((f) => [...f.tensors.values()])) {
    const twin = all.get(t.name);
    if (twin) {
      throw new WeightFileError("format", t.file.path, `stored twice (also in ${twin.file.path})`, t.name);
    }
    all.set(t.name, t);
  }
  const take = (name: string) => {
    const t = all.get(name);
    if (t) { for (const f of files) f.tensors.delete(name); }
    return t;
  };
  const put = (t: StoredTensor) => files.find((f) => f.file === t.file)!.tensors.set(t.name, t);
  return { all, take, put };
}

/**
 * The tensors of one checkpoint with each quantized layer's codes and companions joined into one tensor
 * `P.weight` of a ScaledType that carries its ScaledParts; the companions leave the maps. Reads the few bytes of
 * each `weight_shape`.
 */
export async function joinScaled(files: TensorFiles, hint: QuantizationHint = {}): Promise<void> {
  const { all, take, put } = tensorIndex(files);
  for (const name of all.keys()) if (ACTIVATION_PARAMS.test(name)) take(name);
  for (const [name, scale] of all) {
    if (!name.endsWith(".weight_scale")) continue;
    const p = name.slice(0, -"_scale".length); // `P.weight`
    const packed = all.get(`${p}_packed`);
    const codes = packed ?? all.get(p);
    if (!codes) {
      throw new WeightFileError("missing", scale.file.path, `has no ${p} or ${p}_packed beside it`, name);
    }
    const fail = (problem: string) => new WeightFileError("format", codes.file.path, problem, codes.name);
    let dtype: ScaledType, shape: number[], offset = 0;
    if (packed && all.has(p)) throw fail(`has ${p} beside it too: which holds the weights?`);
    if (packed) {
      const stored = all.get(`${p}_shape`);
      if (
        !stored || stored.shape.length !== 1 || stored.shape[0] !== 2 ||
        !["I32", "I64"].includes(stored.dtype)
      ) {
        throw fail(`needs ${p}_shape, the unpacked [rows, columns]`);
      }
      const bytes = await stored.file.read(stored.offset, stored.byteLength, stored.name);
      const view = new DataView(bytes.buffer);
      shape = stored.dtype === "I64"
        ? [Number(view.getBigInt64(0, true)), Number(view.getBigInt64(8, true))]
        : [view.getInt32(0, true), view.getInt32(4, true)];
      const [rows, k] = shape;
      const bits = packed.dtype === "I32" && packed.shape.length === 2 && packed.shape[0] === rows && k > 0
        ? (packed.shape[1] * 32) / k
        : NaN;
      if (bits !== 4 && bits !== 8) {
        throw fail(
          `is ${packed.dtype} ${JSON.stringify(packed.shape)} for a ${
            JSON.stringify(shape)
          } weight: only 4- and ` +
            `8-bit codes packed in int32 words, whole words a row, are read`,
        );
      }
      dtype = bits === 4 ? "I4" : "I8";
      offset = bits === 4 ? 8 : 128;
      take(`${p}_shape`);
    } else {
      if (codes.dtype !== "F8_E4M3" && codes.dtype !== "I8") {
        throw fail(
          `is ${codes.dtype} beside a weight_scale: only compressed codes (F8_E4M3, I8, packed I32) are read, ` +
            `not a checkpoint saved uncompressed`,
        );
      }
      if (codes.shape.length !== 2) throw fail(`has shape ${JSON.stringify(codes.shape)}, not a matrix`);
      dtype = codes.dtype;
      shape = codes.shape;
    }
    const zeroPoint = take(`${p}_zero_point`), groupIndex = take(`${p}_g_idx`);
    if (dtype === "F8_E4M3" && zeroPoint) throw fail("is FP8 with a zero point, which no scheme writes");
    if (hint.symmetric === false && !zeroPoint && dtype !== "F8_E4M3") {
      // Read as symmetric its codes would all be off by their zero point.
      throw fail(`has no ${p}_zero_point, which quantization_config's asymmetric scheme needs`);
    }
    const grid = scaleGrid(scale, shape, hint);
    const bits = dtype === "I4" ? 4 : 8;
    // int8 (a per-tensor one may be [1]), or for packed codes packed along the rows like them.
    const oneZero = grid.rows * grid.cols === 1 && zeroPoint?.shape.reduce((n, d) => n * d, 1) === 1;
    if (
      zeroPoint &&
      !(zeroPoint.dtype === "I8" && (oneZero || same(zeroPoint.shape, [grid.rows, grid.cols]))) &&
      !(zeroPoint.dtype === "I32" && offset !== 0 &&
        same(zeroPoint.shape, [Math.ceil((grid.rows * bits) / 32), grid.cols]))
    ) {
      throw new WeightFileError(
        "format",
        zeroPoint.file.path,
        `is ${zeroPoint.dtype} ${JSON.stringify(zeroPoint.shape)}, not one zero point per scale ` +
          `(${grid.rows}x${grid.cols}, int8 or packed in int32 words along the rows)`,
        zeroPoint.name,
      );
    }
    if (groupIndex && !(groupIndex.dtype === "I32" && same(groupIndex.shape, [shape[1]]))) {
      throw new WeightFileError(
        "format",
        groupIndex.file.path,
        `is ${groupIndex.dtype} ${JSON.stringify(groupIndex.shape)}, not one int32 group per column`,
        groupIndex.name,
      );
    }
    take(name);
    take(codes.name);
    const joined: StoredTensor = {
      name: p,
      dtype,
      shape,
      offset: codes.offset,
      byteLength: codes.byteLength,
      file: codes.file,
      scaled: { scale, zeroPoint, groupIndex, offset, grid },
    };
    put(joined);
  }
  // Codes or companions left without a scale: the codes are named first.
  const companion = (t: StoredTensor) => COMPANION.test(t.name);
  const codes = (t: StoredTensor) => (isScaled(t.dtype) && !t.scaled) || t.name.endsWith(".weight_packed");
  const rest = files.flatMap((f) => [...f.tensors.values()]);
  const orphan = rest.find(codes) ?? rest.find(companion);
  if (orphan) {
    throw new WeightFileError(
      "format",
      orphan.file.path,
      `is ${orphan.dtype} without the scales beside it (a weight_scale, or bitsandbytes' absmax or SCB)`,
      orphan.name,
    );
  }
}

const same = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * How a scale tensor covers a [rows, k] weight: one scale ([] or [1]), one per row ([rows, 1]), per group of
 * columns ([rows, groups]) or per block ([row blocks, column blocks]).
 */
function scaleGrid(scale: StoredTensor, [rows, k]: number[], hint: QuantizationHint): ScaledParts["grid"] {
  const numel = scale.shape.reduce((n, d) => n * d, 1);
  const [sr, sc] = numel === 1 ? [1, 1] : scale.shape.length === 2 ? scale.shape : [0, 0];
  // quantization_config's size where it gives one (136 rows in 2 blocks of 128 also divide evenly in 68), else
  // one per row, or an even division into spans of whole groups of 32 (what every scheme makes of Pixtral's
  // matrices): anything else would be a guess.
  const span = (n: number, count: number, hinted: number | undefined, perItem: boolean) =>
    count === 1
      ? n
      : hinted
      ? (Math.ceil(n / hinted) === count ? hinted : 0)
      : perItem && count === n
      ? 1
      : n % count === 0 && (n / count) % 32 === 0
      ? n / count
      : 0;
  const rowSpan = span(rows, sr, hint.block?.[0], true);
  const colSpan = span(k, sc, sr === rows ? hint.groupSize : hint.block?.[1], false);
  if (!["F32", "F16", "BF16"].includes(scale.dtype) || !rowSpan || !colSpan) {
    throw new WeightFileError(
      "format",
      scale.file.path,
      `is ${scale.dtype} ${
        JSON.stringify(scale.shape)
      }, which is not float scales dividing a ${rows}x${k} weight`,
      scale.name,
    );
  }
  return { rows: sr, cols: sc, rowSpan, colSpan };
}

/** The values, unless one is not finite (a corrupt file). */
function finite(values: Float32Array, t: StoredTensor): Float32Array {
  const bad = values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new WeightFileError("format", t.file.path, `value ${bad} is ${values[bad]}`, t.name);
  return values;
}

/** Rounds to bfloat16, nearest, ties to even. */
function bf16(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer);
  u[0] = (u[0] + 0x7fff + ((u[0] >> 16) & 1)) & 0xffff0000;
  return new Float32Array(u.buffer)[0];
}

/**
 * The scales of a joined tensor [rows, k], one row of groups per weight row (a block's scale repeated over its
 * rows), with Hugging Face's q/k rows put in native order like the codes (`headDim`).
 */
export async function readScales(t: StoredTensor, headDim?: number): Promise<Scales> {
  const { scale, zeroPoint, groupIndex, offset, grid, levels, nested, factor } = t.scaled!;
  const [rows, k] = t.shape, { rows: sr, cols: sc, rowSpan } = grid;
  const read = async (s: StoredTensor) => await s.file.read(s.offset, s.byteLength, s.name);
  // One row of groups per weight row (a block's scales repeated over its rows), in the codes' row order.
  const perRow = (v: Float32Array) => {
    const out = rowSpan === 1 ? v : new Float32Array(rows * sc);
    if (rowSpan !== 1) {
      for (let r = 0; r < rows; r++) {
        out.set(v.subarray(Math.floor(r / rowSpan) * sc).subarray(0, sc), r * sc);
      }
    }
    return headDim
      ? new Float32Array(rotateHalfToInterleaved(new Uint8Array(out.buffer), sc * 4, headDim).buffer)
      : out;
  };
  let values: Float32Array;
  if (nested) {
    const codes = await read(scale);
    const map = toFloat32("F32", await read(nested.map)),
      absmax = toFloat32("F32", await read(nested.absmax));
    const round = nested.bf16 ? bf16 : Math.fround;
    values = Float32Array.from(
      codes,
      (c, j) => round(round(map[c] * absmax[Math.floor(j / nested.blocksize)]) + Math.fround(nested.offset)),
    );
  } else values = toFloat32(scale.dtype, await read(scale));
  const result: Scales = {
    rows,
    k,
    groups: sc,
    groupSize: grid.colSpan,
    scale: perRow(finite(values, scale)),
    offset,
    levels: levels ? finite(toFloat32("F32", await read(levels)), levels) : undefined,
    factor,
  };
  if (zeroPoint) {
    let zeros: Float32Array;
    if (zeroPoint.dtype === "I8") zeros = Float32Array.from(new Int8Array((await read(zeroPoint)).buffer));
    else {
      // Packed along the rows: word (i, g) holds group g of rows i·per.., the first in the low bits.
      const bits = t.dtype === "I4" ? 4 : 8, per = 32 / bits, mask = (1 << bits) - 1;
      const words = new Int32Array((await read(zeroPoint)).buffer);
      zeros = new Float32Array(sr * sc);
      for (let r = 0; r < sr; r++) {
        for (let g = 0; g < sc; g++) {
          zeros[r * sc + g] = ((words[Math.floor(r / per) * sc + g] >>> (bits * (r % per))) & mask) - offset;
        }
      }
    }
    result.zero = perRow(zeros);
  }
  if (groupIndex) {
    const groupOf = new Int32Array((await read(groupIndex)).buffer);
    // GPTQ writes all -1 where it did not reorder.
    if (groupOf.every((g) => g === -1)) return result;
    const outside = groupOf.findIndex((g) => g < 0 || g >= sc);
    if (outside >= 0) {
      throw new WeightFileError(
        "format",
        groupIndex.file.path,
        `puts column ${outside} in group ${groupOf[outside]}, outside 0..${sc - 1}`,
        groupIndex.name,
      );
    }
    // In natural order it says what the group size does; only a real permutation is kept.
    if (groupOf.some((g, c) => g !== Math.floor(c / grid.colSpan))) result.groupOf = groupOf;
  }
  return result;
}

/** The scales of rows [first, first + count) alone (as the first rows of a Scales), for a worker thread. */
export function scaleRows(scales: Scales, first: number, count: number): Scales {
  const { groups } = scales, from = first * groups, to = (first + count) * groups;
  return {
    ...scales,
    rows: count,
    scale: scales.scale.slice(from, to),
    zero: scales.zero?.slice(from, to),
  };
}

/** FP8 E4M3 (the "fn" variant: no infinities, S.1111.111 is NaN) by bit pattern. */
const E4M3 = Float64Array.from({ length: 256 }, (_, b) => {
  const sign = b & 0x80 ? -1 : 1, e = (b >> 3) & 15, m = b & 7;
  if (e === 15 && m === 7) return NaN;
  return sign * (e === 0 ? (m / 8) * 2 ** -6 : (1 + m / 8) * 2 ** (e - 7));
});

/**
 * The signed codes of the row starting at byte `at`, as float64, into `q` (one loop per type: a function call
 * per weight would take most of the time).
 */
function readCodes(
  dtype: ScaledType,
  offset: number,
  levels: Float32Array | undefined,
  codes: Uint8Array,
  at: number,
  q: Float64Array,
): void {
  const k = q.length;
  if (dtype === "F8_E4M3") {
    for (let c = 0; c < k; c++) q[c] = E4M3[codes[at + c]];
  } else if (dtype === "I8" && offset === 0) {
    for (let c = 0; c < k; c++) q[c] = (codes[at + c] << 24) >> 24;
  } else if (dtype === "I8") {
    for (let c = 0; c < k; c++) q[c] = codes[at + c] - offset;
  } else if (dtype === "N4") {
    for (let c = 0; c < k; c++) q[c] = levels![(codes[at + (c >> 1)] >> ((c & 1) ? 0 : 4)) & 15];
  } else {
    for (let c = 0; c < k; c++) q[c] = ((codes[at + (c >> 1)] >> ((c & 1) << 2)) & 15) - offset;
  }
}

/**
 * The weights of the rows from row `first`, as float32, from their codes (`codes`: those rows, in order). A NaN
 * code (a corrupt file) is a RangeError.
 */
export function decodeScaled(
  dtype: ScaledType,
  codes: Uint8Array,
  first: number,
  scales: Scales,
): Float32Array {
  const { k, groups, groupSize, scale, zero, groupOf, offset, levels, factor } = scales;
  const rowBytes = tensorBytes(dtype, [k])!, count = codes.length / rowBytes;
  const out = new Float32Array(count * k);
  const q = new Float64Array(k);
  for (let i = 0; i < count; i++) {
    const row = (first + i) * groups, o = i * k;
    readCodes(dtype, offset, levels, codes, i * rowBytes, q);
    if (groupOf) {
      for (let c = 0; c < k; c++) {
        const g = row + groupOf[c];
        out[o + c] = (q[c] - (zero ? zero[g] : 0)) * scale[g];
      }
    } else {
      for (let g = 0; g < groups; g++) {
        const s = scale[row + g], z = zero ? zero[row + g] : 0, end = Math.min(k, (g + 1) * groupSize);
        for (let c = g * groupSize; c < end; c++) out[o + c] = (q[c] - z) * s;
      }
    }
    // bitsandbytes' int8 rounds the scaled code, then multiplies by float32 1/127.
    if (factor !== undefined) { for (let c = o; c < o + k; c++) out[c] = out[c] * factor; }
    if (dtype === "F8_E4M3") {
      for (let c = 0; c < k; c++) {
        if (q[c] !== q[c]) {
          throw new RangeError(`the code at row ${first + i}, column ${c} is NaN (a corrupt file?)`);
        }
      }
    }
  }
  return out;
}

/**
 * The GPU block format that holds these codes exactly, if any: 4-bit codes are q4 (codes 0..15 meaning
 * d·(code − 8), as stored here with 8 added), int8 codes q8_0, when the scheme is symmetric, in natural column
 * order, and every group of 32 columns lies within one scale's group. Scales become f16 (exact for bf16 ones in
 * f16's normal range).
 */
export function exactBlockFormat(dtype: ScaledType, scales: Scales): "q4" | "q8_0" | undefined {
  const plain = !scales.zero && !scales.groupOf && scales.factor === undefined;
  if (!plain || scales.groupSize % 32 !== 0 || scales.k % 32 !== 0) return undefined;
  return dtype === "I4" ? "q4" : dtype === "I8" ? "q8_0" : undefined;
}

/** Rows of codes as q4 or q8_0 blocks (see exactBlockFormat), `rowBytes` bytes a row in the GPU's layout. */
export function toBlocks(
  format: "q4" | "q8_0",
  codes: Uint8Array,
  first: number,
  scales: Scales,
  rowBytes: number,
): Uint8Array<ArrayBuffer> {
  const { k, groups, groupSize, scale, offset } = scales;
  const codeBytes = format === "q4" ? k / 2 : k, count = codes.length / codeBytes;
  const out = new Uint8Array(count * rowBytes);
  const view = new DataView(out.buffer);
  for (let i = 0; i < count; i++) {
    const src = i * codeBytes, dst = i * rowBytes, row = (first + i) * groups;
    for (let b = 0; b < k / 32; b++) {
      const d = scale[row + Math.floor((32 * b) / groupSize)];
      if (format === "q4") {
        // Codes as stored (byte j: columns 2j and 2j + 1, low nibble first), then the row's f16 scales.
        out.set(codes.subarray(src + 16 * b, src + 16 * b + 16), dst + 16 * b);
        view.setFloat16(dst + k / 2 + 2 * b, d, true);
      } else {
        // Each block: an f16 scale, then 32 int8 codes (stored ones with 128 added flip their top bit).
        view.setFloat16(dst + 34 * b, d, true);
        for (let j = 0; j < 32; j++) {
          out[dst + 34 * b + 2 + j] = codes[src + 32 * b + j] ^ (offset ? 0x80 : 0);
        }
      }
    }
  }
  return out;
}
