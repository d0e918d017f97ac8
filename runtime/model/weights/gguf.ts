/**
 * GGUF (llama.cpp's file format, versions 2 and 3, little-endian): magic "GGUF", version, tensor and key/value
 * counts, typed key/value metadata, tensor infos (name, dims innermost first, type, offset), then the tensor data
 * aligned to `general.alignment` (default 32). Only the header is read (a window of the file's start that
 * grows when the header is larger), never the tensor data.
 */
import { type DType, tensorBytes } from "./dtype.ts";
import { WeightFileError } from "./errors.ts";
import { BinaryFile } from "./file.ts";
import type { StoredTensor } from "./safetensors.ts";

export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** ggml_type ids (ggml.h) this loader reads. */
const TENSOR_TYPES: Record<number, DType> = {
  0: "F32",
  1: "F16",
  8: "Q8_0",
  10: "Q2_K",
  11: "Q3_K",
  12: "Q4_K",
  13: "Q5_K",
  14: "Q6_K",
  20: "IQ4_NL",
  23: "IQ4_XS",
  16: "IQ2_XXS",
  17: "IQ2_XS",
  18: "IQ3_XXS",
  19: "IQ1_S",
  21: "IQ3_S",
  22: "IQ2_S",
  29: "IQ1_M",
  30: "BF16",
  2: "Q4_0",
  3: "Q4_1",
  6: "Q5_0",
  7: "Q5_1",
};
/** Names of the ggml types we do not read, for error messages. */
const OTHER_TYPES: Record<number, string> = {
  9: "Q8_1",
  15: "Q8_K",
  24: "I8",
  25: "I16",
  26: "I32",
  27: "I64",
  28: "F64",
  34: "TQ1_0",
  35: "TQ2_0",
  39: "MXFP4",
  40: "NVFP4",
  41: "Q1_0",
  42: "Q2_0",
};

/** llama.cpp's file types (llama_ftype, general.file_type): the quantization a GGUF is named by, as Ollama shows it. */
const FILE_TYPES = (
  "F32 F16 Q4_0 Q4_1 - - - Q8_0 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ2_XXS " +
  "IQ2_XS Q2_K_S IQ3_XS IQ3_XXS IQ1_S IQ4_NL IQ3_S IQ3_M IQ2_S IQ2_M IQ4_XS IQ1_M BF16"
).split(" ");

