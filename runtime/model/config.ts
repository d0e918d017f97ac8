/**
 * One ModelConfig for Pixtral, read from any of the three places a checkpoint keeps it: Mistral's params.json,
 * a Hugging Face LLaVA config.json (with a pixtral vision config), or GGUF metadata (text file + mmproj file).
 * Absent keys take the defaults of the code that reads that format (mistral-inference, transformers' config
 * classes, llama.cpp), so a file means here what it means there; configurations that would run a different
 * function than Pixtral's (known-bad revisions, features this runtime lacks) are refused with the fix.
 */
import { checkQuantizationConfig } from "./weights/quantization_config.ts";
import { headShapeProblem } from "../gpu/ops/attention_shape.ts";
import type { GgufFile, GgufValue } from "./weights/gguf.ts";
import { MAX_PATCH_SIZE } from "../images/preprocess.ts";

export interface DecoderConfig {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  /** Always explicit in the source (or read off the weights): never dim / nHeads (which is 160 for Pixtral). */
  headDim: number;
  /** SwiGLU hidden size (w1/w3 rows). */
  hiddenDim: number;
  vocabSize: number;
  ropeTheta: number;
  normEps: number;
}

export interface VisionConfig {
  hiddenSize: number;
  nLayers: number;
  nHeads: number;
  headDim: number;
  intermediateSize: number;
  patchSize: number;
  /** Largest image edge in pixels (sizes the 2D RoPE table: imageSize / patchSize positions per axis). */
  imageSize: number;
  ropeTheta: number;
  numChannels: number;
  normEps: number;
}

/** The projector: w_in (vision hidden -> dim), exact GELU, w_out (dim -> dim). */
export interface AdapterConfig {
  bias: boolean;
}

export interface ImageTokenIds {
  img: number;
  imgBreak: number;
  imgEnd: number;
}

export type ConfigSource = "params.json" | "config.json" | "gguf";

export interface ModelConfig {
  source: ConfigSource;
  decoder: DecoderConfig;
  /** null for a text-only model (a GGUF without its mmproj file). */
  vision: VisionConfig | null;
  adapter: AdapterConfig | null;
  imageTokens: ImageTokenIds;
  /** Longest sequence (text + image tokens) the model supports. */
  contextLength: number;
}

export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly file: string, problem: string) {
    super(`${file}: ${problem}`);
  }
}

/**
 * The context Pixtral was trained for: 128k per the model card; mistral-inference precomputes RoPE for exactly
 * 128_000 positions and vLLM defaults to the same. Hugging Face's max_position_embeddings 1024000 and the GGUF
 * context_length copied from it are a conversion default, so larger values are capped here.
 */
export const PIXTRAL_CONTEXT = 128_000;

/** Pixtral-12B-2409's [IMG_BREAK] and [IMG_END] ids, used only where a source names no ids of its own. */
const DEFAULT_IMAGE_TOKENS: ImageTokenIds = { img: 10, imgBreak: 12, imgEnd: 13 };

/** Vision RMSNorm eps: hard-coded 1e-5 by mistral-inference and transformers' modeling_pixtral. */
const VISION_NORM_EPS = 1e-5;

type Json = Record<string, unknown>;

/** Typed access to one JSON object of a config file, with errors that name the file and the key path. */
class Keys {
  constructor(readonly file: string, readonly obj: Json, readonly prefix = "") {}

