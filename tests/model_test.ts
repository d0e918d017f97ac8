/**
 * The model against the float64 reference goldens of tiny-pixtral, on every weight layout, with f32 compute;
 * and the paths that must not change results: chunked prefill, decoding from the KV cache, batching, several
 * images in one pass.
 */
import assert from "node:assert/strict";
import { sample } from "../runtime/gpu/ops/sampling.ts";
import { joinRows } from "../runtime/gpu/tensor.ts";
import type { PixtralModel } from "../runtime/model/pixtral.ts";
import {
  argmaxRows,
  EXACT,
  goldenImage,
  gridOf,
  LAYOUTS,
  loadTiny,
  manifest,
  maxAbsDiff,
  readF32,
} from "./model_helpers.ts";

/** With f32 compute the reference's 0.02 bound is loose; the measured error is printed. */
const TOLERANCE = 0.02;
const VOCAB = 2048;
const mm = manifest.multimodal[0];

async function mmImage() {
  const { rows, cols } = gridOf(mm.ids);
  return await goldenImage(mm.pixels_from, rows, cols);
}

/** Greedy decoding from the KV cache after a prefill: the sampled ids and the logits of every decode step. */
async function greedy(
  model: PixtralModel,
  ids: number[],
  image: Awaited<ReturnType<typeof mmImage>>,
  n: number,
) {
  const { ctx, pool } = model;
  const blocks: number[] = [];
  assert.ok(pool.reserve(blocks, ids.length + n));
  const embeddings = await model.encodeImages([image]);
  const tokens: number[] = [], stepLogits: Float32Array[] = [];
  try {
    let feed = ids, past = 0;
    for (let i = 0; i < n; i++) {
      const rec = ctx.record("greedy");
      const { logits } = model.step(rec, [{
        ids: feed,
        past,
        blocks,
        images: past === 0 ? embeddings : undefined,
        logits: "last",
      }]);
      const chosen = rec.scratch("u32", [1]);
      sample(rec, { logits: logits!, ids: chosen, params: [{ temperature: 0 }] });
      const row = rec.read(logits!), id = rec.read(chosen);
      await rec.submit();
      stepLogits.push(new Float32Array((await row).buffer));
      tokens.push(new Uint32Array((await id).buffer)[0]);
      past += feed.length;
      feed = [tokens.at(-1)!];
    }
  } finally {
    pool.release(blocks);
    ctx.release(embeddings);
  }
  return { tokens, stepLogits };
}

for (const layout of ["mistral", "hf", "gguf"] as const) {
  Deno.test(`${layout} layout: vision embeddings and logits match the reference goldens (f32)`, async () => {
    const model = await loadTiny(layout, EXACT);
    try {
      // The loader stores q|k|v and w1|w3 as one matrix each, so these goldens check the fused products.
      for (const p of ["layers.1.", "vision_encoder.transformer.layers.1."]) {
        const names = ["attention.wq", "attention.wk", "attention.wv", "feed_forward.w1", "feed_forward.w3"];
        const [q, k, v, w1, w3] = names.map((n) => model.weight(`${p}${n}.weight`));
        assert.ok(
          joinRows([q, k, v]) && joinRows([w1, w3]),
          `${p}: q|k|v and w1|w3 are stored as one matrix`,
        );
      }
      for (const v of manifest.vision) {
        const [rows, cols] = v.grid[0];
        const out = await model.encodeImages([await goldenImage(v.pixels_from, rows, cols)]);
        const got = await model.ctx.readFloats(out);
        model.ctx.release(out);
        const diff = maxAbsDiff(got, await readF32(`golden/model/${v.embeddings_after_adapter.file}`));
        console.log(`${layout} ${v.name}: max |diff| ${diff.toExponential(2)}`);
        assert.ok(diff < TOLERANCE, `${v.name}: ${diff}`);
      }
      for (const t of manifest.text) {
        const got = await model.sequenceLogits(t.ids);
        const diff = maxAbsDiff(got, await readF32(`golden/model/${t.logits.file}`));
        console.log(`${layout} ${t.name}: max |diff| ${diff.toExponential(2)}`);
        assert.ok(diff < TOLERANCE, `${t.name}: ${diff}`);
        assert.deepEqual(argmaxRows(got, VOCAB), t.argmax);
      }
      const got = await model.sequenceLogits(mm.ids, [await mmImage()]);
      const diff = maxAbsDiff(got, await readF32(`golden/model/${mm.logits.file}`));
      console.log(`${layout} ${mm.name}: max |diff| ${diff.toExponential(2)}`);
      assert.ok(diff < TOLERANCE, `${mm.name}: ${diff}`);
    } finally {
      model.release();
    }
  });
}

