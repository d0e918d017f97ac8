/**
 * GPU sampling against the CPU reference: argmax exact; the seeded draw reproducible and equal to the reference's
 * inverse-CDF draw; top-k, top-p and min-p never picking outside their set over many draws, with frequencies
 * matching the kept distribution; penalties; Pixtral's 131072-token vocabulary.
 *
 * Logits are built at least 8e-5 apart (a hundred f32 ulps at their size), so the last-bit differences of GPU
 * arithmetic (exp, 1/T) cannot move a token across a set boundary.
 */
import assert from "node:assert/strict";
import type { GpuContext } from "../runtime/gpu/context.ts";
import {
  drawUniform,
  logprobRowRef,
  logprobRows,
  sample,
  sampleRef,
  type SamplingParams,
} from "../runtime/gpu/ops/sampling.ts";
import { context, seededRandom } from "./gpu_helpers.ts";

/** Distinct logits from -spread up, 2·spread/vocab apart (at least 1e-4), in a shuffled order. */
function logitsRow(vocab: number, seed: number, spread = 8): Float32Array<ArrayBuffer> {
  const random = seededRandom(seed);
  const order = Array.from({ length: vocab }, (_, i) => i).sort(() => random());
  const step = Math.max(1e-4, (2 * spread) / vocab);
  return Float32Array.from(order, (rank) => -spread + (rank + 0.2 * random()) * step);
}

async function runSample(
  ctx: GpuContext,
  rows: Float32Array[],
  params: SamplingParams[],
): Promise<{ ids: Uint32Array; logprobs: Float32Array }> {
  const vocab = rows[0].length;
  const logits = ctx.fromFloats("f32", [rows.length, vocab], Float32Array.from(rows.flatMap((r) => [...r])));
  const ids = ctx.tensor("u32", [rows.length]), logprobs = ctx.tensor("f32", [rows.length]);
  const rec = ctx.record();
  sample(rec, { logits, ids, logprobs, params });
  await rec.submit();
  const result = { ids: await ctx.readU32(ids), logprobs: await ctx.readFloats(logprobs) };
  for (const t of [logits, ids, logprobs]) ctx.release(t);
  return result;
}

Deno.test("greedy sampling is an exact argmax (lowest index on ties), with the raw log-probability", async () => {
  const ctx = await context();
  const vocab = 131072;
  const rows = [0, 1, 2, 3].map((s) => logitsRow(vocab, 10 + s));
  rows[1][77] = rows[1][130000] = 100; // a tie: the lower index wins
  rows[2][vocab - 1] = 50; // the last token
  const params: SamplingParams[] = [{ temperature: 0 }, { temperature: 0 }, { temperature: 0 }, {
    temperature: 1,
    topK: 1,
  }];
  const { ids, logprobs } = await runSample(ctx, rows, params);
  rows.forEach((row, s) => {
    const ref = sampleRef(row, params[s]);
    assert.equal(ids[s], ref.id, `row ${s}`);
    assert.ok(
      Math.abs(logprobs[s] - ref.logprob) < 1e-4,
      `row ${s} logprob ${logprobs[s]} vs ${ref.logprob}`,
    );
  });
  assert.equal(ids[1], 77);
  assert.equal(ids[2], vocab - 1);
});

Deno.test("seeded draws are reproducible and equal the reference's inverse-CDF draw", async () => {
  const ctx = await context();
  const vocab = 131072;
  const row = logitsRow(vocab, 20, 4);
  const params: SamplingParams[] = Array.from({ length: 6 }, (_, i) => ({
    temperature: 0.7,
    topP: [1, 0.9, 0.5, 0.95, 1, 0.8][i],
    topK: [0, 0, 50, 1000, 0, 0][i],
    minP: [0, 0, 0, 0, 0.05, 0][i],
    seed: 1234,
    counter: i,
  }));
  const rows = params.map(() => row);
  const first = await runSample(ctx, rows, params);
  const second = await runSample(ctx, rows, params);
  assert.deepEqual(first.ids, second.ids);
  params.forEach((p, s) => {
    const ref = sampleRef(row, p);
    assert.equal(ref.allowed[first.ids[s]], 1, `row ${s}: token ${first.ids[s]} is outside the allowed set`);
    assert.equal(first.ids[s], ref.id, `row ${s}`);
  });
});

