/**
 * WeightSource: the model's tensors under their own names, whatever layout they came from. Every tensor the
 * config needs is checked (present, right shape, a dtype its role allows) when the source is opened, before
 * anything is loaded; bytes are then read one tensor (or one chunk of rows) at a time, with Hugging Face's q/k
 * rows put back in native order on the way.
 */
import type { ModelConfig } from "../config.ts";
import { type Component, expectedTensors, type TensorRole, type TensorSpec } from "../tensors.ts";
import { type DType, isFloat, isScaled } from "./dtype.ts";
import { WeightFileError } from "./errors.ts";
import type { BinaryFile } from "./file.ts";
import { canonicalName, type Layout, REDUNDANT } from "./names.ts";
import { rotateHalfToInterleaved } from "./permute.ts";
import type { LowRank } from "./lora.ts";
import { readScales, type Scales } from "./scaled.ts";
import { openShardedSafetensors, SafetensorsFile, type StoredTensor } from "./safetensors.ts";

export type { Layout } from "./names.ts";

export interface TensorInfo {
  /** The model's own name, e.g. `layers.0.attention.wq.weight`. */
  name: string;
  dtype: DType;
  /** PyTorch order, [out, in] for linear layers (GGUF's reversed dims already put right). */
  shape: number[];
  /** Bytes as stored (quantized blocks included). */
  byteLength: number;
  component: Component;
  role: TensorRole;
  /** The file and the name it is stored under there. */
  file: string;
  storedName: string;
  /** True when the rows are reordered from Hugging Face's rotate-half layout at read time. */
  permuted: boolean;
}

export interface TensorChunk {
  /** Where these bytes start within the tensor. */
  byteOffset: number;
  bytes: Uint8Array<ArrayBuffer>;
}

export interface WeightSource {
  readonly layout: Layout;
  readonly files: readonly string[];
  /** Tensors in the files that the model does not use, the REDUNDANT ones aside (logged at load). */
  readonly unused: readonly string[];
  /** Every tensor the config needs, in file order (so loading reads each file front to back). */
  tensors(): TensorInfo[];
  info(name: string): TensorInfo;
  /** The whole tensor in its stored dtype; rows of HF q/k already in native order. */
  read(name: string): Promise<Uint8Array<ArrayBuffer>>;
  /** The same bytes in pieces of at most `maxBytes` (whole rows; whole heads for permuted q/k). */
  chunks(name: string, maxBytes?: number): AsyncGenerator<TensorChunk>;
  /** The scales of a weight stored as codes (a ScaledType), rows in the order chunks() gives them. */
  scales(name: string): Promise<Scales>;
  /** Tensors that LoRA adapters update as they load (lora.ts withLora); none when absent. */
  readonly merged?: ReadonlySet<string>;
  /** The update of a tensor in `merged`, rows in the order chunks() gives them. */
  lowRank?(name: string): Promise<LowRank | undefined>;
  close(): void;
}

interface Entry {
  info: TensorInfo;
  stored: StoredTensor;
  rope?: { heads: number; headDim: number };
}

const FLOAT_ONLY: TensorRole[] = ["norm", "bias", "conv"];
const DEFAULT_CHUNK = 64 << 20;

class FileWeightSource implements WeightSource {
  readonly files: readonly string[];
  #byName: Map<string, Entry>;
  #ordered: TensorInfo[];

  constructor(
    readonly layout: Layout,
    private handles: BinaryFile[],
    entries: Entry[],
    readonly unused: readonly string[],
  ) {
    this.files = handles.map((h) => h.path);
    this.#byName = new Map(entries.map((e) => [e.info.name, e]));
    const fileOrder = new Map(this.files.map((f, i) => [f, i]));
    this.#ordered = entries
      .sort((a, b) =>
        fileOrder.get(a.info.file)! - fileOrder.get(b.info.file)! || a.stored.offset - b.stored.offset
      )
      .map((e) => e.info);
  }

  tensors(): TensorInfo[] {
    return [...this.#ordered];
  }

  info(name: string): TensorInfo {
    return this.#entry(name).info;
  }

  async read(name: string): Promise<Uint8Array<ArrayBuffer>> {
    const { stored, rope, info } = this.#entry(name);
    const bytes = await stored.file.read(stored.offset, stored.byteLength, info.name);
    return rope ? rotateHalfToInterleaved(bytes, rowBytesOf(stored), rope.headDim) : bytes;
  }

  async *chunks(name: string, maxBytes = DEFAULT_CHUNK): AsyncGenerator<TensorChunk> {
    const { stored, rope, info } = this.#entry(name);
    const row = rowBytesOf(stored);
    const unit = rope ? row * rope.headDim : row;
    const step = Math.max(1, Math.floor(maxBytes / unit)) * unit;
    for (let at = 0; at < stored.byteLength; at += step) {
      const length = Math.min(step, stored.byteLength - at);
      const bytes = await stored.file.read(stored.offset + at, length, info.name);
      yield { byteOffset: at, bytes: rope ? rotateHalfToInterleaved(bytes, row, rope.headDim) : bytes };
    }
  }

  async scales(name: string): Promise<Scales> {
    const { stored, rope } = this.#entry(name);
    if (!stored.scaled) throw new TypeError(`tensor "${name}" has no scales`);
    return await readScales(stored, rope?.headDim);
  }

  #entry(name: string): Entry {
    const entry = this.#byName.get(name);
    if (!entry) {
      throw new WeightFileError("missing", this.files.join(", "), "not a tensor of this model", name);
    }
    return entry;
  }

