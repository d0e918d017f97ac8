/** Helpers for the weight tests: writers for small safetensors and GGUF files, and fixture copies. */
import { fixture } from "./helpers.ts";

export const TINY = fixture(".").pathname;

export async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "pixtral-weights-test-" });
}

/** Copies fixture files (relative to tiny-pixtral/) into `dir`, writable. */
export async function copyFixture(dir: string, ...paths: string[]): Promise<void> {
  for (const p of paths) {
    const name = p.split("/").pop()!;
    await Deno.writeFile(`${dir}/${name}`, await Deno.readFile(fixture(p)));
  }
}

export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** Reads a safetensors file fully (small fixtures only) into its entries, in header order. */
export async function readSafetensors(path: string): Promise<SafetensorsEntry[]> {
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return Object.entries(header)
    .filter(([name]) => name !== "__metadata__")
    .map(([name, e]) => {
      const { dtype, shape, data_offsets: [a, b] } = e as {
        dtype: string;
        shape: number[];
        data_offsets: number[];
      };
      return { name, dtype, shape, data: bytes.slice(8 + n + a, 8 + n + b) };
    });
}

export async function writeSafetensors(path: string, entries: SafetensorsEntry[]): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.data.length] };
    offset += e.data.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const e of entries) {
    out.set(e.data, at);
    at += e.data.length;
  }
  await Deno.writeFile(path, out);
}

/** GGUF metadata value types (gguf.h). */
export const GGUF = { U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10 } as const;
export type GgufKv = [key: string, type: number, value: number | boolean | string | string[]];

export interface GgufTensorEntry {
  name: string;
  /** ggml type id: 0 F32, 1 F16, 8 Q8_0, 12 Q4_K, 14 Q6_K, 30 BF16... */
  type: number;
  /** dims innermost first */
  ne: number[];
  data: Uint8Array;
}

/** A GGUF v3 file with the given metadata and tensors (data aligned to 32). */
export function buildGguf(kvs: GgufKv[], tensors: GgufTensorEntry[], version = 3): Uint8Array {
  const parts: number[] = [];
  const u32 = (v: number) => parts.push(v & 255, (v >>> 8) & 255, (v >>> 16) & 255, (v >>> 24) & 255);
  const u64 = (v: number) => {
    u32(v % 2 ** 32);
    u32(Math.floor(v / 2 ** 32));
  };
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    parts.push(...b);
  };
  const f32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    parts.push(...b);
  };
  u32(0x46554747);
  u32(version);
  u64(tensors.length);
  u64(kvs.length);
  for (const [key, type, value] of kvs) {
    str(key);
    u32(type);
    if (type === GGUF.ARRAY) {
      u32(GGUF.STRING);
      u64((value as string[]).length);
      for (const s of value as string[]) str(s);
    } else if (type === GGUF.STRING) str(value as string);
    else if (type === GGUF.F32) f32(value as number);
    else if (type === GGUF.BOOL) parts.push(value ? 1 : 0);
    else if (type === GGUF.U64) u64(value as number);
    else u32(value as number);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    str(t.name);
    u32(t.ne.length);
    for (const d of t.ne) u64(d);
    u32(t.type);
    offsets.push(offset);
    u64(offset);
    offset = Math.ceil((offset + t.data.length) / 32) * 32;
  }
  const dataStart = Math.ceil(parts.length / 32) * 32;
  const out = new Uint8Array(dataStart + offset);
  out.set(parts);
  tensors.forEach((t, i) => out.set(t.data, dataStart + offsets[i]));
  return out;
}

/** Reads the fixture's GGUF tensors back as entries with the raw bytes (for rewriting in tests). */
export async function ggufEntries(
  path: string,
): Promise<{ kvs: Map<string, unknown>; tensors: GgufTensorEntry[] }> {
  const { GgufFile } = await import("../runtime/model/weights/gguf.ts");
  const TYPE_IDS: Record<string, number> = {
    F32: 0,
    F16: 1,
    Q4_0: 2,
    Q4_1: 3,
    Q5_0: 6,
    Q5_1: 7,
    Q8_0: 8,
    Q2_K: 10,
    Q3_K: 11,
    Q4_K: 12,
    Q5_K: 13,
    Q6_K: 14,
    IQ2_XXS: 16,
    IQ2_XS: 17,
    IQ3_XXS: 18,
    IQ1_S: 19,
    IQ4_NL: 20,
    IQ3_S: 21,
    IQ2_S: 22,
    IQ4_XS: 23,
    IQ1_M: 29,
    BF16: 30,
  };
  const g = await GgufFile.open(path);
  const tensors: GgufTensorEntry[] = [];
  for (const t of g.tensors.values()) {
    tensors.push({
      name: t.name,
      type: TYPE_IDS[t.dtype],
      ne: [...t.shape].reverse(),
      data: await t.file.read(t.offset, t.byteLength),
    });
  }
  g.close();
  return { kvs: g.metadata, tensors };
}

/** Re-encodes parsed GGUF metadata as writer entries (scalars keep a plausible type; tests only). */
export function kvsOf(metadata: Map<string, unknown>): GgufKv[] {
  const out: GgufKv[] = [];
  for (const [key, v] of metadata) {
    if (Array.isArray(v)) {
      if (typeof v[0] === "string") out.push([key, GGUF.ARRAY, v as string[]]);
    } else if (typeof v === "string") out.push([key, GGUF.STRING, v]);
    else if (typeof v === "boolean") out.push([key, GGUF.BOOL, v]);
    else if (typeof v === "number") out.push([key, Number.isInteger(v) && v >= 0 ? GGUF.U32 : GGUF.F32, v]);
  }
  return out;
}

/** Q8_0 blocks (f16 scale, 32 int8) to float32: the format's definition, for checking returned blocks. */
export function dequantQ8_0(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array((bytes.length / 34) * 32);
  for (let b = 0; b < bytes.length / 34; b++) {
    const d = f16(view.getUint16(b * 34, true));
    for (let i = 0; i < 32; i++) out[b * 32 + i] = d * view.getInt8(b * 34 + 2 + i);
  }
  return out;
}

function f16(h: number): number {
  const e = (h >> 10) & 31, m = h & 1023, s = h & 0x8000 ? -1 : 1;
  return e === 0 ? s * m * 2 ** -24 : s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Q4_K super-blocks to float32 (ggml's dequantize_row_q4_K), for checking returned blocks. */
export function dequantQ4_K(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array((bytes.length / 144) * 256);
  for (let b = 0; b < bytes.length / 144; b++) {
    const base = b * 144;
    const d = f16(view.getUint16(base, true));
    const dmin = f16(view.getUint16(base + 2, true));
    const scales = bytes.subarray(base + 4, base + 16);
    const qs = bytes.subarray(base + 16, base + 144);
    const scaleMin = (j: number): [number, number] =>
      j < 4 ? [scales[j] & 63, scales[j + 4] & 63] : [
        (scales[j + 4] & 0xf) | ((scales[j - 4] >> 6) << 4),
        (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
      ];
    let y = b * 256;
    for (let j = 0, q = 0; j < 8; j += 2, q += 32) {
      const [sc1, m1] = scaleMin(j);
      const [sc2, m2] = scaleMin(j + 1);
      for (let l = 0; l < 32; l++) out[y++] = d * sc1 * (qs[q + l] & 0xf) - dmin * m1;
      for (let l = 0; l < 32; l++) out[y++] = d * sc2 * (qs[q + l] >> 4) - dmin * m2;
    }
  }
  return out;
}
