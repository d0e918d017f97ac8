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
import { linear, linearStacked, type LoraUpdate } from "../gpu/ops/linear.ts";
import { rmsNorm } from "../gpu/ops/norm.ts";
import { rope2d } from "../gpu/ops/rope.ts";
import type { FloatType } from "../gpu/dtype.ts";
import type { GpuContext } from "../gpu/context.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { ModelConfig, VisionConfig } from "./config.ts";
import { type LoraBank, type LoraModule, LoraRows, productKey } from "./lora_modules.ts";

/** A preprocessed image: channel-first float32 pixels of (3, rows·P, cols·P). */
export interface ImageInput {
  rows: number;
  cols: number;
  pixels: Float32Array;
}

export type WeightLookup = (name: string) => Tensor;

interface Layers {
  positions: Tensor;
  plan: ReturnType<typeof denseAttentionPlan>;
  h: Tensor;
  qkv: Tensor;
  o: Tensor;
  gateUp: Tensor;
  ffn: Tensor;
}

/** (row, column) of every patch, image after image; positions restart at (0, 0) for each image. */
function patchPositions(images: readonly ImageInput[]): Uint32Array {
  const out: number[] = [];
  for (const { rows, cols } of images) {
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out.push(r, c);
  }
  return Uint32Array.from(out);
}

/**
 * One pass of the encoder and adapter over a request's images, recorded in stages: the patch embedding, each
 * transformer layer, the adapter. The engine spreads a large image over several steps this way rather than hold
 * every stream while it is encoded; the kernels and their order are the same however the stages are grouped.
 * The activations live in pooled tensors until release(), which may come once the last stage's recorder is
 * submitted (later submissions run after it).
 */
export class VisionPass {
  /** Stages in all: the patch embedding, nLayers layers, the adapter. */
  readonly stages: number;
  #next = 0;
  readonly #v: VisionConfig;
  readonly #counts: number[];
  /** The residual stream, f32 [patches, hidden]; undefined once released. */
  #x?: Tensor;
  #out?: Tensor;
  /** The request's LoRA adapter, over every patch. */
  readonly #lora?: LoraRows;

  constructor(
    readonly ctx: GpuContext,
    readonly config: ModelConfig,
    readonly w: WeightLookup,
    readonly images: readonly ImageInput[],
    readonly act: FloatType,
    lora?: { bank: LoraBank; module: LoraModule },
  ) {
    const v = config.vision as VisionConfig;
    if (!v) throw new Error("this model has no vision encoder (a GGUF text model needs its --mmproj file)");
    const P = v.patchSize;
    for (const image of images) {
      const expected = v.numChannels * image.rows * P * image.cols * P;
      if (image.pixels.length !== expected) {
        throw new RangeError(`an image of ${image.rows}x${image.cols} patches needs ${expected} values`);
      }
    }
    this.#v = v;
    this.#counts = images.map((i) => i.rows * i.cols);
    this.stages = v.nLayers + 2;
    const N = this.#counts.reduce((a, b) => a + b, 0);
    this.#x = ctx.tensor("f32", [N, v.hiddenSize], { label: "vision residual" });
    this.#lora = LoraRows.of(lora?.bank, [{ module: lora?.module, start: 0, count: N }]);
  }

