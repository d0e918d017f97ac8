/**
 * Where a model's files are, from what the user passed as --model: a Mistral-native folder (params.json +
 * consolidated.safetensors), a Hugging Face folder (config.json + model*.safetensors), a GGUF text file (with
 * --mmproj, or the one mmproj GGUF beside it), a folder holding GGUFs, or a params.json or config.json alone
 * (hub references are local paths by now: runtime/hub/model.ts). Only names and directory listings are read here.
 */
import { basename, dirname, join, resolve } from "node:path";
import type { Layout } from "./weights/names.ts";

export type TokenizerLocation =
  | { kind: "tekken"; path: string }
  /** A Hugging Face tokenizer.json (the folder has no tekken.json). */
  | { kind: "hf"; path: string }
  /** Built from the text GGUF's tokenizer.ggml.* metadata. */
  | { kind: "gguf"; path: string }
  | { kind: "none" };

export interface ModelLocation {
  layout: Layout;
  /** The folder holding the files (for GGUF, the text file's folder). */
  dir: string;
  /** params.json, config.json, or the text GGUF. */
  configFile: string;
  /**
   * Mistral: the consolidated safetensors parts; HF: model.safetensors.index.json or the .safetensors file;
   * GGUF: the text file. Empty when only a config is present (enough for a memory plan).
   */
  weightFiles: string[];
  /** The mmproj GGUF, or null (text only). */
  mmproj: string | null;
  /** mmproj files beside a GGUF, when --mmproj did not choose (`mmproj` is the one taken). */
  mmprojCandidates: string[];
  tokenizer: TokenizerLocation;
}

export class ModelNotFoundError extends Error {
  override name = "ModelNotFoundError";
}

export interface LocateOptions {
  /** --mmproj FILE */
  mmproj?: string;
}

const MMPROJ = /mmproj/i;
/** mmproj precisions in order of preference when none matches the text model's quantization. */
const MMPROJ_PREFERENCE = ["f16", "bf16", "f32", "q8_0"];

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
/** Whether a GGUF's name ends in a quantization tag, after "-" or "." ("K_M" is no tag of "model-Q4_K_M.gguf"). */
export const taggedAs = (quant: string) => new RegExp(`(^|[-.])${escape(quant)}\\.gguf$`, "i");

/**
 * The mmproj GGUF to go with a text GGUF of quantization `quant`: one of the same quantization, else the most
 * precise of f16, bf16, f32, q8_0, else the first by name; null when there is none.
 */
export function preferredMmproj(mmprojs: readonly string[], quant: string | undefined): string | null {
  const sorted = [...mmprojs].sort();
  const tags = quant === undefined ? MMPROJ_PREFERENCE : [quant, ...MMPROJ_PREFERENCE];
  return tags.map((q) => sorted.find((p) => taggedAs(q).test(basename(p)))).find((p) => p !== undefined) ??
    sorted[0] ?? null;
}

export async function locateModel(spec: string, options: LocateOptions = {}): Promise<ModelLocation> {
  const location = await locate(spec, options);
  if (options.mmproj !== undefined && location.layout !== "gguf") {
    throw new ModelNotFoundError(
      `--mmproj is the vision half of a GGUF text model; --model ${spec} is in ${
        location.layout === "hf" ? "Hugging Face" : "Mistral"
      }'s layout, whose weights hold the vision encoder: leave --mmproj out`,
    );
  }
  return location;
}

async function locate(spec: string, options: LocateOptions): Promise<ModelLocation> {
  const path = resolve(spec);
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch {
    throw new ModelNotFoundError(`--model ${spec}: no such file or directory`);
  }
  if (stat.isFile) {
    const name = basename(path);
    if (name.endsWith(".gguf")) return await locateGguf(path, options.mmproj);
    if (name === "params.json") return await locateDir(dirname(path), "mistral", options);
    if (name === "config.json") return await locateDir(dirname(path), "hf", options);
    throw new ModelNotFoundError(
      `--model ${spec}: expected a model folder, a .gguf file, params.json or config.json, got the file "${name}"`,
    );
  }
  if (!stat.isDirectory) {
    throw new ModelNotFoundError(
      `--model ${spec}: expected a model folder or file, got a device, pipe or socket`,
    );
  }
  return await locateDir(path, undefined, options);
}

/**
 * The parts of `-0000i-of-0000N.safetensors` series that `names` lack, the first few of each series named (a
 * stray `x-1-of-99999999999.safetensors` lacks billions).
 */
export function missingParts(names: readonly string[]): string[] {
  // The parts present of each series, by the series' name pattern (prefix, digits, total).
  const series = new Map<string, Set<number>>();
  for (const name of names) {
    const part = /^(.*)-(\d+)-of-(\d+)\.safetensors$/.exec(name);
    if (!part) continue;
    const key = JSON.stringify([part[1], part[2].length, part[3]]);
    if (!series.has(key)) series.set(key, new Set());
    series.get(key)!.add(Number(part[2]));
  }
  const missing: string[] = [];
  for (const [key, have] of [...series].sort(([a], [b]) => a < b ? -1 : 1)) {
    const [prefix, width, total] = JSON.parse(key) as [string, number, string];
    const parts = Number(total);
    const count = parts - [...have].filter((i) => i >= 1 && i <= parts).length;
    for (let i = 1, named = 0; i <= parts && named < MISSING_NAMED; i++) {
      if (!have.has(i)) {
        missing.push(`${prefix}-${String(i).padStart(width, "0")}-of-${total}.safetensors`), named++;
      }
    }
    if (count > MISSING_NAMED) {
      missing.push(`${count - MISSING_NAMED} more of ${prefix}-*-of-${total}.safetensors`);
    }
  }
  return missing;
}

