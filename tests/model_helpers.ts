/** Loading the tiny-pixtral fixture model and its goldens for the model tests. */
import { GpuContext } from "../runtime/gpu/context.ts";
import { dequantize } from "../runtime/gpu/ops/quantize.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { openModel } from "../runtime/model/open.ts";
import { PixtralModel, type PixtralOptions } from "../runtime/model/pixtral.ts";
import { type LoraAdapter, openLora } from "../runtime/model/weights/lora.ts";
import type { TokenEvent } from "../runtime/engine/engine.ts";
import type { ImageInput } from "../runtime/model/vision.ts";
import { fixture, fixtureJson } from "./helpers.ts";

export const LAYOUTS = {
  mistral: { model: "mistral" },
  hf: { model: "hf" },
  gguf: { model: "gguf/tiny-pixtral-text-f32.gguf", mmproj: "gguf/tiny-pixtral-mmproj-f32.gguf" },
  ggufQ8: { model: "gguf/tiny-pixtral-text-Q8_0.gguf", mmproj: "gguf/tiny-pixtral-mmproj-Q8_0.gguf" },
  ggufQ4KM: { model: "gguf/tiny-pixtral-text-Q4_K_M.gguf", mmproj: "gguf/tiny-pixtral-mmproj-f32.gguf" },
} as const;

export const EXACT: Partial<PixtralOptions> = {
  quant: "f32",
  visionQuant: "f32",
  activations: "f32",
  kv: "f32",
};

let shared: Promise<GpuContext> | undefined;
export function gpu(): Promise<GpuContext> {
  return shared ??= GpuContext.create();
}

/**
 * The tiny model in one layout, on the tests' shared GPU context unless given another; `loras`: LoRA adapters to
 * serve per request, by name.
 */
export async function loadTiny(
  layout: keyof typeof LAYOUTS,
  options: Partial<PixtralOptions> = {},
  ctx?: GpuContext,
  loras: Record<string, string> = {},
) {
  const spec = LAYOUTS[layout];
  const location = await locateModel(fixture(spec.model).pathname, {
    mmproj: "mmproj" in spec ? fixture(spec.mmproj).pathname : undefined,
  });
  const opened = await openModel(location);
  const loraModules: { name: string; adapter: LoraAdapter }[] = [];
  try {
    for (const [name, path] of Object.entries(loras)) {
      loraModules.push({ name, adapter: await openLora(path, opened.config) });
    }
  } catch (err) {
    loraModules.forEach((m) => m.adapter.file.close());
    opened.weights.close();
    throw err;
  }
  try {
    return await PixtralModel.load(ctx ?? await gpu(), opened.config, opened.weights, {
      kvTokens: 1024,
      ...options,
      loraModules,
    });
  } finally {
    opened.weights.close();
  }
}

/** A weight as the GPU holds it, dequantized to float32 by the kernels. */
export async function loadedWeight(model: PixtralModel, name: string): Promise<Float32Array> {
  const w = model.weight(name);
  const rec = model.ctx.record("read back");
  const values = rec.scratch("f32", [w.rows, w.rowLength]);
  dequantize(rec, values, w);
  const read = rec.read(values);
  await rec.submit();
  return new Float32Array((await read).buffer);
}

export async function readF32(path: string): Promise<Float32Array> {
  const bytes = await Deno.readFile(fixture(path));
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

interface GoldenFile {
  file: string;
  shape: number[];
}

export interface ModelManifest {
  vision: {
    name: string;
    pixels_from: string[];
    grid: [number, number][];
    embeddings_after_adapter: GoldenFile;
  }[];
  text: { name: string; ids: number[]; logits: GoldenFile; argmax: number[] }[];
  multimodal: {
    name: string;
    ids: number[];
    pixels_from: string;
    logits: GoldenFile;
    greedy_8: number[];
    logits_with_continuation: GoldenFile;
    top2_margin_at_each_greedy_step: number[];
  }[];
}

export const manifest = await fixtureJson<ModelManifest>("golden/model/manifest.json");

/** A golden's pixels (paths in the manifest start at shared/fixtures/tiny-pixtral/). */
export async function goldenImage(
  pixelsFrom: string | string[],
  rows: number,
  cols: number,
): Promise<ImageInput> {
  pixelsFrom = Array.isArray(pixelsFrom) ? pixelsFrom[0] : pixelsFrom;
  return { rows, cols, pixels: await readF32(pixelsFrom.replace(/^.*tiny-pixtral\//, "")) };
}

export function gridOf(ids: readonly number[], img = 10, brk = 12, end = 13): { rows: number; cols: number } {
  const first = ids.indexOf(img), block = ids.slice(first, ids.indexOf(end) + 1);
  const rows = block.filter((id) => id === brk || id === end).length;
  return { rows, cols: block.filter((id) => id === img).length / rows };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new RangeError(`lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

export function argmaxRows(values: Float32Array, width: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < values.length / width; r++) {
    let best = 0;
    for (let i = 1; i < width; i++) if (values[r * width + i] > values[r * width + best]) best = i;
    out.push(best);
  }
  return out;
}

/** Every event of an engine's stream, and how it finished. */
export async function collect(stream: AsyncGenerator<TokenEvent, string>) {
  const events: TokenEvent[] = [];
  while (true) {
    const { value, done } = await stream.next();
    if (done) return { events, finish: value };
    events.push(value);
  }
}
