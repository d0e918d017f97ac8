/**
 * The Hugging Face hub's HTTP API, as huggingface_hub uses it:
 * - GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true -> {sha, siblings: [{rfilename, size, blobId,
 *   lfs?: {sha256, size, pointerSize}}]} (sha is the commit the revision points to);
 * - GET {endpoint}/{repo}/resolve/{commit}/{path}: the file; LFS files answer with a redirect to a CDN whose
 *   X-Repo-Commit, X-Linked-Etag (the sha256) and X-Linked-Size headers describe the file.
 * The endpoint comes from HF_ENDPOINT, the token from HF_TOKEN (or the token file huggingface-cli writes).
 */
import { join } from "node:path";
import { COMMIT, HubError, HubUnreachableError, type RepoRef } from "./cache.ts";

/** An LFS file's sha256 and a git blob id, as the cache names blobs by them (checked: they become paths). */
const SHA256 = /^[0-9a-f]{64}$/, BLOB_ID = /^[0-9a-f]{40}$/;

export interface HubOptions {
  /** Default $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default $HF_TOKEN, else $HF_HOME/token. */
  token?: string | null;
  fetch?: typeof fetch;
  /** Time a file's server has to answer, and to send each next piece of it (default 60 s). */
  stallMs?: number;
}

export interface RepoFile {
  path: string;
  size: number;
  /** sha256 of the contents for LFS files (the hub's etag for them); null for small git files. */
  sha256: string | null;
  /** git blob id (sha1 of "blob SIZE\0" + contents) for files kept in git; their etag. */
  blobId: string | null;
}

export interface RepoInfo {
  repo: string;
  revision: string;
  commit: string;
  files: RepoFile[];
}

/** Time the API has to answer. */
const API_TIMEOUT_MS = 30_000;

export function hubEndpoint(options: HubOptions = {}): string {
  return (options.endpoint ?? Deno.env.get("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
}

export async function hubToken(options: HubOptions = {}): Promise<string | null> {
  if (options.token !== undefined) return options.token;
  const token = Deno.env.get("HF_TOKEN");
  if (token) return token;
  const home = Deno.env.get("HF_HOME") ?? join(Deno.env.get("HOME") ?? ".", ".cache", "huggingface");
  try {
    return (await Deno.readTextFile(join(home, "token"))).trim() || null;
  } catch {
    return null;
  }
}

/** Request headers with the token, when there is one. */
export async function hubHeaders(options: HubOptions, extra: Record<string, string> = {}): Promise<Headers> {
  const headers = new Headers({ "user-agent": "pixtral-server", ...extra });
  const token = await hubToken(options);
  if (token) headers.set("authorization", `Bearer ${token}`);
  return headers;
}

/** A hub error with what to do about it, from a failed response. */
export function statusError(response: Response, what: string, hasToken: boolean): HubError {
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  if (response.status === 401 || response.status === 403) {
    return new HubError(
      `${what}: access denied (${status}). The repository is private or gated, or does not exist; ` +
        (hasToken
          ? "the token (HF_TOKEN, or $HF_HOME/token) cannot read it (accept the model's license on its page, or " +
            "use another token)"
          : "set HF_TOKEN to a token that can read it"),
    );
  }
  if (response.status === 404) {
    return new HubError(`${what}: not found (${status}); check the repository, revision and file name`);
  }
  return new HubError(`${what}: ${status}`);
}

export async function repoInfo(ref: RepoRef, options: HubOptions = {}): Promise<RepoInfo> {
  const endpoint = hubEndpoint(options);
  const url = `${endpoint}/api/models/${ref.repo}/revision/${encodeURIComponent(ref.revision)}?blobs=true`;
  const headers = await hubHeaders(options);
  let response: Response;
  try {
    response = await (options.fetch ?? fetch)(url, { headers, signal: AbortSignal.timeout(API_TIMEOUT_MS) });
  } catch (err) {
    const why = (err as Error).name === "TimeoutError"
      ? `no answer within ${API_TIMEOUT_MS / 1000} s`
      : (err as Error).message;
    throw new HubUnreachableError(`cannot reach ${endpoint} (${why}); set HF_ENDPOINT for a mirror`);
  }
  const what = `hf:${ref.repo}@${ref.revision} at ${endpoint}`;
  if (!response.ok) {
    await response.body?.cancel();
    throw statusError(response, what, headers.has("authorization"));
  }
  const body = await response.json().catch(() => null) as Record<string, unknown> | null;
  const siblings = body?.siblings;
  if (typeof body?.sha !== "string" || !Array.isArray(siblings)) {
    throw new HubError(`${what}: unexpected API answer (no "sha" and "siblings")`);
  }
  // The commit names a folder of the cache: nothing but a commit id may come through.
  if (!COMMIT.test(body.sha)) {
    throw new HubError(`${what}: the API answered a commit that is not one: ${body.sha}`);
  }
  if (COMMIT.test(ref.revision) && body.sha !== ref.revision) {
    throw new HubError(`${what}: the API answered commit ${body.sha}`);
  }
  const files = siblings.map((s: Record<string, unknown>): RepoFile => {
    const lfs = s.lfs as Record<string, unknown> | undefined;
    const path = s.rfilename;
    const size = lfs?.size ?? s.size;
    if (typeof path !== "string" || typeof size !== "number") {
      throw new HubError(
        `${what}: the API listed a file without rfilename and size (was ?blobs=true honoured?)`,
      );
    }
    if (
      path.split("/").some((part) => part === ".." || part === "" || part === ".") || path.startsWith("/") ||
      // deno-lint-ignore no-control-regex
      /[\\\x00-\x1f]/.test(path)
    ) {
      throw new HubError(`${what}: refusing the file name ${JSON.stringify(path)}`);
    }
    if (!Number.isSafeInteger(size) || size < 0) throw new HubError(`${what}: ${path} has the size ${size}`);
    const sha256 = lfs?.sha256 ?? null, blobId = s.blobId ?? null;
    if (
      (sha256 !== null && !SHA256.test(String(sha256))) || (blobId !== null && !BLOB_ID.test(String(blobId)))
    ) {
      throw new HubError(`${what}: ${path} has a hash that is not one (sha256 ${sha256}, blob id ${blobId})`);
    }
    return { path, size, sha256: sha256 as string | null, blobId: blobId as string | null };
  });
  return { repo: ref.repo, revision: ref.revision, commit: body.sha, files };
}