Deno.test("top-k, top-p and min-p never pick outside their sets over many draws", async (t) => {
  const ctx = await context();
  const vocab = 600, draws = 1200;
  const row = logitsRow(vocab, 30, 3);
  const settings: [string, Omit<SamplingParams, "counter">][] = [
    ["top-k 5", { temperature: 1, topK: 5, seed: 1 }],
    ["top-p 0.6", { temperature: 0.8, topP: 0.6, seed: 2 }],
    ["min-p 0.2", { temperature: 1.2, minP: 0.2, seed: 3 }],
    ["top-k 40, top-p 0.9, min-p 0.01", { temperature: 2, topK: 40, topP: 0.9, minP: 0.01, seed: 4 }],
    ["temperature alone", { temperature: 0.5, seed: 5 }],
  ];
  for (const [name, setting] of settings) {
    await t.step(name, async () => {
      const params = Array.from({ length: draws }, (_, counter) => ({ ...setting, counter }));
      const { ids } = await runSample(ctx, Array(draws).fill(row), params);
      const ref = sampleRef(row, params[0]);
      const kept = ref.allowed.reduce((a, b) => a + b, 0);
      const counts = new Float64Array(vocab);
      ids.forEach((id, i) => {
        assert.equal(ref.allowed[id], 1, `draw ${i}: token ${id} is outside the ${kept} allowed`);
        counts[id]++;
      });
      // Frequencies follow the kept distribution (within 5 standard deviations each).
      for (let i = 0; i < vocab; i++) {
        const expected = ref.probs[i] * draws, sd = Math.sqrt(expected * (1 - ref.probs[i]) + 1);
        assert.ok(
          Math.abs(counts[i] - expected) <= 5 * sd,
          `token ${i}: ${counts[i]} draws, expected ${expected}`,
        );
      }
      if (name === "top-k 5") assert.equal(kept, 5);
    });
  }
});

Deno.test("repetition, presence and frequency penalties change the choice as the reference does", async () => {
  const ctx = await context();
  const row = logitsRow(500, 40, 2);
  const top = row.indexOf(Math.max(...row));
  const penalties = { ids: [top, 3, 9], counts: [2, 0, 1] };
  const params: SamplingParams[] = [
    { temperature: 0, repetitionPenalty: 3, penalties },
    { temperature: 0, presencePenalty: 1.5, frequencyPenalty: 1, penalties },
    { temperature: 0, penalties: { ids: [top], counts: [0] }, presencePenalty: 5 }, // count 0: presence skips
    {
      temperature: 0.9,
      topK: 3,
      repetitionPenalty: 1.3,
      frequencyPenalty: 0.5,
      penalties,
      seed: 9,
      counter: 3,
    },
  ];
  const { ids } = await runSample(ctx, params.map(() => row), params);
  params.forEach((p, s) => assert.equal(ids[s], sampleRef(row, p).id, `row ${s}`));
  assert.notEqual(ids[0], top);
  assert.equal(ids[2], top);
});