Deno.test("decoding from the KV cache reproduces the greedy continuation and its logits", async () => {
  const model = await loadTiny("mistral", EXACT);
  try {
    const { tokens, stepLogits } = await greedy(model, mm.ids, await mmImage(), mm.greedy_8.length);
    // Tokens must agree up to the first step whose top-2 margin is within the tolerance.
    const decided = mm.top2_margin_at_each_greedy_step.findIndex((m) => m <= TOLERANCE);
    const n = decided < 0 ? tokens.length : decided + 1;
    assert.deepEqual(tokens.slice(0, n), mm.greedy_8.slice(0, n));
    const cont = await readF32(`golden/model/${mm.logits_with_continuation.file}`);
    stepLogits.forEach((row, i) => {
      const position = mm.ids.length - 1 + i;
      const diff = maxAbsDiff(row, cont.subarray(position * VOCAB, (position + 1) * VOCAB));
      assert.ok(diff < TOLERANCE, `decode step ${i}: ${diff}`);
    });
  } finally {
    model.release();
  }
});

Deno.test("chunked prefill and batched steps give the logits of one whole pass", async () => {
  const model = await loadTiny("mistral", EXACT);
  try {
    const image = await mmImage();
    const whole = await model.sequenceLogits(mm.ids, [image]);
    // Chunks of more than 8 rows take the same tiled kernel as the whole pass: bit-identical. Smaller ones
    // take the matrix-vector kernel, which sums in another order.
    for (const chunk of [9, 16]) {
      assert.deepEqual(await model.sequenceLogits(mm.ids, [image], { chunk }), whole, `chunk ${chunk}`);
    }
    for (const chunk of [1, 5]) {
      const diff = maxAbsDiff(await model.sequenceLogits(mm.ids, [image], { chunk }), whole);
      assert.ok(diff < 2e-3, `chunk ${chunk}: ${diff}`);
    }
    // Two sequences in one step (different lengths, one with an image) equal each alone.
    const text = manifest.text[1].ids;
    const alone = await model.sequenceLogits(text);
    const [a, b]: number[][] = [[], []];
    assert.ok(model.pool.reserve(a, mm.ids.length) && model.pool.reserve(b, text.length));
    const embeddings = await model.encodeImages([image]);
    const rec = model.ctx.record("batch");
    const out = model.step(rec, [
      { ids: text, past: 0, blocks: b, logits: "all" },
      { ids: mm.ids, past: 0, blocks: a, images: embeddings, logits: "all" },
    ]);
    const read = rec.read(out.logits!);
    await rec.submit();
    const both = new Float32Array((await read).buffer);
    model.pool.release(a);
    model.pool.release(b);
    model.ctx.release(embeddings);
    assert.deepEqual(out.rows, [{ start: 0, count: text.length }, {
      start: text.length,
      count: mm.ids.length,
    }]);
    assert.ok(maxAbsDiff(both.subarray(0, text.length * VOCAB), alone) < 1e-4);
    assert.ok(maxAbsDiff(both.subarray(text.length * VOCAB), whole) < 1e-4);
  } finally {
    model.release();
  }
});

Deno.test("an [IMG] id after the prompt's image rows (a generated one) is embedded as text", async () => {
  const model = await loadTiny("mistral", EXACT);
  const embeddings = await model.encodeImages([await mmImage()]);
  const [a, b]: number[][] = [[], []];
  const logits = async (steps: Parameters<PixtralModel["step"]>[1][]) => {
    let last: Promise<Uint8Array<ArrayBuffer>> | undefined;
    for (const step of steps) {
      const rec = model.ctx.record();
      const out = model.step(rec, step);
      if (out.logits) last = rec.read(out.logits);
      await rec.submit();
    }
    return new Float32Array((await last!).buffer);
  };
  try {
    const img = model.config.imageTokens.img, n = mm.ids.length;
    assert.ok(model.pool.reserve(a, n + 1) && model.pool.reserve(b, n + 1));
    // As a recomputed sequence prefills it: the prompt and the generated [IMG] in one step.
    const together = await logits([[{
      ids: [...mm.ids, img],
      past: 0,
      blocks: a,
      images: embeddings,
      logits: "last",
    }]]);
    // As it was generated: the prompt, then a decode step feeding the id.
    const apart = await logits([
      [{ ids: mm.ids, past: 0, blocks: b, images: embeddings, logits: "none" }],
      [{ ids: [img], past: n, blocks: b, logits: "last" }],
    ]);
    assert.ok(maxAbsDiff(together, apart) < 2e-3, `${maxAbsDiff(together, apart)}`);
  } finally {
    model.pool.release(a);
    model.pool.release(b);
    model.ctx.release(embeddings);
    model.release();
  }
});

