/**
 * `preprocessImage(bytes, options) -> { rows, cols, pixels }`: encoded image bytes to the normalized,
 * channel-first pixel tensor the vision encoder takes, in the WASM patcher (wasm/src/patcher).
 *
 * Two resize modes reproduce the two reference preprocessors (spec section 6):
 * - "mistral" (default): mistral_common and vLLM. Grid rounded half to even, OpenCV INTER_CUBIC on float32.
 * - "hf": the Hugging Face slow PixtralImageProcessor. Grid floored, Pillow BICUBIC on uint8.
 */
import type { EncodedImage } from "../engine/engine.ts";
import type { ImageInput } from "../model/vision.ts";
import { loadWasm } from "../wasm.ts";
import { imageError } from "./errors.ts";

export type ResizeMode = "mistral" | "hf";
/**
 * "exif": turned as the image's EXIF orientation tag says, as viewers show it (a phone's portrait photo is stored
 * on its side); "ignore": as stored, as mistral_common reads it.
 */
export type Orientation = "exif" | "ignore";
export type PixelDType = "f32" | "f16";

export interface PreprocessOptions {
  /** Which reference to reproduce (default "mistral"). */
  resize?: ResizeMode;
  /** Longest side after downscaling, in pixels (default 1024; tekken.json `multimodal.max_image_size`). */
  maxImageSize?: number;
  /** Patch side in pixels (default 16; tekken.json `multimodal.image_patch_size`). */
  patchSize?: number;
  /** Images whose header declares more pixels are refused before decoding (default 50 megapixels). */
  maxPixels?: number;
  /** "f32" (default) or "f16": IEEE half-precision bit patterns, half the bytes to upload. */
  dtype?: PixelDType;
  /** Default "ignore", the reference's; the server turns images ("exif") unless told otherwise. */
  orientation?: Orientation;
}

export interface PreprocessedImage {
  /** Patch grid: the tensor is `[3, rows·patchSize, cols·patchSize]`, RGB planes, CLIP-normalized. */
  rows: number;
  cols: number;
  /** Float32Array for "f32"; Uint16Array of float16 bit patterns for "f16". */
  pixels: Float32Array | Uint16Array;
  dtype: PixelDType;
  /** The decoded image's size before resizing (turned, with orientation "exif"). */
  width: number;
  height: number;
}

export const DEFAULT_MAX_IMAGE_SIZE = 1024;
export const DEFAULT_PATCH_SIZE = 16;
export const DEFAULT_MAX_PIXELS = 50_000_000;

/** CLIP's per-channel normalization (RGB), applied after scaling to 0..1. */
export const CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073] as const;
export const CLIP_STD = [0.26862954, 0.26130258, 0.27577711] as const;

export async function preprocessImage(
  bytes: Uint8Array,
  options: PreprocessOptions = {},
): Promise<PreprocessedImage> {
  const dtype = options.dtype ?? "f32";
  const { resize, maxImageSize, patchSize, maxPixels, orientation } = checked(options);
  const wasm = await loadWasm();
  let result;
  try {
    result = wasm.preprocessImage(bytes, resize, maxImageSize, patchSize, maxPixels, dtype, orientation);
  } catch (err) {
    throw imageError(err);
  }
  try {
    const { rows, cols, width, height } = result;
    const pixels = dtype === "f16" ? result.takePixelsF16() : result.takePixelsF32();
    return { rows, cols, pixels, dtype, width, height };
  } finally {
    result.free();
  }
}

/** An image as the engine takes it (float32 pixels). */
export function imageInput({ rows, cols, pixels }: PreprocessedImage): ImageInput {
  if (!(pixels instanceof Float32Array)) throw new TypeError("the engine takes float32 pixels");
  return { rows, cols, pixels };
}

/** `preprocessImage` in this thread, to the engine's form. */
export async function decodeImage(bytes: Uint8Array, options: PreprocessOptions = {}): Promise<ImageInput> {
  return imageInput(await preprocessImage(bytes, options));
}

