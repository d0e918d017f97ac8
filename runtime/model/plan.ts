/**
 * The memory plan, made before anything is loaded: weight bytes per component after quantization, the KV cache
 * for the context, the activation peak, and whether it all fits what the GPU adapter offers. A load that cannot
 * fit is refused here, with what it needs and what to change, instead of failing halfway through.
 */
import type { ModelConfig } from "./config.ts";
import { type Component, expectedTensors } from "./tensors.ts";
import {
  type DType,
  isRequantized,
  isScaled,
  REQUANTIZED,
  type RequantizedType,
  SCALED_CODES,
  type ScaledType,
  tensorBytes,
} from "./weights/dtype.ts";

/** A tensor's format on the GPU (f32 is for exactness tests). */
export type TensorFormat = "q4" | "q4k" | "q5k" | "q6k" | "q8" | "f16" | "f32";
/** What --quant and --vision-quant choose: a tensor format, or one of llama.cpp's recipes (mixFormat). */
export type WeightFormat = TensorFormat | "q4km" | "q5km";
/** The values of --vision-quant, and of --quant, which also takes the recipes (a decoder's). */
export const VISION_FORMATS = [
  "q4",
  "q4k",
  "q5k",
  "q6k",
  "q8",
  "f16",
  "f32",
] as const satisfies TensorFormat[];
export const DECODER_FORMATS = [...VISION_FORMATS, "q4km", "q5km"] as const satisfies WeightFormat[];
export type KvFormat = "f16" | "q8" | "f32";

/**
 * Bits per weight of each format, in one place. q4 is our quantize-on-load format (groups of 32 weights with
 * an f16 scale: 32 x 4 + 16 bits per group = 4.5); its final layout is the kernel library's to define. q8 is
 * ggml's Q8_0 (an f16 scale and 32 int8 per group: 8.5 bits); q4k, q5k and q6k are ggml's Q4_K, Q5_K and Q6_K
 * (144, 176 and 210 bytes per 256 weights), quantized as llama.cpp does.
 */
export const WEIGHT_BITS: Record<TensorFormat, number> = {
  q4: 4.5,
  q4k: 4.5,
  q5k: 5.5,
  q6k: 6.5625,
  q8: 8.5,
  f16: 16,
  f32: 32,
};

/** llama.cpp's Q4_K_M and Q5_K_M recipes: the format of most tensors, and llama.cpp's name. */
const RECIPES: Record<Exclude<WeightFormat, TensorFormat>, { most: TensorFormat; name: string }> = {
  q4km: { most: "q4k", name: "Q4_K_M" },
  q5km: { most: "q5k", name: "Q5_K_M" },
};

/** llama.cpp's name of a recipe (as Ollama reports a model's quantization); undefined for a tensor format. */
export function recipeName(format: WeightFormat | undefined): string | undefined {
  return format && format in RECIPES ? RECIPES[format as keyof typeof RECIPES].name : undefined;
}

/**
 * The format `format` gives the tensor `name` of a decoder of `layers` layers: itself, but for the recipes,
 * llama.cpp's Q4_K_M and Q5_K_M (llama_tensor_get_type): Q6_K for the output head, and for attention's wv and
 * the FFN's w2 in the first and last eighth of the layers and every third between (use_more_bits); Q4_K (Q5_K)
 * for the rest, the token embedding and the vision encoder included.
 */
export function mixFormat(format: WeightFormat, name: string, layers: number): TensorFormat {
  if (!(format in RECIPES)) return format as TensorFormat;
  const { most } = RECIPES[format as keyof typeof RECIPES];
  if (name === "output.weight") return "q6k";
  const layer = name.match(/^layers\.(\d+)\.(?:attention\.wv|feed_forward\.w2)\.weight$/)?.[1];
  if (layer === undefined) return most;
  const i = Number(layer), eighth = Math.floor(layers / 8);
  return i < eighth || i >= Math.floor(7 * layers / 8) || (i - eighth) % 3 === 2 ? "q6k" : most;
}

