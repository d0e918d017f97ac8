/**
 * What the routes need from the deployment: the engine (local GPU or remote), the tokenizer, the model's
 * identity, limits and defaults, and the metrics. The GPU host and the edge build each assemble one.
 */
import type { Orientation, PreprocessOptions, ResizeMode } from "../runtime/images/preprocess.ts";
import type { Engine, RequestImage } from "../runtime/engine/engine.ts";
import type { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";
import type { ImageFetchOptions } from "./images/fetch.ts";
import type { ServerMetrics } from "./metrics.ts";

export interface ModelInfo {
  /** The id clients send as `model`. */
  id: string;
  /** Other names accepted for it. */
  aliases: string[];
  /** Unix seconds. */
  created: number;
  /** Set for the built-in random-weight demo model. */
  demo: boolean;
  /** One line on what is served, for /v1/models. */
  description: string;
  /** The weight files' format, where known: "gguf" or "safetensors" (Ollama's `format`). */
  format?: string;
  /** A GGUF's quantization by llama.cpp's name, e.g. Q4_K_M (Ollama's `quantization_level`). */
  quantization?: string;
  /** Weights in all (decoder, vision encoder, adapter), where known (Ollama's `parameter_size`). */
  parameters?: number;
  /** Once loaded, where known: the weights' bytes and the decoder's format (Ollama's `size`, `quantization_level`). */
  loaded?: { bytes: number; format: string };
  /** LoRA adapters served per request: names a request may give as `model` instead of `id`. */
  loras?: string[];
}

export interface ImagePolicy {
  /** Whether the model has a vision encoder. */
  enabled: boolean;
  /** Why not, when it has none (e.g. a GGUF served without its mmproj). */
  disabledReason?: string;
  maxImages: number;
  fetch: ImageFetchOptions;
  resize: ResizeMode;
  orientation: Orientation;
  maxImageSize: number;
  patchSize: number;
  maxPixels: number;
  tokens: { img: number; imgBreak: number; imgEnd: number };
  /**
   * An image's file as the engine takes it: decoded (the default, in this thread; the GPU host decodes on worker
   * threads, runtime/images/pool.ts), or measured only, the GPU host decoding the file it is sent (the edge).
   */
  prepare?: (bytes: Uint8Array, options: PreprocessOptions, signal?: AbortSignal) => Promise<RequestImage>;
}

export interface SamplingDefaults {
  temperature: number;
  topP: number;
  /** Tokens a chat answer may have when its request does not say; undefined: what the context leaves. */
  maxTokens?: number;
}

export interface Service {
  model: ModelInfo;
  /** Undefined while the model loads; /health answers 503 until it is set. */
  engine?: Engine;
  tokenizer: Tokenizer;
  images: ImagePolicy;
  defaults: SamplingDefaults;
  /** A Hugging Face chat template to build prompts with; absent: Mistral's instruct rules (the default). */
  chatTemplate?: string;
  metrics: ServerMetrics;
  /** Why loading failed, when it did. */
  failure?: string;
  /** Set when shutdown begins: load balancers should stop sending requests. */
  stopping?: boolean;
}

/** The LoRA adapter served per request that `name` (a request's `model`) names, if it names one. */
export function loraNamed(service: Service, name: string | undefined | null): string | undefined {
  if (name == null) return undefined;
  const bare = name.replace(/:latest$/i, "");
  return service.model.loras?.find((l) => l === name || l === bare) ??
    // As Ollama matches names: in any case.
    service.model.loras?.find((l) => l.toLowerCase() === bare.toLowerCase());
}

/** A GenerateRequest's `lora` field for the request whose `model` is `name`: none when it names the model. */
export function loraField(service: Service, name: string | undefined | null): { lora?: string } {
  const lora = loraNamed(service, name);
  return lora === undefined ? {} : { lora };
}
