/**
 * LoRA adapters, merged into the weights while they load: W' = W + Σ scale · B·A (Hu et al., 2021), added on the
 * GPU to each chunk of rows before it is quantized (load.ts), so that the fine-tuned model is served at the base
 * model's speed; DoRA's magnitudes then rescale each row (Liu et al., 2024). Three ways of storing one are read:
 *
 * - PEFT's adapter folder (adapter_config.json, adapter_model.safetensors), as Hugging Face fine-tunes (unsloth,
 *   TRL, axolotl) save it: Hugging Face names under `base_model.model.`, `lora_A`/`lora_B` per linear layer
 *   (`lora_embedding_A`/`_B` for the embedding), scale lora_alpha / r (/ √r with use_rslora), per module by
 *   rank_pattern and alpha_pattern; whole tensors for modules_to_save and saved embedding layers.
 * - mistral-finetune's lora.safetensors (in a folder or alone): the model's own names, scale from the params.json
 *   beside it (`lora.scaling`, 2.0 by default as in mistral-inference); whole tensors (norms) besides.
 * - llama.cpp's LoRA GGUF (convert_lora_to_gguf.py): `blk.N.attn_q.weight.lora_a` / `.lora_b` in GGUF names and
 *   the native row order, scale `adapter.lora.alpha` / rank (1 without an alpha) as llama.cpp applies it, the
 *   token embedding's `lora_a` stored transposed; its `_norm.weight` tensors replace the model's (llama.cpp
 *   itself skips them).
 *
 * Whole tensors replace the base model's (PEFT saves an embedding it updates whole too: the update is added to
 * the saved one); every tensor of an adapter must belong to the model, with its shape.
 */
import { dirname } from "node:path";
import type { ModelConfig } from "../config.ts";
import { expectedTensors, type TensorSpec } from "../tensors.ts";
import { toFloat32 } from "./convert.ts";
import { isFloat } from "./dtype.ts";
import { WeightFileError } from "./errors.ts";
import { GgufFile } from "./gguf.ts";
import { canonicalName, type Layout } from "./names.ts";
import { rotateHalfToInterleaved } from "./permute.ts";
import { SafetensorsFile, type StoredTensor } from "./safetensors.ts";
import type { TensorChunk, TensorInfo, WeightSource } from "./source.ts";

/**
 * The update of one weight [rows, k]: W += left · rightᵀ, left [rows, R] (scale applied), right [k, R], f32; with
 * DoRA's magnitude [rows], each row of the sum is then rescaled to its length.
 */
export interface LowRank {
  left: Float32Array;
  right: Float32Array;
  rank: number;
  magnitude?: Float32Array;
}

/**
 * How A and B make the update Δ [rows, k] of a weight: a linear layer's A [r, k] and B [rows, r] (Δ = B·A); PEFT's
 * embedding A [r, vocab] and B [dim, r] (Δ = (B·A)ᵀ); llama.cpp's embedding A [vocab, r] and B [dim, r] (Δ = A·Bᵀ).
 */
type Orientation = "linear" | "embedding" | "embedding-transposed";

/** One adapter's update of one weight: scale times Δ, and for DoRA the length of each row after it. */
interface Update {
  a: StoredTensor;
  b: StoredTensor;
  magnitude?: StoredTensor;
  scale: number;
  orientation: Orientation;
  spec: TensorSpec;
}

interface Whole {
  stored: StoredTensor;
  spec: TensorSpec;
}

export interface LoraAdapter {
  path: string;
  kind: "peft" | "mistral-finetune" | "gguf";
  /** Hugging Face names (q/k rows in rotate-half order), the model's own, or llama.cpp's. */
  layout: Layout;
  updates: Map<string, Update>;
  whole: Map<string, Whole>;
  /** Tensors for the vision encoder of a model loaded without one. */
  skipped: string[];
  file: { readonly path: string; close(): void };
}

const MERGE_FIRST = "merge it with PEFT's merge_and_unload() and serve the merged model";
const CONVERT_FIRST = "the adapter assumes a changed base model; save it converted with PEFT's " +
  "path_initial_model_for_weight_conversion";

