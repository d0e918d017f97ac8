import assert from "node:assert/strict";
import { cachePath, loadTokenizer, Tokenizer, TokenizerError } from "../runtime/tokenizer/mod.ts";
import { fixture } from "./helpers.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const tinyText = await Deno.readTextFile(fixture("mistral/tekken.json"));
const tiny = (): Json => JSON.parse(tinyText);
const utf8 = (value: Json) =>
  new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));

const sample = "Hello, world! Ünïcödé 日本語のテキスト 😀 [INST]";

async function rejectsWith(json: Json, pattern: RegExp) {
  const err = await Tokenizer.fromTekkenJson(utf8(json)).then(() => undefined, (err) => err);
  assert.ok(err instanceof TokenizerError, `no TokenizerError for ${pattern}`);
  assert.match(err.message, pattern);
}

Deno.test("bad tekken.json files get errors that name the problem", async () => {
  await rejectsWith(tinyText.slice(0, tinyText.length / 2), /tokenizer file is truncated: EOF/);
  await rejectsWith("<html>", /not a valid tekken.json: expected value at line 1 column 1/);
  await rejectsWith({ vocab: [] }, /missing field `config`/);
  const noPattern = tiny();
  delete noPattern.config.pattern;
  await rejectsWith(noPattern, /missing field `pattern`/);
  const noVocab = tiny();
  delete noVocab.vocab;
  await rejectsWith(noVocab, /missing field `vocab`/);
  const badVersion = tiny();
  badVersion.config.version = "v99";
  await rejectsWith(badVersion, /unknown tokenizer version "v99" in config.version/);
  const noVersion = tiny();
  delete noVersion.config.version;
  await rejectsWith(noVersion, /config.version is missing/);
  const duplicateRank = tiny();
  duplicateRank.vocab[300].rank = 299;
  await rejectsWith(duplicateRank, /vocab\[300\] has rank 299: ranks must be 0, 1, 2\.\.\. in order/);
  const duplicateBytes = tiny();
  duplicateBytes.vocab[300].token_bytes = duplicateBytes.vocab[299].token_bytes;
  await rejectsWith(duplicateBytes, /tokens 299 and 300 have the same bytes/);
  const badByte = tiny();
  badByte.vocab[65].token_bytes = "Qg==";
  await rejectsWith(badByte, /BPE rank 65 must be the single byte 0x41, found "B"/);
  const badBase64 = tiny();
  badBase64.vocab[500].token_bytes = "not base64!";
  await rejectsWith(badBase64, /vocab\[500\].token_bytes is not base64/);
  const short = tiny();
  short.vocab.length = 1000;
  await rejectsWith(short, /vocab has 1000 entries but vocab size 2048 with 1000 special tokens needs 1048/);
  const wrongType = tiny();
  wrongType.config.default_vocab_size = "2048";
  await rejectsWith(wrongType, /invalid type: string "2048", expected u32/);
  const duplicateSpecial = tiny();
  duplicateSpecial.special_tokens[5].token_str = "<s>";
  await rejectsWith(duplicateSpecial, /special tokens 1 and 5 are both named "<s>"/);
});

Deno.test("tekken.json variants: without special_tokens (v3), with an image section or none", async () => {
  const noSpecials = tiny();
  delete noSpecials.special_tokens;
  const t = await Tokenizer.fromTekkenJson(utf8(noSpecials));
  assert.deepEqual([t.special("[INST]"), t.special("[TOOL_CONTENT]"), t.special("<SPECIAL_999>")], [
    3,
    19,
    999,
  ]);
  noSpecials.config.version = "v11";
  await rejectsWith(
    noSpecials,
    /special_tokens is missing: tokenizer version v11 must list its special tokens/,
  );

  // As Mistral ships it: more vocab entries than the vocab size uses (150000 in Pixtral's file), which are
  // ignored unchecked, and top-level keys nobody reads.
  const shipped = tiny();
  for (let rank = 1048; rank < 1100; rank++) {
    shipped.vocab.push({ rank, token_bytes: "unused!", token_str: null });
  }
  Object.assign(shipped, { version: 1, type: "Tekkenizer" });
  shipped.config.num_vocab_tokens = 1100;
  const plain = await Tokenizer.fromTekkenJson(utf8(tiny()));
  assert.deepEqual((await Tokenizer.fromTekkenJson(utf8(shipped))).encode(sample), plain.encode(sample));

  const renamed = tiny();
  renamed.image = { ...renamed.multimodal, spatial_merge_size: 2 };
  delete renamed.multimodal;
  const withImage = await Tokenizer.fromTekkenJson(utf8(renamed));
  assert.deepEqual(withImage.imageConfig, { patchSize: 16, maxImageSize: 1024, spatialMergeSize: 2 });
  delete renamed.image;
  assert.equal((await Tokenizer.fromTekkenJson(utf8(renamed))).imageConfig, undefined);
});