  close(): void {
    for (const h of this.handles) h.close();
  }
}

/** Bytes per row: the innermost dimension, in blocks for quantized types. */
function rowBytesOf(t: StoredTensor): number {
  const rows = t.shape.slice(0, -1).reduce((n, d) => n * d, 1);
  return t.byteLength / rows;
}

/** A parsed weight file: a safetensors file or a GGUF file. */
export interface TensorContainer {
  readonly file: BinaryFile;
  readonly tensors: Map<string, StoredTensor>;
}

/**
 * The WeightSource over parsed files of one layout: matches their tensors against what the config needs and
 * fails on the first missing, misshapen or wrongly typed one. Takes ownership of the files (closes them on
 * error and on close()).
 */
export function createWeightSource(
  layout: Layout,
  config: ModelConfig,
  containers: TensorContainer[],
): WeightSource {
  try {
    return build(layout, config, containers);
  } catch (err) {
    containers.forEach((c) => c.file.close());
    throw err;
  }
}

function build(layout: Layout, config: ModelConfig, containers: TensorContainer[]): FileWeightSource {
  const byCanonical = new Map<string, StoredTensor>();
  const unused: string[] = [];
  for (const t of containers.flatMap((c) => [...c.tensors.values()])) {
    const name = canonicalName(layout, t.name);
    if (name === null) {
      if (!REDUNDANT.has(t.name)) unused.push(t.name);
      continue;
    }
    const twin = byCanonical.get(name);
    if (twin) {
      throw new WeightFileError(
        "format",
        t.file.path,
        `stored twice (also as "${twin.name}" in ${twin.file.path})`,
        t.name,
      );
    }
    byCanonical.set(name, t);
  }
  const paths = containers.map((c) => c.file.path);
  // Where a missing tensor should have been: for GGUF the text file or the mmproj, else every file.
  const home = (spec: TensorSpec) =>
    layout === "gguf" && paths.length === 2 ? paths[spec.component === "decoder" ? 0 : 1] : paths.join(", ");
  const entries: Entry[] = [];
  const wanted = new Set<string>();
  for (const spec of expectedTensors(config)) {
    wanted.add(spec.name);
    const t = byCanonical.get(spec.name);
    if (!t) {
      const why = layout === "gguf" && spec.component !== "decoder" && paths.length === 1
        ? "is missing: vision tensors live in the mmproj GGUF (pass --mmproj FILE)"
        : layout === "mistral"
        ? "is missing"
        : `is missing (named as Mistral's files name it; ${
          layout === "hf" ? "Hugging Face" : "GGUF"
        } files name it their own way)`;
      throw new WeightFileError("missing", home(spec), why, spec.name);
    }
    const stored = t.name !== spec.name ? t.name : undefined;
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new WeightFileError(
        "shape",
        t.file.path,
        `has shape ${JSON.stringify(t.shape)} but the config needs ${JSON.stringify(spec.shape)}`,
        spec.name,
        stored,
      );
    }
    if (isScaled(t.dtype) && !t.scaled) {
      // Codes come with their scales only in Hugging Face folders (joinScaled, joinBnb).
      throw new WeightFileError(
        "dtype",
        t.file.path,
        `is ${t.dtype} codes without their scales`,
        spec.name,
        stored,
      );
    }
    if (t.dtype === "I32" || t.dtype === "I64" || t.dtype === "U8") {
      throw new WeightFileError("dtype", t.file.path, `is ${t.dtype}, not a weight type`, spec.name, stored);
    }
    if (!isFloat(t.dtype) && FLOAT_ONLY.includes(spec.role)) {
      throw new WeightFileError(
        "dtype",
        t.file.path,
        `is ${t.dtype} but a ${spec.role} must be F32, F16 or BF16`,
        spec.name,
        stored,
      );
    }
    // GGUF q/k are already interleaved (llama.cpp's converter un-permutes them); only HF files need it.
    const rope = layout === "hf" ? spec.rope : undefined;
    entries.push({
      stored: t,
      rope,
      info: {
        name: spec.name,
        dtype: t.dtype,
        shape: spec.shape,
        byteLength: t.byteLength,
        component: spec.component,
        role: spec.role,
        file: t.file.path,
        storedName: t.name,
        permuted: rope !== undefined,
      },
    });
  }
  for (const [name, t] of byCanonical) {
    if (wanted.has(name)) continue;
    // A layer past the config's count: config and weights disagree, and the model would run cut short.
    const layer = /^(vision_encoder\.transformer\.)?layers\.(\d+)\./.exec(name);
    const count = layer?.[1] ? config.vision?.nLayers : config.decoder.nLayers;
    if (layer && count !== undefined && Number(layer[2]) >= count) {
      throw new WeightFileError(
        "shape",
        t.file.path,
        `is in layer ${layer[2]}, but the config gives the ${
          layer[1] ? "vision encoder" : "decoder"
        } ${count} layers`,
        t.name,
      );
    }
    unused.push(t.name);
  }
  return new FileWeightSource(layout, containers.map((c) => c.file), entries, unused);
}

/** Opens safetensors weights: a model.safetensors.index.json with its shards, or the given files. */
export async function openSafetensors(paths: string[]): Promise<SafetensorsFile[]> {
  if (paths.length === 1 && paths[0].endsWith(".json")) return await openShardedSafetensors(paths[0]);
  const files: SafetensorsFile[] = [];
  try {
    for (const p of paths) files.push(await SafetensorsFile.open(p));
  } catch (err) {
    files.forEach((f) => f.close());
    throw err;
  }
  return files;
}
