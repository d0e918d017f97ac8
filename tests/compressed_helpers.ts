/**
 * compressed-tensors checkpoints of the tiny fixture, made here as llm-compressor makes them (absmax scales in
 * bf16, codes as its compressors store them; the conventions are checked against the library itself by the
 * golden vectors in fixtures/compressed/), with a dense float32 twin holding exactly the dequantized weights.
 */
import { type SafetensorsEntry, TINY, writeSafetensors } from "./weights_helpers.ts";
import { readSafetensors } from "./weights_helpers.ts";
import assert from "node:assert/strict";
import { toFloat32 } from "../runtime/model/weights/convert.ts";
import type { ScaledType } from "../runtime/model/weights/dtype.ts";
import type { SafetensorsFile, StoredTensor } from "../runtime/model/weights/safetensors.ts";
import { decodeScaled, readScales } from "../runtime/model/weights/scaled.ts";
import type { QuantizationHint } from "../runtime/model/weights/quantization_config.ts";

export interface Scheme {
  codes: "fp8" | "int8" | "int4";
  strategy: "tensor" | "channel" | "group" | "block";
  groupSize?: number;
  symmetric?: boolean;
  /** GPTQ's activation order: columns grouped in a shuffled order, written as weight_g_idx. */
  actorder?: boolean;
  /** int8 codes packed in int32 words (pack-quantized W8A16) rather than stored as int8. */
  packed?: boolean;
  /** Quantize the vision tower and the adapter too (the recipes leave them alone). */
  all?: boolean;
}

const BLOCK = 128;

/** Rounds to bfloat16 (nearest, ties to even), as scales are stored. */
function bf16(x: number): number {
  const f = new Float32Array([x]), u = new Uint32Array(f.buffer);
  u[0] = (u[0] + 0x7fff + ((u[0] >> 16) & 1)) & 0xffff0000;
  return f[0];
}

function bf16Bytes(values: number[]): Uint8Array {
  const f = Float32Array.from(values), u = new Uint32Array(f.buffer);
  return new Uint8Array(Uint16Array.from(u, (x) => x >>> 16).buffer);
}

/** FP8 E4M3 values of the 127 non-negative finite patterns, ascending with the pattern. */
const E4M3_POSITIVE = Array.from({ length: 127 }, (_, b) => {
  const e = b >> 3, m = b & 7;
  return e === 0 ? (m / 8) * 2 ** -6 : (1 + m / 8) * 2 ** (e - 7);
});

function toE4M3(x: number): number {
  const a = Math.min(Math.abs(x), 448);
  let lo = 0, hi = 126;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (E4M3_POSITIVE[mid] <= a) lo = mid;
    else hi = mid;
  }
  const b = a - E4M3_POSITIVE[lo] < E4M3_POSITIVE[hi] - a ? lo : hi;
  return (x < 0 ? 0x80 : 0) | b;
}