/** PEFT settings under which an adapter is not a plain W + s·B·A on the base weights: why each is refused. */
const PEFT_REFUSED: [string, (v: unknown) => boolean, string][] = [
  ["lora_bias", (v) => v === true, `LoRA biases are not supported: ${MERGE_FIRST}`],
  ["fan_in_fan_out", (v) => v === true, "fan_in_fan_out (GPT-2 Conv1D) adapters do not fit this model"],
  ["use_qalora", (v) => v === true, `QALoRA is not supported: ${MERGE_FIRST}`],
  [
    "use_bdlora",
    (v) => v !== null && v !== undefined && v !== false,
    `block-diagonal LoRA is not supported: ${MERGE_FIRST}`,
  ],
  ["layer_replication", (v) => v !== null && v !== undefined, "layer replication changes the model's layers"],
  [
    "target_parameters",
    (v) => Array.isArray(v) ? v.length > 0 : v !== null && v !== undefined,
    `target_parameters is not supported: ${MERGE_FIRST}`,
  ],
  [
    "trainable_token_indices",
    (v) => v !== null && v !== undefined,
    `trainable tokens are not supported: ${MERGE_FIRST}`,
  ],
  ["kasa_config", (v) => v !== null && v !== undefined, `KaSA changes the base weights: ${MERGE_FIRST}`],
  ["velora_config", (v) => v !== null && v !== undefined, `VeLoRA is not supported: ${MERGE_FIRST}`],
  [
    "arrow_config",
    (v) => v !== null && v !== undefined,
    "Arrow routes each token among adapters: it cannot be merged",
  ],
  [
    "alora_invocation_tokens",
    (v) => v !== null && v !== undefined,
    "activated LoRA applies only after its invocation tokens: it cannot be merged",
  ],
  [
    "init_lora_weights",
    (v) => typeof v === "string" && /^(pissa|olora|corda|loftq|lora_ga)/i.test(v),
    `PiSSA, OLoRA, CorDA, LoftQ and LoRA-GA initialisations change the base weights: ${CONVERT_FIRST}`,
  ],
];

/** PEFT's per-module values: a pattern (a regular expression) and its value, in the config's order. */
type Patterns = [RegExp, number][];

interface PeftConfig {
  dora: boolean;
  r: number;
  alpha: number;
  rslora: boolean;
  rankPattern: Patterns;
  alphaPattern: Patterns;
}

function peftConfig(json: unknown, path: string): PeftConfig {
  const fail = (problem: string): never => {
    throw new WeightFileError("unsupported", path, problem);
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) fail("not a JSON object");
  const c = json as Record<string, unknown>;
  if (c.peft_type !== "LORA") {
    fail(`peft_type ${JSON.stringify(c.peft_type)}: only LoRA adapters can be merged`);
  }
  for (const [key, refused, what] of PEFT_REFUSED) {
    if (refused(c[key])) fail(`${key} ${JSON.stringify(c[key])}: ${what}`);
  }
  const number = (v: unknown, key: string) =>
    typeof v === "number" && Number.isFinite(v) && v > 0 ? v : fail(`${key} must be a positive number`);
  // As PEFT's get_pattern_key: the first key (in order) that matches the module's name or a dotted suffix of it.
  const pattern = (v: unknown, key: string): Patterns => {
    if (v === undefined || v === null) return [];
    if (typeof v !== "object" || Array.isArray(v)) return fail(`${key} must be an object`);
    return Object.entries(v).map(([k, n]) => {
      try {
        return [new RegExp(`^(?:.*\\.)?(?:${k})$`), number(n, `${key}.${k}`)];
      } catch (err) {
        if (err instanceof WeightFileError) throw err;
        return fail(
          `${key} has a key that is not a regular expression this reader takes: ${JSON.stringify(k)}`,
        );
      }
    });
  };
  return {
    dora: c.use_dora === true,
    r: number(c.r, "r"),
    alpha: number(c.lora_alpha ?? 8, "lora_alpha"), // PEFT's default
    rslora: c.use_rslora === true,
    rankPattern: pattern(c.rank_pattern, "rank_pattern"),
    alphaPattern: pattern(c.alpha_pattern, "alpha_pattern"),
  };
}

function patternValue(patterns: Patterns, module: string): number | undefined {
  return patterns.find(([re]) => re.test(module))?.[1];
}