Deno.test("several images in one pass give each image's own embeddings (block-diagonal attention)", async () => {
  const model = await loadTiny("mistral", EXACT);
  try {
    const images = await Promise.all(manifest.vision.map((v) => goldenImage(v.pixels_from, ...v.grid[0])));
    const alone = [];
    for (const image of images) {
      const t = await model.encodeImages([image]);
      alone.push(await model.ctx.readFloats(t));
      model.ctx.release(t);
    }
    const t = await model.encodeImages([images[1], images[0], images[1]]);
    const together = await model.ctx.readFloats(t);
    model.ctx.release(t);
    const expected = [alone[1], alone[0], alone[1]];
    let at = 0;
    for (const e of expected) {
      assert.ok(maxAbsDiff(together.subarray(at, at + e.length), e) < 1e-4);
      at += e.length;
    }
    assert.equal(at, together.length);
  } finally {
    model.release();
  }
});

Deno.test("quantized weights: error and top-1 agreement against the f32 goldens", async () => {
  const reference = [
    ...manifest.text.map((t) => ({ ids: t.ids, file: t.logits.file, images: [] as never[] })),
  ];
  const golden = await Promise.all(reference.map((r) => readF32(`golden/model/${r.file}`)));
  const mmGolden = await readF32(`golden/model/${mm.logits.file}`);
  const image = await mmImage();
  const rows: string[] = [];
  const agreement: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const cases: [string, keyof typeof LAYOUTS, object][] = [
    ["q8 (quantized on load)", "mistral", { quant: "q8", visionQuant: "f32", activations: "f32" }],
    ["q4 (quantized on load)", "mistral", { quant: "q4", visionQuant: "f32", activations: "f32" }],
    ["q4k (quantized on load)", "mistral", { quant: "q4k", visionQuant: "f32", activations: "f32" }],
    ["q4km (quantized on load)", "mistral", { quant: "q4km", visionQuant: "f32", activations: "f32" }],
    ["q5km (quantized on load)", "mistral", { quant: "q5km", visionQuant: "f32", activations: "f32" }],
    ["q6k (quantized on load)", "mistral", { quant: "q6k", visionQuant: "f32", activations: "f32" }],
    ["GGUF Q8_0", "ggufQ8", { activations: "f32" }],
    ["GGUF Q4_K_M", "ggufQ4KM", { activations: "f32" }],
    ["f16 activations", "mistral", { quant: "f32", visionQuant: "f32", activations: "f16" }],
  ];
  for (const [label, layout, options] of cases) {
    const model = await loadTiny(layout, options);
    try {
      let max = 0, agree = 0, total = 0;
      const outputs = [
        ...await Promise.all(reference.map((r) => model.sequenceLogits(r.ids))),
        await model.sequenceLogits(mm.ids, [image]),
      ];
      [...golden, mmGolden].forEach((g, i) => {
        max = Math.max(max, maxAbsDiff(outputs[i], g));
        const [want, got] = [argmaxRows(g, VOCAB), argmaxRows(outputs[i], VOCAB)];
        agree += want.filter((id, j) => id === got[j]).length;
        total += want.length;
      });
      agreement[label] = agree / total;
      errors[label] = max;
      rows.push(
        `| ${label} | ${max.toFixed(3)} | ${(100 * agree / total).toFixed(0)}% (${agree}/${total}) |`,
      );
    } finally {
      model.release();
    }
  }
  console.log(
    ["| weights | max abs logit error | top-1 agreement |", "| --- | --- | --- |", ...rows].join("\n"),
  );
  assert.ok(agreement["q8 (quantized on load)"] >= 0.85);
  // Q4_K's fitted scales and mins, 6-bit per 32 weights, err less than q4's one scale per 32 at the same size.
  assert.ok(errors["q4k (quantized on load)"] < errors["q4 (quantized on load)"], JSON.stringify(errors));
  // q4km is llama.cpp's Q4_K_M recipe: from the Mistral layout, the GGUF file's error; Q6_K where it matters
  // most (the output head) errs less than Q4_K throughout, Q5_K_M less, and Q6_K throughout less still.
  const [q4km, q5km, q4k, q6k] = ["q4km", "q5km", "q4k", "q6k"].map((f) =>
    errors[`${f} (quantized on load)`]
  );
  assert.ok(Math.abs(q4km - errors["GGUF Q4_K_M"]) < 0.05, JSON.stringify(errors));
  assert.ok(q6k < q5km && q5km < q4km && q4km < q4k, JSON.stringify(errors));
  assert.ok(agreement["q6k (quantized on load)"] >= 0.85);
  assert.ok(agreement["GGUF Q8_0"] >= 0.85);
  assert.ok(agreement["f16 activations"] >= 0.95);
});
