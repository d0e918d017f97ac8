/**
 * From `--model` to a running model, in two stages: `openModelFiles` reads headers only (config, tensor table,
 * tokenizer) and is quick, so a server can answer /health while `loadModel` plans memory, acquires the GPU and
 * streams the weights onto it with a progress bar.
 */
import { GpuContext } from "../gpu/context.ts";
import { dirname } from "node:path";
import { parseRepoRef } from "../hub/cache.ts";
import { type HubModelOptions, resolveHubModel } from "../hub/model.ts";
import type { FloatType } from "../gpu/dtype.ts";
import { log } from "../log.ts";
import { Progress } from "../progress.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { ModelConfig } from "./config.ts";
import { DEMO_MODEL_ID, demoModel } from "./demo.ts";
import { locateModel, type ModelLocation } from "./locate.ts";
import { adapterOffer } from "./offer.ts";
import { openModel } from "./open.ts";
import { fileTypeName } from "./weights/gguf.ts";
import { PixtralModel } from "./pixtral.ts";
import {
  checkPlan,
  gib,
  type KvFormat,
  type MemoryPlan,
  planMemory,
  type Precision,
  precision,
  type WeightFormat,
} from "./plan.ts";
import { checkImageTokens, modelTokenizer } from "./tokenizer.ts";
import type { DType } from "./weights/dtype.ts";
import { type LoraAdapter, openLora, withLora } from "./weights/lora.ts";
import { checkServable, loraModuleBytes } from "./lora_modules.ts";
import type { WeightSource } from "./weights/source.ts";

export interface ModelOptions {
  /** A model folder, GGUF file or hf:ORG/REPO (see withLocalModel); absent: the built-in random-weight demo. */
  model?: string;
  mmproj?: string;
  /** LoRA adapters merged into the weights as they load (lora.ts): folders or files. */
  lora?: string[];
  /**
   * LoRA adapters served per request (lora_modules.ts), each `NAME=PATH` (a request whose `model` is NAME runs
   * with it) or PATH (named after its folder or file).
   */
  loraModules?: string[];
  /** The id the API serves it under (default: the model folder's or file's name). */
  name?: string;
  quant?: WeightFormat;
  visionQuant?: WeightFormat;
  kv?: KvFormat;
  /** KV cache tokens (default: the largest that fits the plan). */
  ctx?: number;
  activations?: FloatType;
  /** GPU memory in bytes, which WebGPU does not report. */
  gpuMemory?: number;
  /** Part of the WebGPU adapter's name to require. */
  adapter?: string;
}

export interface OpenedFiles {
  /** The id the API serves it under: the model folder's or file's name, or the demo's. */
  id: string;
  demo: boolean;
  config: ModelConfig;
  weights: WeightSource;
  tokenizer: Tokenizer;
  location?: ModelLocation;
  /** The LoRA adapters merged in (their paths). */
  lora?: string[];
  /** The LoRA adapters served per request, opened: PixtralModel.load takes them (closeModelFiles otherwise). */
  loraModules?: { name: string; adapter: LoraAdapter }[];
  /** A GGUF's quantization by llama.cpp's name (`Q4_K_M`). */
  fileType?: string;
}

function modelId(location: ModelLocation): string {
  const path = location.layout === "gguf" ? location.configFile : location.dir;
  return path.split(/[\\/]/).filter(Boolean).pop()!.replace(/\.gguf$/, "");
}

/**
 * The options with `model` and `lora` on local disk: an `hf:ORG/REPO[:QUANT][@REVISION]` reference becomes the
 * cached snapshot (pulled first where the cache lacks it), its mmproj and its name, `ORG/REPO[:QUANT]`.
 */
export async function withLocalModel(
  options: ModelOptions,
  hub: HubModelOptions = {},
): Promise<ModelOptions> {
  const lora = await localAdapters(options.lora, hub);
  const modules = options.loraModules?.map(namedModule);
  const modulePaths = await localAdapters(modules?.map((m) => m.path), hub);
  const loraModules = modules?.map((m, i) => `${m.name}=${modulePaths![i]}`);
  const first = lora?.[0] ?? modulePaths?.[0];
  const spec = options.model ?? (first ? await adapterBase(first) : undefined);
  const local = { ...options, model: spec, lora, loraModules };
  if (!spec?.startsWith("hf:")) return local;
  const { path, mmproj } = await resolveHubModel(spec, hub);
  return {
    ...local,
    model: path,
    mmproj: options.mmproj ?? mmproj ?? undefined,
    name: spec.slice(3).split("@")[0],
  };
}