/**
 * The format GGUF blocks re-quantized with a LoRA merged in, or compressed-tensors or bitsandbytes codes,
 * become: `quant` when a flag asked for it (`explicit`), else its own `into`, or the default
 * `quant` when that is more precise (a default never picks a format smaller than the codes' own).
 */
export function decodedFormat(
  dtype: ScaledType | RequantizedType,
  quant: TensorFormat,
  explicit = false,
): TensorFormat {
  const into = isScaled(dtype) ? SCALED_CODES[dtype].into : REQUANTIZED[dtype].into;
  const format = explicit || WEIGHT_BITS[quant] > WEIGHT_BITS[into] ? quant : into;
  // int4 codes are copied into q4 blocks as they are (scaled.ts exactBlockFormat), at q4k's size: q4k would
  // only round them again.
  return format === "q4k" && dtype === "I4" ? "q4" : format;
}
/**
 * The format of the decoder's float tensors: `quant`, but by default at least q8 in a checkpoint whose other
 * layers are compressed-tensors or bitsandbytes codes (`besideCodes`): its recipe left these (lm_head, the embedding)
 * unquantized on purpose, as vLLM serves them, and 4 bits there would undo what it kept.
 */
export function floatFormat(quant: TensorFormat, explicit = false, besideCodes = false): TensorFormat {
  return besideCodes && !explicit && WEIGHT_BITS[quant] < WEIGHT_BITS.q8 ? "q8" : quant;
}

/** Weights per quantization group: a quantized tensor's rows must be a whole number of groups. */
export const QUANT_GROUP = 32;

/**
 * The format a matrix with rows of `k` weights takes when `format` is asked: its rows must be whole blocks (the
 * k-quants' of 256, else q4 or q8 is taken, as llama.cpp falls back to blocks of 32; q4's and q8's of 32, else
 * f16), and the patch convolution (`conv`) stays float.
 */
export function rowFormat(format: TensorFormat, k: number, conv = false): TensorFormat {
  if (format === "q4k" && (conv || k % 256 !== 0)) format = "q4";
  if ((format === "q5k" || format === "q6k") && (conv || k % 256 !== 0)) format = "q8";
  return (format === "q4" || format === "q8") && (conv || k % QUANT_GROUP !== 0) ? "f16" : format;
}
/** KV cache element sizes: fp16, or 8-bit with an f16 scale per 32 values (8.5 bits). */
export const KV_BITS: Record<KvFormat, number> = { f16: 16, q8: 8.5, f32: 32 };
/** Tokens per KV cache block: sequences of any length share one pool of these blocks. */
export const KV_BLOCK_TOKENS = 16;
/** Activations are float32 (the conservative case: f16 activations halve these figures). */
const ACT_BYTES = 4;
/** Largest piece of a tensor staged in JavaScript memory while uploading (WeightSource.chunks). */
export const LOAD_STAGING_BYTES = 64 << 20;
/** Context used when the adapter's memory is unknown (WebGPU does not report it): pass --gpu-memory to size it. */
export const CONTEXT_WHEN_MEMORY_UNKNOWN = 16_384;

/**
 * Models with fewer decoder parameters than this (the demo, test models) load exactly unless told otherwise: f32
 * weights, activations and KV cache. Quantizing them would save under a GiB and move their outputs away from a
 * reference's; Pixtral 12B gets q4 decoder weights, f16 vision weights and an f16 KV cache.
 */
export const EXACT_BELOW_PARAMETERS = 1e9;

export function decoderParameters(config: ModelConfig): number {
  return expectedTensors(config).filter((t) => t.component === "decoder")
    .reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
}

export interface Precision {
  quant: WeightFormat;
  visionQuant: WeightFormat;
  kv: KvFormat;
  /** Undefined: f16 where the GPU has shader-f16. */
  activations?: "f16" | "f32";
  /** The weight formats flags gave: those apply to codes stored quantized too (decodedFormat). */
  explicit?: Explicit;
}

export interface Explicit {
  quant?: boolean;
  visionQuant?: boolean;
}

