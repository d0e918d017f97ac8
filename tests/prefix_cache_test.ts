/**
 * The prefix cache: KV blocks of earlier prompts are reused by later ones that begin the same way (text and
 * images), which changes no token or log-probability, and a cached block is given up when room is needed.
 */
import assert from "node:assert/strict";
import { type GenerateRequest, GREEDY } from "../runtime/engine/engine.ts";
import { LocalEngine } from "../runtime/engine/local.ts";
import { PrefixKeys } from "../runtime/engine/prefix.ts";
import { KvPool } from "../runtime/model/kv_pool.ts";
import { collect, EXACT, goldenImage, gpu, gridOf, loadTiny, manifest } from "./model_helpers.ts";

const mm = manifest.multimodal[0];
const { rows, cols } = gridOf(mm.ids);
const image = await goldenImage(mm.pixels_from, rows, cols);
const otherImage = { ...image, pixels: image.pixels.map((v, i) => i % 7 === 0 ? -v : v) };
/** The image's [IMG] tokens, each row ended by [IMG_BREAK] and the last by [IMG_END]. */
const imageIds = Array.from({ length: rows }, (_, r) => [...Array(cols).fill(10), r === rows - 1 ? 13 : 12])
  .flat();

/** A stream's events without the cached-token count of its first. */
function uncounted(run: Awaited<ReturnType<typeof collect>>) {
  return { ...run, events: run.events.map(({ cached: _, ...event }) => event) };
}

const text = (n: number, from: number) =>
  Array.from({ length: n }, (_, i) => 1000 + ((from + 31 * i) % 1048));

Deno.test("pool: published blocks outlive their tables until the room is needed, least recently used first", async () => {
  const pool = new KvPool(await gpu(), {
    layers: 1,
    blocks: 4,
    blockSize: 16,
    headsKv: 1,
    headDim: 4,
    dtype: "f32",
  });
  const a: number[] = [], b: number[] = [], c: number[] = [];
  assert.ok(pool.reserve(a, 40)); // 3 blocks
  pool.publish(a[0], "k0");
  pool.publish(a[1], "k1");
  pool.publish(a[2], "k0"); // a key keeps its first block
  assert.ok(pool.has("k0") && pool.has("k1"));
  pool.share(b, ["k0"]);
  assert.deepEqual(b, [a[0]]);
  pool.release(a);
  // k0 is still held by b; k1 is cached; a[2] was never published and is empty again.
  assert.deepEqual([pool.usedBlocks, pool.cachedBlocks, pool.freeBlocks], [1, 1, 3]);
  pool.share(c, ["k1"]);
  pool.release(c); // k1 is now the most recently used cached block
  pool.release(b); // then k0
  assert.deepEqual([pool.usedBlocks, pool.cachedBlocks], [0, 2]);
  const d: number[] = [];
  assert.ok(pool.reserve(d, 48)); // the 2 empty blocks, then the least recently used cached one (k1)
  assert.ok(pool.has("k0") && !pool.has("k1"));
  assert.ok(!pool.reserve(d, 80), "only 4 blocks");
  assert.ok(pool.reserve(d, 64));
  assert.ok(!pool.has("k0"));
  assert.equal(pool.freeBlocks, 0);
  pool.release(d);
  assert.deepEqual([pool.freeBlocks, pool.cachedBlocks], [4, 0]);
  pool.destroy(await gpu());
});

Deno.test("prefix keys: a block's key covers every token up to its end and the pixels of its images", () => {
  const ids = [1, 3, ...text(14, 0), ...imageIds, ...text(20, 3)];
  const keys = (tokens: number[], images = [image]) => {
    const k = new PrefixKeys(tokens, images, tokens.length, 10, 16);
    return Array.from({ length: Math.floor(tokens.length / 16) }, (_, i) => k.key(i));
  };
  const base = keys(ids);
  assert.deepEqual(keys([...ids]), base);
  assert.equal(new Set(base).size, base.length);
  // Another image: the same first block, then different keys.
  const other = keys(ids, [otherImage]);
  assert.equal(other[0], base[0]);
  assert.ok(other.slice(1).every((k, i) => k !== base[i + 1]));
  // One token changed: keys from its block on differ.
  const changed = [...ids];
  changed[40] = 1500;
  const k2 = keys(changed);
  assert.deepEqual(k2.slice(0, 2), base.slice(0, 2));
  assert.ok(k2.slice(2).every((k, i) => k !== base[i + 2]));
  assert.throws(() => new PrefixKeys(ids, [image], ids.length, 10, 16).key(base.length), /not full/);
});

