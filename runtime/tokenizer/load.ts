/**
 * Loading a tekken.json from disk. Parsing the JSON (8-20 MB) dominates start-up, so the parsed vocabulary is
 * also written beside it in a compact binary form (`<file>.pixtral-cache`), keyed by the SHA-256 of the JSON
 * bytes: a changed JSON never uses a stale cache. The cache is optional: it is skipped where it cannot be
 * written (read-only directory, no write permission) and rebuilt when damaged.
 */
import { log } from "../log.ts";
import { Tokenizer, TokenizerError } from "./tokenizer.ts";

export interface LoadOptions {
  /** The model's vocab size, when it cuts the file's `default_vocab_size`. */
  vocabSize?: number;
  /** Read and write the binary cache beside the file (default true). */
  cache?: boolean;
}

const MAGIC = new TextEncoder().encode("PXTKC\0\0\x01");
const KEY_BYTES = MAGIC.length + 32 + 4;

export function cachePath(path: string): string {
  return `${path}.pixtral-cache`;
}

/** A tokenizer from a tekken.json path (string or file: URL) or its bytes. */
export async function loadTokenizer(source: string | URL | Uint8Array, options: LoadOptions = {}) {
  if (source instanceof Uint8Array) return await Tokenizer.fromTekkenJson(source, options);
  const path = source instanceof URL ? decodeURIComponent(source.pathname) : source;
  let json: Uint8Array;
  try {
    json = await Deno.readFile(path);
  } catch (err) {
    throw new TokenizerError(`cannot read the tokenizer file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const parse = async () => {
    try {
      return await Tokenizer.fromTekkenJson(json, options);
    } catch (err) {
      throw new TokenizerError(`${path}: ${(err as Error).message}`, { cause: err });
    }
  };
  if (options.cache === false) return await parse();

  const key = await cacheKey(json, options.vocabSize);
  const cached = await readCache(cachePath(path), key);
  if (cached) return cached;
  const tokenizer = await parse();
  await writeCache(path, key, tokenizer);
  return tokenizer;
}

async function cacheKey(json: Uint8Array, vocabSize = 0): Promise<Uint8Array> {
  const key = new Uint8Array(KEY_BYTES);
  key.set(MAGIC);
  key.set(new Uint8Array(await crypto.subtle.digest("SHA-256", json)), MAGIC.length);
  new DataView(key.buffer).setUint32(KEY_BYTES - 4, vocabSize, true);
  return key;
}

async function readCache(path: string, key: Uint8Array): Promise<Tokenizer | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch {
    return undefined;
  }
  if (bytes.length < KEY_BYTES || key.some((b, i) => bytes[i] !== b)) return undefined; // another JSON
  try {
    return await Tokenizer.fromCache(bytes.subarray(KEY_BYTES));
  } catch (err) {
    log.warn("ignoring a damaged tokenizer cache", { path, reason: (err as Error).message });
    return undefined;
  }
}

async function writeCache(jsonPath: string, key: Uint8Array, tokenizer: Tokenizer): Promise<void> {
  const path = cachePath(jsonPath);
  const dir = jsonPath.includes("/") ? jsonPath.slice(0, jsonPath.lastIndexOf("/")) || "/" : ".";
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  try {
    // Ask rather than try: an ungranted permission would make Deno prompt on a terminal.
    if ((await Deno.permissions.query({ name: "write", path: dir })).state !== "granted") return;
    // Respect a directory marked read-only even when running as root, who could write anyway.
    if (((await Deno.stat(dir)).mode ?? 0o777) & 0o222) {
      const body = tokenizer.toCache();
      const bytes = new Uint8Array(KEY_BYTES + body.length);
      bytes.set(key);
      bytes.set(body, KEY_BYTES);
      await Deno.writeFile(temp, bytes);
      await Deno.rename(temp, path); // atomic: concurrent loaders see the old file or the new one
    }
  } catch (err) {
    log.debug("tokenizer cache not written", { path, reason: (err as Error).message });
    await Deno.remove(temp).catch(() => {});
  }
}
