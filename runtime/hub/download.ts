/**
 * One file from the hub into the cache: streamed to blobs/ETAG.incomplete (resumed from its current length with
 * an HTTP Range request), checked for size and hash (LFS sha256, or the git blob id for small files), then
 * renamed to blobs/ETAG and linked from snapshots/COMMIT/PATH. A lock per blob (.locks/models--ORG--REPO/
 * ETAG.lock, where huggingface_hub takes its own) keeps two pulls from writing the same file at once.
 */
import { createHash, type Hash } from "node:crypto";
import { basename, dirname, join, relative } from "node:path";
import type { Progress } from "../progress.ts";
import {
  hubEndpoint,
  hubHeaders,
  type HubOptions,
  type RepoFile,
  type RepoInfo,
  statusError,
} from "./api.ts";
import { stalling } from "../stalling.ts";
import { HubError } from "./cache.ts";

const MAX_REDIRECTS = 5;
/** Time a server has to answer a request, and to send the next bytes of a body (HubOptions.stallMs). */
const STALL_MS = 60_000;

async function exists(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch {
    return null;
  }
}

function etagOf(file: RepoFile): string {
  const etag = file.sha256 ?? file.blobId;
  if (!etag) {
    throw new HubError(`${file.path}: the hub gave neither an LFS sha256 nor a blob id to verify it`);
  }
  return etag;
}

/** A hash over the file's contents in the form its etag takes (git blob ids hash a "blob SIZE\0" prefix). */
function contentHash(file: RepoFile): { hash: Hash; expected: string; kind: string } {
  if (file.sha256) return { hash: createHash("sha256"), expected: file.sha256, kind: "sha256" };
  const hash = createHash("sha1");
  hash.update(`blob ${file.size}\0`);
  return { hash, expected: etagOf(file), kind: "git blob sha1" };
}

function normalizeEtag(etag: string | null): string | null {
  return etag === null ? null : etag.replace(/^W\//, "").replace(/^"|"$/g, "");
}

/**
 * GET the file from `from` bytes on, following the hub's redirect by hand so that its X-Linked-* headers can be
 * checked against the API listing and the token is not sent to another host.
 */
async function request(info: RepoInfo, file: RepoFile, from: number, options: HubOptions): Promise<Response> {
  const endpoint = hubEndpoint(options);
  const stallMs = options.stallMs ?? STALL_MS;
  const path = file.path.split("/").map(encodeURIComponent).join("/");
  let url = new URL(`${endpoint}/${info.repo}/resolve/${info.commit}/${path}`);
  // Bytes as stored: a compressed answer would count the offsets of a resumed download in other bytes.
  const fixed: Record<string, string> = {
    "accept-encoding": "identity",
    ...from > 0 ? { range: `bytes=${from}-` } : {},
  };
  const withToken = await hubHeaders(options, fixed);
  const origin = url.origin;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers = url.origin === origin
      ? withToken
      : new Headers({ "user-agent": "pixtral-server", ...fixed });
    let response: Response;
    // Only the wait for the answer is timed here: a fetch's signal stays on its body, which stalling() times.
    const answer = new AbortController();
    const timer = setTimeout(() => answer.abort(new DOMException("", "TimeoutError")), stallMs);
    try {
      response = await (options.fetch ?? fetch)(url, { headers, redirect: "manual", signal: answer.signal });
    } catch (err) {
      const why = (err as Error).name === "TimeoutError"
        ? `no answer within ${stallMs / 1000} s`
        : (err as Error).message;
      throw new HubError(
        `${file.path}: cannot reach ${url.origin} (${why}); run the same pull again to resume`,
      );
    } finally {
      clearTimeout(timer);
    }
    const commit = response.headers.get("x-repo-commit");
    if (commit && commit !== info.commit) {
      throw new HubError(`${file.path}: the hub served commit ${commit}, not ${info.commit}`);
    }
    const linkedSize = response.headers.get("x-linked-size");
    if (linkedSize !== null && Number(linkedSize) !== file.size) {
      throw new HubError(
        `${file.path}: X-Linked-Size ${linkedSize} disagrees with the API's size ${file.size}`,
      );
    }
    const linkedEtag = normalizeEtag(response.headers.get("x-linked-etag"));
    if (linkedEtag !== null && file.sha256 && linkedEtag !== file.sha256) {
      throw new HubError(
        `${file.path}: X-Linked-Etag ${linkedEtag} disagrees with the API's sha256 ${file.sha256}`,
      );
    }
    const location = response.headers.get("location");
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      const next = new URL(location, url);
      // Only to the web, and never from https down to http.
      if (
        !["http:", "https:"].includes(next.protocol) ||
        (url.protocol === "https:" && next.protocol !== "https:")
      ) {
        throw new HubError(
          `${file.path}: refusing a redirect from ${url.origin} to ${next.protocol}//${next.host}`,
        );
      }
      url = next;
      continue;
    }
    if (!response.ok && response.status !== 416) {
      await response.body?.cancel();
      throw statusError(response, `hf:${info.repo} file ${file.path}`, withToken.has("authorization"));
    }
    return response;
  }
  throw new HubError(`${file.path}: more than ${MAX_REDIRECTS} redirects`);
}