/** The formats a model loads with: those `chosen` (by flags), the defaults for its size for the rest. */
export function precision(config: ModelConfig, chosen: Partial<Precision>): Precision {
  const defaults: Precision = decoderParameters(config) < EXACT_BELOW_PARAMETERS
    ? { quant: "f32", visionQuant: "f32", kv: "f32", activations: "f32" }
    : { quant: "q4", visionQuant: "f16", kv: "f16" };
  return {
    quant: chosen.quant ?? defaults.quant,
    visionQuant: chosen.visionQuant ?? defaults.visionQuant,
    kv: chosen.kv ?? defaults.kv,
    activations: chosen.activations ?? defaults.activations,
    explicit: { quant: chosen.quant !== undefined, visionQuant: chosen.visionQuant !== undefined },
  };
}

export interface PlanOptions {
  /** Decoder format (default q4). */
  quant?: WeightFormat;
  /** Vision encoder and adapter format (default f16: quantizing the vision tower is known to hurt). */
  visionQuant?: WeightFormat;
  /** KV cache format (default f16). */
  kv?: KvFormat;
  /** KV cache capacity in tokens (default: the largest that fits, up to the model's context). */
  ctx?: number;
  /** Tokens per prefill step (default 512). */
  prefillChunk?: number;
  /** Sequences decoded together (default 8). */
  decodeBatch?: number;
  /**
   * Dtypes as stored, by canonical tensor name, for files whose tensors are already quantized: GGUF blocks the
   * kernels read are uploaded as stored, other GGUF types and scaled codes become decodedFormat's,
   * float tensors follow `quant` / `visionQuant` (floatFormat beside codes).
   */
  stored?: ReadonlyMap<string, DType>;
  /** Tensors a LoRA adapter updates at load: GGUF blocks among them are quantized again (decodedFormat). */
  merged?: ReadonlySet<string>;
  /** GPU bytes of the LoRA adapters served per request (lora_modules.ts). */
  loraModules?: number;
  explicit?: Explicit;
}

/** What a GPU adapter offers: a plain object, so that plans are testable without a GPU. */
export interface AdapterOffer {
  name: string;
  /** Memory available for the model, in bytes; null when unknown. */
  memoryBytes: number | null;
  /** Largest single buffer; null when no adapter was asked. */
  maxBufferSize: number | null;
  maxStorageBufferBindingSize: number | null;
}

export interface ComponentPlan {
  parameters: number;
  /** Format of the large matrices ("q4", or the stored GGUF types, e.g. "Q4_K+Q6_K"). */
  format: string;
  bytes: number;
}

export interface MemoryPlan {
  weights: Record<Component, ComponentPlan> & { total: number };
  largestTensor: { name: string; bytes: number };
  /** LoRA adapters served per request. */
  loraModules: number;
  kvCache: {
    format: KvFormat;
    tokens: number;
    blockTokens: number;
    blocks: number;
    bytesPerToken: number;
    bytes: number;
  };
  activations: {
    prefillChunk: number;
    /** One prefill chunk through a decoder layer, with its logits. */
    prefill: number;
    /** One image of the largest size (imageSize x imageSize) through the encoder and adapter; 0 without vision. */
    vision: number;
    /** A decode step for decodeBatch sequences, with their logits. */
    decode: number;
    /** The most alive at once: the vision pass, or a prefill chunk while the image embeddings wait. */
    peak: number;
  };
  stagingBytes: number;
  total: number;
  /** The context the plan was sized for, and why. */
  context: { tokens: number; modelMax: number; chosen: "flag" | "fits" | "model" | "memory-unknown" };
}

export class PlanError extends Error {
  override name = "PlanError";
}

function weightBytes(format: TensorFormat, shape: readonly number[]): number {
  const elements = shape.reduce((n, d) => n * d, 1);
  return (elements * WEIGHT_BITS[format]) / 8;
}

