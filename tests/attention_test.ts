/**
 * Attention against the f64 reference: the paged KV cache (layout, writes), causal prefill chunks and decode steps
 * with grouped-query heads in one batch, split (flash-decoding) long contexts, and block-diagonal attention over
 * several images.
 *
 * Tolerance: scores, softmax and the weighted sum in f32 over D-long dot products and up to a few thousand keys;
 * inputs in [-1, 1] keep scores O(1), so the output is within 2e-5 · max|v| of the reference (a wrong mask,
 * head or block moves it by a sizeable fraction of |v|), plus one f16 rounding when q and the output are f16.
 */
import assert from "node:assert/strict";
import type { GpuContext } from "../runtime/gpu/context.ts";
import { f16Bits, type FloatType, roundTo } from "../runtime/gpu/dtype.ts";
import {
  attention,
  attentionRef,
  createKvCache,
  denseAttentionPlan,
  type HeadShape,
  type KvCache,
  type KvType,
  kvWrite,
  pagedAttentionPlan,
  type PagedSequence,
  quantizeKvRef,
  ropeKvWrite,
} from "../runtime/gpu/ops/attention.ts";
import { rope } from "../runtime/gpu/ops/rope.ts";
import {
  assertClose,
  context,
  EPS16,
  randomBytes,
  randomFloats,
  seededRandom,
  SUB16,
} from "./gpu_helpers.ts";

interface SeqSpec {
  past: number;
  qLen: number;
}

/** Offset of (block, head, slot) in a [blocks, headsKv, blockSize, D] cache, as kernels/kvcache.wgsl lays it out. */
function cacheIndex(shape: HeadShape, blockSize: number, block: number, head: number, slot: number): number {
  return ((block * shape.headsKv + head) * blockSize + slot) * shape.headDim;
}

/** The cache's values as floats, [blocks, headsKv, blockSize, D] (8-bit caches dequantized). */
async function readCache(
  ctx: GpuContext,
  cache: KvCache,
  which: "k" | "v",
  headDim: number,
): Promise<Float32Array> {
  const t = cache[which];
  if (t.dtype !== "u32") return await ctx.readFloats(t);
  const codes = new Int8Array((await ctx.readU32(t)).buffer);
  const scales = await ctx.readFloats(which === "k" ? cache.kScales! : cache.vScales!);
  return Float32Array.from(codes, (c, i) => Math.fround(c * scales[Math.floor(i / headDim)]));
}

