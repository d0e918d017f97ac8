/**
 * Loading a tekken.json from disk. Parsing the JSON (8-20 MB) dominates start-up, so the built tokenizer is
 * also written in a compact binary form (~3.5 MB) to pixtral's cache folder (`tokenizers/`, named by the
 * JSON's real path: model folders, read-only mounts and the hub's cache are left as they are), which later
 * processes load in a few milliseconds.
 *
 * Staleness: the cache records the SHA-256 of the JSON it was built from, and the JSON's file status (size,
 * mtime, ctime, inode, device). When the status is unchanged and the JSON had been still for a few seconds
 * when it was recorded, the JSON is not even read (any later write would have changed its ctime, which no
 * user can set); otherwise the JSON is hashed and the cache used only if the hash matches. The cache is
 * optional: it is skipped where it cannot be written (read-only folder, no write permission) and rebuilt
 * when damaged.
 */
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { cacheDir } from "../cache_dir.ts";
import { log } from "../log.ts";
import { Tokenizer, TokenizerError } from "./tokenizer.ts";

export interface LoadOptions {
  /** The model's vocab size, when it cuts the file's `default_vocab_size`. */
  vocabSize?: number;
  /** Read and write the binary cache (default true). */
  cache?: boolean;
  /** The folder the binary cache goes under (default cacheDir()). */
  cacheDir?: string;
}

const MAGIC = new TextEncoder().encode("PXTKC\0\0\x02");
const HEADER_BYTES = 96;
/** How long the JSON must have been unmodified when its status was recorded for the status to be trusted
 * (ctime has a one-second resolution in Deno). */
const SETTLED_MS = 3000;

/** The cache file of the tekken.json at `path` (which must exist). */
export function cachePath(path: string, dir = cacheDir()): string {
  const key = createHash("sha256").update(Deno.realPathSync(path)).digest("hex").slice(0, 32);
  return join(dir, "tokenizers", `${key}.bin`);
}

