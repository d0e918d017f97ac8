/**
 * Checkpoints saved with bitsandbytes quantization (transformers' load_in_4bit / load_in_8bit, as unsloth's and
 * other fine-tuners' Pixtral folders are): beside a 4-bit layer's codes `P.weight` (uint8, two a byte, the first
 * in the high nibble; or the same bytes typed bfloat16) come `P.weight.absmax` (a scale per block of the
 * flattened weight), `P.weight.quant_map` (the 16 levels: nf4 or fp4), `P.weight.quant_state.bitsandbytes__nf4`
 * (a JSON string: shape, blocksize, and for double quantization the nested block size, offset and dtype) and,
 * with double quantization, `P.weight.nested_absmax` and `P.weight.nested_quant_map` (the absmax stored as 8-bit
 * codes). An 8-bit layer is `P.weight` (int8) with `P.SCB` (each row's absmax) and `P.weight_format` (0: rows).
 *
 *   4-bit: weight[e] = levels[code e] · absmax[e / blocksize]      8-bit: weight = (code · SCB[row]) · (1/127)
 *
 * both in float32, as bitsandbytes' dequantize computes them. The layers are joined into one tensor each, a
 * ScaledType with ScaledParts (scaled.ts decodes them), before the weights are checked against the config.
 */
import type { StoredTensor } from "./safetensors.ts";
import { WeightFileError } from "./errors.ts";
import { type TensorFiles, tensorIndex } from "./scaled.ts";

const QUANT_STATE = /^(.*\.weight)\.quant_state\.bitsandbytes__(nf4|fp4)$/;
/** What only a 4-bit layer's codes have beside them. */
const COMPANION = /\.weight\.(absmax|quant_map|nested_absmax|nested_quant_map)$/;

export async function joinBnb(files: TensorFiles): Promise<void> {
  const { all, take, put } = tensorIndex(files);
  for (const [name, state] of all) {
    const match = QUANT_STATE.exec(name);
    if (match) put(await join4bit(match[1], state, take));
    else if (name.endsWith(".SCB")) put(await join8bit(name.slice(0, -".SCB".length), state, take, all));
  }
  const orphan = files.flatMap((f) => [...f.tensors.values()]).find((t) => COMPANION.test(t.name));
  if (orphan) {
    throw new WeightFileError(
      "format",
      orphan.file.path,
      "is a bitsandbytes scale without its weight's quant_state",
      orphan.name,
    );
  }
}

type Take = (name: string) => StoredTensor | undefined;

async function join4bit(p: string, state: StoredTensor, take: Take): Promise<StoredTensor> {
  const fail = (problem: string, t = state) => new WeightFileError("format", t.file.path, problem, t.name);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(
      new TextDecoder().decode(await state.file.read(state.offset, state.byteLength, state.name)),
    );
  } catch (err) {
    throw fail(`is not a bitsandbytes quant state (${(err as Error).message})`);
  }
  if (typeof json !== "object" || json === null) {
    throw fail("is not a bitsandbytes quant state (not an object)");
  }
  const shape = json.shape, blocksize = json.blocksize as number;
  if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw fail(`has shape ${JSON.stringify(shape)}, not a matrix`);
  }
  const [rows, k] = shape as number[];
  // Blocks run over the flattened weight: read per row, they must end where rows do (Pixtral's all do).
  if (!Number.isSafeInteger(blocksize) || blocksize <= 0 || k % blocksize !== 0 || k % 2 !== 0) {
    throw fail(`has blocks of ${blocksize} over rows of ${k}: only blocks that divide the rows are read`);
  }
  const codes = take(p), absmax = take(`${p}.absmax`), levels = take(`${p}.quant_map`);
  const nestedAbsmax = take(`${p}.nested_absmax`), nestedMap = take(`${p}.nested_quant_map`);
  take(state.name);
  const blocks = (rows * k) / blocksize;
  if (!codes || codes.byteLength !== (rows * k) / 2) {
    throw fail(`needs ${p} with ${(rows * k) / 2} bytes of codes beside it`);
  }
  if (!levels || levels.dtype !== "F32" || levels.byteLength !== 64) {
    throw fail(`needs ${p}.quant_map, 16 float32 levels`);
  }
  if (!absmax || absmax.shape.reduce((n, d) => n * d, 1) !== blocks) {
    throw fail(`needs ${p}.absmax, ${blocks} scales`);
  }
  let nested;
  if (absmax.dtype === "U8") {
    const nestedBlock = json.nested_blocksize as number;
    if (
      nestedAbsmax?.dtype !== "F32" || nestedMap?.dtype !== "F32" || nestedMap.byteLength !== 1024 ||
      !Number.isSafeInteger(nestedBlock) || nestedBlock <= 0 || typeof json.nested_offset !== "number" ||
      !["float32", "bfloat16", undefined].includes(json.nested_dtype as string)
    ) {
      throw fail(
        `has 8-bit absmax without float32 nested_absmax and nested_quant_map (256) beside it, or a ` +
          `nested_blocksize, nested_offset or nested_dtype (float32, bfloat16) it does not give`,
      );
    }
    if (nestedAbsmax.byteLength !== 4 * Math.ceil(blocks / nestedBlock)) {
      throw fail(
        `has ${nestedAbsmax.byteLength / 4} nested_absmax for ${blocks} blocks in blocks of ${nestedBlock}`,
      );
    }
    nested = {
      map: nestedMap,
      absmax: nestedAbsmax,
      blocksize: nestedBlock,
      offset: json.nested_offset,
      bf16: json.nested_dtype === "bfloat16",
    };
  } else if (absmax.dtype !== "F32") throw fail(`has ${absmax.dtype} absmax, not float32 or 8-bit`, absmax);
  return {
    name: p,
    dtype: "N4",
    shape: [rows, k],
    offset: codes.offset,
    byteLength: codes.byteLength,
    file: codes.file,
    scaled: {
      scale: absmax,
      offset: 0,
      grid: { rows, cols: k / blocksize, rowSpan: 1, colSpan: blocksize },
      levels,
      nested,
    },
  };
}

async function join8bit(
  module: string,
  scb: StoredTensor,
  take: Take,
  all: Map<string, StoredTensor>,
): Promise<StoredTensor> {
  const p = `${module}.weight`, codes = all.get(p);
  const fail = (problem: string) => new WeightFileError("format", scb.file.path, problem, scb.name);
  if (!codes || codes.dtype !== "I8" || codes.shape.length !== 2) throw fail(`has no int8 ${p} beside it`);
  const [rows, k] = codes.shape;
  if (scb.dtype !== "F32" || scb.byteLength !== 4 * rows) throw fail(`is not ${rows} float32 row scales`);
  // 0 is row-major; the others are GPU tile layouts of older releases.
  const format = take(`${module}.weight_format`);
  const layout = format
    ? (await format.file.read(format.offset, format.byteLength, format.name)).join(",")
    : "0";
  if (layout !== "0") {
    throw fail(`has weight_format ${layout}, a tile layout this reader does not know (0: rows)`);
  }
  take(p);
  take(scb.name);
  return {
    ...codes,
    scaled: {
      scale: scb,
      offset: 0,
      grid: { rows, cols: 1, rowSpan: 1, colSpan: k },
      factor: Math.fround(1 / 127),
    },
  };
}