  static of(file: string, value: unknown, prefix = ""): Keys {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ConfigError(file, `${prefix ? `"${prefix}"` : "the file"} is not a JSON object`);
    }
    return new Keys(file, value as Json, prefix);
  }

  path(key: string): string {
    return this.prefix ? `${this.prefix}.${key}` : key;
  }
  has(key: string): boolean {
    return this.obj[key] !== undefined && this.obj[key] !== null;
  }
  fail(key: string, problem: string): ConfigError {
    return new ConfigError(this.file, `"${this.path(key)}" ${problem}`);
  }
  int(key: string, fallback?: number): number {
    const v = this.obj[key] ?? fallback;
    if (v === undefined) throw this.fail(key, "is missing (required)");
    if (typeof v !== "number" || !Number.isSafeInteger(v)) {
      throw this.fail(key, `must be an integer, got ${j(v)}`);
    }
    return v;
  }
  num(key: string, fallback?: number): number {
    const v = this.obj[key] ?? fallback;
    if (v === undefined) throw this.fail(key, "is missing (required)");
    if (typeof v !== "number" || !Number.isFinite(v)) throw this.fail(key, `must be a number, got ${j(v)}`);
    return v;
  }
  str(key: string, fallback?: string): string {
    const v = this.obj[key] ?? fallback;
    if (v === undefined) throw this.fail(key, "is missing (required)");
    if (typeof v !== "string") throw this.fail(key, `must be a string, got ${j(v)}`);
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.obj[key] ?? fallback;
    if (typeof v !== "boolean") throw this.fail(key, `must be true or false, got ${j(v)}`);
    return v;
  }
  child(key: string): Keys {
    if (!this.has(key)) throw this.fail(key, "is missing (required)");
    return Keys.of(this.file, this.obj[key], this.path(key));
  }
  /** The key's value, which must be absent, null or equal to `wanted`; the message says why it matters. */
  expect(key: string, wanted: unknown, fallback: unknown, why: string): void {
    const present = this.obj[key] !== undefined; // an explicit null is a value here (sliding_window: null)
    const v = present ? this.obj[key] : fallback;
    if (JSON.stringify(v) !== JSON.stringify(wanted)) {
      throw this.fail(key, `is ${j(v)}${present ? "" : " (the default when absent)"}: ${why}`);
    }
  }
}

function j(v: unknown): string {
  // JSON writes a number too large for a double (1e999, which reads as Infinity) as null.
  return v === undefined ? "absent" : typeof v === "number" ? String(v) : JSON.stringify(v);
}

// ---------------------------------------------------------------------------------------------------------------
// Mistral's params.json (mistral-inference TransformerArgs / VisionEncoderArgs)