function peftScale(config: PeftConfig, module: string, rank: number, file: string, tensor: string): number {
  const r = patternValue(config.rankPattern, module) ?? config.r;
  if (r !== rank) {
    throw new WeightFileError(
      "shape",
      file,
      `has rank ${rank} but adapter_config.json gives this module r = ${r}`,
      tensor,
    );
  }
  const alpha = patternValue(config.alphaPattern, module) ?? config.alpha;
  return config.rslora ? alpha / Math.sqrt(r) : alpha / r;
}

async function readJson(path: string): Promise<unknown> {
  const text = await Deno.readTextFile(path);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new WeightFileError("format", path, `not valid JSON (${(err as Error).message})`);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Where the adapter's files are: a PEFT folder, a mistral-finetune folder or lora.safetensors, or a LoRA GGUF. */
async function findAdapter(
  path: string,
): Promise<{ kind: LoraAdapter["kind"]; weights: string; config?: string }> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch {
    throw new WeightFileError("missing", path, "no such LoRA adapter file or folder");
  }
  if (stat.isFile && /\.gguf$/i.test(path)) return { kind: "gguf", weights: path };
  const dir = stat.isDirectory ? path : dirname(path);
  if (await exists(`${dir}/adapter_config.json`)) {
    const weights = stat.isDirectory ? `${dir}/adapter_model.safetensors` : path;
    if (!await exists(weights)) {
      const pickle = await exists(`${dir}/adapter_model.bin`);
      throw new WeightFileError(
        "missing",
        dir,
        pickle
          ? "has adapter_model.bin only: PyTorch pickles are not read; save the adapter with PEFT's default " +
            "safe_serialization=True"
          : "has adapter_config.json but no adapter_model.safetensors",
      );
    }
    return { kind: "peft", weights, config: `${dir}/adapter_config.json` };
  }
  const weights = stat.isDirectory ? `${dir}/lora.safetensors` : path;
  if (!await exists(weights)) {
    throw new WeightFileError(
      "missing",
      path,
      "is not a LoRA adapter: expected PEFT's adapter_config.json with adapter_model.safetensors, " +
        "mistral-finetune's lora.safetensors, or a LoRA GGUF",
    );
  }
  const params = `${dir}/params.json`;
  return { kind: "mistral-finetune", weights, config: await exists(params) ? params : undefined };
}

/** An adapter tensor's name split into the weight it belongs to (named in the adapter's layout) and its part. */
function parseName(
  kind: LoraAdapter["kind"],
  name: string,
): { weight: string; part: "A" | "B" | "M" | "whole"; embedding: boolean } | null {
  if (kind === "gguf") {
    const low = /^(.+)\.lora_(a|b)$/.exec(name);
    if (low) {
      return { weight: low[1], part: low[2] === "a" ? "A" : "B", embedding: low[1] === "token_embd.weight" };
    }
    return /_norm\.weight$/.test(name) ? { weight: name, part: "whole", embedding: false } : null;
  }
  let rest = name;
  if (kind === "peft") {
    if (!rest.startsWith("base_model.model.")) return null;
    rest = rest.slice("base_model.model.".length).replace(/\.(base_layer|modules_to_save)(?=\.)/g, "");
  }
  const magnitude = /^(.+)\.lora_magnitude_vector(?:\.weight)?$/.exec(rest);
  if (magnitude) return { weight: `${magnitude[1]}.weight`, part: "M", embedding: false };
  const low = /^(.+)\.lora_(A|B)\.weight$/.exec(rest) ?? /^(.+)\.lora_embedding_(A|B)$/.exec(rest);
  if (low) {
    return {
      weight: `${low[1]}.weight`,
      part: low[2] as "A" | "B",
      embedding: rest.includes(".lora_embedding_"),
    };
  }
  return /\.(weight|bias)$/.test(rest) ? { weight: rest, part: "whole", embedding: false } : null;
}

/** A LoRA GGUF's alpha, once its header says it is an adapter llama.cpp would apply as a plain LoRA. */
function ggufAlpha(file: GgufFile): number {
  const fail = (problem: string): never => {
    throw new WeightFileError("unsupported", file.path, problem);
  };
  const type = file.metadata.get("general.type"), adapter = file.metadata.get("adapter.type");
  if (type !== "adapter" || adapter !== "lora") {
    fail(
      `is not a LoRA GGUF (general.type ${JSON.stringify(type)}, adapter.type ${JSON.stringify(adapter)})`,
    );
  }
  if (file.metadata.has("adapter.alora.invocation_tokens")) {
    fail("is an activated LoRA (it applies only after its invocation tokens), which cannot be merged");
  }
  const alpha = file.metadata.get("adapter.lora.alpha") ?? 0;
  return typeof alpha === "number" && Number.isFinite(alpha)
    ? alpha
    : fail("adapter.lora.alpha is not a number");
}

