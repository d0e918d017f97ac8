/** The demo model's shape: tiny-pixtral's architecture (dim 256, 2 + 2 layers) with the real 131072-id vocabulary. */
import { type ModelConfig, parseParamsJson } from "./config.ts";

const PARAMS = {
  dim: 256,
  n_layers: 2,
  head_dim: 64,
  hidden_dim: 768,
  n_heads: 8,
  n_kv_heads: 2,
  rope_theta: 1e9,
  norm_eps: 1e-5,
  vocab_size: 131072,
  vision_encoder: {
    hidden_size: 256,
    num_channels: 3,
    // Images are scaled to fit 256 px (16x16 patches at most): a CPU-only demo answers in seconds, not minutes.
    image_size: 256,
    patch_size: 16,
    rope_theta: 1e4,
    intermediate_size: 512,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    image_token_id: 10,
    image_break_token_id: 12,
    image_end_token_id: 13,
  },
};

export function demoConfig(): ModelConfig {
  return parseParamsJson(PARAMS, "built-in demo params");
}