/** The file's quantization by llama.cpp's name (`Q4_K_M`), when its general.file_type gives a known one. */
export function fileTypeName(file: GgufFile): string | undefined {
  const type = file.metadata.get("general.file_type");
  const name = typeof type === "number" ? FILE_TYPES[type] : undefined;
  return name && name !== "-" ? name : undefined;
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
/** First read of the header; a real Pixtral vocabulary (131072 tokens and their merges) takes about 8 MB. */
const FIRST_WINDOW = 16 << 20;

/** The fewest bytes a metadata value of each type takes (a string its length, an array its type and count). */
const ITEM_BYTES: Record<number, number> = {
  0: 1,
  1: 1,
  2: 2,
  3: 2,
  4: 4,
  5: 4,
  6: 4,
  7: 1,
  8: 8,
  9: 12,
  10: 8,
  11: 8,
  12: 8,
};
/** The largest header read: real ones (a 131k-token vocabulary and its merges) take a few MB. */
const MAX_HEADER_BYTES = 256 * 1024 * 1024;

/** The header ran past the bytes read so far: read a larger window and parse again. */
class NeedMore extends Error {}

/** Synchronous reads over the first bytes of the file (parsing value by value with awaits is 10x slower). */
class HeaderReader {
  #view: DataView;
  #pos = 0;
  #utf8 = new TextDecoder();

  constructor(private bytes: Uint8Array, private file: BinaryFile) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get position(): number {
    return this.#pos;
  }

  #take(n: number): number {
    const at = this.#pos;
    if (at + n > this.bytes.length) {
      if (this.bytes.length < this.file.size) throw new NeedMore();
      throw new WeightFileError(
        "truncated",
        this.file.path,
        `file is truncated: the header needs more than ${this.file.size} bytes`,
      );
    }
    this.#pos += n;
    return at;
  }

  u32(): number {
    return this.#view.getUint32(this.#take(4), true);
  }
  u64(): number {
    const v = this.#view.getBigUint64(this.#take(8), true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`a count or offset is implausibly large (${v})`);
    return Number(v);
  }
  scalar(type: number): number | bigint | boolean {
    const v = this.#view;
    switch (type) {
      case 0:
        return v.getUint8(this.#take(1));
      case 1:
        return v.getInt8(this.#take(1));
      case 2:
        return v.getUint16(this.#take(2), true);
      case 3:
        return v.getInt16(this.#take(2), true);
      case 4:
        return v.getUint32(this.#take(4), true);
      case 5:
        return v.getInt32(this.#take(4), true);
      case 6:
        return v.getFloat32(this.#take(4), true);
      case 7:
        return v.getUint8(this.#take(1)) !== 0;
      case 10:
        return safe(v.getBigUint64(this.#take(8), true));
      case 11:
        return safe(v.getBigInt64(this.#take(8), true));
      case 12:
        return v.getFloat64(this.#take(8), true);
      default:
        throw this.fail(`unknown metadata value type ${type}`);
    }
  }
  string(): string {
    const length = this.u64();
    if (length > this.file.size) throw this.fail(`a string claims ${length} bytes`);
    const at = this.#take(length);
    return this.#utf8.decode(this.bytes.subarray(at, at + length));
  }
  value(type: number, depth = 0): GgufValue {
    if (type === 8) return this.string();
    if (type !== 9) return this.scalar(type);
    if (depth > 4) throw this.fail("arrays nested too deeply");
    const itemType = this.u32();
    const count = this.u64();
    // Each item takes at least this many bytes: a count the rest of the header cannot hold is refused before
    // anything is read or allocated for it.
    const least = count * (ITEM_BYTES[itemType] ?? 1);
    if (least > this.file.size - this.#pos) {
      throw new WeightFileError(
        "truncated",
        this.file.path,
        `file is truncated: the header holds an array of ${count} items, more than the file has bytes for`,
      );
    }
    if (least > this.bytes.length - this.#pos) throw new NeedMore();
    const items: GgufValue[] = [];
    for (let i = 0; i < count; i++) items.push(this.value(itemType, depth + 1));
    return items;
  }
  fail(problem: string): WeightFileError {
    return new WeightFileError("format", this.file.path, `malformed GGUF header: ${problem}`);
  }
}

function safe(v: bigint): number | bigint {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(v) : v;
}

export class GgufFile {
  private constructor(
    readonly file: BinaryFile,
    readonly version: number,
    /** Every key/value pair, in file order; arrays (e.g. tokenizer.ggml.tokens) as JavaScript arrays. */
    readonly metadata: Map<string, GgufValue>,
    /** Tensors by their GGUF name; shapes in PyTorch order (GGUF's ne reversed). */
    readonly tensors: Map<string, StoredTensor>,
  ) {}

  get path(): string {
    return this.file.path;
  }

  /** Parses the header of `path`; `headerWindow` is the first read, grown 4x while the header is longer. */
  static async open(path: string, headerWindow = FIRST_WINDOW): Promise<GgufFile> {
    const file = await BinaryFile.open(path);
    try {
      return await GgufFile.#parse(file, headerWindow);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  static async #parse(file: BinaryFile, firstWindow: number): Promise<GgufFile> {
    for (let window = Math.min(file.size, firstWindow);; window = Math.min(file.size, window * 4)) {
      try {
        return GgufFile.#parseHeader(file, new HeaderReader(await file.read(0, window), file));
      } catch (err) {
        if (!(err instanceof NeedMore)) throw err;
        if (window >= MAX_HEADER_BYTES) {
          throw new WeightFileError(
            "format",
            file.path,
            `malformed GGUF header: it runs past ${MAX_HEADER_BYTES >> 20} MiB`,
          );
        }
      }
    }
  }

  static #parseHeader(file: BinaryFile, r: HeaderReader): GgufFile {
    if (file.size < 8 || r.u32() !== MAGIC) {
      throw new WeightFileError("format", file.path, "not a GGUF file (no GGUF magic)");
    }
    const version = r.u32();
    if (version !== 2 && version !== 3) {
      throw new WeightFileError(
        "unsupported",
        file.path,
        `GGUF version ${version} is not supported (2 or 3)`,
      );
    }
    const tensorCount = r.u64();
    const kvCount = r.u64();
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = r.string();
      if (metadata.has(key)) throw r.fail(`the key ${key} appears twice`);
      metadata.set(key, r.value(r.u32()));
    }
    const infos: { name: string; ne: number[]; type: number; offset: number }[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = r.string();
      const nDims = r.u32();
      if (nDims > 8) throw r.fail(`tensor "${name}" has ${nDims} dimensions`);
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) ne.push(r.u64());
      infos.push({ name, ne, type: r.u32(), offset: r.u64() });
    }
    const alignment = metadata.get("general.alignment") ?? 32;
    if (
      typeof alignment !== "number" || !Number.isInteger(alignment) || alignment < 8 ||
      (alignment & (alignment - 1)) !== 0
    ) {
      throw r.fail(`general.alignment ${JSON.stringify(alignment)} is not a power of two of at least 8`);
    }
    const dataStart = Math.ceil(r.position / alignment) * alignment;

    const tensors = new Map<string, StoredTensor>();
    let expected = 0;
    for (const { name, ne, type, offset } of infos) {
      const dtype = TENSOR_TYPES[type];
      if (!dtype) {
        const typeName = OTHER_TYPES[type] ?? `#${type}`;
        throw new WeightFileError(
          "unsupported",
          file.path,
          `ggml type ${typeName} is not supported (${Object.values(TENSOR_TYPES).join(", ")} are)`,
          name,
        );
      }
      const shape = [...ne].reverse();
      const byteLength = tensorBytes(dtype, shape);
      if (byteLength === null) {
        throw new WeightFileError(
          "format",
          file.path,
          `row length ${ne[0]} is not a whole number of ${dtype} blocks`,
          name,
        );
      }
      // Each tensor follows the one before it, padded to the alignment, as ggml's reader requires: a gap or an overlap
      // means a tensor's type, shape or general.alignment is declared wrong, and its bytes would load as another's.
      if (offset !== expected) {
        throw r.fail(
          `tensor "${name}" starts at ${offset} but the tensors before it end at ${expected} ` +
            `(padded to ${alignment}): a type, shape or general.alignment is declared wrong`,
        );
      }
      expected += Math.ceil(byteLength / alignment) * alignment;
      const at = dataStart + offset;
      if (at + byteLength > file.size) {
        throw new WeightFileError(
          "truncated",
          file.path,
          `file is truncated: the tensor ends at byte ${at + byteLength} but the file has ${file.size}`,
          name,
        );
      }
      if (tensors.has(name)) throw r.fail(`tensor "${name}" appears twice`);
      tensors.set(name, { name, dtype, shape, offset: at, byteLength, file });
    }
    return new GgufFile(file, version, metadata, tensors);
  }

  /** A metadata value, or an error naming the file and key when it is absent or of the wrong kind. */
  get<T extends GgufValue>(key: string, kind: "number" | "string" | "boolean" | "array"): T {
    const value = this.metadata.get(key);
    if (value === undefined) {
      throw new WeightFileError("format", this.path, `metadata key "${key}" is missing`);
    }
    const actual = Array.isArray(value) ? "array" : typeof value === "bigint" ? "number" : typeof value;
    if (actual !== kind) {
      throw new WeightFileError(
        "format",
        this.path,
        `metadata key "${key}" is a ${actual}, expected a ${kind}`,
      );
    }
    return value as T;
  }

  close(): void {
    this.file.close();
  }
}