/** A tokenizer from a tekken.json path (string or file: URL) or its bytes. */
export async function loadTokenizer(source: string | URL | Uint8Array, options: LoadOptions = {}) {
  if (source instanceof Uint8Array) return await Tokenizer.fromTekkenJson(source, options);
  const path = source instanceof URL ? decodeURIComponent(source.pathname) : source;
  const unreadable = (err: unknown) =>
    new TokenizerError(`cannot read the tokenizer file ${path}: ${(err as Error).message}`, { cause: err });
  let status: FileStatus;
  let json: Uint8Array<ArrayBuffer> | undefined;
  try {
    status = fileStatus(await Deno.stat(path));
    if (options.cache === false) json = await Deno.readFile(path);
  } catch (err) {
    throw unreadable(err);
  }
  const parse = async (json: Uint8Array) => {
    try {
      return await Tokenizer.fromTekkenJson(json, options);
    } catch (err) {
      throw new TokenizerError(`${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  if (json) return await parse(json);

  const vocabSize = options.vocabSize ?? 0;
  const cacheFile = cachePath(path, options.cacheDir);
  const cache = await readCache(cacheFile, vocabSize);
  if (cache && settled(cache.header.status) && sameStatus(cache.header.status, status)) {
    const tokenizer = await fromCache(cache);
    if (tokenizer) return tokenizer;
  }
  try {
    json = await Deno.readFile(path);
  } catch (err) {
    throw unreadable(err);
  }
  const sha256 = new Uint8Array(await crypto.subtle.digest("SHA-256", json));
  const header: Header = { sha256, vocabSize, status };
  if (cache && cache.header.sha256.every((b, i) => b === sha256[i])) {
    const tokenizer = await fromCache(cache);
    if (tokenizer) {
      if (!sameStatus(cache.header.status, status)) await writeCache(cacheFile, header, cache.body);
      return tokenizer;
    }
  }
  const tokenizer = await parse(json);
  await writeCache(cacheFile, header, tokenizer.toCache());
  return tokenizer;
}

interface FileStatus {
  size: number;
  mtime: number;
  ctime: number;
  ino: number;
  dev: number;
  /** When the status was taken (Date.now()). */
  seen: number;
}

interface Header {
  sha256: Uint8Array;
  vocabSize: number;
  status: FileStatus;
}

function fileStatus(info: Deno.FileInfo): FileStatus {
  return {
    size: info.size,
    mtime: info.mtime?.getTime() ?? NaN,
    ctime: info.ctime?.getTime() ?? NaN,
    ino: info.ino ?? NaN,
    dev: info.dev,
    seen: Date.now(),
  };
}

function sameStatus(a: FileStatus, b: FileStatus): boolean {
  return a.size === b.size && a.mtime === b.mtime && a.ctime === b.ctime && a.ino === b.ino &&
    a.dev === b.dev;
}

/** Whether the file had been still long enough when its status was taken (false when a time is unknown). */
function settled(s: FileStatus): boolean {
  return s.seen - Math.max(s.mtime, s.ctime) >= SETTLED_MS;
}

function encodeHeader(h: Header): Uint8Array {
  const bytes = new Uint8Array(HEADER_BYTES);
  const view = new DataView(bytes.buffer);
  bytes.set(MAGIC);
  bytes.set(h.sha256, 8);
  view.setUint32(40, h.vocabSize, true);
  const s = h.status;
  [s.size, s.mtime, s.ctime, s.ino, s.dev, s.seen].forEach((v, i) => view.setFloat64(48 + 8 * i, v, true));
  return bytes;
}

function decodeHeader(bytes: Uint8Array): Header | undefined {
  if (bytes.length < HEADER_BYTES || MAGIC.some((b, i) => bytes[i] !== b)) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_BYTES);
  const [size, mtime, ctime, ino, dev, seen] = [0, 1, 2, 3, 4, 5].map((i) =>
    view.getFloat64(48 + 8 * i, true)
  );
  return {
    sha256: bytes.slice(8, 40),
    vocabSize: view.getUint32(40, true),
    status: { size, mtime, ctime, ino, dev, seen },
  };
}

async function readCache(path: string, vocabSize: number) {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch {
    return undefined;
  }
  const header = decodeHeader(bytes);
  if (!header || header.vocabSize !== vocabSize) return undefined;
  return { path, header, body: bytes.subarray(HEADER_BYTES) };
}

async function fromCache(cache: { path: string; body: Uint8Array }): Promise<Tokenizer | undefined> {
  try {
    return await Tokenizer.fromCache(cache.body);
  } catch (err) {
    log.warn("ignoring a damaged tokenizer cache", { path: cache.path, reason: (err as Error).message });
    return undefined;
  }
}

async function writeCache(path: string, header: Header, body: Uint8Array): Promise<void> {
  const dir = dirname(path);
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    // Ask rather than try: an ungranted permission would make Deno prompt on a terminal.
    if ((await Deno.permissions.query({ name: "write", path: dir })).state !== "granted") return;
    // Respect a folder marked read-only even when running as root, who could write anyway.
    let existing = dir;
    while (!(await Deno.stat(existing).catch(() => null)) && dirname(existing) !== existing) {
      existing = dirname(existing);
    }
    if ((((await Deno.stat(existing)).mode ?? 0o777) & 0o222) === 0) return;
    await Deno.mkdir(dir, { recursive: true });
    const bytes = new Uint8Array(HEADER_BYTES + body.length);
    bytes.set(encodeHeader(header));
    bytes.set(body, HEADER_BYTES);
    await Deno.writeFile(temp, bytes);
    await Deno.rename(temp, path); // atomic: concurrent loaders see the old file or the new one
  } catch (err) {
    log.debug("tokenizer cache not written", { path, reason: (err as Error).message });
    await Deno.remove(temp).catch(() => {});
  }
}
