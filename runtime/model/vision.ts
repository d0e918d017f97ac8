/**
 * The vision encoder and the vision-language adapter (spec sections 2.2-2.6), top to bottom:
 *
 *   patches -> patch_conv -> ln_pre -> 24 x [attention with 2D RoPE, block-diagonal over images; SwiGLU FFN]
 *   -> w_in -> GELU (erf) -> w_out
 *
 * Every image of a call goes through in one pass; attention stays within each image (one segment each), which
 * equals running the images one at a time.
 */
import { geluErf, swiglu } from "../gpu/ops/activation.ts";
import { attention, denseAttentionPlan } from "../gpu/ops/attention.ts";
import { patches } from "../gpu/ops/embed.ts";
import { linear, linearStacked } from "../gpu/ops/linear.ts";
import { rmsNorm } from "../gpu/ops/norm.ts";
import { rope2d } from "../gpu/ops/rope.ts";
import type { FloatType } from "../gpu/dtype.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { ModelConfig, VisionConfig } from "./config.ts";

/** A preprocessed image: channel-first float32 pixels of (3, rows·P, cols·P). */
export interface ImageInput {
  rows: number;
  cols: number;
  pixels: Float32Array;
}

export type WeightLookup = (name: string) => Tensor;

/** (row, column) of every patch, image after image; positions restart at (0, 0) for each image. */
function patchPositions(images: readonly ImageInput[]): Uint32Array {
  const out: number[] = [];
  for (const { rows, cols } of images) {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out.push(r, c);
  }
  return Uint32Array.from(out);
}

/**
 * Records the encoder and adapter for `images` into `rec`; returns their embeddings [patches, dim] in `act`,
 * in a tensor the caller releases.
 */
export function encodeImages(
  rec: Recorder,
  config: ModelConfig,
  w: WeightLookup,
  images: readonly ImageInput[],
  act: FloatType,
): Tensor {
  const v = config.vision as VisionConfig;
  if (!v) throw new Error("this model has no vision encoder (a GGUF text model needs its --mmproj file)");
  const P = v.patchSize, hidden = v.hiddenSize, dim = config.decoder.dim;
  const counts = images.map((i) => i.rows * i.cols);
  const N = counts.reduce((a, b) => a + b, 0);
  for (const image of images) {
    const expected = v.numChannels * image.rows * P * image.cols * P;
    if (image.pixels.length !== expected) {
      throw new RangeError(`an image of ${image.rows}x${image.cols} patches needs ${expected} values`);
    }
  }

  // Patch embedding: the 16x16 convolution without bias is a matmul over flattened patches.
  const cut = rec.scratch(act, [N, v.numChannels * P * P]);
  let at = 0;
  images.forEach((image, i) => {
    const pixels = rec.upload("f32", [v.numChannels, image.rows * P, image.cols * P], image.pixels);
    patches(rec, { y: cut.sliceRows(at, counts[i]), x: pixels, patch: P });
    at += counts[i];
  });
  const embedded = rec.scratch("f32", [N, hidden]);
  linear(rec, { y: embedded, x: cut, w: w("vision_encoder.patch_conv.weight") });
  const x = rec.scratch("f32", [N, hidden]);
  rmsNorm(rec, { y: x, x: embedded, weight: w("vision_encoder.ln_pre.weight"), eps: v.normEps });

  const positions = rec.upload("u32", [2 * N], patchPositions(images));
  const plan = denseAttentionPlan(rec, {
    segments: counts,
    headsQ: v.nHeads,
    headsKv: v.nHeads,
    headDim: v.headDim,
  });
  const h = rec.scratch(act, [N, hidden]);
  // q|k|v and gate|up each from one product over weights stored as one matrix; the parts are column views.
  const qkv = rec.scratch(act, [N, 3 * hidden]), o = rec.scratch(act, [N, hidden]);
  const qk = qkv.sliceCols(0, 2 * hidden), q = qkv.sliceCols(0, hidden);
  const k = qkv.sliceCols(hidden, hidden), val = qkv.sliceCols(2 * hidden, hidden);
  const I = v.intermediateSize;
  const gateUp = rec.scratch(act, [N, 2 * I]), ffn = rec.scratch(act, [N, I]);
  const gate = gateUp.sliceCols(0, I), up = gateUp.sliceCols(I, I);

  for (let l = 0; l < v.nLayers; l++) {
    const p = `vision_encoder.transformer.layers.${l}.`;
    rmsNorm(rec, { y: h, x, weight: w(`${p}attention_norm.weight`), eps: v.normEps });
    linearStacked(rec, { y: qkv, x: h, w: ["wq", "wk", "wv"].map((n) => w(`${p}attention.${n}.weight`)) });
    rope2d(rec, { x: qk, headDim: v.headDim, theta: v.ropeTheta, positions });
    attention(rec, plan, { q, k, v: val, out: o });
    linear(rec, { y: x, x: o, w: w(`${p}attention.wo.weight`), accumulate: true });

    rmsNorm(rec, { y: h, x, weight: w(`${p}ffn_norm.weight`), eps: v.normEps });
    linearStacked(rec, { y: gateUp, x: h, w: ["w1", "w3"].map((n) => w(`${p}feed_forward.${n}.weight`)) });
    swiglu(rec, { y: ffn, gate, up });
    linear(rec, { y: x, x: ffn, w: w(`${p}feed_forward.w2.weight`), accumulate: true });
  }

  // Adapter: w_out(GELU(w_in(x))), both with bias when the checkpoint has them.
  const bias = (name: string) => (config.adapter?.bias ? w(name) : undefined);
  const inner = rec.scratch(act, [N, dim]), activated = rec.scratch(act, [N, dim]);
  linear(rec, {
    y: inner,
    x,
    w: w("vision_language_adapter.w_in.weight"),
    bias: bias("vision_language_adapter.w_in.bias"),
  });
  geluErf(rec, { y: activated, x: inner });
  const out = rec.ctx.tensor(act, [N, dim], { label: "image embeddings" });
  linear(rec, {
    y: out,
    x: activated,
    w: w("vision_language_adapter.w_out.weight"),
    bias: bias("vision_language_adapter.w_out.bias"),
  });
  return out;
}