function mulberry32(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** One matrix compressed: the stored tensors (by suffix: weight, weight_scale...) and its dequantized values. */
export function compressMatrix(
  w: Float32Array,
  rows: number,
  k: number,
  scheme: Scheme,
  seed = 1,
): Quantized {
  const { codes, strategy } = scheme;
  const symmetric = scheme.symmetric ?? true;
  const qmax = codes === "int4" ? 7 : 127, qmin = -qmax - 1;
  // The group of each column (activation order: a shuffled order cut into groups).
  const groupSize = strategy === "group" ? scheme.groupSize! : strategy === "block" ? BLOCK : k;
  const order = Array.from({ length: k }, (_, i) => i);
  if (scheme.actorder) {
    const random = mulberry32(seed);
    for (let i = k - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
  }
  const groupOf = new Int32Array(k);
  order.forEach((c, rank) => groupOf[c] = Math.floor(rank / groupSize));
  const groups = Math.ceil(k / groupSize);
  const rowSpan = strategy === "block" ? BLOCK : strategy === "tensor" ? rows : 1;
  const scaleRows = Math.ceil(rows / rowSpan), scaleCols = strategy === "tensor" ? 1 : groups;
  const scale = new Array<number>(scaleRows * scaleCols).fill(0);
  const zero = new Array<number>(scaleRows * scaleCols).fill(0);
  const at = (r: number, c: number) =>
    Math.floor(r / rowSpan) * scaleCols + (scaleCols === 1 ? 0 : groupOf[c]);
  const lo = new Array<number>(scale.length).fill(0), hi = new Array<number>(scale.length).fill(0);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < k; c++) {
      const i = at(r, c);
      lo[i] = Math.min(lo[i], w[r * k + c]);
      hi[i] = Math.max(hi[i], w[r * k + c]);
    }
  }
  for (let i = 0; i < scale.length; i++) {
    if (codes === "fp8") scale[i] = bf16(Math.max(-lo[i], hi[i]) / 448);
    else if (symmetric) scale[i] = bf16(Math.max(-lo[i], hi[i]) / ((qmax - qmin) / 2));
    else {
      scale[i] = bf16((hi[i] - lo[i]) / (qmax - qmin));
      zero[i] = Math.min(qmax, Math.max(qmin, Math.round(qmin - lo[i] / scale[i])));
    }
    if (scale[i] === 0) scale[i] = 1;
  }
  const q = new Int32Array(rows * k);
  const dequantized = new Float32Array(rows * k);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < k; c++) {
      const i = at(r, c), x = w[r * k + c] / scale[i];
      if (codes === "fp8") {
        q[r * k + c] = toE4M3(x);
        const b = q[r * k + c];
        dequantized[r * k + c] = (b & 0x80 ? -1 : 1) * E4M3_POSITIVE[b & 0x7f] * scale[i];
      } else {
        q[r * k + c] = Math.min(qmax, Math.max(qmin, Math.round(x) + zero[i]));
        dequantized[r * k + c] = (q[r * k + c] - zero[i]) * scale[i];
      }
    }
  }
  const stored: Record<string, Omit<SafetensorsEntry, "name">> = {};
  stored.weight_scale = {
    dtype: "BF16",
    shape: strategy === "tensor" ? [1] : [scaleRows, scaleCols],
    data: bf16Bytes(scale),
  };
  if (codes === "fp8") {
    stored.weight = { dtype: "F8_E4M3", shape: [rows, k], data: Uint8Array.from(q) };
  } else if (codes === "int8" && !scheme.packed) {
    stored.weight = { dtype: "I8", shape: [rows, k], data: new Uint8Array(Int8Array.from(q).buffer) };
    if (!symmetric) {
      stored.weight_zero_point = {
        dtype: "I8",
        shape: [scaleRows, scaleCols],
        data: new Uint8Array(Int8Array.from(zero).buffer),
      };
    }
  } else {
    // pack_to_int32: codes + 2^(bits-1), element i of each 32/bits at bit i·bits of an int32 word.
    const bits = codes === "int4" ? 4 : 8, per = 32 / bits, offset = 1 << (bits - 1);
    const words = new Uint32Array(rows * k / per);
    for (let i = 0; i < rows * k; i++) words[Math.floor(i / per)] |= (q[i] + offset) << (bits * (i % per));
    stored.weight_packed = { dtype: "I32", shape: [rows, k / per], data: new Uint8Array(words.buffer) };
    stored.weight_shape = {
      dtype: "I64",
      shape: [2],
      data: new Uint8Array(BigInt64Array.from([BigInt(rows), BigInt(k)]).buffer),
    };
    if (!symmetric) {
      // Packed along the rows (packed_dim=0).
      const zw = new Uint32Array(Math.ceil(scaleRows / per) * scaleCols);
      for (let r = 0; r < scaleRows; r++) {
        for (let g = 0; g < scaleCols; g++) {
          zw[Math.floor(r / per) * scaleCols + g] |= (zero[r * scaleCols + g] + offset) << (bits * (r % per));
        }
      }
      stored.weight_zero_point = {
        dtype: "I32",
        shape: [zw.length / scaleCols, scaleCols],
        data: new Uint8Array(zw.buffer),
      };
    }
  }
  if (scheme.actorder) {
    stored.weight_g_idx = { dtype: "I32", shape: [k], data: new Uint8Array(groupOf.buffer) };
  }
  return { stored, dequantized };
}

const TEXT_LINEAR = /^language_model\.model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight$/;
const VISION_LINEAR =
  /^(vision_tower\.transformer\.layers\.\d+\.(attention|feed_forward)\.\w+_proj|multi_modal_projector\.linear_\d)\.weight$/;

/**
 * Asserts that the joined tensor `m.weight` of a golden case (tensors named `<name>.<suffix>` in `file`) decodes
 * to `<name>.expected`, bit for bit (-0.0 included).
 */
export async function assertDecodesAsGolden(
  file: SafetensorsFile,
  tensors: Map<string, StoredTensor>,
  name: string,
  shape: number[],
): Promise<void> {
  assert.deepEqual([...tensors.keys()], ["m.weight"], name);
  const t = tensors.get("m.weight")!;
  assert.deepEqual(t.shape, shape, name);
  const codes = await file.file.read(t.offset, t.byteLength);
  const values = decodeScaled(t.dtype as ScaledType, codes, 0, await readScales(t));
  const want = file.tensors.get(`${name}.expected`)!;
  const expected = new Float32Array((await file.file.read(want.offset, want.byteLength)).buffer);
  const wrong = values.findIndex((v, i) => !Object.is(v, expected[i]));
  assert.equal(wrong, -1, `${name}: value ${wrong} is ${values[wrong]}, the reference's ${expected[wrong]}`);
}