export interface MeasuredImage {
  /** The patch grid preprocessImage gives the image. */
  rows: number;
  cols: number;
  width: number;
  height: number;
}

/**
 * The size and patch grid `preprocessImage` gives an image, from its header alone (microseconds, where decoding
 * takes up to seconds): enough to lay out its tokens. The image is not checked beyond its header.
 */
export async function measureImage(
  bytes: Uint8Array,
  options: Omit<PreprocessOptions, "dtype"> = {},
): Promise<MeasuredImage> {
  const { resize, maxImageSize, patchSize, maxPixels, orientation } = checked(options);
  const wasm = await loadWasm();
  let measured;
  try {
    measured = wasm.measureImage(bytes, resize, maxImageSize, patchSize, maxPixels, orientation);
  } catch (err) {
    throw imageError(err);
  }
  try {
    return { rows: measured.rows, cols: measured.cols, width: measured.width, height: measured.height };
  } finally {
    measured.free();
  }
}

/** An image for a GPU host to decode: its file, with the grid `measureImage` gives it (an edge gateway's images). */
export async function encodedImage(
  bytes: Uint8Array,
  options: Omit<PreprocessOptions, "dtype"> = {},
): Promise<EncodedImage> {
  const { rows, cols } = await measureImage(bytes, options);
  const { maxImageSize } = options;
  return { rows, cols, bytes, resize: options.resize ?? "mistral", ...maxImageSize ? { maxImageSize } : {} };
}

export interface ImageHeader {
  format: "png" | "jpeg" | "webp" | "gif" | "bmp";
  width: number;
  height: number;
}

/** Format and size from the header alone (nothing is decoded). */
export async function readImageHeader(bytes: Uint8Array): Promise<ImageHeader> {
  const wasm = await loadWasm();
  let header;
  try {
    header = wasm.imageHeader(bytes);
  } catch (err) {
    throw imageError(err);
  }
  try {
    return { format: header.format as ImageHeader["format"], width: header.width, height: header.height };
  } finally {
    header.free();
  }
}

export interface DecodedImage {
  width: number;
  height: number;
  /** Interleaved 8-bit RGB rows, composited over white the way the reference converts to RGB. */
  rgb: Uint8Array;
}

/** Decodes to 8-bit RGB without resizing (the first frame of an animation), as stored. */
export async function decodeImageRgb(
  bytes: Uint8Array,
  maxPixels = DEFAULT_MAX_PIXELS,
): Promise<DecodedImage> {
  const wasm = await loadWasm();
  let decoded;
  try {
    decoded = wasm.decodeRgb(bytes, maxPixels);
  } catch (err) {
    throw imageError(err);
  }
  try {
    return { width: decoded.width, height: decoded.height, rgb: decoded.takePixels() };
  } finally {
    decoded.free();
  }
}

/**
 * Far above any model's patch (Pixtral's is 16): the patcher pads an image to whole patches, so a patch of
 * millions of pixels a side would ask the WebAssembly memory for petabytes.
 */
export const MAX_PATCH_SIZE = 256;

/** The options with their defaults, checked. */
function checked(options: PreprocessOptions) {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels >= 1)) throw new RangeError(`maxPixels must be at least 1, got ${maxPixels}`);
  return {
    resize: options.resize ?? "mistral",
    maxImageSize: positiveInteger(options.maxImageSize ?? DEFAULT_MAX_IMAGE_SIZE, "maxImageSize"),
    patchSize: positiveInteger(options.patchSize ?? DEFAULT_PATCH_SIZE, "patchSize", MAX_PATCH_SIZE),
    maxPixels,
    orientation: options.orientation ?? "ignore",
  };
}

function positiveInteger(value: number, name: string, most = 0xffff_ffff): number {
  if (!Number.isInteger(value) || value < 1 || value > most) {
    throw new RangeError(`${name} must be a positive integer up to ${most}, got ${value}`);
  }
  return value;
}
