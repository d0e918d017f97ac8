/** The Service the routes run on, for a model opened on this host (the GPU host's side; the edge builds its own). */
import { AddressAllowList } from "../functions/images/address.ts";
import { DEFAULT_IMAGE_FETCH } from "../functions/images/fetch.ts";
import { createMetrics } from "../functions/metrics.ts";
import type { Service } from "../functions/service.ts";
import type { ImagePool } from "../runtime/images/pool.ts";
import { imageInput, type Orientation, type ResizeMode } from "../runtime/images/preprocess.ts";
import { log } from "../runtime/log.ts";
import { type OpenedFiles, visionUnavailable } from "../runtime/model/boot.ts";
import { recipeName, type WeightFormat } from "../runtime/model/plan.ts";
import { expectedTensors } from "../runtime/model/tensors.ts";

/** A demo answer's tokens when its request does not say. */
export const DEMO_MAX_TOKENS = 512;

export interface ImageSettings {
  maxImages: number;
  maxBytes: number;
  maxPixels: number;
  allow: AddressAllowList;
  fetchUrls: boolean;
  resize: ResizeMode;
  orientation: Orientation;
  /** Threads that decode images; absent: they are decoded in this thread. */
  pool?: ImagePool;
}

export interface ServiceSettings {
  /** The model id clients use (default: the model's own). */
  servedName?: string;
  images: ImageSettings;
  temperature: number;
  /** A chat answer's tokens when its request does not say; absent: what the context leaves (DEMO_MAX_TOKENS for the demo). */
  maxTokens?: number;
  /** A Hugging Face chat template; absent: Mistral's instruct rules. */
  chatTemplate?: string;
  /** The decoder's --quant: a llama.cpp recipe names the model's quantization (Ollama's `quantization_level`). */
  quant?: WeightFormat;
}

export function localService(files: OpenedFiles, settings: ServiceSettings): Service {
  const { tokenizer, config } = files;
  const id = settings.servedName ?? files.id;
  const unavailable = visionUnavailable(files);
  // The demo's random weights rarely write the end token: unbounded, an answer would run for the whole context.
  const lora = files.lora?.length ?? 0;
  const maxTokens = settings.maxTokens ?? (files.demo ? DEMO_MAX_TOKENS : undefined);
  // A GGUF's own (its blocks are used as stored), else the recipe --quant names.
  const quantization = files.fileType ?? recipeName(settings.quant);
  // Said at start-up too, not only to the first request with an image.
  if (unavailable) log.warn("serving text only", { reason: unavailable });
  // Also as Ollama's clients name models (`ID:latest`, in any case).
  const taken = [id, files.id].map((n) => n.toLowerCase());
  const clash = files.loraModules?.find((m) => taken.includes(m.name.toLowerCase().replace(/:latest$/, "")));
  if (clash) throw new Error(`--lora-module ${clash.name}=...: the model itself is served under that name`);
  const service: Service = {
    model: {
      id,
      aliases: id === files.id ? [] : [files.id],
      created: Math.floor(Date.now() / 1000),
      demo: files.demo,
      description: files.demo
        ? "Built-in demo: Pixtral's architecture at a tiny size with RANDOM weights (its output is noise). " +
          "Serve real Pixtral weights with --model PATH."
        // Not where its files are: the models list is every client's to read (through a gateway too).
        : `Pixtral (${config.source})${lora ? `, ${lora} LoRA adapter${lora > 1 ? "s" : ""} merged` : ""}`,
      ...files.demo ? {} : { format: config.source === "gguf" ? "gguf" : "safetensors" },
      ...quantization ? { quantization } : {},
      parameters: expectedTensors(config).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0),
      ...files.loraModules ? { loras: files.loraModules.map((m) => m.name) } : {},
    },
    tokenizer,
    images: {
      enabled: unavailable === undefined,
      disabledReason: unavailable,
      maxImages: settings.images.maxImages,
      fetch: {
        ...DEFAULT_IMAGE_FETCH,
        maxBytes: settings.images.maxBytes,
        allow: settings.images.allow,
        fetchUrls: settings.images.fetchUrls,
      },
      resize: settings.images.resize,
      orientation: settings.images.orientation,
      maxImageSize: tokenizer.imageConfig?.maxImageSize ?? config.vision?.imageSize ?? 1024,
      patchSize: tokenizer.imageConfig?.patchSize ?? config.vision?.patchSize ?? 16,
      maxPixels: settings.images.maxPixels,
      tokens: { ...config.imageTokens },
      prepare: settings.images.pool &&
        (async (bytes, options, signal) =>
          imageInput(await settings.images.pool!.preprocess(bytes, options, signal))),
    },
    defaults: {
      temperature: settings.temperature,
      topP: 1,
      ...(maxTokens === undefined ? {} : { maxTokens }),
    },
    chatTemplate: settings.chatTemplate,
    metrics: createMetrics(() => service.engine),
  };
  return service;
}