Deno.test("penalties count a decode run's earlier draws, read from the rows above the step's ids", async () => {
  const ctx = await context();
  const vocab = 500;
  const rows = [logitsRow(vocab, 41, 2), logitsRow(vocab, 42, 2), logitsRow(vocab, 43, 2)];
  const second = (r: Float32Array) => [...r.keys()].sort((a, b) => r[b] - r[a])[1];
  // Sequence 1: token 11 far ahead of token 12, which is ahead of the rest.
  rows[1][11] = 5;
  rows[1][12] = 3.5;
  const settings: Omit<SamplingParams, "penalties">[] = [
    { temperature: 0, repetitionPenalty: 1.5, presencePenalty: 0.5, frequencyPenalty: 0.25 },
    { temperature: 0, frequencyPenalty: 1 },
    { temperature: 0.8, topK: 4, repetitionPenalty: 2, seed: 5, counter: 7 },
  ];
  const listed = [
    { ids: [second(rows[0]), 3], counts: [1, 0] },
    { ids: [11], counts: [2] },
    { ids: [second(rows[2]), 9], counts: [0, 1] },
  ];
  const params = settings.map((p, s): SamplingParams => ({ ...p, penalties: listed[s] }));
  // What the list alone gives; then two earlier draws per sequence: sequence 0's choice without them and a
  // listed prompt token (count 0); 11 (a third time: 5 - 3 < 3.5 - 1) and 12 (after them, 12 leads); a listed
  // prompt token and a new one.
  const alone = await runSample(ctx, rows, params);
  const earlier = [[alone.ids[0], 3], [11, 12], [second(rows[2]), 5]];
  // The same penalties with the earlier draws merged into the list, as the host counts them once read back.
  const merged = settings.map((p, s): SamplingParams => {
    const counts = new Map(listed[s].ids.map((id, i) => [id, listed[s].counts[i]]));
    for (const id of earlier[s]) counts.set(id, (counts.get(id) ?? 0) + 1);
    return { ...p, penalties: { ids: [...counts.keys()], counts: [...counts.values()] } };
  });
  const logits = ctx.fromFloats("f32", [3, vocab], Float32Array.from(rows.flatMap((r) => [...r])));
  // The run's ids for 5 sequences; these are its last 3 (columns 2..4, as the engine's groups past the first).
  const run = ctx.tensor("u32", [3, 5]), logprobs = ctx.tensor("f32", [3]);
  const words = Uint32Array.from([0, 1, 2].flatMap((j) => [7, 7, ...earlier.map((e) => e[j] ?? 0)]));
  ctx.write(run, new Uint8Array(words.buffer));
  const rec = ctx.record();
  sample(rec, { logits, ids: run.sliceCols(2, 3), logprobs, params });
  await rec.submit();
  const drawn = (await ctx.readU32(run)).slice(12), lp = await ctx.readFloats(logprobs);
  for (const t of [logits, run, logprobs]) ctx.release(t);
  merged.forEach((p, s) => {
    const ref = sampleRef(rows[s], p);
    assert.equal(drawn[s], ref.id, `sequence ${s}`);
    assert.ok(Math.abs(lp[s] - ref.logprob) < 1e-5);
  });
  // The earlier draws moved sequence 0's choice; 11's listed count and its draw together keep it behind 12.
  assert.notEqual(drawn[0], alone.ids[0]);
  assert.equal(drawn[1], 12);
});

Deno.test("logit biases move the choice as the reference does, after the penalties", async () => {
  const ctx = await context();
  const row = logitsRow(700, 41, 2);
  const order = [...row.keys()].sort((a, b) => row[b] - row[a]);
  const [top, second] = order;
  const low = order.at(-1)!;
  const params: SamplingParams[] = [
    // -100 bans the most likely token, +100 makes the least likely the choice.
    { temperature: 0, bias: { ids: [top], values: [-100] } },
    { temperature: 0, bias: { ids: [low, 5], values: [100, -3] } },
    // A small bias against the penalties: a repeated second token, lifted back over the first.
    {
      temperature: 0,
      repetitionPenalty: 1.5,
      penalties: { ids: [top], counts: [1] },
      bias: { ids: [top], values: [4] },
    },
    { temperature: 0.8, topK: 5, seed: 3, counter: 7, bias: { ids: [second, low], values: [2.5, 9] } },
  ];
  const { ids, logprobs } = await runSample(ctx, params.map(() => row), params);
  params.forEach((p, s) => assert.equal(ids[s], sampleRef(row, p).id, `row ${s}`));
  assert.equal(ids[0], second);
  assert.equal(ids[1], low);
  // The log-probability stays the model's own.
  assert.ok(Math.abs(logprobs[1] - sampleRef(row, params[1]).logprob) < 1e-4);
  assert.ok(logprobs[1] < logprobs[0]);
});