/** Opens a LoRA adapter and checks every tensor in it against the model's config. No weights are read here. */
export async function openLora(path: string, config: ModelConfig): Promise<LoraAdapter> {
  const found = await findAdapter(path);
  const peft = found.kind === "peft" ? peftConfig(await readJson(found.config!), found.config!) : undefined;
  let scaling = 2.0;
  if (found.kind === "mistral-finetune" && found.config) {
    const lora = (await readJson(found.config) as { lora?: { scaling?: unknown } })?.lora;
    if (lora?.scaling !== undefined) {
      if (typeof lora.scaling !== "number" || !Number.isFinite(lora.scaling)) {
        throw new WeightFileError("format", found.config, "lora.scaling must be a number");
      }
      scaling = lora.scaling;
    }
  }
  const file = found.kind === "gguf"
    ? await GgufFile.open(found.weights)
    : await SafetensorsFile.open(found.weights);
  try {
    const alpha = file instanceof GgufFile ? ggufAlpha(file) : 0;
    const layout: Layout = found.kind === "peft" ? "hf" : found.kind === "gguf" ? "gguf" : "mistral";
    const specs = new Map(expectedTensors(config).map((s) => [s.name, s]));
    const pairs = new Map<
      string,
      { a?: StoredTensor; b?: StoredTensor; m?: StoredTensor; embedding: boolean; module: string }
    >();
    const whole = new Map<string, Whole>();
    const skipped: string[] = [];
    const fail = (kind: "format" | "shape" | "dtype", t: StoredTensor, problem: string): never => {
      throw new WeightFileError(kind, file.path, problem, t.name);
    };
    for (const t of file.tensors.values()) {
      const parsed = parseName(found.kind, t.name);
      const name = parsed && canonicalName(layout, parsed.weight);
      const spec = name ? specs.get(name) : undefined;
      if (name && !spec && !config.vision && /^vision_(encoder|language_adapter)\./.test(name)) {
        skipped.push(t.name); // a text-only model (a GGUF without its mmproj) has no vision weights to update
        continue;
      }
      if (!parsed || !spec) {
        fail("format", t, "is not a tensor of this model (an adapter for another model?)");
      }
      // llama.cpp's converter writes A and B in Q8_0 with --outtype q8_0; whole tensors stay float.
      const lowRankQ8 = found.kind === "gguf" && t.dtype === "Q8_0" && parsed?.part !== "whole";
      if (!isFloat(t.dtype) && !lowRankQ8) {
        fail(
          "dtype",
          t,
          `is ${t.dtype}; adapter tensors must be F32, F16 or BF16${
            found.kind === "gguf" ? " (or Q8_0 for lora_a/lora_b)" : ""
          }`,
        );
      }
      if (parsed!.part === "whole") {
        if (t.shape.join() !== spec!.shape.join()) {
          fail(
            "shape",
            t,
            `has shape ${JSON.stringify(t.shape)} but the model's is ${JSON.stringify(spec!.shape)}`,
          );
        }
        whole.set(spec!.name, { stored: t, spec: spec! });
        continue;
      }
      if (spec!.role !== "linear" && spec!.role !== "embedding") {
        fail("format", t, `is a LoRA update of a ${spec!.role}, which is not supported`);
      }
      // PEFT's rank and alpha patterns match the module: the weight's name without `.weight`.
      const module = parsed!.weight.replace(/\.weight$/, "");
      const pair = pairs.get(spec!.name) ?? { embedding: parsed!.embedding, module };
      pair[parsed!.part === "A" ? "a" : parsed!.part === "B" ? "b" : "m"] = t;
      pair.embedding ||= parsed!.embedding;
      pairs.set(spec!.name, pair);
    }
    const updates = new Map<string, Update>();
    for (const [name, { a, b, m, embedding, module }] of pairs) {
      const spec = specs.get(name)!;
      const missing = a ? undefined : "A";
      if (!a || !b) {
        throw new WeightFileError(
          "missing",
          file.path,
          `has lora_${missing ?? "B"} missing beside its pair`,
          name,
        );
      }
      const orientation: Orientation = !embedding
        ? "linear"
        : found.kind === "gguf"
        ? "embedding-transposed"
        : "embedding";
      const [rows, k] = spec.shape;
      const rank = b.shape[1];
      const wantA =
        { linear: [rank, k], embedding: [rank, rows], "embedding-transposed": [rows, rank] }[orientation];
      const wantB = orientation === "linear" ? [rows, rank] : [k, rank];
      if (a.shape.join() !== wantA.join() || b.shape.join() !== wantB.join()) {
        fail(
          "shape",
          a,
          `and its B have shapes ${JSON.stringify(a.shape)} and ${
            JSON.stringify(b.shape)
          }, which do not fit the weight ${JSON.stringify(spec.shape)}`,
        );
      }
      // DoRA (PEFT's use_dora): W' = magnitude / ‖W + Δ‖ · (W + Δ), row by row (Liu et al., 2024).
      if (peft?.dora && !m) {
        throw new WeightFileError(
          "missing",
          file.path,
          "has no lora_magnitude_vector (use_dora is set)",
          name,
        );
      }
      if (m && orientation !== "linear") fail("format", m, "is DoRA on an embedding, which is not supported");
      if (m && m.shape.join() !== String(rows)) {
        fail("shape", m, `has shape ${JSON.stringify(m.shape)} but the weight has ${rows} rows`);
      }
      const scale = peft
        ? peftScale(peft, module, rank, found.config!, a.name)
        : found.kind === "gguf"
        ? (alpha ? alpha / rank : 1)
        : scaling;
      updates.set(name, { a, b, magnitude: m, scale, orientation, spec });
    }
    if (updates.size === 0 && whole.size === 0) {
      throw new WeightFileError(
        "format",
        file.path,
        skipped.length
          ? "updates only the vision encoder, which this model does not have"
          : "holds no LoRA tensors",
      );
    }
    return { path, kind: found.kind, layout, updates, whole, skipped, file };
  } catch (err) {
    file.close();
    throw err;
  }
}

