/**
 * `--model hf:ORG/REPO[:QUANT][@REVISION]` as local files, as vLLM, llama.cpp's -hf and Ollama take a hub name:
 * whatever the cache lacks is pulled (with progress; nothing is fetched again when it is all there), and the
 * cache alone serves when HF_HUB_OFFLINE is set or the hub cannot be reached.
 */
import { join } from "node:path";
import { log } from "../log.ts";
import { cacheRoot, HubError, HubUnreachableError, parseRepoRef, resolveCachedRepo } from "./cache.ts";
import { type FileChoice, pickAdapterGguf, pickGguf, pull, type PullOptions, selectFiles } from "./pull.ts";
import { missingParts } from "../model/locate.ts";

export interface HubModel {
  /** The snapshot folder, or for a GGUF repository its text GGUF. */
  path: string;
  /** The mmproj GGUF chosen with a GGUF text model, else null. */
  mmproj: string | null;
}

export interface HubModelOptions extends PullOptions {
  /** Use the cache only (default: HF_HUB_OFFLINE, as huggingface_hub reads it). */
  offline?: boolean;
}

/** Whether HF_HUB_OFFLINE asks for the cache only, as huggingface_hub reads it. */
export function offlineFromEnv(): boolean {
  return ["1", "ON", "YES", "TRUE"].includes((Deno.env.get("HF_HUB_OFFLINE") ?? "").toUpperCase());
}

async function listFiles(dir: string, prefix = ""): Promise<string[]> {
  const paths: string[] = [];
  for await (const entry of Deno.readDir(join(dir, prefix))) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory) paths.push(...await listFiles(dir, path));
    else paths.push(path);
  }
  return paths;
}

/** Safetensors shards the snapshot lacks: parts of `-0000i-of-0000N` series, and files the index names. */
async function missingShards(dir: string, paths: string[]): Promise<string[]> {
  const have = new Set(paths);
  const wanted = new Set<string>(missingParts(paths));
  if (have.has("model.safetensors.index.json")) {
    try {
      const index = JSON.parse(await Deno.readTextFile(join(dir, "model.safetensors.index.json")));
      for (const file of Object.values(index.weight_map ?? {})) wanted.add(String(file));
    } catch {
      wanted.add("model.safetensors.index.json (readable)");
    }
  }
  return [...wanted].filter((file) => !have.has(file)).sort();
}

/**
 * The model's files in one snapshot folder, chosen as a pull chooses them from the repository's listing, once
 * they are all there (a pull cut short leaves a snapshot that only looks complete).
 */
async function fromSnapshot(dir: string, spec: string, choice: FileChoice): Promise<HubModel> {
  const paths = await listFiles(dir);
  const fail = (why: string) =>
    new HubError(`${spec} in the cache (${dir}): ${why}; pixtral pull ${spec} fetches it`);
  if (choice.adapter && paths.some((p) => p.endsWith(".gguf"))) {
    try {
      return { path: join(dir, pickAdapterGguf(paths, choice.quant)), mmproj: null };
    } catch (err) {
      throw fail((err as Error).message);
    }
  }
  if (paths.some((p) => p.endsWith(".gguf"))) {
    let picked;
    try {
      picked = pickGguf(paths, choice.quant);
    } catch (err) {
      throw fail((err as Error).message);
    }
    return { path: join(dir, picked.text), mmproj: picked.mmproj === null ? null : join(dir, picked.mmproj) };
  }
  if (choice.configOnly) {
    if (paths.includes("params.json") || paths.includes("config.json")) return { path: dir, mmproj: null };
    throw fail("no params.json or config.json");
  }
  try {
    selectFiles(paths.map((path) => ({ path, size: 0, sha256: null, blobId: null })), choice);
  } catch (err) {
    throw fail((err as Error).message);
  }
  const missing = await missingShards(dir, paths);
  if (missing.length) throw fail(`it lacks ${missing.join(", ")}`);
  return { path: dir, mmproj: null };
}

export async function resolveHubModel(spec: string, options: HubModelOptions = {}): Promise<HubModel> {
  const { quant } = parseRepoRef(spec);
  const cache = options.cache ?? cacheRoot();
  const choice: FileChoice = { quant, configOnly: options.configOnly, adapter: options.adapter };
  if (options.offline ?? offlineFromEnv()) {
    return await fromSnapshot(await resolveCachedRepo(spec, cache), spec, choice);
  }
  let dir: string;
  try {
    dir = (await pull(spec, { ...options, cache })).dir;
  } catch (err) {
    if (!(err instanceof HubUnreachableError)) throw err;
    let cached: string;
    try {
      cached = await resolveCachedRepo(spec, cache);
    } catch {
      throw err;
    }
    log.warn("the hub cannot be reached: using the cached snapshot", { model: spec, error: err.message });
    return await fromSnapshot(cached, spec, choice);
  }
  return await fromSnapshot(dir, spec, choice);
}