async function pagedCase(
  ctx: GpuContext,
  shape: HeadShape,
  specs: SeqSpec[],
  options: { blockSize: number; act: FloatType; cache: KvType; splitKeys?: number; seed: number },
): Promise<void> {
  const { headsQ, headsKv, headDim: D } = shape;
  const { blockSize, act } = options;
  const random = seededRandom(options.seed);
  const kvWidth = headsKv * D, qWidth = headsQ * D, row = qWidth + 2 * kvWidth;
  // Blocks handed out in a shuffled order, so that tables are not the identity.
  const needed = specs.reduce((n, s) => n + Math.ceil((s.past + s.qLen) / blockSize), 0);
  const blocks = needed + 3;
  const free = Array.from({ length: blocks }, (_, i) => i).sort(() => random());
  let qStart = 0;
  const seqs: PagedSequence[] = specs.map((s) => {
    const ctxLen = s.past + s.qLen;
    const seq = { qStart, qLen: s.qLen, ctxLen, blocks: free.splice(0, Math.ceil(ctxLen / blockSize)) };
    qStart += s.qLen;
    return seq;
  });
  const tokens = qStart;
  // The past: random cache contents (codes and positive scales for the 8-bit cache).
  const cache = createKvCache(ctx, { blocks, blockSize, headsKv, headDim: D, dtype: options.cache });
  const slots = blocks * headsKv * blockSize;
  for (const [i, which] of (["k", "v"] as const).entries()) {
    if (options.cache === "q8") {
      ctx.write(cache[which], randomBytes(slots * D, options.seed + i));
      const scales = randomFloats(slots, options.seed + 5 + i, 0.01).map((x) => Math.abs(x) + 1e-3);
      ctx.write(which === "k" ? cache.kScales! : cache.vScales!, scales);
    } else {
      const values = randomFloats(slots * D, options.seed + i);
      ctx.write(cache[which], options.cache === "f32" ? values : f16Bits(values));
    }
  }
  const [kBefore, vBefore] = [await readCache(ctx, cache, "k", D), await readCache(ctx, cache, "v", D)];
  // This step's tokens: one fused q|k|v row each.
  const fused = roundTo(act, randomFloats(tokens * row, options.seed + 3));
  const qkv = ctx.fromFloats(act, [tokens, row], fused);
  const out = ctx.tensor(act, [tokens, qWidth]);
  const rec = ctx.record();
  const plan = pagedAttentionPlan(rec, { ...shape, seqs, blockSize, splitKeys: options.splitKeys });
  kvWrite(rec, plan, {
    k: qkv.sliceCols(qWidth, kvWidth),
    v: qkv.sliceCols(qWidth + kvWidth, kvWidth),
    cache,
  });
  attention(rec, plan, { q: qkv.sliceCols(0, qWidth), out, cache });
  await rec.submit();

  // The cache holds the new keys at their slots (quantized: codes equal but for rounding ties), the rest as before.
  const [kAfter, vAfter] = [await readCache(ctx, cache, "k", D), await readCache(ctx, cache, "v", D)];
  const written = new Set<number>();
  for (const s of seqs) {
    for (let i = 0; i < s.qLen; i++) {
      const pos = s.ctxLen - s.qLen + i;
      for (let h = 0; h < headsKv; h++) {
        const at = cacheIndex(shape, blockSize, s.blocks[Math.floor(pos / blockSize)], h, pos % blockSize);
        written.add(at / D);
        for (const [j, after] of [kAfter, vAfter].entries()) {
          const src = (s.qStart + i) * row + qWidth + j * kvWidth + h * D;
          const x = fused.subarray(src, src + D);
          const got = after.subarray(at, at + D);
          if (options.cache === "q8") {
            const { codes, scale } = quantizeKvRef(x);
            assertClose(
              got,
              Array.from(codes, (c) => Math.fround(c * scale)),
              scale * 1.0001 + 1e-30,
              "8-bit cache",
            );
          } else {
            assert.deepEqual(got, roundTo(options.cache, x), "cache after kv_write");
          }
        }
      }
    }
  }
  for (let i = 0; i < slots * D; i++) {
    if (!written.has(Math.floor(i / D)) && (kAfter[i] !== kBefore[i] || vAfter[i] !== vBefore[i])) {
      assert.fail(`cache element ${i} changed though no token was written there`);
    }
  }

  const got = await ctx.readFloats(out);
  for (const [n, s] of seqs.entries()) {
    // The sequence's keys in position order, as the cache now holds them.
    const keys = new Float32Array(s.ctxLen * kvWidth), values = new Float32Array(s.ctxLen * kvWidth);
    for (let pos = 0; pos < s.ctxLen; pos++) {
      for (let h = 0; h < headsKv; h++) {
        const at = cacheIndex(shape, blockSize, s.blocks[Math.floor(pos / blockSize)], h, pos % blockSize);
        keys.set(kAfter.subarray(at, at + D), (pos * headsKv + h) * D);
        values.set(vAfter.subarray(at, at + D), (pos * headsKv + h) * D);
      }
    }
    const q = Float32Array.from(
      { length: s.qLen * qWidth },
      (_, j) => fused[(s.qStart + Math.floor(j / qWidth)) * row + (j % qWidth)],
    );
    const past = s.ctxLen - s.qLen;
    const ref = attentionRef(q, keys, values, {
      ...shape,
      rows: s.qLen,
      keys: s.ctxLen,
      allowed: (i, j) => j <= past + i,
    });
    const vmax = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const tol = (j: number) => 2e-5 * vmax + (act === "f16" ? EPS16 * Math.abs(ref[j]) + SUB16 : 0);
    assertClose(got.subarray(s.qStart * qWidth, (s.qStart + s.qLen) * qWidth), ref, tol, `sequence ${n}`);
  }
  for (const t of [cache.k, cache.v, ...(cache.kScales ? [cache.kScales, cache.vScales!] : [])]) {
    ctx.release(t);
  }
  ctx.release(qkv);
  ctx.release(out);
}

type PagedOptions = Parameters<typeof pagedCase>[3];

