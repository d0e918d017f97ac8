/**
 * `--model hf:ORG/REPO[:QUANT][@REVISION]` as local files, as vLLM, llama.cpp's -hf and Ollama take a hub name:
 * whatever the cache lacks is pulled (with progress; nothing is fetched again when it is all there), and the
 * cache alone serves when HF_HUB_OFFLINE is set or the hub cannot be reached.
 */
import { join } from "node:path";
import { log } from "../log.ts";
import { cacheRoot, HubError, HubUnreachableError, parseRepoRef, resolveCachedRepo } from "./cache.ts";
import { type FileChoice, pickGguf, pull, type PullOptions, selectFiles } from "./pull.ts";

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

function offlineFromEnv(): boolean {
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

/** The model's files in one snapshot folder, chosen as a pull chooses them from the repository's listing. */
async function fromSnapshot(dir: string, spec: string, choice: FileChoice): Promise<HubModel> {
  const paths = await listFiles(dir);
  const files = paths.map((path) => ({ path, size: 0, sha256: null, blobId: null }));
  try {
    const chosen = selectFiles(files, choice).map((f) => f.path);
    if (!paths.some((p) => p.endsWith(".gguf"))) return { path: dir, mmproj: null };
    const { text, mmproj } = pickGguf(chosen, choice.quant);
    return { path: join(dir, text), mmproj: mmproj === null ? null : join(dir, mmproj) };
  } catch (err) {
    throw new HubError(
      `${spec} in the cache (${dir}): ${(err as Error).message}; pixtral pull ${spec} fetches it`,
    );
  }
}

export async function resolveHubModel(spec: string, options: HubModelOptions = {}): Promise<HubModel> {
  const { quant } = parseRepoRef(spec);
  const cache = options.cache ?? cacheRoot();
  const choice: FileChoice = { quant, configOnly: options.configOnly };
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