/** Everything but the KV cache, which grows with the context. */
function fixedPart(config: ModelConfig, options: PlanOptions) {
  const quant = options.quant ?? "q4";
  const visionQuant = options.visionQuant ?? "f16";
  const weights = {
    decoder: { parameters: 0, format: new Set<string>(), bytes: 0 },
    vision: { parameters: 0, format: new Set<string>(), bytes: 0 },
    adapter: { parameters: 0, format: new Set<string>(), bytes: 0 },
  };
  let largest = { name: "", bytes: 0 };
  const besideCodes = [...options.stored?.values() ?? []].some(isScaled);
  for (const t of expectedTensors(config)) {
    const w = weights[t.component];
    const stored = options.stored?.get(t.name);
    const decoder = t.component === "decoder";
    const asked = mixFormat(decoder ? quant : visionQuant, t.name, config.decoder.nLayers);
    let bytes: number;
    if (
      stored &&
      (isScaled(stored) || (isRequantized(stored) && options.merged?.has(t.name)))
    ) {
      let format = decodedFormat(
        stored,
        asked,
        decoder ? options.explicit?.quant : options.explicit?.visionQuant,
      );
      // As the loader does: block formats need whole blocks along a row.
      format = rowFormat(format, t.shape.at(-1)!);
      bytes = weightBytes(format, t.shape);
      w.format.add(`${stored}→${format}`);
    } else if (stored && stored !== "F32" && stored !== "F16" && stored !== "BF16") {
      bytes = tensorBytes(stored, t.shape)!;
      w.format.add(stored);
    } else if (t.role === "norm" || t.role === "bias") {
      bytes = weightBytes("f32", t.shape); // small, kept exact
    } else {
      const format = rowFormat(
        decoder ? floatFormat(asked, options.explicit?.quant, besideCodes) : asked,
        t.shape.at(-1)!,
        t.role === "conv",
      );
      bytes = weightBytes(format, t.shape);
      if (t.role !== "conv") w.format.add(format);
    }
    w.parameters += t.shape.reduce((n, d) => n * d, 1);
    w.bytes += bytes;
    if (bytes > largest.bytes) largest = { name: t.name, bytes };
  }

  const d = config.decoder;
  const chunk = options.prefillChunk ?? 512;
  const batch = options.decodeBatch ?? 8;
  // Per token of a decoder step: residual, normed input, FFN output (3 x dim); q and attention output;
  // k and v; the SwiGLU gate and up projections; logits. Attention is tiled (no tokens x context scores).
  const perToken = 3 * d.dim + 2 * d.nHeads * d.headDim + 2 * d.nKvHeads * d.headDim + 2 * d.hiddenDim +
    d.vocabSize;
  const prefill = chunk * perToken * ACT_BYTES;
  const decode = batch * perToken * ACT_BYTES;
  let vision = 0;
  let imageEmbeddings = 0;
  const v = config.vision;
  if (v) {
    const patches = (v.imageSize / v.patchSize) ** 2;
    const pixels = v.numChannels * v.imageSize * v.imageSize;
    // Per patch: residual, normed, q, k, v, attention output (6 x hidden); gate and up; the adapter's two outputs.
    vision = (pixels + patches * (6 * v.hiddenSize + 2 * v.intermediateSize + 2 * d.dim)) * ACT_BYTES;
    imageEmbeddings = patches * d.dim * ACT_BYTES;
  }
  const components = Object.fromEntries(
    Object.entries(weights).map((
      [k, w],
    ) => [k, { parameters: w.parameters, format: [...w.format].sort().join("+"), bytes: w.bytes }]),
  ) as Record<Component, ComponentPlan>;
  const weightTotal = components.decoder.bytes + components.vision.bytes + components.adapter.bytes;
  const peak = Math.max(vision, prefill + imageEmbeddings, decode);
  return {
    weights: { ...components, total: weightTotal },
    largestTensor: largest,
    activations: { prefillChunk: chunk, prefill, vision, decode, peak },
    fixed: weightTotal + (options.loraModules ?? 0) + peak + LOAD_STAGING_BYTES,
  };
}

