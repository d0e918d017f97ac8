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
import { type FloatType, roundTo } from "../runtime/gpu/dtype.ts";
import {
  attention,
  attentionRef,
  denseAttentionPlan,
  type HeadShape,
  kvWrite,
  pagedAttentionPlan,
  type PagedSequence,
} from "../runtime/gpu/ops/attention.ts";
import { assertClose, context, EPS16, randomFloats, seededRandom, SUB16 } from "./gpu_helpers.ts";

interface SeqSpec {
  past: number;
  qLen: number;
}

/** Offset of (block, head, slot) in a [blocks, headsKv, blockSize, D] cache, as kernels/kvcache.wgsl lays it out. */
function cacheIndex(shape: HeadShape, blockSize: number, block: number, head: number, slot: number): number {
  return ((block * shape.headsKv + head) * blockSize + slot) * shape.headDim;
}

async function pagedCase(
  ctx: GpuContext,
  shape: HeadShape,
  specs: SeqSpec[],
  options: { blockSize: number; act: FloatType; cache: FloatType; splitKeys?: number; seed: number },
): Promise<void> {
  const { headsQ, headsKv, headDim: D } = shape;
  const { blockSize, act, cache } = options;
  const random = seededRandom(options.seed);
  const kvWidth = headsKv * D, qWidth = headsQ * D, row = qWidth + 2 * kvWidth;
  // Blocks handed out in a shuffled order, so that tables are not the identity.
  const needed = specs.reduce((n, s) => n + Math.ceil((s.past + s.qLen) / blockSize), 0);
  const free = Array.from({ length: needed + 3 }, (_, i) => i).sort(() => random());
  let qStart = 0;
  const seqs: PagedSequence[] = specs.map((s) => {
    const ctxLen = s.past + s.qLen;
    const blocks = free.splice(0, Math.ceil(ctxLen / blockSize));
    const seq = { qStart, qLen: s.qLen, ctxLen, blocks };
    qStart += s.qLen;
    return seq;
  });
  const tokens = qStart;
  const cacheValues = (which: number) =>
    roundTo(cache, randomFloats((needed + 3) * kvWidth * blockSize, options.seed + which));
  const [kc, vc] = [cacheValues(1), cacheValues(2)];
  // This step's tokens: one fused q|k|v row each.
  const fused = roundTo(act, randomFloats(tokens * row, options.seed + 3));
  const kCache = ctx.fromFloats(cache, [needed + 3, headsKv, blockSize, D], kc);
  const vCache = ctx.fromFloats(cache, [needed + 3, headsKv, blockSize, D], vc);
  const qkv = ctx.fromFloats(act, [tokens, row], fused);
  const out = ctx.tensor(act, [tokens, qWidth]);
  const rec = ctx.record();
  const plan = pagedAttentionPlan(rec, { ...shape, seqs, blockSize, splitKeys: options.splitKeys });
  kvWrite(rec, plan, {
    k: qkv.sliceCols(qWidth, kvWidth),
    v: qkv.sliceCols(qWidth + kvWidth, kvWidth),
    kCache,
    vCache,
  });
  attention(rec, plan, { q: qkv.sliceCols(0, qWidth), out, k: kCache, v: vCache });
  await rec.submit();

  // The cache now holds the new keys at their slots, everything else untouched.
  const [kAfter, vAfter] = [await ctx.readFloats(kCache), await ctx.readFloats(vCache)];
  const expectK = Float32Array.from(kc), expectV = Float32Array.from(vc);
  for (const s of seqs) {
    for (let i = 0; i < s.qLen; i++) {
      const pos = s.ctxLen - s.qLen + i;
      for (let h = 0; h < headsKv; h++) {
        const at = cacheIndex(shape, blockSize, s.blocks[Math.floor(pos / blockSize)], h, pos % blockSize);
        const src = (s.qStart + i) * row + qWidth + h * D;
        expectK.set(roundTo(cache, fused.subarray(src, src + D)), at);
        expectV.set(roundTo(cache, fused.subarray(src + kvWidth, src + kvWidth + D)), at);
      }
    }
  }
  assert.deepEqual(kAfter, expectK, "k cache after kv_write");
  assert.deepEqual(vAfter, expectV, "v cache after kv_write");

  const got = await ctx.readFloats(out);
  for (const [n, s] of seqs.entries()) {
    // Gather the sequence's keys in position order from the cache, as the reference sees them.
    const keys = new Float32Array(s.ctxLen * kvWidth), values = new Float32Array(s.ctxLen * kvWidth);
    for (let pos = 0; pos < s.ctxLen; pos++) {
      for (let h = 0; h < headsKv; h++) {
        const at = cacheIndex(shape, blockSize, s.blocks[Math.floor(pos / blockSize)], h, pos % blockSize);
        keys.set(expectK.subarray(at, at + D), (pos * headsKv + h) * D);
        values.set(expectV.subarray(at, at + D), (pos * headsKv + h) * D);
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
  for (const t of [kCache, vCache, qkv, out]) ctx.release(t);
}

Deno.test("paged attention: prefill chunks and decode steps in one batch", async (t) => {
  const ctx = await context();
  const tiny = { headsQ: 8, headsKv: 2, headDim: 64 }; // the fixture's decoder: 4 query heads per KV head
  await t.step(
    "one token, empty past",
    () => pagedCase(ctx, tiny, [{ past: 0, qLen: 1 }], { blockSize: 16, act: "f32", cache: "f32", seed: 1 }),
  );
  await t.step(
    "a batch: prefill from scratch, a chunk after a past, decode steps",
    () =>
      pagedCase(ctx, tiny, [{ past: 0, qLen: 37 }, { past: 50, qLen: 13 }, { past: 99, qLen: 1 }, {
        past: 16,
        qLen: 1,
      }], {
        blockSize: 16,
        act: "f32",
        cache: "f16",
        seed: 2,
      }),
  );
  await t.step(
    "odd block size and head dimension, f16 activations, no GQA",
    () =>
      pagedCase(ctx, { headsQ: 3, headsKv: 3, headDim: 40 }, [{ past: 7, qLen: 19 }, { past: 0, qLen: 3 }], {
        blockSize: 5,
        act: "f16",
        cache: "f16",
        seed: 3,
      }),
  );
  await t.step(
    "8 query heads per KV head, head dimension 1",
    () =>
      pagedCase(ctx, { headsQ: 16, headsKv: 2, headDim: 1 }, [{ past: 3, qLen: 4 }], {
        blockSize: 2,
        act: "f32",
        cache: "f32",
        seed: 4,
      }),
  );
  await t.step(
    "decode over long contexts split into key ranges and merged",
    () =>
      pagedCase(ctx, tiny, [{ past: 700, qLen: 1 }, { past: 129, qLen: 1 }, { past: 40, qLen: 2 }], {
        blockSize: 16,
        act: "f32",
        cache: "f32",
        splitKeys: 64,
        seed: 5,
      }),
  );
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
    () => denseCase(ctx, { headsQ: 16, headsKv: 16, headDim: 64 }, [256], "f16", 11).then(() => {}),
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
    /head dimension 256/,
  );
});
