/**
 * GGUF (llama.cpp's file format, versions 2 and 3, little-endian): magic "GGUF", version, tensor and key/value
 * counts, typed key/value metadata, tensor infos (name, dims innermost first, type, offset), then the tensor data
 * aligned to `general.alignment` (default 32). The header is parsed through a sliding buffer so that large
 * vocabularies are read without loading the file.
 */
import { type DType, tensorBytes } from "./dtype.ts";
import { WeightFileError } from "./errors.ts";
import { BinaryFile } from "./file.ts";
import type { StoredTensor } from "./safetensors.ts";

export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** ggml_type ids (ggml.h) this loader hands to the kernels. */
const TENSOR_TYPES: Record<number, DType> = {
  0: "F32",
  1: "F16",
  8: "Q8_0",
  12: "Q4_K",
  14: "Q6_K",
  30: "BF16",
};
/** Names of the ggml types we do not read, for error messages. */
const OTHER_TYPES: Record<number, string> = {
  2: "Q4_0",
  3: "Q4_1",
  6: "Q5_0",
  7: "Q5_1",
  9: "Q8_1",
  10: "Q2_K",
  11: "Q3_K",
  13: "Q5_K",
  15: "Q8_K",
  16: "IQ2_XXS",
  17: "IQ2_XS",
  18: "IQ3_XXS",
  19: "IQ1_S",
  20: "IQ4_NL",
  21: "IQ3_S",
  22: "IQ2_S",
  23: "IQ4_XS",
  24: "I8",
  25: "I16",
  26: "I32",
  27: "I64",
  28: "F64",
  29: "IQ1_M",
  34: "TQ1_0",
  35: "TQ2_0",
  39: "MXFP4",
};

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const CHUNK = 1 << 20;

class HeaderReader {
  #buf = new Uint8Array(0);
  #view = new DataView(this.#buf.buffer);
  #start = 0; // file offset of #buf[0]
  #pos = 0; // file offset of the next byte to parse
  #utf8 = new TextDecoder();

  constructor(private file: BinaryFile) {}

  get position(): number {
    return this.#pos;
  }

  async #ensure(n: number): Promise<void> {
    const have = this.#start + this.#buf.length - this.#pos;
    if (have >= n) return;
    const want = Math.max(n, CHUNK);
    const available = this.file.size - this.#pos;
    if (available < n) {
      throw new WeightFileError(
        "truncated",
        this.file.path,
        `file is truncated: the header needs more than ${this.file.size} bytes`,
      );
    }
    this.#buf = await this.file.read(this.#pos, Math.min(want, available));
    this.#view = new DataView(this.#buf.buffer);
    this.#start = this.#pos;
  }

  async u8(): Promise<number> {
    await this.#ensure(1);
    return this.#view.getUint8(this.#pos++ - this.#start);
  }
  async u32(): Promise<number> {
    await this.#ensure(4);
    const v = this.#view.getUint32(this.#pos - this.#start, true);
    this.#pos += 4;
    return v;
  }
  async u64(): Promise<number> {
    const v = await this.u64big();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`a count or offset is implausibly large (${v})`);
    return Number(v);
  }
  async u64big(): Promise<bigint> {
    await this.#ensure(8);
    const v = this.#view.getBigUint64(this.#pos - this.#start, true);
    this.#pos += 8;
    return v;
  }
  async scalar(type: number): Promise<number | bigint | boolean> {
    const size = [1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8][type];
    await this.#ensure(size);
    const at = this.#pos - this.#start;
    this.#pos += size;
    const v = this.#view;
    switch (type) {
      case 0:
        return v.getUint8(at);
      case 1:
        return v.getInt8(at);
      case 2:
        return v.getUint16(at, true);
      case 3:
        return v.getInt16(at, true);
      case 4:
        return v.getUint32(at, true);
      case 5:
        return v.getInt32(at, true);
      case 6:
        return v.getFloat32(at, true);
      case 7:
        return v.getUint8(at) !== 0;
      case 10:
        return safe(v.getBigUint64(at, true));
      case 11:
        return safe(v.getBigInt64(at, true));
      default:
        return v.getFloat64(at, true);
    }
  }
  async string(): Promise<string> {
    const length = await this.u64();
    if (length > this.file.size) throw this.fail(`a string claims ${length} bytes`);
    await this.#ensure(length);
    const at = this.#pos - this.#start;
    this.#pos += length;
    return this.#utf8.decode(this.#buf.subarray(at, at + length));
  }
  async value(type: number, depth = 0): Promise<GgufValue> {
    if (type === 8) return await this.string();
    if (type === 9) {
      if (depth > 4) throw this.fail("arrays nested too deeply");
      const itemType = await this.u32();
      const count = await this.u64();
      if (count > this.file.size) throw this.fail(`an array claims ${count} items`);
      const items: GgufValue[] = new Array(count);
      for (let i = 0; i < count; i++) items[i] = await this.value(itemType, depth + 1);
      return items;
    }
    if (type > 12) throw this.fail(`unknown metadata value type ${type}`);
    return await this.scalar(type);
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

  static async open(path: string): Promise<GgufFile> {
    const file = await BinaryFile.open(path);
    try {
      return await GgufFile.#parse(file);
    } catch (err) {
      file.close();
      throw err;
    }
  }

  static async #parse(file: BinaryFile): Promise<GgufFile> {
    const r = new HeaderReader(file);
    if (file.size < 8 || (await r.u32()) !== MAGIC) {
      throw new WeightFileError("format", file.path, "not a GGUF file (no GGUF magic)");
    }
    const version = await r.u32();
    if (version !== 2 && version !== 3) {
      throw new WeightFileError(
        "unsupported",
        file.path,
        `GGUF version ${version} is not supported (2 or 3)`,
      );
    }
    const tensorCount = await r.u64();
    const kvCount = await r.u64();
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = await r.string();
      metadata.set(key, await r.value(await r.u32()));
    }
    const infos: { name: string; ne: number[]; type: number; offset: number }[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = await r.string();
      const nDims = await r.u32();
      if (nDims > 8) throw r.fail(`tensor "${name}" has ${nDims} dimensions`);
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) ne.push(await r.u64());
      infos.push({ name, ne, type: await r.u32(), offset: await r.u64() });
    }
    const alignment = metadata.get("general.alignment") ?? 32;
    if (typeof alignment !== "number" || alignment <= 0 || alignment % 8 !== 0) {
      throw r.fail(`general.alignment ${alignment} is not a positive multiple of 8`);
    }
    const dataStart = Math.ceil(r.position / alignment) * alignment;

    const tensors = new Map<string, StoredTensor>();
    for (const { name, ne, type, offset } of infos) {
      const dtype = TENSOR_TYPES[type];
      if (!dtype) {
        const typeName = OTHER_TYPES[type] ?? `#${type}`;
        throw new WeightFileError(
          "unsupported",
          file.path,
          `ggml type ${typeName} is not supported (F32, F16, BF16, Q8_0, Q4_K, Q6_K)`,
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