/** Missing parts named one by one in a series; the rest are counted. */
const MISSING_NAMED = 8;

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) if (entry.isFile || entry.isSymlink) names.push(entry.name);
  return names.sort();
}

async function locateDir(
  dir: string,
  prefer: Layout | undefined,
  options: LocateOptions,
): Promise<ModelLocation> {
  const names = await listDir(dir);
  const has = (n: string) => names.includes(n);
  const missing = missingParts(names);
  if (missing.length) {
    throw new ModelNotFoundError(`${dir}: part of the weights is missing: ${missing.join(", ")}`);
  }
  const consolidated = names.filter((n) => /^consolidated(\.|-\d+-of-\d+\.)safetensors$/.test(n));
  const hfWeights = has("model.safetensors.index.json")
    ? ["model.safetensors.index.json"]
    : names.filter((n) => n.endsWith(".safetensors") && !n.startsWith("consolidated"));
  const tokenizer: TokenizerLocation = has("tekken.json")
    ? { kind: "tekken", path: join(dir, "tekken.json") }
    : has("tokenizer.json")
    ? { kind: "hf", path: join(dir, "tokenizer.json") }
    : { kind: "none" };

  const texts = names.filter((n) => n.endsWith(".gguf") && !MMPROJ.test(n));
  // A GGUF repository may carry the original config.json or params.json beside its files, without their weights:
  // the folder is the GGUF model then (naming the config file itself still means that layout).
  const safetensors = consolidated.length > 0 || hfWeights.length > 0;
  if (prefer === undefined && !safetensors && texts.length > 0) {
    return await locateGgufIn(dir, texts, options);
  }

  // Mistral repos may carry both layouts; the native one wins when its weights are there (or when asked for).
  const mistral = has("params.json") &&
    (prefer === "mistral" || (prefer === undefined && (consolidated.length > 0 || !has("config.json"))));
  if (mistral) {
    return {
      layout: "mistral",
      dir,
      configFile: join(dir, "params.json"),
      weightFiles: consolidated.map((n) => join(dir, n)),
      mmproj: null,
      mmprojCandidates: [],
      tokenizer,
    };
  }
  if (has("config.json") && prefer !== "mistral") {
    if (hfWeights.length > 1) {
      throw new ModelNotFoundError(
        `${dir}: several .safetensors files but no model.safetensors.index.json to say how they fit: ${
          hfWeights.join(", ")
        }`,
      );
    }
    return {
      layout: "hf",
      dir,
      configFile: join(dir, "config.json"),
      weightFiles: hfWeights.map((n) => join(dir, n)),
      mmproj: null,
      mmprojCandidates: [],
      tokenizer,
    };
  }
  if (texts.length > 0) return await locateGgufIn(dir, texts, options);
  throw new ModelNotFoundError(
    `${dir}: not a model folder (no params.json, config.json or .gguf text model${
      names.some((n) => MMPROJ.test(n)) ? "; an mmproj alone is not enough" : ""
    })`,
  );
}

/** The one GGUF text model among `texts` in `dir`. */
async function locateGgufIn(dir: string, texts: string[], options: LocateOptions): Promise<ModelLocation> {
  if (texts.length > 1) {
    throw new ModelNotFoundError(
      `${dir} holds several GGUF models; pass one as --model: ${texts.join(", ")}`,
    );
  }
  return await locateGguf(join(dir, texts[0]), options.mmproj);
}

async function locateGguf(path: string, mmprojFlag: string | undefined): Promise<ModelLocation> {
  if (MMPROJ.test(basename(path)) && mmprojFlag === undefined) {
    throw new ModelNotFoundError(
      `--model ${path} is an mmproj (vision) file; pass the text GGUF as --model and this as --mmproj`,
    );
  }
  const dir = dirname(path);
  const candidates = (await listDir(dir)).filter((n) => n.endsWith(".gguf") && MMPROJ.test(n)).map((n) =>
    join(dir, n)
  );
  let mmproj: string | null = null;
  if (mmprojFlag !== undefined) {
    mmproj = resolve(mmprojFlag);
    try {
      if (!(await Deno.stat(mmproj)).isFile) throw new Error();
    } catch {
      throw new ModelNotFoundError(`--mmproj ${mmprojFlag}: no such file`);
    }
  } else {
    // As `pull` chooses among a repository's (hub/pull.ts): the text model's quantization, else the most precise.
    mmproj = preferredMmproj(candidates, /[-.]([A-Za-z0-9_]+)\.gguf$/i.exec(basename(path))?.[1]);
  }
  return {
    layout: "gguf",
    dir,
    configFile: path,
    weightFiles: [path],
    mmproj,
    mmprojCandidates: mmprojFlag === undefined ? candidates : [],
    tokenizer: { kind: "gguf", path },
  };
}
