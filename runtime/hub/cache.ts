/**
 * The local model cache, laid out exactly as huggingface_hub lays out its own, so that models fetched by either
 * tool are found by both:
 *
 *   $HF_HUB_CACHE (default $HF_HOME/hub, $HF_HOME default ~/.cache/huggingface)
 *     models--ORG--REPO/
 *       refs/REVISION                 the commit a branch or tag pointed to when last pulled
 *       blobs/ETAG                    file contents, named by LFS sha256 or git blob id
 *       blobs/ETAG.incomplete         a download in progress (resumed with an HTTP Range request)
 *       snapshots/COMMIT/PATH         relative symlinks to ../../blobs/ETAG
 */
import { join } from "node:path";

export interface RepoRef {
  /** "ORG/REPO" */
  repo: string;
  /** Branch, tag or commit; "main" when not given. */
  revision: string;
  /** For GGUF repositories, the quantization whose file to use (`:Q4_K_M`, as llama.cpp's -hf and Ollama). */
  quant?: string;
}

export class HubError extends Error {
  override name = "HubError";
}

/** The hub could not be reached at all (as opposed to answering with an error). */
export class HubUnreachableError extends HubError {
  override name = "HubUnreachableError";
}

const REPO = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;
const QUANT = /^[\w.-]+$/;
export const COMMIT = /^[0-9a-f]{40}$/;

/** Parses `hf:ORG/REPO[:QUANT][@REVISION]` (neither a repository name nor a git ref may hold a colon). */
export function parseRepoRef(spec: string): RepoRef {
  const body = spec.startsWith("hf:") ? spec.slice(3) : spec;
  const at = body.indexOf("@");
  const [repo, quant, ...more] = (at < 0 ? body : body.slice(0, at)).split(":");
  const revision = at < 0 ? "main" : body.slice(at + 1);
  if (
    !REPO.test(repo) || repo.includes("..") || revision === "" || revision.includes("..") ||
    revision.includes(":") || more.length ||
    (quant !== undefined && !QUANT.test(quant))
  ) {
    throw new HubError(
      `"${spec}" is not a Hugging Face model reference: expected hf:ORG/REPO, with :QUANT to choose a GGUF ` +
        "quantization and @REVISION a branch, tag or commit",
    );
  }
  return quant === undefined ? { repo, revision } : { repo, revision, quant };
}

export function cacheRoot(): string {
  const env = (name: string) => Deno.env.get(name);
  const hub = env("HF_HUB_CACHE");
  if (hub) return hub;
  const home = env("HF_HOME") ??
    join(env("XDG_CACHE_HOME") ?? join(env("HOME") ?? ".", ".cache"), "huggingface");
  return join(home, "hub");
}

export function repoDir(repo: string, root = cacheRoot()): string {
  return join(root, `models--${repo.replace("/", "--")}`);
}

/** The snapshot folder of a cached repo, or an error saying how to fetch it. */
export async function resolveCachedRepo(spec: string, root = cacheRoot()): Promise<string> {
  const { repo, revision } = parseRepoRef(spec);
  const dir = repoDir(repo, root);
  let commit = revision;
  if (!COMMIT.test(revision)) {
    try {
      commit = (await Deno.readTextFile(join(dir, "refs", revision))).trim();
    } catch {
      throw new HubError(
        `${spec} is not in the local cache (${dir}; HF_HUB_CACHE or HF_HOME choose another); download it ` +
          `first: pixtral pull ${spec}`,
      );
    }
  }
  const snapshot = join(dir, "snapshots", commit);
  try {
    await Deno.stat(snapshot);
  } catch {
    throw new HubError(
      `${spec}: the cache has no snapshot ${commit} (${snapshot}); run pixtral pull ${spec}`,
    );
  }
  return snapshot;
}