export function kvBytesPerToken(config: ModelConfig, format: KvFormat): number {
  const d = config.decoder;
  return (d.nLayers * 2 * d.nKvHeads * d.headDim * KV_BITS[format]) / 8;
}

/** The memory plan for `config`; with an adapter, the default context is the largest that fits it. */
export function planMemory(
  config: ModelConfig,
  options: PlanOptions = {},
  adapter?: AdapterOffer,
): MemoryPlan {
  const fixed = fixedPart(config, options);
  const format = options.kv ?? "f16";
  const perToken = kvBytesPerToken(config, format);
  const modelMax = config.contextLength;
  let tokens: number;
  let chosen: MemoryPlan["context"]["chosen"];
  if (options.ctx !== undefined) {
    if (!Number.isSafeInteger(options.ctx) || options.ctx < 1) {
      throw new PlanError(`--ctx must be a positive integer, got ${options.ctx}`);
    }
    if (options.ctx > modelMax) {
      throw new PlanError(`--ctx ${options.ctx} exceeds the model's context of ${modelMax} tokens`);
    }
    tokens = options.ctx;
    chosen = "flag";
  } else if (adapter?.memoryBytes != null) {
    const room = Math.floor((adapter.memoryBytes - fixed.fixed) / perToken / KV_BLOCK_TOKENS) *
      KV_BLOCK_TOKENS;
    tokens = Math.max(0, Math.min(modelMax, room));
    chosen = tokens === modelMax ? "model" : "fits";
  } else {
    tokens = Math.min(modelMax, CONTEXT_WHEN_MEMORY_UNKNOWN);
    chosen = "memory-unknown";
  }
  const blocks = Math.ceil(tokens / KV_BLOCK_TOKENS);
  const kvBytes = blocks * KV_BLOCK_TOKENS * perToken;
  return {
    weights: fixed.weights,
    largestTensor: fixed.largestTensor,
    loraModules: options.loraModules ?? 0,
    kvCache: {
      format,
      tokens,
      blockTokens: KV_BLOCK_TOKENS,
      blocks,
      bytesPerToken: perToken,
      bytes: kvBytes,
    },
    activations: fixed.activations,
    stagingBytes: LOAD_STAGING_BYTES,
    total: fixed.fixed + kvBytes,
    context: { tokens, modelMax, chosen },
  };
}

/** Smallest context worth serving: one largest image (rows of [IMG] plus breaks) and a short prompt. */
function minimumContext(config: ModelConfig): number {
  const v = config.vision;
  const side = v ? v.imageSize / v.patchSize : 0;
  return side * (side + 1) + 256;
}

/**
 * Throws a PlanError saying what is needed, what the adapter offers, and what to change, when the plan does
 * not fit; returns the plan otherwise.
 */
