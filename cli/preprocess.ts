/** `pixtral preprocess`: one image through the patcher, for inspecting what the vision encoder gets. */
import { imageTokenCount } from "../runtime/images/layout.ts";
import {
  DEFAULT_MAX_IMAGE_SIZE,
  DEFAULT_MAX_PIXELS,
  DEFAULT_PATCH_SIZE,
  preprocessImage,
  type ResizeMode,
} from "../runtime/images/preprocess.ts";
import { parseFlags, UsageError } from "./args.ts";

export const usage = `pixtral preprocess --image FILE [--out FILE.f32] [flags]

Prints {"rows":..,"cols":..,"tokens":..} (tokens: [IMG], [IMG_BREAK] and [IMG_END] together) and writes
the normalized tensor [3, rows*patch, cols*patch], channel-first RGB, little-endian.

  --image FILE            PNG, JPEG, WebP, GIF (first frame) or BMP
  --out FILE              write the tensor (float32, or float16 with --dtype f16)
  --resize MODE           mistral (default: mistral_common, OpenCV cubic) or hf (Hugging Face, Pillow bicubic)
  --max-image-size N      longest side after downscaling (default ${DEFAULT_MAX_IMAGE_SIZE})
  --patch-size N          patch side (default ${DEFAULT_PATCH_SIZE})
  --max-pixels N          refuse images whose header declares more pixels (default ${DEFAULT_MAX_PIXELS})
  --dtype f32|f16         tensor element type (default f32)
  --orientation HOW       ignore (default: as stored, as mistral_common reads it) or exif (turned as the
                          EXIF orientation tag says, as \`serve\` does by default)`;

export async function preprocess(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, {
    image: { type: "string" },
    out: { type: "string" },
    resize: { type: "string" },
    "max-image-size": { type: "string" },
    "patch-size": { type: "string" },
    "max-pixels": { type: "string" },
    dtype: { type: "string" },
    orientation: { type: "string" },
  });
  if (flags.image === undefined) throw new UsageError("--image FILE is required");
  const resize = flags.resize ?? "mistral";
  if (resize !== "mistral" && resize !== "hf") {
    throw new UsageError(`--resize must be mistral or hf, got "${resize}"`);
  }
  const orientation = flags.orientation ?? "ignore";
  if (orientation !== "exif" && orientation !== "ignore") {
    throw new UsageError(`--orientation must be exif or ignore, got "${orientation}"`);
  }
  const dtype = flags.dtype ?? "f32";
  if (dtype !== "f32" && dtype !== "f16") throw new UsageError(`--dtype must be f32 or f16, got "${dtype}"`);
  const bytes = await Deno.readFile(flags.image);
  const image = await preprocessImage(bytes, {
    resize: resize as ResizeMode,
    orientation,
    dtype,
    maxImageSize: integerFlag(flags["max-image-size"], "--max-image-size"),
    patchSize: integerFlag(flags["patch-size"], "--patch-size"),
    maxPixels: integerFlag(flags["max-pixels"], "--max-pixels"),
  });
  if (flags.out !== undefined) await Deno.writeFile(flags.out, littleEndianBytes(image.pixels));
  console.log(JSON.stringify({ rows: image.rows, cols: image.cols, tokens: imageTokenCount(image) }));
}

function integerFlag(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  if (!/^[1-9]\d*$/.test(text)) throw new UsageError(`${name} must be a positive integer, got "${text}"`);
  return Number(text);
}

/** The typed array's bytes in little-endian order (a no-op view on little-endian hosts, i.e. all of them). */
function littleEndianBytes(pixels: Float32Array | Uint16Array): Uint8Array {
  const bytes = new Uint8Array(pixels.buffer, pixels.byteOffset, pixels.byteLength);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1) return bytes;
  const swapped = new Uint8Array(bytes.length);
  const size = pixels.BYTES_PER_ELEMENT;
  for (let i = 0; i < bytes.length; i += size) {
    for (let b = 0; b < size; b++) swapped[i + b] = bytes[i + size - 1 - b];
  }
  return swapped;
}
