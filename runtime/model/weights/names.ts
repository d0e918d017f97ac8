/**
 * Tensor names of each layout mapped to the model's own (Mistral-native) names. Hugging Face names come in the
 * checkpoint's old LLaVA style and in the style transformers >= 4.52 saves (`model.language_model.*`).
 */

export type Layout = "mistral" | "hf" | "gguf";

type Rule = [RegExp, string];

const HF_TEXT = String.raw`^(?:language_model\.model|model\.language_model)\.`;
const HF_VISION = String.raw`^(?:model\.)?vision_tower\.`;

const HF_RULES: Rule[] = [
  [new RegExp(HF_TEXT + String.raw`embed_tokens\.weight$`), "tok_embeddings.weight"],
  [
    new RegExp(HF_TEXT + String.raw`layers\.(\d+)\.input_layernorm\.weight$`),
    "layers.$1.attention_norm.weight",
  ],
  [
    new RegExp(HF_TEXT + String.raw`layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight$`),
    "layers.$1.attention.w$2.weight",
  ],
  [
    new RegExp(HF_TEXT + String.raw`layers\.(\d+)\.post_attention_layernorm\.weight$`),
    "layers.$1.ffn_norm.weight",
  ],
  [
    new RegExp(HF_TEXT + String.raw`layers\.(\d+)\.mlp\.gate_proj\.weight$`),
    "layers.$1.feed_forward.w1.weight",
  ],
  [
    new RegExp(HF_TEXT + String.raw`layers\.(\d+)\.mlp\.down_proj\.weight$`),
    "layers.$1.feed_forward.w2.weight",
  ],
  [
    new RegExp(HF_TEXT + String.raw`layers\.(\d+)\.mlp\.up_proj\.weight$`),
    "layers.$1.feed_forward.w3.weight",
  ],
  [new RegExp(HF_TEXT + String.raw`norm\.weight$`), "norm.weight"],
  [/^(?:language_model\.)?lm_head\.weight$/, "output.weight"],
  [new RegExp(HF_VISION + String.raw`patch_conv\.weight$`), "vision_encoder.patch_conv.weight"],
  [new RegExp(HF_VISION + String.raw`ln_pre\.weight$`), "vision_encoder.ln_pre.weight"],
  [
    new RegExp(HF_VISION + String.raw`transformer\.layers\.(\d+)\.(attention_norm|ffn_norm)\.weight$`),
    "vision_encoder.transformer.layers.$1.$2.weight",
  ],
  [
    new RegExp(HF_VISION + String.raw`transformer\.layers\.(\d+)\.attention\.([qkvo])_proj\.weight$`),
    "vision_encoder.transformer.layers.$1.attention.w$2.weight",
  ],
  [
    new RegExp(HF_VISION + String.raw`transformer\.layers\.(\d+)\.feed_forward\.gate_proj\.weight$`),
    "vision_encoder.transformer.layers.$1.feed_forward.w1.weight",
  ],
  [
    new RegExp(HF_VISION + String.raw`transformer\.layers\.(\d+)\.feed_forward\.down_proj\.weight$`),
    "vision_encoder.transformer.layers.$1.feed_forward.w2.weight",
  ],
  [
    new RegExp(HF_VISION + String.raw`transformer\.layers\.(\d+)\.feed_forward\.up_proj\.weight$`),
    "vision_encoder.transformer.layers.$1.feed_forward.w3.weight",
  ],
  [/^(?:model\.)?multi_modal_projector\.linear_1\.(weight|bias)$/, "vision_language_adapter.w_in.$1"],
  [/^(?:model\.)?multi_modal_projector\.linear_2\.(weight|bias)$/, "vision_language_adapter.w_out.$1"],
];

/** llama.cpp's names (gguf-py constants): the text GGUF ("llama") and the mmproj ("clip", projector pixtral). */
const GGUF_RULES: Rule[] = [
  [/^token_embd\.weight$/, "tok_embeddings.weight"],
  [/^blk\.(\d+)\.attn_norm\.weight$/, "layers.$1.attention_norm.weight"],
  [/^blk\.(\d+)\.attn_([qkv])\.weight$/, "layers.$1.attention.w$2.weight"],
  [/^blk\.(\d+)\.attn_output\.weight$/, "layers.$1.attention.wo.weight"],
  [/^blk\.(\d+)\.ffn_norm\.weight$/, "layers.$1.ffn_norm.weight"],
  [/^blk\.(\d+)\.ffn_gate\.weight$/, "layers.$1.feed_forward.w1.weight"],
  [/^blk\.(\d+)\.ffn_down\.weight$/, "layers.$1.feed_forward.w2.weight"],
  [/^blk\.(\d+)\.ffn_up\.weight$/, "layers.$1.feed_forward.w3.weight"],
  [/^output_norm\.weight$/, "norm.weight"],
  [/^output\.weight$/, "output.weight"],
  [/^v\.patch_embd\.weight$/, "vision_encoder.patch_conv.weight"],
  [/^v\.pre_ln\.weight$/, "vision_encoder.ln_pre.weight"],
  [/^v\.blk\.(\d+)\.ln1\.weight$/, "vision_encoder.transformer.layers.$1.attention_norm.weight"],
  [/^v\.blk\.(\d+)\.ln2\.weight$/, "vision_encoder.transformer.layers.$1.ffn_norm.weight"],
  [/^v\.blk\.(\d+)\.attn_([qkv])\.weight$/, "vision_encoder.transformer.layers.$1.attention.w$2.weight"],
  [/^v\.blk\.(\d+)\.attn_out\.weight$/, "vision_encoder.transformer.layers.$1.attention.wo.weight"],
  [/^v\.blk\.(\d+)\.ffn_gate\.weight$/, "vision_encoder.transformer.layers.$1.feed_forward.w1.weight"],
  [/^v\.blk\.(\d+)\.ffn_down\.weight$/, "vision_encoder.transformer.layers.$1.feed_forward.w2.weight"],
  [/^v\.blk\.(\d+)\.ffn_up\.weight$/, "vision_encoder.transformer.layers.$1.feed_forward.w3.weight"],
  [/^mm\.1\.(weight|bias)$/, "vision_language_adapter.w_in.$1"],
  [/^mm\.2\.(weight|bias)$/, "vision_language_adapter.w_out.$1"],
];

/** Tensors files hold that the model has no use for, as expected: the mmproj's copy of [IMG_BREAK]'s text row. */
export const REDUNDANT = new Set(["v.token_embd.img_break"]);

/**
 * The canonical name of a tensor stored under `name` in a file of `layout`, or null for tensors the model does
 * not use (e.g. the REDUNDANT ones).
 */
export function canonicalName(layout: Layout, name: string): string | null {
  if (layout === "mistral") return name;
  for (const [pattern, replacement] of layout === "hf" ? HF_RULES : GGUF_RULES) {
    if (pattern.test(name)) return name.replace(pattern, replacement);
  }
  return null;
}