Deno.test("scoring rows: each target's log-probability and the most likely tokens, against the reference", async () => {
  const ctx = await context();
  for (const [rows, vocab, top] of [[1, 7, 7], [5, 1000, 1], [3, 131072, 20], [2, 300, 0]]) {
    const data = Array.from({ length: rows }, (_, r) => logitsRow(vocab, 60 + r, r === 1 ? 30 : 8));
    // Ties, for the maximum and below it: the lower index first.
    if (rows > 2) {
      const max = data[2].reduce((a, b) => Math.max(a, b));
      data[2][vocab - 1] = data[2][5] = max + 1;
      data[2][vocab - 2] = data[2][9] = data[2][300] = max + 0.5;
    }
    const targets = data.map((_, r) => (r * 7919 + 3) % vocab);
    const logits = ctx.fromFloats("f32", [rows, vocab], Float32Array.from(data.flatMap((r) => [...r])));
    const rec = ctx.record();
    // Targets from the host, or from the GPU (a decode step's draws) into a given tensor.
    const out = logprobRows(rec, logits, targets, { top });
    const gpuTargets = rec.upload("u32", [1, rows], Uint32Array.from(targets));
    const into = ctx.tensor("u32", [rows, 1 + 2 * top]);
    logprobRows(rec, logits, gpuTargets, { top, out: into });
    const reads = [rec.read(out), rec.read(into)];
    await rec.submit();
    const [bytes, again] = await Promise.all(reads);
    assert.deepEqual(again, bytes);
    const words = new Uint32Array(bytes.buffer), floats = new Float32Array(words.buffer);
    const w = 1 + 2 * top;
    assert.equal(words.length, rows * w);
    data.forEach((row, r) => {
      const want = logprobRowRef(row, targets[r], top);
      const at = `${rows}x${vocab} row ${r}`;
      assert.ok(Math.abs(floats[w * r] - want.logprob) < 1e-4, `${at}: ${floats[w * r]}`);
      want.top.forEach(({ id, logprob }, k) => {
        assert.equal(words[w * r + 1 + 2 * k], id, `${at} rank ${k}`);
        assert.ok(Math.abs(floats[w * r + 2 + 2 * k] - logprob) < 1e-4, `${at} rank ${k}`);
      });
    });
    if (rows > 2 && top >= 5) {
      assert.deepEqual([1, 3, 5, 7, 9].map((k) => words[2 * w + k]), [5, vocab - 1, 9, 300, vocab - 2]);
    }
    if (rows > 2) assert.equal(words[2 * w + 1], 5);
    ctx.release(logits);
    ctx.release(into);
  }
});

/** A mask allowing the ids `allowed(id)` says, over `vocab` tokens. */
function maskOf(vocab: number, allowed: (id: number) => boolean): Uint32Array {
  const mask = new Uint32Array(Math.ceil(vocab / 32));
  for (let id = 0; id < vocab; id++) if (allowed(id)) mask[id >> 5] |= 1 << (id & 31);
  return mask;
}