export function parseParamsJson(json: unknown, file = "params.json"): ModelConfig {
  const p = Keys.of(file, json);
  p.expect(
    "model_type",
    "transformer",
    "transformer",
    'only the dense transformer (model_type "transformer") is supported',
  );
  for (const key of ["moe", "lora"]) {
    if (p.has(key)) throw p.fail(key, "is set: mixture-of-experts and LoRA checkpoints are not supported");
  }
  for (const key of ["sliding_window", "_sliding_window"]) {
    if (p.has(key)) {
      throw p.fail(key, `is ${j(p.obj[key])}: sliding-window attention is not supported (Pixtral has none)`);
    }
  }
  const decoder: DecoderConfig = {
    dim: p.int("dim"),
    nLayers: p.int("n_layers"),
    nHeads: p.int("n_heads"),
    nKvHeads: p.int("n_kv_heads"),
    headDim: p.int("head_dim"),
    hiddenDim: p.int("hidden_dim"),
    vocabSize: p.int("vocab_size"),
    ropeTheta: p.num("rope_theta", 1e6), // mistral-inference: `rope_theta or 1e6`
    normEps: p.num("norm_eps"),
  };
  const contextLength = Math.min(
    p.int(
      "max_seq_len",
      p.has("max_position_embeddings") ? p.int("max_position_embeddings") : PIXTRAL_CONTEXT,
    ),
    PIXTRAL_CONTEXT,
  );

  let vision: VisionConfig | null = null;
  let adapter: AdapterConfig | null = null;
  let imageTokens = DEFAULT_IMAGE_TOKENS;
  if (p.has("vision_encoder")) {
    const v = p.child("vision_encoder");
    v.expect("spatial_merge_size", 1, 1, "patch merging (Mistral Small 3.1 style) is not supported");
    v.expect("add_pre_mm_projector_layer_norm", false, false, "a pre-projector norm is not supported");
    v.expect("mm_projector_id", "", "", "only Pixtral's plain two-layer adapter is supported");
    const hiddenSize = v.int("hidden_size");
    const nHeads = v.int("num_attention_heads");
    vision = {
      hiddenSize,
      nLayers: v.int("num_hidden_layers"),
      nHeads,
      headDim: hiddenSize / nHeads, // mistral-inference: hidden_size // num_attention_heads
      intermediateSize: v.int("intermediate_size"),
      patchSize: v.int("patch_size"),
      imageSize: v.int("image_size"),
      ropeTheta: v.num("rope_theta", 1e4),
      numChannels: v.int("num_channels"),
      normEps: VISION_NORM_EPS,
    };
    adapter = { bias: v.bool("adapter_bias", true) };
    imageTokens = {
      img: v.int("image_token_id", DEFAULT_IMAGE_TOKENS.img),
      imgBreak: v.int("image_break_token_id", DEFAULT_IMAGE_TOKENS.imgBreak),
      imgEnd: v.int("image_end_token_id", DEFAULT_IMAGE_TOKENS.imgEnd),
    };
  }
  return validateConfig(
    { source: "params.json", decoder, vision, adapter, imageTokens, contextLength },
    file,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Hugging Face config.json (LlavaConfig with a MistralConfig/LlamaConfig text config and PixtralVisionConfig)

/** What else the folder tells: the layer-0 q_proj rows (to check a derived head_dim) and the added tokens. */
export interface HfConfigContext {
  qProjRows?: number;
  /** tokenizer_config.json, whose added_tokens_decoder names [IMG_BREAK] and [IMG_END]. */
  tokenizerConfig?: unknown;
}

/** transformers' class defaults for the keys this runtime reads. */
const TEXT_DEFAULTS: Record<string, Json> = {
  mistral: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    hidden_act: "silu",
    max_position_embeddings: 4096 * 32,
    rms_norm_eps: 1e-6,
    rope_theta: 10000.0,
    sliding_window: 4096,
    tie_word_embeddings: false,
  },
  llama: {
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    hidden_act: "silu",
    max_position_embeddings: 2048,
    rms_norm_eps: 1e-6,
    rope_theta: 10000.0,
    sliding_window: null,
    tie_word_embeddings: false,
  },
};

/** A quantization_config this reader cannot load is a ConfigError naming it (before any weight file is parsed). */
export function checkHfQuantization(json: unknown, file: string): void {
  const problem = checkQuantizationConfig(
    (json as { quantization_config?: unknown } | null)?.quantization_config,
  );
  if (problem) throw new ConfigError(file, `"quantization_config" ${problem}`);
}

export function parseHfConfig(
  json: unknown,
  file = "config.json",
  context: HfConfigContext = {},
): ModelConfig {
  const c = Keys.of(file, json);
  const architectures = c.obj.architectures;
  const isLlava = c.obj.model_type === "llava" ||
    (Array.isArray(architectures) && architectures.includes("LlavaForConditionalGeneration"));
  if (!isLlava) {
    throw new ConfigError(
      file,
      `not a LLaVA (Pixtral) config: model_type ${j(c.obj.model_type)}, architectures ${j(architectures)}`,
    );
  }
  checkHfQuantization(json, file);
  const t = c.child("text_config");
  const textType = t.str("model_type", "llama"); // LlavaConfig's default text model
  const td = TEXT_DEFAULTS[textType];
  if (!td) {
    throw t.fail("model_type", `is ${j(textType)}: only "mistral" and "llama" text models are supported`);
  }
  const d = (key: string) => td[key] as never;

  const hidden = t.int("hidden_size", d("hidden_size"));
  const nHeads = t.int("num_attention_heads", d("num_attention_heads"));
  let headDim: number;
  if (t.has("head_dim")) {
    headDim = t.int("head_dim");
  } else {
    // transformers falls back to hidden_size // num_attention_heads; accept that only when the weights agree.
    const derived = Math.floor(hidden / nHeads);
    if (context.qProjRows !== derived * nHeads) {
      const seen = context.qProjRows !== undefined
        ? `the weights have ${context.qProjRows} q_proj rows = ${nHeads} heads x ${
          context.qProjRows / nHeads
        }`
        : "no weights confirm it";
      throw t.fail(
        "head_dim",
        `is missing: transformers would derive hidden_size/num_attention_heads = ${derived}, but ${seen}. ` +
          `This is a known-bad revision of the Pixtral config; add "head_dim" (128 for Pixtral 12B) to text_config`,
      );
    }
    headDim = derived;
  }
  const textRope = t.has("rope_parameters") ? t.child("rope_parameters") : t;
  if (t.has("rope_scaling")) {
    throw t.fail("rope_scaling", "is set: scaled RoPE is not supported (Pixtral has none)");
  }
  if (textRope !== t && textRope.has("rope_type")) {
    textRope.expect("rope_type", "default", "default", "only plain RoPE is supported");
  }
  t.expect(
    "sliding_window",
    null,
    d("sliding_window"),
    "sliding-window attention is not supported (Pixtral has none)",
  );
  t.expect("hidden_act", "silu", d("hidden_act"), "Pixtral's decoder FFN is SiLU-gated");
  const tied = c.has("tie_word_embeddings")
    ? c.bool("tie_word_embeddings", false)
    : t.bool("tie_word_embeddings", false);
  if (tied) throw c.fail("tie_word_embeddings", "is true: Pixtral's output head is a separate matrix");

  const decoder: DecoderConfig = {
    dim: hidden,
    nLayers: t.int("num_hidden_layers", d("num_hidden_layers")),
    nHeads,
    nKvHeads: t.int("num_key_value_heads", td.num_key_value_heads as number ?? nHeads),
    headDim,
    hiddenDim: t.int("intermediate_size", d("intermediate_size")),
    vocabSize: t.int("vocab_size", d("vocab_size")),
    ropeTheta: textRope.num("rope_theta", d("rope_theta")),
    normEps: t.num("rms_norm_eps", d("rms_norm_eps")),
  };

  const v = c.child("vision_config");
  v.expect(
    "model_type",
    "pixtral",
    "clip_vision_model",
    'the vision tower must be Pixtral\'s (model_type "pixtral")',
  );
  v.expect(
    "hidden_act",
    "silu",
    "gelu",
    'Pixtral\'s vision FFN is SiLU-gated. "gelu" is the known-bad config revision of mistral-community/pixtral-12b ' +
      '(fixed 2024-10-18); set vision_config.hidden_act to "silu"',
  );
  c.expect("projector_hidden_act", "gelu", "gelu", "Pixtral's adapter uses exact (erf) GELU");
  c.expect("vision_feature_layer", -1, -2, "Pixtral feeds the adapter the last vision layer");
  c.expect("vision_feature_select_strategy", "full", "default", "Pixtral keeps every patch feature");
  const vHidden = v.int("hidden_size", 1024);
  const vHeads = v.int("num_attention_heads", 16);
  const vHeadDim = vHidden / vHeads; // PixtralVisionConfig always derives it
  if (v.has("head_dim") && v.int("head_dim") !== vHeadDim) {
    throw v.fail("head_dim", `is ${v.obj.head_dim} but hidden_size/num_attention_heads is ${vHeadDim}`);
  }
  const visionRope = v.has("rope_parameters") ? v.child("rope_parameters") : v;
  const vision: VisionConfig = {
    hiddenSize: vHidden,
    nLayers: v.int("num_hidden_layers", 24),
    nHeads: vHeads,
    headDim: vHeadDim,
    intermediateSize: v.int("intermediate_size", 4096),
    patchSize: v.int("patch_size", 16),
    imageSize: v.int("image_size", 1024),
    ropeTheta: visionRope.num("rope_theta", 10000.0),
    numChannels: v.int("num_channels", 3),
    normEps: VISION_NORM_EPS,
  };
  const added = addedTokens(context.tokenizerConfig);
  const imageTokens: ImageTokenIds = {
    img: c.has("image_token_id") ? c.int("image_token_id") : c.int("image_token_index", 32000),
    imgBreak: added.get("[IMG_BREAK]") ?? DEFAULT_IMAGE_TOKENS.imgBreak,
    imgEnd: added.get("[IMG_END]") ?? DEFAULT_IMAGE_TOKENS.imgEnd,
  };
  const contextLength = Math.min(
    t.int("max_position_embeddings", d("max_position_embeddings")),
    PIXTRAL_CONTEXT,
  );
  return validateConfig({
    source: "config.json",
    decoder,
    vision,
    adapter: { bias: c.bool("multimodal_projector_bias", true) },
    imageTokens,
    contextLength,
  }, file);
}

/** Token ids by content from a tokenizer_config.json's added_tokens_decoder ({"10": {"content": "[IMG]"}}). */
function addedTokens(tokenizerConfig: unknown): Map<string, number> {
  const found = new Map<string, number>();
  const decoder = (tokenizerConfig as Json | undefined)?.added_tokens_decoder;
  if (typeof decoder !== "object" || decoder === null) return found;
  for (const [id, entry] of Object.entries(decoder as Json)) {
    const content = (entry as Json | null)?.content;
    if (typeof content === "string" && /^\d+$/.test(id)) found.set(content, Number(id));
  }
  return found;
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF metadata (llama.cpp: text model with architecture "llama", mmproj with architecture "clip")

export function configFromGguf(text: GgufFile, mmproj?: GgufFile): ModelConfig {
  const file = text.path;
  const arch = text.get<string>("general.architecture", "string");
  if (arch !== "llama") {
    throw new ConfigError(
      file,
      `general.architecture is "${arch}": only Pixtral text models converted as "llama" are supported`,
    );
  }
  const g = ggufKeys(text, `${arch}.`);
  const nHeads = g.int("attention.head_count");
  const q = text.tensors.get("blk.0.attn_q.weight");
  // key_length is explicit in Pixtral GGUFs; without it llama.cpp would derive dim / heads, so read the weights.
  const headDim = g.int(
    "attention.key_length",
    g.opt("rope.dimension_count") ?? (q ? q.shape[0] / nHeads : undefined),
  );
  if (g.opt("attention.value_length") !== undefined && g.int("attention.value_length") !== headDim) {
    throw new ConfigError(file, `${arch}.attention.value_length differs from key_length (${headDim})`);
  }
  const scaling = text.metadata.get(`${arch}.rope.scaling.type`);
  if (scaling !== undefined && scaling !== "none") {
    throw new ConfigError(file, `${arch}.rope.scaling.type is "${scaling}": scaled RoPE is not supported`);
  }
  const tokens = text.metadata.get("tokenizer.ggml.tokens");
  const vocab = Array.isArray(tokens) ? tokens : undefined;
  const decoder: DecoderConfig = {
    dim: g.int("embedding_length"),
    nLayers: g.int("block_count"),
    nHeads,
    nKvHeads: g.int("attention.head_count_kv", nHeads),
    headDim,
    hiddenDim: g.int("feed_forward_length"),
    vocabSize: g.int("vocab_size", vocab?.length),
    ropeTheta: g.num("rope.freq_base", 10000),
    normEps: g.num("attention.layer_norm_rms_epsilon"),
  };
  const contextLength = Math.min(g.int("context_length"), PIXTRAL_CONTEXT);
  const tokenId = (content: string) => {
    const at = vocab?.indexOf(content) ?? -1;
    return at >= 0 ? at : undefined;
  };
  const imageTokens: ImageTokenIds = {
    img: tokenId("[IMG]") ?? DEFAULT_IMAGE_TOKENS.img,
    imgBreak: tokenId("[IMG_BREAK]") ?? DEFAULT_IMAGE_TOKENS.imgBreak,
    imgEnd: tokenId("[IMG_END]") ?? DEFAULT_IMAGE_TOKENS.imgEnd,
  };

  let vision: VisionConfig | null = null;
  let adapter: AdapterConfig | null = null;
  if (mmproj) {
    const m = ggufKeys(mmproj, "clip.");
    const mfile = mmproj.path;
    const marchitecture = mmproj.get<string>("general.architecture", "string");
    if (marchitecture !== "clip") {
      throw new ConfigError(
        mfile,
        `general.architecture is "${marchitecture}", not "clip": not an mmproj file`,
      );
    }
    const projector = m.str("projector_type");
    if (projector !== "pixtral") {
      throw new ConfigError(mfile, `clip.projector_type is "${projector}", not "pixtral"`);
    }
    if (m.bool("has_vision_encoder", false) !== true) {
      throw new ConfigError(mfile, "clip.has_vision_encoder is not true");
    }
    if (m.bool("use_gelu", false)) {
      throw new ConfigError(
        mfile,
        "clip.use_gelu is true: this mmproj was converted from the known-bad Hugging Face config with vision " +
          'hidden_act "gelu" (Pixtral\'s vision FFN is SiLU-gated); convert it again from a fixed config',
      );
    }
    const merge = m.opt("vision.spatial_merge_size");
    if (merge !== undefined && merge !== 1) {
      throw new ConfigError(
        mfile,
        `clip.vision.spatial_merge_size is ${merge}: patch merging is not supported`,
      );
    }
    const hiddenSize = m.int("vision.embedding_length");
    const vHeads = m.int("vision.attention.head_count");
    vision = {
      hiddenSize,
      nLayers: m.int("vision.block_count"),
      nHeads: vHeads,
      headDim: hiddenSize / vHeads,
      intermediateSize: m.int("vision.feed_forward_length"),
      patchSize: m.int("vision.patch_size"),
      imageSize: m.int("vision.image_size"),
      ropeTheta: m.num("rope.freq_base", 10000), // llama.cpp hard-codes 10000 for pixtral
      numChannels: 3,
      normEps: m.num("vision.attention.layer_norm_epsilon", VISION_NORM_EPS),
    };
    const projection = m.int("vision.projection_dim", decoder.dim);
    if (projection !== decoder.dim) {
      throw new ConfigError(
        mfile,
        `clip.vision.projection_dim ${projection} does not match the text model's dim ${decoder.dim} (${file}): wrong mmproj for this model`,
      );
    }
    const biases = ["mm.1.bias", "mm.2.bias"].filter((name) => mmproj.tensors.has(name));
    if (biases.length === 1) {
      throw new ConfigError(mfile, `the adapter has ${biases[0]} but not the other linear layer's bias`);
    }
    adapter = { bias: biases.length === 2 };
    for (
      const [name, id] of Object.entries({
        "[IMG]": imageTokens.img,
        "[IMG_BREAK]": imageTokens.imgBreak,
        "[IMG_END]": imageTokens.imgEnd,
      })
    ) {
      if (vocab && tokenId(name) === undefined) {
        throw new ConfigError(
          file,
          `the vocabulary has no ${name} token (needed for images; default id ${id} not used)`,
        );
      }
    }
  }
  return validateConfig({ source: "gguf", decoder, vision, adapter, imageTokens, contextLength }, file);
}

function ggufKeys(gguf: GgufFile, prefix: string) {
  const fail = (key: string, problem: string) => new ConfigError(gguf.path, `${prefix}${key} ${problem}`);
  const get = (key: string) => gguf.metadata.get(prefix + key);
  const numeric = (v: GgufValue | undefined) => typeof v === "bigint" ? Number(v) : v;
  return {
    opt: (key: string) => numeric(get(key)) as number | undefined,
    int(key: string, fallback?: number): number {
      const v = numeric(get(key)) ?? fallback;
      if (v === undefined) throw fail(key, "is missing (required)");
      if (typeof v !== "number" || !Number.isSafeInteger(v)) {
        throw fail(key, `must be an integer, got ${j(v)}`);
      }
      return v;
    },
    num(key: string, fallback?: number): number {
      const v = numeric(get(key)) ?? fallback;
      if (v === undefined) throw fail(key, "is missing (required)");
      if (typeof v !== "number" || !Number.isFinite(v)) throw fail(key, `must be a finite number, got ${v}`);
      return shortestFloat32(v);
    },
    str(key: string): string {
      const v = get(key);
      if (typeof v !== "string") {
        throw fail(key, v === undefined ? "is missing (required)" : "must be a string");
      }
      return v;
    },
    bool: (key: string, fallback: boolean) => (get(key) ?? fallback) as boolean,
  };
}

/**
 * GGUF stores floats as float32 (1e-5 reads back as 9.99999974e-6); give the shortest decimal with the same
 * float32 value, so that configs from all three sources compare equal and print as written.
 */
function shortestFloat32(v: number): number {
  if (Math.fround(v) !== v) return v;
  for (let digits = 1; digits <= 9; digits++) {
    const short = Number(v.toPrecision(digits));
    if (Math.fround(short) === v) return short;
  }
  return v;
}

// ---------------------------------------------------------------------------------------------------------------

/** The most layers a config may give the decoder or the vision encoder. */
const MAX_LAYERS = 1024;

/** Checks the invariants the forward pass relies on; returns the config unchanged. */
export function validateConfig(config: ModelConfig, file: string): ModelConfig {
  const problems: string[] = [];
  const positive = (what: string, v: number) => {
    if (!(Number.isSafeInteger(v) && v > 0)) problems.push(`${what} must be a positive integer, got ${v}`);
  };
  const d = config.decoder;
  for (const [k, v] of Object.entries(d)) {
    if (k !== "ropeTheta" && k !== "normEps") positive(`decoder ${k}`, v);
  }
  if (d.nKvHeads > 0 && d.nHeads % d.nKvHeads !== 0) {
    problems.push(`decoder heads (${d.nHeads}) must be a multiple of the KV heads (${d.nKvHeads})`);
  }
  if (d.headDim % 2 !== 0) problems.push(`decoder head_dim (${d.headDim}) must be even for RoPE`);
  const decoderHeads = headShapeProblem({ headsQ: d.nHeads, headsKv: d.nKvHeads, headDim: d.headDim });
  if (decoderHeads) problems.push(`decoder attention: the GPU kernels do not run ${decoderHeads}`);
  if (!(d.ropeTheta > 0)) problems.push(`decoder rope_theta must be positive, got ${d.ropeTheta}`);
  if (!(d.normEps > 0)) problems.push(`decoder norm eps must be positive, got ${d.normEps}`);
  positive("context length", config.contextLength);
  const v = config.vision;
  if (v) {
    for (const [k, val] of Object.entries(v)) {
      if (k !== "ropeTheta" && k !== "normEps") positive(`vision ${k}`, val);
    }
    if (v.headDim * v.nHeads !== v.hiddenSize) {
      problems.push(`vision hidden size (${v.hiddenSize}) must be a multiple of the heads (${v.nHeads})`);
    }
    if (v.headDim % 4 !== 0) {
      problems.push(`vision head_dim (${v.headDim}) must be a multiple of 4 for 2D RoPE`);
    }
    const visionHeads = headShapeProblem({ headsQ: v.nHeads, headsKv: v.nHeads, headDim: v.headDim });
    if (visionHeads) problems.push(`vision attention: the GPU kernels do not run ${visionHeads}`);
    if (v.patchSize > MAX_PATCH_SIZE) {
      problems.push(`vision patch_size (${v.patchSize}) above ${MAX_PATCH_SIZE}`);
    }
    if (v.imageSize % v.patchSize !== 0) {
      problems.push(`vision image_size (${v.imageSize}) must be a multiple of patch_size (${v.patchSize})`);
    }
    if (!(v.ropeTheta > 0)) problems.push(`vision rope_theta must be positive, got ${v.ropeTheta}`);
  }
  // Far above any model (Pixtral: 40 decoder and 24 vision layers): a count read from a corrupt file would
  // otherwise list millions of tensors before anything else could say so.
  if (d.nLayers > MAX_LAYERS) problems.push(`decoder layers (${d.nLayers}) above ${MAX_LAYERS}`);
  if (v && v.nLayers > MAX_LAYERS) problems.push(`vision layers (${v.nLayers}) above ${MAX_LAYERS}`);
  if ((v === null) !== (config.adapter === null)) {
    problems.push("vision encoder and adapter must come together");
  }
  for (const [k, id] of Object.entries(config.imageTokens)) {
    if (!(Number.isSafeInteger(id) && id >= 0 && id < d.vocabSize)) {
      problems.push(`image token id ${k} = ${id} is outside the vocabulary (0..${d.vocabSize - 1})`);
    }
  }
  if (problems.length) throw new ConfigError(file, `invalid model config: ${problems.join("; ")}`);
  return config;
}