async function floats(t: StoredTensor): Promise<Float32Array> {
  return toFloat32(t.dtype, await t.file.read(t.offset, t.byteLength, t.name));
}

/** The update of one weight by the adapters that change it, their ranks side by side (one product adds all). */
export async function lowRankOf(
  name: string,
  adapters: readonly LoraAdapter[],
): Promise<LowRank | undefined> {
  const parts: LowRank[] = [];
  for (const adapter of adapters) {
    const u = adapter.updates.get(name);
    if (!u) continue;
    const [rows, k] = u.spec.shape;
    const rank = u.b.shape[1];
    const a = await floats(u.a), b = await floats(u.b);
    const left = new Float32Array(rows * rank);
    let right = b;
    if (u.orientation === "linear") {
      // Δ = B·A: left = B [rows, r], right = Aᵀ [k, r].
      for (let i = 0; i < rows * rank; i++) left[i] = b[i] * u.scale;
      right = new Float32Array(k * rank);
      for (let i = 0; i < rank; i++) for (let j = 0; j < k; j++) right[j * rank + i] = a[i * k + j];
    } else if (u.orientation === "embedding") {
      // Δ[vocab, dim] = (B·A)ᵀ = Aᵀ·Bᵀ: left = Aᵀ [vocab, r], right = B [dim, r].
      for (let i = 0; i < rank; i++) {
        for (let v = 0; v < rows; v++) left[v * rank + i] = a[i * rows + v] * u.scale;
      }
    } else {
      for (let i = 0; i < rows * rank; i++) left[i] = a[i] * u.scale;
    }
    const rope = adapter.layout === "hf" ? u.spec.rope : undefined;
    const rows4 = (values: Float32Array, width: number) =>
      rope
        ? new Float32Array(
          rotateHalfToInterleaved(new Uint8Array(values.buffer), width * 4, rope.headDim).buffer,
        )
        : values;
    const magnitude = u.magnitude && rows4(await floats(u.magnitude), 1);
    parts.push({ left: rows4(left, rank), right, rank, ...magnitude ? { magnitude } : {} });
  }
  if (parts.length === 0) return undefined;
  if (parts.length === 1) return parts[0];
  const rank = parts.reduce((n, p) => n + p.rank, 0);
  const join = (key: "left" | "right") => {
    const rows = parts[0][key].length / parts[0].rank;
    const out = new Float32Array(rows * rank);
    let at = 0;
    for (const p of parts) {
      for (let r = 0; r < rows; r++) out.set(p[key].subarray(r * p.rank, (r + 1) * p.rank), r * rank + at);
      at += p.rank;
    }
    return out;
  };
  return { left: join("left"), right: join("right"), rank };
}