Deno.test("an output format's mask: the choice stays among its tokens, greedy or drawn, with penalties", async () => {
  const ctx = await context();
  const vocab = 131072;
  const row = logitsRow(vocab, 50, 6);
  const top = row.reduce((best, v, i) => v > row[best] ? i : best, 0);
  const random = seededRandom(51);
  // Sparse (a JSON structural state), the best token forbidden, one token, and the last word partly used.
  const sparse = maskOf(vocab, () => random() < 0.001);
  const masks = [
    sparse,
    maskOf(vocab, (id) => id !== top),
    maskOf(vocab, (id) => id === 4099),
    maskOf(vocab, (id) => id >= vocab - 5),
  ];
  const params: SamplingParams[] = [
    { temperature: 0, mask: masks[0] },
    { temperature: 0, mask: masks[1] },
    { temperature: 1.5, topP: 0.9, seed: 3, counter: 1, mask: masks[2] },
    { temperature: 0.7, topK: 2, minP: 0.1, seed: 4, counter: 2, mask: masks[3] },
    { temperature: 0, repetitionPenalty: 4, penalties: { ids: [top], counts: [1] }, mask: masks[0] },
  ];
  const { ids, logprobs } = await runSample(ctx, params.map(() => row), params);
  params.forEach((p, s) => {
    const ref = sampleRef(row, p);
    assert.equal(ids[s], ref.id, `row ${s}`);
    assert.ok((p.mask![ids[s] >> 5] >>> (ids[s] & 31)) & 1, `row ${s}: token ${ids[s]} is masked`);
    // The log-probability is the model's, not the constrained distribution's.
    assert.ok(Math.abs(logprobs[s] - ref.logprob) < 1e-4, `row ${s} logprob`);
  });
  assert.notEqual(ids[1], top);
  assert.equal(ids[2], 4099);

  // A temperature so small that the allowed tokens' scaled logits overflow to -inf: still one of them.
  const low = Float32Array.from({ length: 600 }, (_, i) => -60 + i / 1000);
  const few = maskOf(600, (id) => id === 100 || id === 200 || id === 300);
  const tiny = await runSample(ctx, [low], [{ temperature: 1e-37, seed: 1, counter: 0, mask: few }]);
  assert.ok([100, 200, 300].includes(tiny.ids[0]), `token ${tiny.ids[0]}`);

  // Many draws with a mask of 40 tokens among 600: never outside it, frequencies as the reference's.
  const small = logitsRow(600, 52, 3), draws = 1200;
  const mask = maskOf(600, (id) => id % 15 === 7);
  const many = Array.from({ length: draws }, (_, counter) => ({ temperature: 1, seed: 8, counter, mask }));
  const drawn = await runSample(ctx, Array(draws).fill(small), many);
  const ref = sampleRef(small, many[0]);
  const counts = new Float64Array(600);
  drawn.ids.forEach((id) => {
    assert.equal(id % 15, 7, `token ${id} is outside the mask`);
    counts[id]++;
  });
  for (let i = 0; i < 600; i++) {
    const expected = ref.probs[i] * draws, sd = Math.sqrt(expected * (1 - ref.probs[i]) + 1);
    assert.ok(
      Math.abs(counts[i] - expected) <= 5 * sd,
      `token ${i}: ${counts[i]} draws, expected ${expected}`,
    );
  }
});

Deno.test("the draw is a pure function of (seed, counter)", () => {
  assert.equal(drawUniform(7, 3), drawUniform(7, 3));
  assert.notEqual(drawUniform(7, 3), drawUniform(7, 4));
  assert.notEqual(drawUniform(7, 3), drawUniform(8, 3));
  const values = Array.from({ length: 10000 }, (_, i) => drawUniform(42, i));
  assert.ok(values.every((u) => u >= 0 && u < 1));
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
});

Deno.test("invalid sampling settings are refused with the setting named", async () => {
  const ctx = await context();
  const rec = ctx.record();
  const logits = ctx.tensor("f32", [1, 10]), ids = ctx.tensor("u32", [1]);
  const bad: [SamplingParams, RegExp][] = [
    [{ temperature: -1 }, /temperature/],
    [{ temperature: 1, topP: 0 }, /top_p/],
    [{ temperature: 0, mask: new Uint32Array(1) }, /mask/],
    [{ temperature: 0, mask: new Uint32Array(2).fill(1) }, /mask/],
    // Only padding bits beyond the 10 tokens set.
    [{ temperature: 0, mask: Uint32Array.of(0xfffffc00) }, /mask/],
    [{ temperature: 1, minP: 2 }, /min_p/],
    [{ temperature: 1, topK: 1.5 }, /top_k/],
    [{ temperature: 1, penalties: { ids: [10], counts: [1] } }, /penalty id 10/],
    [{ temperature: 1, penalties: { ids: [1, 1], counts: [1, 1] } }, /repeated/],
    [{ temperature: 1, bias: { ids: [10], values: [1] } }, /bias id 10/],
    [{ temperature: 1, bias: { ids: [2], values: [NaN] } }, /not finite/],
  ];
  for (const [params, message] of bad) {
    assert.throws(() => sample(rec, { logits, ids, params: [params] }), message);
  }
});
