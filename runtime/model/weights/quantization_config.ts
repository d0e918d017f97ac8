/**
 * The `quantization_config` of a quantized Hugging Face checkpoint (config.json): whether this reader takes it
 * (compressed-tensors, bitsandbytes), what a compressed-tensors one says of every weight (group size, block
 * shape, symmetry), and, for a plan made from the config alone, the types the layers are stored in (scaled.ts
 * and bnb.ts read the files themselves).
 */
import type { ModelConfig } from "../config.ts";
import { expectedTensors } from "../tensors.ts";
import type { DType } from "./dtype.ts";

/**
 * What quantization_config says of every weight, where all its groups agree: columns per group, or [rows,
 * columns] per block, and whether codes have zero points (asymmetric).
 */
export interface QuantizationHint {
  groupSize?: number;
  block?: [number, number];
  symmetric?: boolean;
}

const FORMATS = [
  "float-quantized",
  "int-quantized",
  "pack-quantized",
  "naive-quantized",
  "dense",
  "mixed-precision",
];

type Json = Record<string, unknown>;
const object = (v: unknown): Json => (v && typeof v === "object" && !Array.isArray(v) ? v as Json : {});

/** What this reader takes, else why not. */
export function checkQuantizationConfig(q: unknown): string | undefined {
  if (q === undefined || q === null) return undefined;
  if (typeof q !== "object" || Array.isArray(q)) return "is not an object";
  const { quant_method: method, format, sparsity_config: sparsity } = q as Json;
  if (method === "bitsandbytes") return undefined; // bnb.ts reads what each layer's tensors say
  if (method !== "compressed-tensors") {
    return `has quant_method ${JSON.stringify(method)}: of quantized Hugging Face checkpoints only ` +
      `compressed-tensors (llm-compressor's FP8, INT8 and INT4/W4A16) and bitsandbytes (nf4, fp4, int8) ones ` +
      `load; use the unquantized checkpoint or a GGUF`;
  }
  if (format !== undefined && !FORMATS.includes(format as string)) {
    return `has compressed-tensors format ${JSON.stringify(format)}: only ${FORMATS.join(", ")} load`;
  }
  const sparse = object(sparsity).format;
  if (sparse !== undefined && sparse !== "dense") {
    return `has sparsity format ${JSON.stringify(sparse)}: sparse (compressed) weights do not load`;
  }
  // Rotations fused into the weights need nothing; those applied to activations as the model runs (SpinQuant's
  // and QuIP's online Hadamards) would be missing.
  const transforms = Object.values(object(object((q as Json).transform_config).config_groups));
  const online = transforms.flatMap((t) => Array.isArray(object(t).apply) ? object(t).apply as unknown[] : [])
    .map((a) => object(a).location).find((l) => !["weight_input", "weight_output"].includes(l as string));
  if (online !== undefined) {
    return `has a transform applied at ${JSON.stringify(online)} as the model runs (an online rotation), ` +
      `which this server does not apply`;
  }
  return undefined;
}

/** The weights' quantization arguments of each config group. */
function weightArgs(q: unknown): Json[] {
  return Object.values(object(object(q).config_groups)).map((g) => object(object(g).weights));
}

export function quantizationHint(q: unknown): QuantizationHint {
  const weights = weightArgs(q);
  const agreed = <T>(values: T[]) =>
    new Set(values.map((v) => JSON.stringify(v))).size === 1 ? values[0] : undefined;
  const groupSize = agreed(weights.map((w) => w.group_size ?? null));
  const block = agreed(weights.map((w) => w.block_structure ?? null));
  const symmetric = agreed(weights.map((w) => w.symmetric ?? true));
  return {
    groupSize: Number.isSafeInteger(groupSize) && (groupSize as number) > 0 ? groupSize as number : undefined,
    block: Array.isArray(block) && block.length === 2 && block.every((n) => Number.isSafeInteger(n) && n > 0)
      ? block as [number, number]
      : undefined,
    symmetric: typeof symmetric === "boolean" ? symmetric : undefined,
  };
}

/**
 * The types a checkpoint's matrices are stored in, from quantization_config alone (a hub model's plan, before
 * any weight is fetched): compressed-tensors with one scheme for every Linear layer (those `ignore` names kept
 * float), or bitsandbytes (every linear layer but those in llm_int8_skip_modules, by default lm_head);
 * everything else float. An estimate: lists are matched by component (lm_head, vision_tower,
 * multi_modal_projector), so single decoder layers kept float are counted as codes.
 */
export function storedFromConfig(config: ModelConfig, q: unknown): Map<string, DType> | undefined {
  const json = object(q);
  let codes: DType | undefined, kept: string[];
  if (json.quant_method === "bitsandbytes") {
    codes = json.load_in_4bit ? "N4" : json.load_in_8bit ? "I8" : undefined;
    kept = Array.isArray(json.llm_int8_skip_modules) ? json.llm_int8_skip_modules.map(String) : ["lm_head"];
  } else {
    const weights = weightArgs(q);
    if (weights.length !== 1) return undefined;
    const [w] = weights;
    codes = w.type === "float" && w.num_bits === 8
      ? "F8_E4M3"
      : w.type === "int" && (w.num_bits === 8 || w.num_bits === 4)
      ? (w.num_bits === 8 ? "I8" : "I4")
      : undefined;
    kept = Array.isArray(json.ignore) ? json.ignore.map(String) : [];
  }
  if (!codes) return undefined;
  const keeps = (part: string) => kept.some((i) => i.includes(part));
  const stored = new Map<string, DType>();
  for (const t of expectedTensors(config)) {
    const quantized = t.role === "linear" && (
      t.component === "decoder"
        ? t.name !== "output.weight" || !keeps("lm_head")
        : !keeps(t.component === "vision" ? "vision_tower" : "multi_modal_projector")
    );
    stored.set(t.name, quantized ? codes : "BF16");
  }
  return stored;
}
