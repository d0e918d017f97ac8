/**
 * The model's own tensor names (Mistral's, from mistral-inference's module paths) and the shape each must have
 * for a config: the one list that the loaders check files against and the memory plan counts.
 */
import type { ModelConfig } from "./config.ts";

export type Component = "decoder" | "vision" | "adapter";

/** What a tensor is, which decides how it may be stored (norms and biases stay float). */
export type TensorRole = "embedding" | "linear" | "conv" | "norm" | "bias";

export interface TensorSpec {
  name: string;
  /** PyTorch order: [out, in] for linear layers. */
  shape: number[];
  component: Component;
  role: TensorRole;
  /**
   * For q/k projections: the heads and head size whose rows Hugging Face checkpoints store in rotate-half order
   * (spec 3.3); readers of those checkpoints put them back in the native interleaved order.
   */
  rope?: { heads: number; headDim: number };
}

export function expectedTensors(config: ModelConfig): TensorSpec[] {
  const d = config.decoder;
  const specs: TensorSpec[] = [];
  const add = (
    component: Component,
    role: TensorRole,
    name: string,
    shape: number[],
    rope?: TensorSpec["rope"],
  ) => specs.push(rope ? { name, shape, component, role, rope } : { name, shape, component, role });

  add("decoder", "embedding", "tok_embeddings.weight", [d.vocabSize, d.dim]);
  for (let i = 0; i < d.nLayers; i++) {
    const p = `layers.${i}.`;
    add("decoder", "norm", `${p}attention_norm.weight`, [d.dim]);
    add("decoder", "linear", `${p}attention.wq.weight`, [d.nHeads * d.headDim, d.dim], {
      heads: d.nHeads,
      headDim: d.headDim,
    });
    add("decoder", "linear", `${p}attention.wk.weight`, [d.nKvHeads * d.headDim, d.dim], {
      heads: d.nKvHeads,
      headDim: d.headDim,
    });
    add("decoder", "linear", `${p}attention.wv.weight`, [d.nKvHeads * d.headDim, d.dim]);
    add("decoder", "linear", `${p}attention.wo.weight`, [d.dim, d.nHeads * d.headDim]);
    add("decoder", "norm", `${p}ffn_norm.weight`, [d.dim]);
    add("decoder", "linear", `${p}feed_forward.w1.weight`, [d.hiddenDim, d.dim]);
    add("decoder", "linear", `${p}feed_forward.w2.weight`, [d.dim, d.hiddenDim]);
    add("decoder", "linear", `${p}feed_forward.w3.weight`, [d.hiddenDim, d.dim]);
  }
  add("decoder", "norm", "norm.weight", [d.dim]);
  add("decoder", "linear", "output.weight", [d.vocabSize, d.dim]);

  const v = config.vision;
  if (v) {
    const h = v.hiddenSize;
    add("vision", "conv", "vision_encoder.patch_conv.weight", [h, v.numChannels, v.patchSize, v.patchSize]);
    add("vision", "norm", "vision_encoder.ln_pre.weight", [h]);
    for (let i = 0; i < v.nLayers; i++) {
      const p = `vision_encoder.transformer.layers.${i}.`;
      const rope = { heads: v.nHeads, headDim: v.headDim };
      add("vision", "norm", `${p}attention_norm.weight`, [h]);
      add("vision", "linear", `${p}attention.wq.weight`, [h, h], rope);
      add("vision", "linear", `${p}attention.wk.weight`, [h, h], rope);
      add("vision", "linear", `${p}attention.wv.weight`, [h, h]);
      add("vision", "linear", `${p}attention.wo.weight`, [h, h]);
      add("vision", "norm", `${p}ffn_norm.weight`, [h]);
      add("vision", "linear", `${p}feed_forward.w1.weight`, [v.intermediateSize, h]);
      add("vision", "linear", `${p}feed_forward.w2.weight`, [h, v.intermediateSize]);
      add("vision", "linear", `${p}feed_forward.w3.weight`, [v.intermediateSize, h]);
    }
    add("adapter", "linear", "vision_language_adapter.w_in.weight", [d.dim, h]);
    if (config.adapter?.bias) add("adapter", "bias", "vision_language_adapter.w_in.bias", [d.dim]);
    add("adapter", "linear", "vision_language_adapter.w_out.weight", [d.dim, d.dim]);
    if (config.adapter?.bias) add("adapter", "bias", "vision_language_adapter.w_out.bias", [d.dim]);
  }
  return specs;
}

/** Parameter counts per component. */
export function parameterCounts(config: ModelConfig): Record<Component, number> {
  const counts: Record<Component, number> = { decoder: 0, vision: 0, adapter: 0 };
  for (const t of expectedTensors(config)) counts[t.component] += t.shape.reduce((n, x) => n * x, 1);
  return counts;
}