Deno.test("paged attention: prefill chunks and decode steps in one batch", async (t) => {
  const ctx = await context();
  const tiny = { headsQ: 8, headsKv: 2, headDim: 64 }; // the fixture's decoder: 4 query heads per KV head
  const cases: [string, HeadShape, SeqSpec[], PagedOptions][] = [
    ["one token, empty past", tiny, [{ past: 0, qLen: 1 }], {
      blockSize: 16,
      act: "f32",
      cache: "f32",
      seed: 1,
    }],
    [
      "a batch: prefill from scratch, a chunk after a past, decode steps",
      tiny,
      [{ past: 0, qLen: 37 }, { past: 50, qLen: 13 }, { past: 99, qLen: 1 }, { past: 16, qLen: 1 }],
      { blockSize: 16, act: "f32", cache: "f16", seed: 2 },
    ],
    [
      "odd block size and head dimension, f16 activations, no GQA",
      { headsQ: 3, headsKv: 3, headDim: 40 },
      [{ past: 7, qLen: 19 }, { past: 0, qLen: 3 }],
      { blockSize: 5, act: "f16", cache: "f16", seed: 3 },
    ],
    [
      "8 query heads per KV head, head dimension 4",
      { headsQ: 16, headsKv: 2, headDim: 4 },
      [{ past: 3, qLen: 4 }],
      { blockSize: 2, act: "f32", cache: "f32", seed: 4 },
    ],
    [
      "the 8-bit cache: a prefill chunk and decode steps",
      tiny,
      [{ past: 30, qLen: 21 }, { past: 77, qLen: 1 }],
      { blockSize: 16, act: "f16", cache: "q8", seed: 7 },
    ],
    [
      "decode over long contexts split into key ranges and merged",
      tiny,
      [{ past: 700, qLen: 1 }, { past: 129, qLen: 1 }, { past: 40, qLen: 2 }],
      { blockSize: 16, act: "f32", cache: "f32", splitKeys: 64, seed: 5 },
    ],
  ];
  for (const [name, shape, specs, options] of cases) {
    await t.step(name, () => pagedCase(ctx, shape, specs, options));
  }
});

Deno.test("paged attention at Pixtral's decoder shape (32 query heads, 8 KV heads, D = 128)", async (t) => {
  const ctx = await context();
  const pixtral = { headsQ: 32, headsKv: 8, headDim: 128 };
  await t.step(
    "a 4099-token context decoded in 512-key splits, and a prefill chunk after a past",
    () =>
      pagedCase(ctx, pixtral, [{ past: 4098, qLen: 1 }, { past: 100, qLen: 37 }], {
        blockSize: 16,
        act: "f16",
        cache: "f16",
        seed: 6,
      }),
  );
});

/**
 * ropeKvWrite against rope then kvWrite on the same data: q and both caches bit-identical. Row 1 belongs to no
 * sequence (its cache slot is skipped, its q still rotated).
 */
async function ropeKvCase(
  ctx: GpuContext,
  shape: HeadShape,
  act: FloatType,
  cacheType: KvType,
  seed: number,
) {
  const { headsQ, headsKv, headDim: D } = shape;
  const blockSize = 16, blocks = 6, theta = 1e6;
  const seqs: PagedSequence[] = [
    { qStart: 0, qLen: 1, ctxLen: 40, blocks: [4, 0, 2] },
    { qStart: 2, qLen: 19, ctxLen: 19, blocks: [5, 1] },
  ];
  const tokens = 21, row = (headsQ + 2 * headsKv) * D, qDim = headsQ * D;
  const positions = [39, 0, ...Array.from({ length: 19 }, (_, i) => i)];
  const data = roundTo(act, randomFloats(tokens * row, seed));
  const results = [];
  for (const fused of [false, true]) {
    const cache = createKvCache(ctx, { blocks, blockSize, headsKv, headDim: D, dtype: cacheType });
    for (const [i, which] of (["k", "v"] as const).entries()) {
      const values = randomFloats(blocks * headsKv * blockSize * D, seed + 1 + i);
      if (cacheType === "q8") ctx.write(cache[which], randomBytes(values.length, seed + i));
      else ctx.write(cache[which], cacheType === "f32" ? values : f16Bits(values));
      if (cacheType === "q8") {
        ctx.write(
          which === "k" ? cache.kScales! : cache.vScales!,
          new Float32Array(values.length / D).fill(0.01),
        );
      }
    }
    const qkv = ctx.fromFloats(act, [tokens, row], data);
    const rec = ctx.record();
    const plan = pagedAttentionPlan(rec, { ...shape, seqs, blockSize });
    if (fused) ropeKvWrite(rec, plan, { qkv, cache, theta, positions });
    else {
      rope(rec, { x: qkv.sliceCols(0, qDim + headsKv * D), headDim: D, theta, positions });
      kvWrite(rec, plan, {
        k: qkv.sliceCols(qDim, headsKv * D),
        v: qkv.sliceCols(qDim + headsKv * D, headsKv * D),
        cache,
      });
    }
    if (fused && cacheType !== "q8") assert.equal(rec.dispatches, 1);
    await rec.submit();
    const q = (await ctx.readFloats(qkv)).filter((_, i) => i % row < qDim);
    results.push([q, await readCache(ctx, cache, "k", D), await readCache(ctx, cache, "v", D)]);
    for (const t of [qkv, cache.k, cache.v, ...(cache.kScales ? [cache.kScales, cache.vScales!] : [])]) {
      ctx.release(t);
    }
  }
  const [apart, fused] = results;
  for (const [i, what] of ["q", "k cache", "v cache"].entries()) assertClose(fused[i], apart[i], 0, what);
}

