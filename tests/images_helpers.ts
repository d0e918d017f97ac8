/** Shared by the image tests: the committed golden cases, tensor comparisons, and crafted image bytes. */
import { CLIP_MEAN, CLIP_STD } from "../runtime/images/preprocess.ts";

export const CASES = new URL("./fixtures/images/", import.meta.url);

export interface Reference {
  cols: number;
  rows: number;
  shape: [number, number, number];
  /** The whole tensor, or... */
  file?: string;
  /** ...for big images, every `stride`-th element (mod n) of the flattened tensor, and the channel means. */
  samples?: { file: string; count: number; stride: number };
  channel_means?: number[];
}

export interface Case {
  name: string;
  file: string;
  description: string;
  pil_mode: string;
  width: number;
  height: number;
  max_image_size: number;
  patch_size: number;
  lossy: boolean;
  mistral: Reference;
  hf: Reference;
  rgb?: string;
}

export interface CasesManifest {
  images: Case[];
  shared: { name: string; input: string; hf: Reference }[];
}

export async function casesManifest(): Promise<CasesManifest> {
  return JSON.parse(await Deno.readTextFile(new URL("manifest.json", CASES)));
}

export function readCase(file: string): Promise<Uint8Array> {
  return Deno.readFile(new URL(file, CASES));
}

/** Our normalized output back on the reference's 0..255 scale, element `i` of the flattened [3, H, W]. */
export function levels(pixels: Float32Array): (i: number) => number {
  const plane = pixels.length / 3;
  return (i) => {
    const c = Math.floor(i / plane);
    return (pixels[i] * CLIP_STD[c] + CLIP_MEAN[c]) * 255;
  };
}

export interface Difference {
  max: number;
  mean: number;
  /** Elements whose value rounds to a different 8-bit level (for uint8 references). */
  unequal: number;
  count: number;
}

/** Compares `actual(index(k))` with `expected[k]` for every k. */
export function compare(
  expected: ArrayLike<number>,
  actual: (i: number) => number,
  index: (k: number) => number = (k) => k,
): Difference {
  let max = 0, sum = 0, unequal = 0;
  for (let k = 0; k < expected.length; k++) {
    const a = actual(index(k));
    const d = Math.abs(a - expected[k]);
    max = Math.max(max, d);
    sum += d;
    if (Math.round(a) !== expected[k]) unequal++;
  }
  return { max, mean: sum / expected.length, unequal, count: expected.length };
}

/** The reference tensor (or its samples) of a case, and which element of ours each entry corresponds to. */
export async function referenceValues(
  reference: Reference,
  mode: "mistral" | "hf",
  length: number,
): Promise<{ values: Float32Array | Uint8Array; index: (k: number) => number }> {
  const file = reference.file ?? reference.samples!.file;
  const bytes = await readCase(file);
  const values = mode === "mistral"
    ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)
    : bytes;
  if (reference.file) return { values, index: (k) => k };
  const stride = reference.samples!.stride;
  return { values, index: (k) => (k * stride) % length };
}

/** Per-channel means of our output on the 0..255 scale. */
export function channelMeans(pixels: Float32Array): number[] {
  const plane = pixels.length / 3;
  const level = levels(pixels);
  return [0, 1, 2].map((c) => {
    let sum = 0;
    for (let i = c * plane; i < (c + 1) * plane; i++) sum += level(i);
    return sum / plane;
  });
}

// --- crafted files --------------------------------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A PNG with a valid IHDR for `width` x `height` 8-bit RGB and the given (possibly bogus) IDAT payload. */
export function pngWithHeader(
  width: number,
  height: number,
  idat = new Uint8Array([0x78, 0x9c, 3, 0, 0, 0, 0, 1]),
) {
  const ihdr = new Uint8Array(13);
  const view = new DataView(ihdr.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return concat(
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", idat),
    chunk("IEND", new Uint8Array()),
  );
}

/** A baseline JPEG header (SOI, SOF0) declaring `width` x `height`, three components, and nothing after it. */
export function jpegHeader(width: number, height: number): Uint8Array {
  return new Uint8Array([
    0xff,
    0xd8,
    0xff,
    0xc0,
    0x00,
    0x11,
    0x08,
    height >> 8,
    height & 0xff,
    width >> 8,
    width & 0xff,
    0x03,
    0x01,
    0x22,
    0x00,
    0x02,
    0x11,
    0x01,
    0x03,
    0x11,
    0x01,
  ]);
}

/** A GIF89a header and logical screen descriptor declaring `width` x `height`, and a trailer. */
export function gifHeader(width: number, height: number): Uint8Array {
  return new Uint8Array([
    ...new TextEncoder().encode("GIF89a"),
    width & 0xff,
    width >> 8,
    height & 0xff,
    height >> 8,
    0,
    0,
    0,
    0x3b,
  ]);
}

/**
 * A progressive gray JPEG of `refinements` AC refinement scans after its DC and first AC scans, each scan a few
 * bytes (codes of one bit: DC difference category 0, and an end of band over every block).
 */
export function progressiveJpeg(width: number, height: number, refinements: number): Uint8Array {
  const segment = (marker: number, payload: number[]) => [
    0xff,
    marker,
    (payload.length + 2) >> 8,
    (payload.length + 2) & 255,
    ...payload,
  ];
  const scan = (ss: number, se: number, ahal: number) => [...segment(0xda, [1, 1, 0x00, ss, se, ahal]), 0x7f];
  const bytes = [
    0xff,
    0xd8,
    ...segment(0xdb, [0, ...Array(64).fill(1)]),
    ...segment(0xc2, [8, height >> 8, height & 255, width >> 8, width & 255, 1, 1, 0x11, 0]),
    ...segment(0xc4, [0x00, 1, ...Array(15).fill(0), 0x00]),
    ...segment(0xc4, [0x10, 1, ...Array(15).fill(0), 0x00]),
    ...scan(0, 0, 0x00),
    ...scan(1, 63, 0x00),
  ];
  for (let i = 0; i < refinements; i++) bytes.push(...scan(1, 63, 0x10));
  return Uint8Array.from([...bytes, 0xff, 0xd9]);
}