interface Replaced {
  info: TensorInfo;
  stored: StoredTensor;
  rope?: { headDim: number };
}

/**
 * The weights with the adapters applied: tensors an adapter stores whole read from it, the others from the base
 * model, and `lowRank` giving what each merged tensor adds. Takes ownership of the adapters' files (closed on
 * failure; `base` is then the caller's to close).
 */
export function withLora(base: WeightSource, adapters: readonly LoraAdapter[]): WeightSource {
  const whole = new Map<string, Replaced>();
  try {
    for (const adapter of adapters) {
      for (const [name, w] of adapter.whole) {
        const twin = whole.get(name);
        if (twin) {
          throw new WeightFileError(
            "format",
            adapter.file.path,
            `is replaced by two adapters (also by ${twin.info.file})`,
            name,
          );
        }
        const rope = adapter.layout === "hf" ? w.spec.rope : undefined;
        whole.set(name, {
          stored: w.stored,
          rope,
          info: {
            ...base.info(name),
            dtype: w.stored.dtype,
            byteLength: w.stored.byteLength,
            file: adapter.file.path,
            storedName: w.stored.name,
            permuted: rope !== undefined,
          },
        });
      }
    }
  } catch (err) {
    adapters.forEach((a) => a.file.close());
    throw err;
  }
  const merged = new Set(adapters.flatMap((a) => [...a.updates.keys()]));
  for (const [i, adapter] of adapters.entries()) {
    for (const [name, u] of adapter.updates) {
      // DoRA's norms are of this adapter's sum with the base weight; another update or a replacement would change it.
      const other = adapters.find((o, j) => (j !== i && o.updates.has(name)) || o.whole.has(name));
      if (u.magnitude && other) {
        adapters.forEach((a) => a.file.close());
        throw new WeightFileError(
          "unsupported",
          adapter.file.path,
          `is a DoRA update, which cannot be combined with another update or replacement of it (${other.file.path})`,
          name,
        );
      }
    }
  }
  const rowBytes = (w: Replaced) =>
    w.stored.byteLength / w.info.shape.slice(0, -1).reduce((n, d) => n * d, 1);
  const read = async (w: Replaced, at: number, length: number) => {
    const bytes = await w.stored.file.read(w.stored.offset + at, length, w.info.name);
    return w.rope ? rotateHalfToInterleaved(bytes, rowBytes(w), w.rope.headDim) : bytes;
  };
  return {
    layout: base.layout,
    files: [...base.files, ...adapters.map((a) => a.file.path)],
    unused: base.unused,
    merged,
    tensors: () => base.tensors().map((t) => whole.get(t.name)?.info ?? t),
    info: (name) => whole.get(name)?.info ?? base.info(name),
    read: (name) => {
      const w = whole.get(name);
      return w ? read(w, 0, w.stored.byteLength) : base.read(name);
    },
    async *chunks(name, maxBytes = 64 << 20): AsyncGenerator<TensorChunk> {
      const w = whole.get(name);
      if (!w) return yield* base.chunks(name, maxBytes);
      const unit = rowBytes(w) * (w.rope?.headDim ?? 1);
      const step = Math.max(1, Math.floor(maxBytes / unit)) * unit;
      for (let at = 0; at < w.stored.byteLength; at += step) {
        yield { byteOffset: at, bytes: await read(w, at, Math.min(step, w.stored.byteLength - at)) };
      }
    },
    scales: (name) => base.scales(name),
    lowRank: (name) => merged.has(name) ? lowRankOf(name, adapters) : Promise.resolve(undefined),
    close: () => {
      base.close();
      adapters.forEach((a) => a.file.close());
    },
  };
}