Deno.test("RoPE and the cache write in one pass equal rope then kvWrite, bit for bit", async (t) => {
  const ctx = await context();
  const cases = [
    [{ headsQ: 8, headsKv: 2, headDim: 64 }, "f32", "f32"],
    [{ headsQ: 8, headsKv: 2, headDim: 64 }, "f16", "f32"],
    [{ headsQ: 8, headsKv: 2, headDim: 64 }, "f32", "f16"],
    [{ headsQ: 32, headsKv: 8, headDim: 128 }, "f16", "f16"],
    [{ headsQ: 4, headsKv: 4, headDim: 16 }, "f16", "q8"],
  ] as const;
  for (const [i, [shape, act, cache]] of cases.entries()) {
    await t.step(
      `${shape.headsQ}/${shape.headsKv} heads x ${shape.headDim}, ${act} rows, ${cache} cache`,
      () => ropeKvCase(ctx, shape, act, cache, 40 + i),
    );
  }
});

async function denseCase(
  ctx: GpuContext,
  shape: HeadShape,
  segments: number[],
  act: FloatType,
  seed: number,
) {
  const { headsQ, headsKv, headDim: D } = shape;
  const tokens = segments.reduce((a, b) => a + b, 0);
  const [qw, kw] = [headsQ * D, headsKv * D];
  const q = roundTo(act, randomFloats(tokens * qw, seed)),
    k = roundTo(act, randomFloats(tokens * kw, seed + 1));
  const v = roundTo(act, randomFloats(tokens * kw, seed + 2));
  const out = ctx.tensor(act, [tokens, qw]);
  const rec = ctx.record();
  const plan = denseAttentionPlan(rec, { ...shape, segments });
  attention(rec, plan, {
    q: ctx.fromFloats(act, [tokens, qw], q),
    k: ctx.fromFloats(act, [tokens, kw], k),
    v: ctx.fromFloats(act, [tokens, kw], v),
    out,
  });
  await rec.submit();
  const image = new Int32Array(tokens);
  let at = 0;
  segments.forEach((n, s) => image.fill(s, at, at += n));
  const ref = attentionRef(q, k, v, {
    ...shape,
    rows: tokens,
    keys: tokens,
    allowed: (i, j) => image[i] === image[j],
  });
  const vmax = v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const got = await ctx.readFloats(out);
  assertClose(got, ref, (j) => 2e-5 * vmax + (act === "f16" ? EPS16 * Math.abs(ref[j]) + SUB16 : 0), "dense");
  return got;
}

Deno.test("vision attention: bidirectional within each image, block-diagonal across images", async (t) => {
  const ctx = await context();
  await t.step(
    "four images of 5, 1, 37 and 16 patches (tiny encoder: 4 heads x 64)",
    () => denseCase(ctx, { headsQ: 4, headsKv: 4, headDim: 64 }, [5, 1, 37, 16], "f32", 10).then(() => {}),
  );
  await t.step(
    "Pixtral's encoder shape (16 heads x 64), a 16x16-patch image, f16",
    () => denseCase(ctx, { headsQ: 16, headsKv: 16, headDim: 64 }, [144], "f16", 11).then(() => {}),
  );
  await t.step("each image's output is the same alone as next to another image", async () => {
    const shape = { headsQ: 2, headsKv: 2, headDim: 64 };
    const together = await denseCase(ctx, shape, [20, 9], "f32", 12);
    const alone = await denseCase(ctx, shape, [20], "f32", 12);
    assert.deepEqual(together.subarray(0, 20 * 128), alone);
  });
});

Deno.test("attention plans refuse inconsistent inputs", async () => {
  const ctx = await context();
  const rec = ctx.record();
  const shape = { headsQ: 6, headsKv: 4, headDim: 64 };
  assert.throws(() => denseAttentionPlan(rec, { ...shape, segments: [3] }), /group must divide 16/);
  assert.throws(
    () =>
      pagedAttentionPlan(rec, {
        headsQ: 8,
        headsKv: 2,
        headDim: 64,
        blockSize: 16,
        seqs: [{ qStart: 0, qLen: 1, ctxLen: 40, blocks: [0, 1] }],
      }),
    /blocks hold fewer than 40/,
  );
  assert.throws(
    () => denseAttentionPlan(rec, { headsQ: 2, headsKv: 2, headDim: 256, segments: [1] }),
    /head dimension 256 \(must be a multiple of 4 in 4\.\.128\)/,
  );
});
