/**
 * `pixtral logits`: the model's logits at every position of a token sequence with images, written as float32, for
 * comparing against reference implementations. Keeps the weights as stored and computes in f32 unless told otherwise.
 */
import { dirname, isAbsolute, join } from "node:path";
import { imageTokenLayout } from "../runtime/images/layout.ts";
import { preprocessImage } from "../runtime/images/preprocess.ts";
import { loadModel, openModelFiles, withLocalModel } from "../runtime/model/boot.ts";
import type { ImageInput } from "../runtime/model/vision.ts";
import { choice, parseFlags, UsageError } from "./args.ts";
import { MODEL_FLAGS, modelOptions, modelUsage } from "./model_flags.ts";

export const usage =
  `pixtral logits --model PATH --input SEQ.json --out LOGITS.f32 [--embeddings-out EMB.f32] [flags]

SEQ.json is {"segments": [{"ids": [1, 3]}, {"image": "a.png"}, {"ids": [1091, 4]}]}: token ids, and images
(paths relative to SEQ.json) that are preprocessed and expanded to their [IMG]/[IMG_BREAK]/[IMG_END] layout.
Writes float32 little-endian logits [tokens, vocab]; with --embeddings-out, also the image embeddings after the
adapter [patches, dim]. Prints {"tokens", "vocab", "patches"}.

${modelUsage(24, true)}
  --image-resize MODE   mistral (default) or hf
  (for exactness, the weights as stored and f32 compute by default; give --quant q4 etc. to see what
  quantization changes)`;

type Segment = { ids: number[] } | { image: string };

async function readSequence(path: string): Promise<Segment[]> {
  let json;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    throw new UsageError(`--input ${path}: ${(err as Error).message}`);
  }
  const segments = json?.segments;
  const valid = Array.isArray(segments) &&
    segments.every((s: Segment) =>
      typeof s === "object" && s !== null &&
      (("ids" in s && Array.isArray(s.ids) && s.ids.every(Number.isInteger)) ||
        ("image" in s && typeof s.image === "string"))
    );
  if (!valid) {
    throw new UsageError(`--input ${path}: expected {"segments": [{"ids": [...]} | {"image": "file"}]}`);
  }
  return segments;
}

export async function logits(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, {
    ...MODEL_FLAGS,
    input: { type: "string" },
    out: { type: "string" },
    "embeddings-out": { type: "string" },
    "image-resize": { type: "string" },
  });
  if (!flags.input || !flags.out) throw new UsageError("--input SEQ.json and --out FILE are required");
  const options = modelOptions(flags);
  // Weights as stored (GGUF blocks stay as they are) and f32 compute: what references compute.
  options.quant ??= "f32";
  options.visionQuant ??= "f32";
  options.activations ??= "f32";
  options.kv ??= "f32";
  const resize = choice("--image-resize", flags["image-resize"], ["mistral", "hf"] as const) ?? "mistral";
  const segments = await readSequence(flags.input);

  const files = await openModelFiles(await withLocalModel(options));
  const { config, tokenizer } = files;
  const ids: number[] = [];
  const images: ImageInput[] = [];
  for (const segment of segments) {
    if ("ids" in segment) {
      ids.push(...segment.ids);
      continue;
    }
    const path = isAbsolute(segment.image) ? segment.image : join(dirname(flags.input), segment.image);
    const image = await preprocessImage(await Deno.readFile(path), {
      resize,
      maxImageSize: tokenizer.imageConfig?.maxImageSize ?? config.vision?.imageSize,
      patchSize: tokenizer.imageConfig?.patchSize ?? config.vision?.patchSize,
    });
    images.push({ rows: image.rows, cols: image.cols, pixels: image.pixels as Float32Array });
    ids.push(...await imageTokenLayout(image, config.imageTokens));
  }
  options.ctx ??= Math.max(16, Math.ceil(ids.length / 16) * 16);
  const { model } = await loadModel(files, options);
  try {
    const values = await model.sequenceLogits(ids, images);
    await Deno.writeFile(flags.out, new Uint8Array(values.buffer));
    const patches = images.reduce((n, image) => n + image.rows * image.cols, 0);
    if (flags["embeddings-out"] && images.length) {
      const embeddings = await model.encodeImages(images);
      const floats = await model.ctx.readFloats(embeddings);
      model.ctx.release(embeddings);
      await Deno.writeFile(flags["embeddings-out"], new Uint8Array(floats.buffer));
    }
    console.log(JSON.stringify({ tokens: ids.length, vocab: config.decoder.vocabSize, patches }));
  } finally {
    model.release();
  }
}
