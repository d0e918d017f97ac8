/** `pull`: the files a model needs from one hub revision, into the cache, with progress. */
import { dirname, join } from "node:path";
import { Progress, type ProgressSink } from "../progress.ts";
import { type HubOptions, type RepoFile, repoInfo } from "./api.ts";
import { cacheRoot, COMMIT, HubError, parseRepoRef, repoDir } from "./cache.ts";
import { downloadFile } from "./download.ts";

export interface PullOptions extends HubOptions {
  /** Glob patterns (`*` within a path segment, `**` across, `?`) choosing files; default: what the model needs. */
  include?: string[];
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

/**
 * The files a model needs when no --include is given: the native layout (params.json, consolidated weights,
 * tekken.json) when the repo has it, else the Hugging Face layout (JSON files and safetensors). GGUF repos hold
 * several quantizations, so they need --include.
 */
export function selectFiles(files: RepoFile[], include?: string[]): RepoFile[] {
  if (include?.length) {
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
  const ggufs = names.filter((n) => n.endsWith(".gguf"));
  if (ggufs.length) {
    throw new HubError(
      `this repository holds GGUF files; choose a text model and its mmproj with --include, e.g. ` +
        `--include '*Q4_K_M.gguf' --include 'mmproj*': ${ggufs.join(", ")}`,
    );
  }
  const native = names.includes("params.json") && names.some((n) => /^consolidated.*\.safetensors$/.test(n));
  const chosen = files.filter((f) =>
    native
      ? f.path === "params.json" || f.path === "tekken.json" || /^consolidated.*\.safetensors$/.test(f.path)
      : !f.path.includes("/") &&
        (f.path.endsWith(".json") || (f.path.endsWith(".safetensors") && !f.path.startsWith("consolidated")))
  );
  if (!chosen.some((f) => f.path.endsWith(".safetensors"))) {
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
  const files = selectFiles(info.files, options.include);
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