Deno.test("reusing cached prefixes (text, whole and partly covered images) changes no token or log-probability", async () => {
  const request = (ids: number[], images = [] as typeof image[], extra: Partial<GenerateRequest> = {}) => ({
    ids,
    images,
    sampling: GREEDY,
    maxTokens: 5,
    stopIds: [2],
    topLogprobs: 2,
    ...extra,
  });
  const a = [1, 3, ...text(100, 0), 4];
  // The image is at 28..42, so the 32-token unit boundary falls inside it.
  const c = [1, 3, ...text(26, 5), ...imageIds, ...text(60, 9), 4];
  const requests: { request: GenerateRequest; hit: number }[] = [
    { request: request(a), hit: 0 },
    { request: request([...a.slice(0, 70), ...text(30, 77), 4]), hit: 64 },
    { request: request(c, [image]), hit: 0 },
    // Shares the text and the image with c: the image's first rows come from the cache, the rest is encoded.
    {
      request: request([...c.slice(0, 43), ...text(50, 11), 4], [image], {
        sampling: { ...GREEDY, temperature: 0.8, seed: 5 },
      }),
      hit: 32,
    },
    // The same tokens with another image: nothing from the image's block on.
    { request: request(c, [otherImage]), hit: 0 },
    { request: request(c, [image]), hit: 96 },
    { request: request(a, [], { maxTokens: 3 }), hit: 96 },
  ];
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 1024 });
  const options = { prefillChunk: 32, decodeSteps: 1 };
  try {
    const uncached = new LocalEngine(model, { ...options, prefixCache: false });
    const expected = [];
    for (const { request } of requests) expected.push(await collect(uncached.generate(request)));
    assert.equal(uncached.stats().prefixHitTokens, 0);

    const cached = new LocalEngine(model, options);
    for (const [i, { request, hit }] of requests.entries()) {
      const before = cached.stats().prefixHitTokens!;
      const got = await collect(cached.generate(request));
      // The first token says how many prompt tokens the cache gave (usage's cached tokens); nothing else differs.
      assert.equal(got.events[0].cached ?? 0, hit, `request ${i}: cached tokens reported`);
      assert.deepEqual(uncounted(got), expected[i], `request ${i}`);
      assert.equal(cached.stats().prefixHitTokens! - before, hit, `request ${i}: prompt tokens reused`);
    }
    assert.equal(model.pool.usedBlocks, 0);
    assert.ok(model.pool.cachedBlocks > 0);
  } finally {
    model.release();
  }
});

Deno.test("sequences sent together with one prompt read it once: the others wait for its blocks, same results", async () => {
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 1024 });
  // 150 tokens with an image: the reusable part is 128 (4 units of 32), the image's encoder runs once.
  const ids = [1, 3, ...text(26, 5), ...imageIds, ...text(90, 9), 4];
  const request = (seed: number) => ({
    ids,
    images: [image],
    sampling: { ...GREEDY, temperature: 0.9, seed },
    maxTokens: 4,
    stopIds: [2],
    topLogprobs: 2,
  });
  const options = { prefillChunk: 32, decodeSteps: 1 };
  try {
    const alone = new LocalEngine(model, { ...options, prefixCache: false });
    const expected = [];
    for (const seed of [1, 2, 3, 4]) expected.push(await collect(alone.generate(request(seed))));
    const engine = new LocalEngine(model, options);
    const got = await Promise.all([1, 2, 3, 4].map((seed) => collect(engine.generate(request(seed)))));
    assert.deepEqual(got.map((g) => g.events[0].cached ?? 0).sort(), [0, 128, 128, 128]);
    assert.deepEqual(got.map(uncounted), expected);
    assert.equal(engine.stats().prefixHitTokens, 3 * 128, "three of the four took the prompt from the first");
    assert.equal(model.pool.usedBlocks, 0);
  } finally {
    model.release();
  }
});

Deno.test("a chunk size that is not a multiple of the block size: only blocks of full chunks are shared", async () => {
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 1024 });
  const request = (ids: number[]) => ({
    ids,
    images: [],
    sampling: GREEDY,
    maxTokens: 4,
    stopIds: [2],
    topLogprobs: 2,
  });
  // Chunks of 24 (reuse at multiples of 48): p's last chunk [24, 32) has 8 rows, which take the matrix-vector
  // kernels; its blocks must not be what y reuses after z, whose first 48 tokens it shares.
  const p = [1, 3, ...text(30, 0)];
  const z = [...p, ...text(40, 5), 4];
  const y = [...p, ...text(16, 5), ...text(30, 99), 4];
  try {
    const options = { prefillChunk: 24, decodeSteps: 1 };
    const expected = await collect(
      new LocalEngine(model, { ...options, prefixCache: false }).generate(request(y)),
    );
    const cached = new LocalEngine(model, options);
    await collect(cached.generate(request(p)));
    await collect(cached.generate(request(z)));
    assert.deepEqual(uncounted(await collect(cached.generate(request(y)))), expected);
    assert.equal(cached.stats().prefixHitTokens, 48);
  } finally {
    model.release();
  }
});

Deno.test("an image's blocks are not shared between requests whose images take different encoder kernels", () => {
  // 2 patches alone go through the matrix-vector kernels; with 12 more from another image, through tiled ones.
  const small = { rows: 1, cols: 2, pixels: image.pixels.slice(0, 3 * 16 * 32) };
  const smallIds = [10, 10, 13];
  const ids = [1, 3, ...smallIds, ...text(11, 0), ...imageIds, ...text(20, 4)];
  const key = (images: typeof image[]) => new PrefixKeys(ids, images, ids.length, 10, 16).key(0);
  assert.notEqual(key([small]), key([small, image]));
  assert.equal(key([small, image]), key([small, otherImage]), "the second image starts in block 1");
});