Deno.test("loading by path names the file in errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      loadTokenizer(`${dir}/missing.json`),
      /cannot read the tokenizer file .*missing.json/,
    );
    await Deno.writeTextFile(`${dir}/bad.json`, "{}");
    await assert.rejects(loadTokenizer(`${dir}/bad.json`), /bad.json: .*missing field `config`/);
    await assert.rejects(loadTokenizer(dir), /cannot read the tokenizer file/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the binary cache is written to the cache folder, used, and invalidated when the JSON changes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/tekken.json`;
    await Deno.writeTextFile(path, tinyText);
    const first = await loadTokenizer(path);
    const cache = await Deno.readFile(cachePath(path));
    assert.ok(cache.length > 8 * 2048 && cache.length < tinyText.length);
    const second = await loadTokenizer(path);
    assert.deepEqual(second.encode(sample), first.encode(sample));
    assert.deepEqual(await Deno.readFile(cachePath(path)), cache);

    // A change of the same size, right away (same second, same size): the content hash catches it.
    const changed = tiny();
    [changed.vocab[400].token_bytes, changed.vocab[401].token_bytes] = [
      changed.vocab[401].token_bytes,
      changed.vocab[400].token_bytes,
    ];
    const changedText = JSON.stringify(changed);
    const sameSize = changedText.padEnd(tinyText.length, " ");
    assert.equal(sameSize.length, tinyText.length);
    await Deno.writeTextFile(path, sameSize);
    const expected = await Tokenizer.fromTekkenJson(utf8(changedText));
    const reloaded = await loadTokenizer(path);
    const swapped = expected.decode([1400]);
    assert.deepEqual(reloaded.encode(swapped), expected.encode(swapped));
    assert.notDeepEqual(reloaded.encode(swapped), first.encode(swapped));

    // Another vocab size is another cache entry.
    const cut = await loadTokenizer(path, { vocabSize: 1500 });
    assert.equal(cut.vocabSize, 1500);
    assert.equal((await loadTokenizer(path)).vocabSize, 2048);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a cache recorded after the JSON settled still notices a later change", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/tekken.json`;
    await Deno.writeTextFile(path, tinyText);
    await new Promise((resolve) => setTimeout(resolve, 3100)); // past the settle time, so the status is trusted
    const before = await loadTokenizer(path);
    assert.equal(before.special("[INST]"), 3);
    const renamed = tiny();
    renamed.special_tokens[3].token_str = "[QQQQ]"; // same length as "[INST]"
    await Deno.writeTextFile(path, JSON.stringify(renamed).padEnd(tinyText.length, " "));
    assert.equal((await loadTokenizer(path)).special("[QQQQ]"), 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a damaged cache is ignored and rewritten", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/tekken.json`;
    await Deno.writeTextFile(path, tinyText);
    const good = await loadTokenizer(path);
    const cache = await Deno.readFile(cachePath(path));
    const damaged = cache.slice();
    damaged[damaged.length - 100] ^= 0xff;
    await Deno.writeFile(cachePath(path), damaged);
    const reloaded = await loadTokenizer(path);
    assert.deepEqual(reloaded.encode(sample), good.encode(sample));
    const rewritten = await Deno.readFile(cachePath(path));
    assert.equal(rewritten.length, cache.length);
    assert.notDeepEqual(rewritten, damaged);
    await Deno.writeFile(cachePath(path), cache.subarray(0, 50));
    assert.deepEqual((await loadTokenizer(path)).encode(sample), good.encode(sample));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a read-only model folder is cached elsewhere; no cache where the cache folder is read-only or off", async () => {
  const dir = await Deno.makeTempDir();
  const cache = await Deno.makeTempDir();
  // The cache folder given, not $PIXTRAL_CACHE: the environment is the whole process's, and test files run in
  // parallel.
  const options = { cacheDir: cache };
  try {
    const path = `${dir}/tekken.json`;
    await Deno.writeTextFile(path, tinyText);
    const uncached = await loadTokenizer(path, { ...options, cache: false });
    await assert.rejects(Deno.stat(cachePath(path, cache)), Deno.errors.NotFound);
    await Deno.chmod(dir, 0o555);
    const readOnly = await loadTokenizer(path, options);
    assert.deepEqual(readOnly.encode(sample), uncached.encode(sample));
    assert.deepEqual((await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name), ["tekken.json"]);
    assert.ok(cachePath(path, cache).startsWith(`${cache}/tokenizers/`));
    assert.ok((await Deno.stat(cachePath(path, cache))).size > 8 * 2048);
    // A symlink to the JSON (as in the hub's cache) shares its cache entry.
    await Deno.symlink(path, `${cache}/link.json`);
    assert.equal(cachePath(`${cache}/link.json`, cache), cachePath(path, cache));

    await Deno.remove(`${cache}/tokenizers`, { recursive: true });
    await Deno.chmod(cache, 0o555);
    assert.deepEqual((await loadTokenizer(path, options)).encode(sample), uncached.encode(sample));
    assert.deepEqual((await Array.fromAsync(Deno.readDir(cache))).map((e) => e.name), ["link.json"]);
  } finally {
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(cache, 0o755);
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(cache, { recursive: true });
  }
});

Deno.test("the cache folder is $PIXTRAL_CACHE, else $XDG_CACHE_HOME/pixtral, else ~/.cache/pixtral", async () => {
  // In a process of its own: the environment is shared by the test files running in parallel.
  const home = Deno.env.get("HOME")!;
  const folder = async (env: Record<string, string>) => {
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--no-config",
        `import { cacheDir } from "${new URL(
          "../runtime/cache_dir.ts",
          import.meta.url,
        )}"; console.log(cacheDir());`,
      ],
      clearEnv: true,
      env: {
        PATH: Deno.env.get("PATH") ?? "",
        DENO_DIR: Deno.env.get("DENO_DIR") ?? `${home}/.cache/deno`,
        ...env,
      },
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    return new TextDecoder().decode(stdout).trim();
  };
  assert.equal(await folder({ PIXTRAL_CACHE: "/p", XDG_CACHE_HOME: "/x", HOME: "/h" }), "/p");
  assert.equal(await folder({ XDG_CACHE_HOME: "/x", HOME: "/h" }), "/x/pixtral");
  assert.equal(await folder({ HOME: "/h" }), "/h/.cache/pixtral");
});