/** A matrix stored quantized: its tensors by suffix after the layer's name (`weight`, `weight_scale`...). */
export type Quantized = { stored: Record<string, Omit<SafetensorsEntry, "name">>; dequantized: Float32Array };

/**
 * The tiny fixture's hf/ folder with the matrices `quantize` takes (it returns undefined for the others) stored
 * its way, into `dir`/compressed with `quantizationConfig` in config.json, and its dense float32 twin holding
 * exactly the dequantized weights into `dir`/dense. Returns the number of matrices quantized.
 */
export async function writeQuantizedTiny(
  dir: string,
  quantize: (name: string, w: Float32Array, rows: number, k: number, seed: number) => Quantized | undefined,
  quantizationConfig: unknown,
): Promise<number> {
  const entries = await readSafetensors(`${TINY}hf/model.safetensors`);
  const compressed: SafetensorsEntry[] = [], dense: SafetensorsEntry[] = [];
  let count = 0;
  for (const [i, e] of entries.entries()) {
    const quantized = e.shape.length === 2 && e.name.endsWith(".weight")
      ? quantize(e.name, toFloat32("BF16", e.data), e.shape[0], e.shape[1], i + 1)
      : undefined;
    if (!quantized) {
      compressed.push(e);
      dense.push(e);
      continue;
    }
    const prefix = e.name.slice(0, -"weight".length);
    for (const [suffix, t] of Object.entries(quantized.stored)) {
      compressed.push({ name: prefix + suffix, ...t });
    }
    dense.push({
      name: e.name,
      dtype: "F32",
      shape: e.shape,
      data: new Uint8Array(quantized.dequantized.buffer),
    });
    count++;
  }
  const config = JSON.parse(await Deno.readTextFile(`${TINY}hf/config.json`));
  for (const [name, tensors] of [["compressed", compressed], ["dense", dense]] as const) {
    await Deno.mkdir(`${dir}/${name}`, { recursive: true });
    await writeSafetensors(`${dir}/${name}/model.safetensors`, tensors);
    for (const f of ["tekken.json", "preprocessor_config.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${TINY}hf/${f}`, `${dir}/${name}/${f}`);
    }
    const quantization = name === "dense" ? {} : { quantization_config: quantizationConfig };
    await Deno.writeTextFile(`${dir}/${name}/config.json`, JSON.stringify({ ...config, ...quantization }));
  }
  return count;
}

/** The tiny fixture compressed with `scheme` as llm-compressor would (writeQuantizedTiny). */
export async function writeCompressedTiny(dir: string, scheme: Scheme): Promise<number> {
  return await writeQuantizedTiny(
    dir,
    (name, w, rows, k, seed) =>
      TEXT_LINEAR.test(name) || (scheme.all && VISION_LINEAR.test(name))
        ? compressMatrix(w, rows, k, scheme, seed)
        : undefined,
    quantizationConfig(scheme),
  );
}

/** What quantization_config would say of a matrix compressed with `scheme` (joinScaled's hint). */
export function hintOf(scheme: Scheme): QuantizationHint {
  return {
    groupSize: scheme.strategy === "group" ? scheme.groupSize : undefined,
    block: scheme.strategy === "block" ? [BLOCK, BLOCK] : undefined,
    symmetric: scheme.symmetric ?? true,
  };
}

/** The quantization_config llm-compressor writes for the scheme (the fields this reader looks at and a few more). */
export function quantizationConfig(scheme: Scheme) {
  const bits = scheme.codes === "int4" ? 4 : 8;
  return {
    quant_method: "compressed-tensors",
    format: scheme.codes === "fp8"
      ? "float-quantized"
      : scheme.codes === "int8" && !scheme.packed
      ? "int-quantized"
      : "pack-quantized",
    quantization_status: "compressed",
    ignore: scheme.all
      ? ["language_model.lm_head"]
      : ["language_model.lm_head", "re:vision_tower.*", "re:multi_modal_projector.*"],
    config_groups: {
      group_0: {
        targets: ["Linear"],
        weights: {
          num_bits: bits,
          type: scheme.codes === "fp8" ? "float" : "int",
          strategy: scheme.strategy,
          group_size: scheme.strategy === "group" ? scheme.groupSize : null,
          block_structure: scheme.strategy === "block" ? [BLOCK, BLOCK] : null,
          symmetric: scheme.symmetric ?? true,
          actorder: scheme.actorder ? "group" : null,
          dynamic: false,
        },
        input_activations: null,
      },
    },
  };
}