export function checkPlan(
  config: ModelConfig,
  plan: MemoryPlan,
  adapter: AdapterOffer,
  options: PlanOptions = {},
): MemoryPlan {
  const big = plan.largestTensor;
  const maxBuffer = adapter.maxBufferSize;
  if (maxBuffer !== null && big.bytes > maxBuffer) {
    const smaller = smallerFormats(config, options, plan).find(([, change]) =>
      fixedPart(config, { ...options, ...change }).largestTensor.bytes <= maxBuffer
    );
    throw new PlanError(
      `${big.name} needs one ${
        gib(big.bytes)
      } buffer, but the adapter "${adapter.name}" allows buffers of at most ` +
        `${gib(maxBuffer)} (maxBufferSize); ${
          smaller
            ? `try ${smaller[0]}`
            : isStoredBlocks(options.stored?.get(big.name))
            ? "a GGUF's blocks are uploaded as stored: use a GGUF of a smaller quantization"
            : "no weight format makes it fit: this GPU cannot hold the model"
        }`,
    );
  }
  if (adapter.memoryBytes === null) return plan;
  const need =
    `${gib(plan.total)} (weights ${gib(plan.weights.total)}, KV cache ${gib(plan.kvCache.bytes)} for ` +
    `${plan.kvCache.tokens} tokens at ${plan.kvCache.format}, activations ${gib(plan.activations.peak)}, ` +
    `load staging ${gib(plan.stagingBytes)})`;
  const offer = `the adapter "${adapter.name}" offers ${gib(adapter.memoryBytes)}`;
  const fixed = plan.total - plan.kvCache.bytes;
  const fitting = Math.floor((adapter.memoryBytes - fixed) / plan.kvCache.bytesPerToken / KV_BLOCK_TOKENS) *
    KV_BLOCK_TOKENS;
  // A context asked for explicitly (--ctx) is the caller's choice; a fitted one must hold at least one image.
  const minimum = plan.context.chosen === "flag" ? 1 : Math.min(minimumContext(config), config.contextLength);
  if (plan.total > adapter.memoryBytes || plan.kvCache.tokens < minimum) {
    const hints: string[] = [];
    if (fixed <= adapter.memoryBytes) {
      if (fitting >= minimum && fitting < plan.kvCache.tokens) hints.push(`--ctx ${fitting} fits`);
      if ((options.kv ?? "f16") === "f16") hints.push("--kv q8 halves the KV cache");
    }
    // Only formats that make room for the context asked for (or the smallest useful one): an absurdly large
    // model gets no false hope.
    const tokens = plan.context.chosen === "flag" ? plan.kvCache.tokens : minimum;
    const room = adapter.memoryBytes -
      Math.ceil(tokens / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS * plan.kvCache.bytesPerToken;
    const smaller = smallerFormats(config, options, plan).find(([, change]) =>
      fixedPart(config, { ...options, ...change }).fixed <= room
    );
    if (smaller) hints.push(`${smaller[0]} fits`);
    if (hints.length === 0) {
      hints.push(`a GPU with more memory: the weights and activations alone need ${gib(fixed)}`);
    }
    throw new PlanError(
      plan.total > adapter.memoryBytes
        ? `Pixtral needs ${need}, but ${offer}. Try: ${hints.join("; ")}`
        : `only ${plan.kvCache.tokens} tokens of context fit (at least ${minimum} are needed for one ` +
          `${config.vision?.imageSize ?? 0}px image and a prompt): ${need}, and ${offer}. Try: ${
            hints.join("; ")
          }`,
    );
  }
  return plan;
}

/**
 * Flags giving smaller weights than `options` do, each with the options it sets, the most precise first: the
 * decoder's formats, then the vision encoder's (whose quantization costs accuracy, so it comes last).
 */
function smallerFormats(
  config: ModelConfig,
  options: PlanOptions,
  plan: MemoryPlan,
): [string, PlanOptions][] {
  // Every format, as a flag: a default may be above it where codes keep their own size (decodedFormat); only
  // those that make a component smaller are offered (the callers keep the first that fits).
  const explicit = options.explicit ?? {};
  const shrinks = (component: "decoder" | "vision", change: PlanOptions) =>
    fixedPart(config, { ...options, ...change }).weights[component].bytes < plan.weights[component].bytes;
  const decoder = (["q8", "q6k", "q5k", "q4"] as const)
    .map((q): [string, PlanOptions] => [
      `--quant ${q} (now ${plan.weights.decoder.format})`,
      { quant: q, explicit: { ...explicit, quant: true } },
    ])
    .filter(([, change]) => shrinks("decoder", change));
  const [least, leastOptions] = decoder.at(-1) ?? ["", {}];
  const vision = (["q8", "q4"] as const)
    .map((q): [string, PlanOptions] => [
      `${least ? `${least} and ` : ""}--vision-quant ${q} (now ${plan.weights.vision.format})`,
      {
        ...leastOptions,
        visionQuant: q,
        explicit: { ...explicit, ...leastOptions.explicit, visionQuant: true },
      },
    ])
    .filter(([, change]) => shrinks("vision", change));
  return [...decoder, ...vision];
}

/** Whether a tensor stored as `dtype` is uploaded as it is stored (GGUF blocks), whatever --quant says. */
const isStoredBlocks = (dtype: DType | undefined) => dtype !== undefined && isRequantized(dtype);

export function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
