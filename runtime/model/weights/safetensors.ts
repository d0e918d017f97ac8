/**
 * safetensors: an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then
 * the raw tensor bytes (offsets relative to the end of the header). Sharded checkpoints add
 * model.safetensors.index.json ({"weight_map": {tensor: shard file}}).
 */
import { type DType, tensorBytes } from "./dtype.ts";
import { WeightFileError } from "./errors.ts";
import { BinaryFile } from "./file.ts";
import type { ScaledParts } from "./scaled.ts";

/** One tensor as stored: its bytes are `byteLength` bytes at `offset` (absolute) in `file`. */
export interface StoredTensor {
  name: string;
  dtype: DType;
  /** PyTorch order: outermost first. */
  shape: number[];
  offset: number;
  byteLength: number;
  file: BinaryFile;
  /** For a compressed-tensors weight, its scales and the rest (joined by scaled.ts). */
  scaled?: ScaledParts;
}

/**
 * Two tensors of one file whose bytes overlap (the one that starts first, then the other), if any: each byte
 * belongs to one tensor at most, and two over the same bytes would load as a wrong model without a word.
 */
function overlap(tensors: Iterable<StoredTensor>): [StoredTensor, StoredTensor] | undefined {
  const spans = [...tensors].filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i].offset < spans[i - 1].offset + spans[i - 1].byteLength) return [spans[i - 1], spans[i]];
  }
  return undefined;
}

/** Floats, and the codes and companions of compressed-tensors and bitsandbytes checkpoints (scaled.ts, bnb.ts). */
const DTYPES: Record<string, DType> = {
  F32: "F32",
  F16: "F16",
  BF16: "BF16",
  F8_E4M3: "F8_E4M3",
  I8: "I8",
  I32: "I32",
  I64: "I64",
  U8: "U8",
};
/** safetensors refuses headers above 100 MB; so do we, before allocating. */
const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsFile {
  private constructor(
    readonly file: BinaryFile,
    readonly tensors: Map<string, StoredTensor>,
    readonly metadata: Record<string, string>,
  ) {}

  get path(): string {
    return this.file.path;
  }

  static async open(path: string): Promise<SafetensorsFile> {
    const file = await BinaryFile.open(path);
    try {
      return await SafetensorsFile.#parse(file);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  static async #parse(file: BinaryFile): Promise<SafetensorsFile> {
    const fail = (problem: string, tensor?: string) =>
      new WeightFileError("format", file.path, problem, tensor);
    if (file.size < 8) {
      throw new WeightFileError("truncated", file.path, `file is truncated: ${file.size} bytes`);
    }
    const headerLength = new DataView((await file.read(0, 8)).buffer).getBigUint64(0, true);
    if (headerLength > BigInt(MAX_HEADER_BYTES)) {
      throw fail(`not a safetensors file: header length ${headerLength} exceeds ${MAX_HEADER_BYTES} bytes`);
    }
    const dataStart = 8 + Number(headerLength);
    if (dataStart > file.size) {
      throw new WeightFileError(
        "truncated",
        file.path,
        `file is truncated: the header needs ${dataStart} bytes but the file has ${file.size}`,
      );
    }
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(
        new TextDecoder("utf-8", { fatal: true }).decode(await file.read(8, dataStart - 8)),
      );
    } catch (err) {
      throw fail(`not a safetensors file: header is not JSON (${(err as Error).message})`);
    }
    if (typeof header !== "object" || header === null || Array.isArray(header)) {
      throw fail("not a safetensors file: header is not a JSON object");
    }

    const tensors = new Map<string, StoredTensor>();
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === "__metadata__") {
        metadata = entry as Record<string, string>;
        continue;
      }
      const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as Record<string, unknown>;
      if (typeof dtype !== "string" || !isShape(shape) || !isOffsets(offsets)) {
        throw fail("malformed header entry (needs dtype, shape, data_offsets)", name);
      }
      const known = Object.hasOwn(DTYPES, dtype) ? DTYPES[dtype] : undefined;
      if (!known) {
        throw new WeightFileError(
          "unsupported",
          file.path,
          `dtype ${dtype} is not supported (${Object.keys(DTYPES).join(", ")})`,
          name,
        );
      }
      const byteLength = tensorBytes(known, shape)!;
      const [begin, end] = offsets;
      if (end - begin !== byteLength) {
        throw fail(
          `data_offsets span ${end - begin} bytes but ${dtype} ${JSON.stringify(shape)} needs ${byteLength}`,
          name,
        );
      }
      if (dataStart + end > file.size) {
        throw new WeightFileError(
          "truncated",
          file.path,
          `file is truncated: the tensor ends at byte ${dataStart + end} but the file has ${file.size}`,
          name,
        );
      }
      tensors.set(name, { name, dtype: known, shape, offset: dataStart + begin, byteLength, file });
    }
    // Each byte belongs to one tensor at most (the safetensors library itself wants them back to back): two
    // tensors over the same bytes would load as a wrong model without a word.
    const overlapping = overlap(tensors.values());
    if (overlapping) {
      throw fail(`its data_offsets overlap those of ${overlapping[0].name}`, overlapping[1].name);
    }
    return new SafetensorsFile(file, tensors, metadata);
  }

  close(): void {
    this.file.close();
  }
}

function isShape(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((d) => Number.isSafeInteger(d) && d >= 0);
}

function isOffsets(v: unknown): v is [number, number] {
  return Array.isArray(v) && v.length === 2 && v.every((d) => Number.isSafeInteger(d) && d >= 0) &&
    v[0] <= v[1];
}

/**
 * A sharded checkpoint: opens every shard named in the index and checks that each listed tensor is where the
 * index says. Returns all tensors by name.
 */
export async function openShardedSafetensors(indexPath: string): Promise<SafetensorsFile[]> {
  let index: { weight_map?: Record<string, string> };
  try {
    index = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (err) {
    throw new WeightFileError("format", indexPath, `cannot read the shard index: ${(err as Error).message}`);
  }
  const map = index.weight_map;
  if (typeof map !== "object" || map === null) {
    throw new WeightFileError("format", indexPath, `the shard index has no "weight_map" object`);
  }
  const dir = indexPath.slice(0, indexPath.lastIndexOf("/") + 1);
  for (const [tensor, shard] of Object.entries(map)) {
    if (typeof shard !== "string" || shard === "" || shard === "." || shard === "..") {
      throw new WeightFileError(
        "format",
        indexPath,
        `the shard of ${tensor} is ${JSON.stringify(shard)}`,
        tensor,
      );
    }
  }
  if (Object.keys(map).length === 0) {
    throw new WeightFileError("format", indexPath, `the shard index's "weight_map" lists no tensor`);
  }
  const shardNames = [...new Set(Object.values(map))].sort();
  const shards: SafetensorsFile[] = [];
  try {
    for (const shard of shardNames) {
      if (shard.includes("/") || shard.includes("\\")) {
        throw new WeightFileError("format", indexPath, `shard name "${shard}" is not a plain file name`);
      }
      shards.push(await SafetensorsFile.open(dir + shard));
    }
    const byName = new Map(shards.map((s, i) => [shardNames[i], s]));
    for (const [tensor, shard] of Object.entries(map)) {
      if (!byName.get(shard)!.tensors.has(tensor)) {
        throw new WeightFileError(
          "missing",
          dir + shard,
          "listed in model.safetensors.index.json but not in the shard",
          tensor,
        );
      }
    }
  } catch (err) {
    shards.forEach((s) => s.close());
    throw err;
  }
  return shards;
}
