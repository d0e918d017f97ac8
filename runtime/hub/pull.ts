/** `pull`: the files a model needs from one hub revision, into the cache, with progress. */
import { dirname, join } from "node:path";
import { Progress, type ProgressSink } from "../progress.ts";
import { type HubOptions, type RepoFile, repoInfo } from "./api.ts";
import { cacheRoot, COMMIT, HubError, parseRepoRef, repoDir } from "./cache.ts";
import { downloadFile } from "./download.ts";
import { preferredMmproj, taggedAs } from "../model/locate.ts";

export interface PullOptions extends HubOptions, Omit<FileChoice, "quant"> {
  /** Cache root (default: $HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub). */
  cache?: string;
  /** Where progress goes (default stderr). */
  progressSink?: ProgressSink;
}

export interface PullResult {
  repo: string;
  commit: string;
  /** snapshots/COMMIT: usable as --model, or as --model hf:ORG/REPO[@revision]. */
  dir: string;
  files: string[];
  fetched: number;
}

function globToRegExp(glob: string): RegExp {
  let out = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      out += ".*"; // ** crosses folders; "**/" also matches no folder at all
      i += glob[i + 2] === "/" ? 2 : 1;
    } else if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else out += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

/** The quantization a GGUF repository is used at when the reference names none (as llama.cpp and Ollama do). */
export const DEFAULT_QUANT = "Q4_K_M";

const MMPROJ = /mmproj/i;

const base = (path: string) => path.slice(path.lastIndexOf("/") + 1);

/**
 * The text GGUF of a quantization among a repository's files (the one named `...-Q4_K_M.gguf`, any case), and
 * the mmproj to go with it: one of the same quantization, else the most precise of f16, bf16, f32, q8_0, else
 * the first by name; null when the repository has none.
 */
export function pickGguf(paths: string[], quant = DEFAULT_QUANT): { text: string; mmproj: string | null } {
  const ggufs = paths.filter((p) => p.endsWith(".gguf")).sort();
  const mmprojs = ggufs.filter((p) => MMPROJ.test(base(p)));
  const texts = ggufs.filter((p) => !MMPROJ.test(base(p)));
  const matching = texts.filter((p) => taggedAs(quant).test(base(p)));
  if (matching.length !== 1) {
    throw new HubError(
      matching.length
        ? `several GGUF files are of the quantization ${quant}: ${matching.join(", ")}`
        : `no GGUF file of the quantization ${quant}; choose one with hf:ORG/REPO:QUANT among: ${
          texts.join(", ")
        }`,
    );
  }
  return { text: matching[0], mmproj: preferredMmproj(mmprojs, quant) };
}

/**
 * The LoRA GGUF among a repository's files: the only one, or of several the one `:TAG` names (as a quantization
 * tag names a model's, `...-F16.gguf`).
 */
export function pickAdapterGguf(paths: string[], tag?: string): string {
  const ggufs = paths.filter((p) => p.endsWith(".gguf")).sort();
  const matching = tag === undefined ? ggufs : ggufs.filter((p) => taggedAs(tag).test(base(p)));
  if (matching.length !== 1) {
    throw new HubError(
      `${matching.length ? "several" : "no"} LoRA GGUF files${tag === undefined ? "" : ` tagged ${tag}`}: ` +
        `choose one with hf:ORG/REPO:TAG among ${ggufs.join(", ")}`,
    );
  }
  return matching[0];
}

export interface FileChoice {
  /** A LoRA adapter's repository: its adapter files, or one LoRA GGUF (pickAdapterGguf). */
  adapter?: boolean;
  /** Glob patterns (`*` within a path segment, `**` across, `?`); they replace the default choice. */
  include?: string[];
  /** For a GGUF repository, the quantization to fetch (default Q4_K_M). */
  quant?: string;
  /** Only what a memory plan reads: params.json or config.json (a GGUF's header is the file itself). */
  configOnly?: boolean;
}

/**
 * The files a model needs: the native layout (params.json, consolidated weights, tekken.json) when the repo has
 * it, else the Hugging Face layout (JSON files and safetensors), or for a GGUF repository the text model of one
 * quantization and an mmproj (see pickGguf).
 */
export function selectFiles(files: RepoFile[], choice: FileChoice = {}): RepoFile[] {
  const { include, quant, configOnly } = choice;
  if (include?.length) {
    if (quant !== undefined) throw new HubError(`choose files with --include or with :${quant}, not both`);
    const patterns = include.map(globToRegExp);
    const chosen = files.filter((f) => patterns.some((p) => p.test(f.path)));
    if (chosen.length === 0) {
      throw new HubError(
        `--include ${include.join(" ")} matches none of: ${files.map((f) => f.path).join(", ")}`,
      );
    }
    return chosen;
  }
  const names = files.map((f) => f.path);
  if (choice.adapter && names.some((n) => n.endsWith(".gguf"))) {
    const picked = pickAdapterGguf(names, quant);
    return files.filter((f) => f.path === picked);
  }
  if (names.some((n) => n.endsWith(".gguf"))) {
    const { text, mmproj } = pickGguf(names, quant);
    return files.filter((f) => f.path === text || f.path === mmproj);
  }
  if (quant !== undefined) {
    throw new HubError(`:${quant} chooses among GGUF files, and this repository has none: write hf:ORG/REPO`);
  }
  const native = names.includes("params.json") && names.some((n) => /^consolidated.*\.safetensors$/.test(n));
  const config = native ? "params.json" : "config.json";
  const chosen = files.filter((f) =>
    configOnly
      ? f.path === config
      : native
      ? f.path === "params.json" || f.path === "tekken.json" || /^consolidated.*\.safetensors$/.test(f.path)
      : !f.path.includes("/") &&
        (f.path.endsWith(".json") || (f.path.endsWith(".safetensors") && !f.path.startsWith("consolidated")))
  );
  if (!chosen.some((f) => f.path.endsWith(configOnly ? ".json" : ".safetensors"))) {
    throw new HubError(
      `no Pixtral weights found (params.json + consolidated.safetensors, or config.json + *.safetensors) among: ${
        names.join(", ")
      }`,
    );
  }
  return chosen;
}

export async function pull(spec: string, options: PullOptions = {}): Promise<PullResult> {
  const ref = parseRepoRef(spec);
  const info = await repoInfo(ref, options);
  const files = selectFiles(info.files, { ...options, quant: ref.quant });
  const dir = repoDir(ref.repo, options.cache ?? cacheRoot());
  const total = files.reduce((n, f) => n + f.size, 0);
  const progress = new Progress({
    label: `pull hf:${ref.repo}@${info.commit.slice(0, 8)}`,
    total,
    sink: options.progressSink,
  });
  let fetched = 0;
  try {
    for (const file of files) {
      fetched += (await downloadFile(dir, info, file, { ...options, progress })).fetched;
    }
  } catch (err) {
    progress.fail(err);
    throw err;
  }
  if (!COMMIT.test(ref.revision)) {
    const refFile = join(dir, "refs", ref.revision); // refs/pr/1 holds a folder
    await Deno.mkdir(dirname(refFile), { recursive: true });
    await Deno.writeTextFile(refFile, info.commit);
  }
  progress.finish(`${files.length} files`);
  return {
    repo: ref.repo,
    commit: info.commit,
    dir: join(dir, "snapshots", info.commit),
    files: files.map((f) => f.path),
    fetched,
  };
}