/** Feeds the first `length` bytes of `path` to `hash` (the part of a download done before an interruption). */
async function hashExisting(path: string, length: number, hash: Hash): Promise<void> {
  const file = await Deno.open(path, { read: true });
  try {
    const buffer = new Uint8Array(1 << 20);
    let left = length;
    while (left > 0) {
      const n = await file.read(buffer.subarray(0, Math.min(buffer.length, left)));
      if (n === null) break;
      hash.update(buffer.subarray(0, n));
      left -= n;
    }
  } finally {
    file.close();
  }
}

export interface DownloadResult {
  /** snapshots/COMMIT/PATH */
  path: string;
  /** Bytes fetched over the network by this call (0 when cached; the rest only, when resumed). */
  fetched: number;
}

export async function downloadFile(
  repoDir: string,
  info: RepoInfo,
  file: RepoFile,
  options: HubOptions & { progress?: Progress } = {},
): Promise<DownloadResult> {
  const etag = etagOf(file);
  const locks = join(dirname(repoDir), ".locks", basename(repoDir));
  await Deno.mkdir(locks, { recursive: true });
  const lock = await Deno.open(join(locks, `${etag}.lock`), { write: true, create: true });
  try {
    await lock.lock(true);
    return await fetchBlob(repoDir, info, file, etag, options);
  } finally {
    lock.close(); // and with it the lock
  }
}

/** downloadFile's work, under the blob's lock. */
async function fetchBlob(
  repoDir: string,
  info: RepoInfo,
  file: RepoFile,
  etag: string,
  options: HubOptions & { progress?: Progress },
): Promise<DownloadResult> {
  const blob = join(repoDir, "blobs", etag);
  const partial = `${blob}.incomplete`;
  const snapshot = join(repoDir, "snapshots", info.commit, file.path);
  const link = async () => {
    await Deno.mkdir(dirname(snapshot), { recursive: true });
    await Deno.remove(snapshot).catch(() => {});
    await Deno.symlink(relative(dirname(snapshot), blob), snapshot);
  };

  if ((await exists(blob))?.size === file.size) {
    await link();
    options.progress?.add(file.size);
    return { path: snapshot, fetched: 0 };
  }
  await Deno.mkdir(dirname(blob), { recursive: true });
  let have = (await exists(partial))?.size ?? 0;
  if (have > file.size) {
    await Deno.remove(partial);
    have = 0;
  }
  const { hash, expected, kind } = contentHash(file);
  // A complete .incomplete file (stopped before its rename) only needs checking.
  const complete = have === file.size;
  let response = complete ? new Response(null) : await request(info, file, have, options);
  if (response.status === 416) {
    // The server cannot resume from here: start over.
    await response.body?.cancel();
    await Deno.remove(partial).catch(() => {});
    have = 0;
    response = await request(info, file, 0, options);
    if (!response.ok) {
      await response.body?.cancel();
      throw new HubError(`${file.path}: HTTP ${response.status} for the whole file`);
    }
  } else if (response.status === 200 && have > 0 && !complete) {
    // The server ignored the Range and sends the whole file: take it from the start.
    await Deno.remove(partial);
    have = 0;
  } else if (response.status === 206) {
    const start = /^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "")?.[1];
    if (Number(start) !== have) {
      await response.body?.cancel();
      throw new HubError(
        `${file.path}: asked to resume at byte ${have}, the server answered ${
          response.headers.get("content-range")
        }`,
      );
    }
  }
  if (have > 0) await hashExisting(partial, have, hash);
  options.progress?.add(have);

  const out = await Deno.open(partial, { write: true, create: true, append: true });
  let fetched = 0;
  try {
    const stallMs = options.stallMs ?? STALL_MS;
    for await (const chunk of stalling(response.body, stallMs, `no data for ${stallMs / 1000} s`)) {
      if (have + fetched + chunk.length > file.size) {
        out.close();
        await Deno.remove(partial); // not the file: nothing of it is worth resuming
        throw new HubError(`${file.path}: the server sent more than ${file.size} bytes; run the pull again`);
      }
      let written = 0;
      while (written < chunk.length) written += await out.write(chunk.subarray(written));
      hash.update(chunk);
      fetched += chunk.length;
      options.progress?.add(chunk.length);
    }
  } catch (err) {
    if (err instanceof HubError) throw err;
    throw new HubError(
      `${file.path}: download interrupted after ${have + fetched} of ${file.size} bytes (${
        (err as Error).message
      }); ` +
        "run the same pull again to resume",
    );
  } finally {
    try {
      out.close();
    } catch { /* closed above */ }
  }
  if (have + fetched !== file.size) {
    throw new HubError(
      `${file.path}: got ${have + fetched} of ${file.size} bytes; run the same pull again to resume`,
    );
  }
  const actual = hash.digest("hex");
  if (actual !== expected) {
    await Deno.remove(partial);
    throw new HubError(
      `${file.path}: ${kind} mismatch: expected ${expected}, got ${actual}. The download was discarded; run the pull again`,
    );
  }
  await Deno.rename(partial, blob);
  await link();
  return { path: snapshot, fetched };
}