/** `NAME=PATH`, or PATH named after its folder or file (a hub repository's name). */
export function namedModule(spec: string): { name: string; path: string } {
  // A name has no slash: "=" after one is part of a path.
  const eq = /^[^\\/=]*=/.test(spec) ? spec.indexOf("=") : -1;
  if (eq > 0 && eq < spec.length - 1) return { name: spec.slice(0, eq), path: spec.slice(eq + 1) };
  const bare = spec.startsWith("hf:") ? spec.slice(3).split(/[@:]/)[0] : spec;
  const name = bare.split(/[\\/]/).filter(Boolean).pop()?.replace(/\.(gguf|safetensors)$/, "");
  if (!name || eq >= 0) throw new Error(`--lora-module ${spec}: give it as NAME=PATH`);
  return { name, path: spec };
}

/**
 * The base model a PEFT adapter names (adapter_config.json's base_model_name_or_path), for `--lora` without
 * `--model`: a folder on this machine, else that hub model.
 */
async function adapterBase(path: string): Promise<string> {
  const dir = (await Deno.stat(path).catch(() => null))?.isDirectory ? path : dirname(path);
  let base: unknown;
  try {
    base = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`)).base_model_name_or_path;
  } catch {
    // Not a PEFT folder (or not readable): openModelFiles says --model is needed.
  }
  if (typeof base !== "string" || base === "") {
    throw new Error(`--lora ${path}: the adapter does not name its base model; give it with --model`);
  }
  if ((await Deno.stat(base).catch(() => null))?.isDirectory) {
    log.info("no --model: serving the LoRA adapter's base model", { model: base, adapter: path });
    return base;
  }
  try {
    parseRepoRef(base);
  } catch {
    throw new Error(
      `--lora ${path}: its base model "${base}" is neither a folder here nor a Hugging Face model; give --model`,
    );
  }
  log.info("no --model: serving the LoRA adapter's base model", { model: `hf:${base}`, adapter: path });
  return `hf:${base}`;
}

/**
 * LoRA adapters on local disk: `hf:ORG/REPO[:TAG][@REVISION]` ones pulled into the hub cache (a PEFT or
 * mistral-finetune repository's files, or one LoRA GGUF: the only one, or the one TAG names).
 */
export async function localAdapters(
  paths: string[] | undefined,
  hub: HubModelOptions = {},
): Promise<string[] | undefined> {
  if (!paths) return undefined;
  const local = [];
  for (const path of paths) {
    const adapter = { ...hub, configOnly: false, adapter: true };
    local.push(path.startsWith("hf:") ? (await resolveHubModel(path, adapter)).path : path);
  }
  return local;
}

export async function openModelFiles(options: ModelOptions): Promise<OpenedFiles> {
  if (!options.model) {
    if (options.lora?.length || options.loraModules?.length) {
      const flag = options.lora?.length ? "--lora" : "--lora-module";
      throw new Error(`${flag} needs --model: the built-in demo model has random weights`);
    }
    const demo = await demoModel();
    return { id: DEMO_MODEL_ID, demo: true, ...demo };
  }
  const location = await locateModel(options.model, { mmproj: options.mmproj });
  if (location.mmprojCandidates.length > 1) {
    log.info("several mmproj files beside the GGUF: taking one", {
      mmproj: location.mmproj,
      of: location.mmprojCandidates,
      hint: "--mmproj FILE chooses another",
    });
  }
  const opened = await openModel(location);
  let weights = opened.weights;
  let tokenizer: Tokenizer | undefined;
  try {
    tokenizer = await modelTokenizer(location, opened.config.decoder.vocabSize, opened.gguf?.text);
    checkImageTokens(opened.config, tokenizer, location.configFile);
    if (options.lora?.length) weights = await withAdapters(weights, options.lora, opened.config);
    const loraModules = await openLoraModules(options.loraModules ?? [], opened.config);
    return {
      id: options.name ?? modelId(location),
      demo: false,
      config: opened.config,
      weights,
      tokenizer,
      location,
      lora: options.lora,
      ...loraModules.length ? { loraModules } : {},
      fileType: opened.gguf && fileTypeName(opened.gguf.text),
    };
  } catch (err) {
    tokenizer?.free();
    weights.close();
    throw err;
  }
}

/** The weights with LoRA adapters merged in as they load; on failure the adapters are closed, not `weights`. */
async function withAdapters(weights: WeightSource, paths: readonly string[], config: ModelConfig) {
  const adapters: LoraAdapter[] = [];
  try {
    for (const path of paths) adapters.push(await openLora(path, config));
  } catch (err) {
    adapters.forEach((a) => a.file.close());
    throw err;
  }
  for (const a of adapters) {
    const ranks = new Set([...a.updates.values()].map((u) => u.b.shape[1]));
    log.info("LoRA adapter: merged into the weights as they load", {
      path: a.path,
      kind: a.kind,
      updated: a.updates.size,
      rank: [...ranks].join("/"),
      replaced: [...a.whole.keys()],
      ...a.skipped.length
        ? { skipped: `${a.skipped.length} vision tensors (the model has no vision encoder)` }
        : {},
    });
  }
  return withLora(weights, adapters);
}

/** The adapters served per request, opened and checked; on failure those opened are closed. */
async function openLoraModules(specs: readonly string[], config: ModelConfig) {
  const opened: { name: string; adapter: LoraAdapter }[] = [];
  try {
    for (const spec of specs) {
      const { name, path } = namedModule(spec);
      if (opened.some((m) => m.name === name)) {
        throw new Error(`--lora-module: two adapters are named "${name}"`);
      }
      const adapter = await openLora(path, config);
      opened.push({ name, adapter });
      checkServable(adapter);
      const ranks = new Set([...adapter.updates.values()].map((u) => u.b.shape[1]));
      log.info("LoRA adapter: served per request", {
        name,
        path: adapter.path,
        kind: adapter.kind,
        updated: adapter.updates.size,
        rank: [...ranks].join("/"),
      });
    }
  } catch (err) {
    opened.forEach((m) => m.adapter.file.close());
    throw err;
  }
  return opened;
}

/** Closes what openModelFiles opened, when no model was loaded from it. */
export function closeModelFiles(files: OpenedFiles): void {
  files.weights.close();
  files.loraModules?.forEach((m) => m.adapter.file.close());
}

/** Why the model cannot see images, when it cannot; undefined when it can. */
export function visionUnavailable(files: OpenedFiles): string | undefined {
  if (files.config.vision && files.weights.tensors().some((t) => t.component === "vision")) return undefined;
  const location = files.location;
  if (location?.layout === "gguf" && !location.mmproj) {
    return "this GGUF text model has no vision encoder: give its mmproj file with --mmproj FILE to use images";
  }
  return "this model has no vision encoder: images cannot be used";
}

export interface LoadedModel {
  model: PixtralModel;
  plan: MemoryPlan;
}

/** Plans memory (refusing, before any upload, a model that does not fit), then loads the weights. */
export async function loadModel(files: OpenedFiles, given: ModelOptions): Promise<LoadedModel> {
  const options: ModelOptions & Precision = { ...given, ...precision(files.config, given) };
  const ctx = await GpuContext.create({ adapter: options.adapter });
  try {
    const planOptions = {
      quant: options.quant,
      visionQuant: options.visionQuant,
      explicit: options.explicit,
      kv: options.kv,
      ctx: options.ctx,
      stored: new Map<string, DType>(files.weights.tensors().map((t) => [t.name, t.dtype])),
      merged: files.weights.merged,
      loraModules: (files.loraModules ?? []).reduce(
        // In the activations' type, as PixtralModel.load banks them.
        (n, m) =>
          n +
          loraModuleBytes(
            m.adapter,
            (options.activations ?? (ctx.f16 ? "f16" : "f32")) === "f32" ? 4 : 2,
          ),
        0,
      ),
    };
    const offer = adapterOffer(ctx.gpu.adapter, options.gpuMemory);
    const plan = checkPlan(files.config, planMemory(files.config, planOptions, offer), offer, planOptions);
    log.info("memory plan", {
      adapter: ctx.gpu.name,
      weights: gib(plan.weights.total),
      kvCache: `${gib(plan.kvCache.bytes)} for ${plan.kvCache.tokens} tokens`,
      total: gib(plan.total),
    });
    const { unused } = files.weights;
    if (unused.length) {
      log.warn("tensors in the weight files that the model does not use", {
        count: unused.length,
        first: unused.slice(0, 5),
      });
    }
    const total = files.weights.tensors().reduce((n, t) => n + t.byteLength, 0);
    const progress = new Progress({ label: `loading ${files.id}`, total, unit: "bytes" });
    let model: PixtralModel;
    try {
      const loraModules = files.loraModules;
      files.loraModules = undefined; // the model closes them
      model = await PixtralModel.load(ctx, files.config, files.weights, {
        loraModules,
        quant: options.quant,
        visionQuant: options.visionQuant,
        explicit: options.explicit,
        kv: options.kv,
        activations: options.activations,
        kvTokens: plan.kvCache.tokens,
        progress,
      });
    } catch (err) {
      progress.fail(err);
      throw err;
    }
    progress.finish();
    return { model, plan };
  } catch (err) {
    ctx.destroy();
    throw err;
  } finally {
    closeModelFiles(files);
  }
}
