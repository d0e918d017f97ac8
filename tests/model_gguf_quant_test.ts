/**
 * GGUF Q4_K_M through the model: the quantized kernels compute exactly what the dequantized weights compute, so
 * the difference from the f32 goldens is the format's (llama.cpp agrees on about half the top-1 tokens on this
 * random-weight model), not the kernels'.
 */
import assert from "node:assert/strict";
import { dequantize, dequantizeRef } from "../runtime/gpu/ops/quantize.ts";
import { type DType as GpuType } from "../runtime/gpu/dtype.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { matrixShape } from "../runtime/model/load.ts";
import { openModel } from "../runtime/model/open.ts";
import { PixtralModel } from "../runtime/model/pixtral.ts";
import type { WeightSource } from "../runtime/model/weights/source.ts";
import { fixture } from "./helpers.ts";
import { goldenImage, gpu, gridOf, LAYOUTS, manifest, maxAbsDiff } from "./model_helpers.ts";

const GPU_TYPE = { Q8_0: "q8_0", Q4_K: "q4_k", Q6_K: "q6_k" } as const;

/** The same weights with every quantized tensor decoded to F32 on the CPU (ggml's dequantize_row_*). */
function dequantizedOnCpu(source: WeightSource): WeightSource {
  const quantized = (dtype: string): dtype is keyof typeof GPU_TYPE => dtype in GPU_TYPE;
  const decode = async (name: string): Promise<Uint8Array<ArrayBuffer>> => {
    const info = source.info(name);
    const bytes = await source.read(name);
    if (!quantized(info.dtype)) return bytes;
    const [rows, k] = matrixShape(info.shape);
    return new Uint8Array(
      dequantizeRef(GPU_TYPE[info.dtype] as GpuType, bytes, rows, k).buffer as ArrayBuffer,
    );
  };
  const info = (name: string) => {
    const i = source.info(name);
    return quantized(i.dtype)
      ? { ...i, dtype: "F32" as const, byteLength: i.shape.reduce((a, b) => a * b, 4) }
      : i;
  };
  return {
    ...source,
    tensors: () => source.tensors().map((t) => info(t.name)),
    info,
    read: decode,
    async *chunks(name) {
      yield { byteOffset: 0, bytes: await decode(name) };
    },
    close: () => source.close(),
  };
}

async function openQ4KM() {
  const spec = LAYOUTS.ggufQ4KM;
  return await openModel(
    await locateModel(fixture(spec.model).pathname, { mmproj: fixture(spec.mmproj).pathname }),
  );
}

Deno.test("GGUF Q8_0, Q4_K and Q6_K blocks: the GPU decodes every fixture tensor exactly as ggml does", async () => {
  const ctx = await gpu();
  const counts: Record<string, number> = {};
  for (const layout of ["ggufQ8", "ggufQ4KM"] as const) {
    const spec = LAYOUTS[layout];
    const { weights } = await openModel(
      await locateModel(fixture(spec.model).pathname, { mmproj: fixture(spec.mmproj).pathname }),
    );
    try {
      for (const info of weights.tensors()) {
        if (!(info.dtype in GPU_TYPE)) continue;
        const [rows, k] = matrixShape(info.shape);
        const type = GPU_TYPE[info.dtype as keyof typeof GPU_TYPE];
        const bytes = await weights.read(info.name);
        const rec = ctx.record("dequantize");
        const src = rec.upload(type, [rows, k], bytes);
        const out = rec.scratch("f32", [rows, k]);
        dequantize(rec, out, src);
        const read = rec.read(out);
        await rec.submit();
        assert.deepEqual(
          new Float32Array((await read).buffer),
          dequantizeRef(type, bytes, rows, k),
          info.name,
        );
        counts[info.dtype] = (counts[info.dtype] ?? 0) + 1;
      }
    } finally {
      weights.close();
    }
  }
  // Q8_0: the text model's 16 matrices and the mmproj's; Q4_K_M: 13 Q4_K and 3 Q6_K.
  assert.deepEqual({ q4k: counts.Q4_K, q6k: counts.Q6_K }, { q4k: 13, q6k: 3 });
  assert.ok(counts.Q8_0 >= 16, JSON.stringify(counts));
});

Deno.test("GGUF Q4_K_M logits equal those of its weights dequantized on the CPU and run in f32", async () => {
  const ctx = await gpu();
  const mm = manifest.multimodal[0];
  const image = await goldenImage(mm.pixels_from, ...Object.values(gridOf(mm.ids)) as [number, number]);
  const options = { activations: "f32", kv: "f32", quant: "f32", visionQuant: "f32", kvTokens: 256 } as const;
  const opened = [await openQ4KM(), await openQ4KM()];
  const quantized = await PixtralModel.load(ctx, opened[0].config, opened[0].weights, options);
  const decoded = await PixtralModel.load(
    ctx,
    opened[1].config,
    dequantizedOnCpu(opened[1].weights),
    options,
  );
  opened.forEach((o) => o.weights.close());
  try {
    const a = await quantized.sequenceLogits(mm.ids, [image]);
    const b = await decoded.sequenceLogits(mm.ids, [image]);
    const diff = maxAbsDiff(a, b);
    console.log(`Q4_K_M kernels vs CPU-dequantized weights: max |logit diff| ${diff.toExponential(2)}`);
    assert.ok(diff < 1e-3, String(diff));
  } finally {
    quantized.release();
    decoded.release();
  }
});