  /** y = x · Wᵀ (+ bias) (+ y) with the adapter's update of W. */
  #linear(
    rec: Recorder,
    args: { y: Tensor; x: Tensor; w: string; bias?: Tensor; accumulate?: boolean },
  ): void {
    const record = (lora?: LoraUpdate) => linear(rec, { ...args, w: this.w(args.w), lora });
    if (this.#lora) this.#lora.product(rec, args.w, args.x, record);
    else record();
  }

  /** The products with weights stored as one matrix (q|k|v, w1|w3), with the adapter's updates. */
  #linearStacked(rec: Recorder, args: { y: Tensor; x: Tensor; w: string[] }): void {
    const record = (lora?: LoraUpdate) => linearStacked(rec, { ...args, w: args.w.map(this.w), lora });
    if (this.#lora) this.#lora.product(rec, productKey(args.w), args.x, record);
    else record();
  }

  get #residual(): Tensor {
    if (!this.#x) throw new Error("the vision pass was released");
    return this.#x;
  }

  get done(): boolean {
    return this.#next === this.stages;
  }

  get remaining(): number {
    return this.stages - this.#next;
  }

  /** Records the next `count` stages (at most those left) into `rec`. */
  record(rec: Recorder, count = this.remaining): void {
    let layers: Layers | undefined;
    for (const end = Math.min(this.stages, this.#next + count); this.#next < end; this.#next++) {
      const stage = this.#next;
      if (stage === 0) this.#embed(rec);
      else if (stage <= this.#v.nLayers) this.#layer(rec, layers ??= this.#layers(rec), stage - 1);
      else this.#adapt(rec);
    }
  }

  /** The embeddings [patches, dim] in `act`, once done: the caller releases them. */
  take(): Tensor {
    if (!this.#out) throw new Error("the vision pass is not done");
    const out = this.#out;
    this.#out = undefined;
    return out;
  }

  /** Frees the activations (and the embeddings, unless taken). */
  release(): void {
    if (this.#x) this.ctx.release(this.#x);
    if (this.#out) this.ctx.release(this.#out);
    this.#x = this.#out = undefined;
  }

  /** Patch embedding: the 16x16 convolution without bias is a matmul over flattened patches; then ln_pre. */
  #embed(rec: Recorder): void {
    const v = this.#v, P = v.patchSize, N = this.#residual.rows;
    const cut = rec.scratch(this.act, [N, v.numChannels * P * P]);
    let at = 0;
    this.images.forEach((image, i) => {
      const pixels = rec.upload("f32", [v.numChannels, image.rows * P, image.cols * P], image.pixels);
      patches(rec, { y: cut.sliceRows(at, this.#counts[i]), x: pixels, patch: P });
      at += this.#counts[i];
    });
    const embedded = rec.scratch("f32", [N, v.hiddenSize]);
    this.#linear(rec, { y: embedded, x: cut, w: "vision_encoder.patch_conv.weight" });
    rmsNorm(rec, {
      y: this.#residual,
      x: embedded,
      weight: this.w("vision_encoder.ln_pre.weight"),
      eps: v.normEps,
    });
  }

  /** What the layers recorded into one recorder share: their scratch, the patch positions, the attention plan. */
  #layers(rec: Recorder): Layers {
    const v = this.#v, hidden = v.hiddenSize, N = this.#residual.rows, act = this.act, I = v.intermediateSize;
    return {
      positions: rec.upload("u32", [2 * N], patchPositions(this.images)),
      plan: denseAttentionPlan(rec, {
        segments: this.#counts,
        headsQ: v.nHeads,
        headsKv: v.nHeads,
        headDim: v.headDim,
      }),
      h: rec.scratch(act, [N, hidden]),
      // q|k|v and gate|up each from one product over weights stored as one matrix; the parts are column views.
      qkv: rec.scratch(act, [N, 3 * hidden]),
      o: rec.scratch(act, [N, hidden]),
      gateUp: rec.scratch(act, [N, 2 * I]),
      ffn: rec.scratch(act, [N, I]),
    };
  }

  #layer(rec: Recorder, { positions, plan, h, qkv, o, gateUp, ffn }: Layers, l: number): void {
    const v = this.#v, hidden = v.hiddenSize, x = this.#residual, w = this.w, I = v.intermediateSize;
    const qk = qkv.sliceCols(0, 2 * hidden), q = qkv.sliceCols(0, hidden);
    const k = qkv.sliceCols(hidden, hidden), val = qkv.sliceCols(2 * hidden, hidden);
    const gate = gateUp.sliceCols(0, I), up = gateUp.sliceCols(I, I);

    const p = `vision_encoder.transformer.layers.${l}.`;
    rmsNorm(rec, { y: h, x, weight: w(`${p}attention_norm.weight`), eps: v.normEps });
    this.#linearStacked(rec, { y: qkv, x: h, w: ["wq", "wk", "wv"].map((n) => `${p}attention.${n}.weight`) });
    rope2d(rec, { x: qk, headDim: v.headDim, theta: v.ropeTheta, positions });
    attention(rec, plan, { q, k, v: val, out: o });
    this.#linear(rec, { y: x, x: o, w: `${p}attention.wo.weight`, accumulate: true });

    rmsNorm(rec, { y: h, x, weight: w(`${p}ffn_norm.weight`), eps: v.normEps });
    this.#linearStacked(rec, { y: gateUp, x: h, w: ["w1", "w3"].map((n) => `${p}feed_forward.${n}.weight`) });
    swiglu(rec, { y: ffn, gate, up });
    this.#linear(rec, { y: x, x: ffn, w: `${p}feed_forward.w2.weight`, accumulate: true });
  }

  /** Adapter: w_out(GELU(w_in(x))), both with bias when the checkpoint has them. */
  #adapt(rec: Recorder): void {
    const { config, w, act } = this, N = this.#residual.rows, dim = config.decoder.dim;
    const bias = (name: string) => (config.adapter?.bias ? w(name) : undefined);
    const inner = rec.scratch(act, [N, dim]), activated = rec.scratch(act, [N, dim]);
    this.#linear(rec, {
      y: inner,
      x: this.#residual,
      w: "vision_language_adapter.w_in.weight",
      bias: bias("vision_language_adapter.w_in.bias"),
    });
    geluErf(rec, { y: activated, x: inner });
    this.#out = this.ctx.tensor(act, [N, dim], { label: "image embeddings" });
    this.#linear(rec, {
      y: this.#out,
      x: activated,
      w: "vision_language_adapter.w_out.weight",
      bias: bias("vision_language_adapter.w_out.bias"),
    });
  }
}
