/**
 * The engine on the tiny model (f32): batching changes no token, streams neither lose nor repeat tokens,
 * cancellation frees memory at once, and limits are enforced before any GPU work.
 */
import assert from "node:assert/strict";
import {
  EngineBusyError,
  EngineClosedError,
  type GenerateRequest,
  GREEDY,
  RequestTooLongError,
  type TokenEvent,
} from "../runtime/engine/engine.ts";
import { LocalEngine } from "../runtime/engine/local.ts";
import { GpuContext } from "../runtime/gpu/context.ts";
import { EXACT, goldenImage, gridOf, loadTiny, manifest } from "./model_helpers.ts";

const mm = manifest.multimodal[0];
const image = await goldenImage(mm.pixels_from, gridOf(mm.ids).rows, gridOf(mm.ids).cols);

function seeded(seed: number) {
  return () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

/** 32 requests: text prompts of 1 to 24 tokens, some with the image, greedy or seeded sampling. */
function requests(): GenerateRequest[] {
  const random = seeded(11);
  return Array.from({ length: 32 }, (_, i) => {
    const text = Array.from(
      { length: 1 + Math.floor(random() * 24) },
      () => 1000 + Math.floor(random() * 1048),
    );
    const withImage = i % 8 === 0;
    return {
      ids: withImage ? [1, 3, ...mm.ids.slice(2, 17), ...text, 4] : [1, 3, ...text, 4],
      images: withImage ? [image] : [],
      sampling: i % 3 === 0 ? { ...GREEDY, temperature: 0.8, topP: 0.9, seed: i } : GREEDY,
      maxTokens: 3 + (i % 4),
      stopIds: [2],
    };
  });
}

/** A stream's ids, events and finish; the cached-token count (what the prefix cache held then) left out. */
async function collect(stream: AsyncGenerator<TokenEvent, string>) {
  const ids: number[] = [], events: TokenEvent[] = [];
  while (true) {
    const { value, done } = await stream.next();
    if (done) return { ids, events, finish: value };
    ids.push(value.id);
    const { cached: _, ...event } = value;
    events.push(event);
  }
}

Deno.test("32 concurrent streams yield exactly the tokens each yields alone, then free every KV block", async () => {
  const model = await loadTiny("mistral", EXACT);
  const engine = new LocalEngine(model, { prefillChunk: 16, prefillBudget: 128 });
  try {
    const pool = model.ctx.pool;
    const alone = [];
    for (const r of requests()) alone.push(await collect(engine.generate(r)));
    const baseline = pool.stats.inUseBytes;
    const together = await Promise.all(requests().map((r) => collect(engine.generate(r))));
    assert.deepEqual(together, alone);
    for (const [i, out] of alone.entries()) {
      assert.ok(out.ids.length <= requests()[i].maxTokens);
      assert.equal(out.finish, out.ids.length === requests()[i].maxTokens ? "length" : "stop");
    }
    assert.equal(model.pool.usedBlocks, 0);
    assert.equal(pool.stats.inUseBytes, baseline);
    // The second round took the image prompts' first blocks from the prefix cache, with the same results.
    const { prefixHitTokens, gpuSubmits, ...stats } = engine.stats();
    assert.ok(prefixHitTokens! > 0);
    assert.ok(gpuSubmits! > 0);
    assert.deepEqual(stats, {
      waiting: 0,
      maxWaiting: 320, // the queue and the free running places
      running: 0,
      kvBlocks: model.pool.blocks,
      kvBlocksUsed: 0,
      kvUsage: 0,
      preemptions: 0,
    });
  } finally {
    await engine.close();
  }
});

/** A request that runs for long: 200 tokens, no stop id. */
const long: GenerateRequest = {
  ids: [1, 3, ...Array(20).fill(1100), 4],
  images: [],
  sampling: GREEDY,
  maxTokens: 200,
  stopIds: [],
};

Deno.test("a lost GPU device ends running, queued and later requests with its reason; none hangs", async () => {
  // A device of its own, destroyed behind the context's back: the state a driver reset or GPU fault leaves.
  const ctx = await GpuContext.create();
  const model = await loadTiny("mistral", { kvTokens: 256 }, ctx);
  const engine = new LocalEngine(model, { maxRunning: 1 });
  try {
    const running = engine.generate(long);
    await running.next();
    const lost = /GPU device was lost \(destroyed.*\); the server must be restarted/;
    const ended = [
      assert.rejects(collect(running), lost),
      assert.rejects(collect(engine.generate(long)), lost), // queued: one sequence runs at a time
    ];
    ctx.device.destroy();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise((_, reject) =>
      timer = setTimeout(() => reject(new Error("a stream hung")), 20_000)
    );
    await Promise.race([Promise.all(ended), deadline]).finally(() => clearTimeout(timer));
    assert.match((await engine.failed).message, lost);
    assert.throws(
      () => engine.generate(long),
      (err) => err instanceof EngineClosedError && lost.test(err.message),
    );
  } finally {
    await engine.close();
  }
});

Deno.test("weights holding NaN end greedy and sampled streams with an error that says so", async () => {
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 256 });
  const norm = model.weight("norm.weight");
  model.ctx.device.queue.writeBuffer(norm.buffer, norm.offset, new Float32Array(norm.size).fill(NaN));
  const engine = new LocalEngine(model);
  try {
    for (const temperature of [0, 1]) {
      await assert.rejects(
        collect(engine.generate({ ...long, maxTokens: 3, sampling: { ...GREEDY, temperature, seed: 1 } })),
        /logits that are not numbers \(NaN or Inf\)/,
      );
    }
  } finally {
    await engine.close();
  }
});

Deno.test("cancelled and abandoned streams return their KV blocks; limits are checked up front", async () => {
  const model = await loadTiny("mistral", { kvTokens: 256 });
  const engine = new LocalEngine(model, { maxQueue: 4, maxRunning: 2, prefillChunk: 16 });
  try {
    // Abort through the signal while tokens flow.
    const controller = new AbortController();
    const stream = engine.generate(long, controller.signal);
    await stream.next();
    await stream.next();
    controller.abort();
    await assert.rejects(collect(stream), /cancelled/);
    // Stop reading (a client that disconnects): return() frees the sequence.
    const abandoned = engine.generate(long);
    await abandoned.next();
    await abandoned.return("stop");
    // Every block comes back once the engine passes a step boundary.
    await collect(engine.generate({ ...long, maxTokens: 2 }));
    assert.equal(model.pool.usedBlocks, 0);

    assert.throws(() => engine.generate({ ...long, maxTokens: 1000 }), RequestTooLongError);
    assert.throws(() => engine.generate({ ...long, ids: [] }), RequestTooLongError);
    assert.throws(() => engine.generate({ ...long, ids: [5000] }), /not in the vocabulary/);
    // An image file (a gateway's, which the internal route decodes first) never reaches the model.
    const file = { rows: 1, cols: 1, bytes: new Uint8Array(8), resize: "mistral" as const };
    assert.throws(() => engine.generate({ ...long, ids: [1, 10, 13], images: [file] }), /not decoded/);
    // A burst arriving between two steps waits to be admitted: the free running places count with the queue
    // (2 + 4), so that it is not refused while there is room to run it (an adversarial helper's case).
    const queued = Array.from({ length: 6 }, () => engine.generate({ ...long, maxTokens: 3 }));
    assert.throws(() => engine.generate(long), EngineBusyError);
    await Promise.all(queued.map(collect));
  } finally {
    await engine.close();
  }
});

Deno.test("requests with images are refused while the images of those waiting pass the budget", async () => {
  const model = await loadTiny("mistral", { kvTokens: 256 });
  const bytes = image.pixels.byteLength;
  // Room for two waiting images: a third waits for a slot, and text still queues.
  const engine = new LocalEngine(model, { maxRunning: 1, prefillChunk: 16, maxQueuedImageBytes: 2 * bytes });
  const withImage = {
    ids: [1, 3, ...mm.ids.slice(2, 17), 4],
    images: [image],
    sampling: GREEDY,
    maxTokens: 2,
    stopIds: [],
  };
  try {
    const streams = [engine.generate(withImage), engine.generate(withImage), engine.generate(withImage)];
    assert.throws(() => engine.generate(withImage), (err: Error) => {
      assert.ok(err instanceof EngineBusyError);
      assert.match(err.message, /MiB of images are already waiting/);
      return true;
    });
    streams.push(engine.generate({ ...withImage, ids: [1, 3, 1100, 4], images: [] }));
    await Promise.all(streams.map(collect));
    await collect(engine.generate(withImage)); // the queue drained: images pass again
  } finally {
    await engine.close();
  }
});

/** A long answer started first: under a small KV pool, newer sequences give way to it. */
const OLDER = {
  ids: [1, 3, ...Array(11).fill(1100), 4],
  images: [],
  sampling: GREEDY,
  maxTokens: 45,
  stopIds: [],
};

Deno.test("a full KV cache preempts the newest unscheduled sequence, never one already in the step", async () => {
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 64 });
  const engine = new LocalEngine(model, { prefillChunk: 1 });
  try {
    const b = {
      ids: [1, 3, ...Array(27).fill(1200), 4],
      images: [],
      sampling: GREEDY,
      maxTokens: 4,
      stopIds: [],
    };
    const alone = await collect(engine.generate(OLDER));
    const [withB, bOut] = await Promise.all([collect(engine.generate(OLDER)), collect(engine.generate(b))]);
    assert.deepEqual(withB, alone); // the older sequence is never the one preempted
    assert.equal(bOut.ids.length, 4);
    assert.equal(model.pool.usedBlocks, 0);
  } finally {
    await engine.close();
  }
});

Deno.test("a prompt read first for its few tokens left that finds the KV cache full lets the older one go on", async () => {
  // 4 blocks of 16: a (60 tokens) and b (40), read 16 at a time in turns, fill them before either is read; b,
  // with fewer tokens left, cannot take an older prompt's blocks, so a goes on, taking b's (the engine failed
  // here: "the KV cache cannot hold one sequence").
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 64 });
  // (Without the prefix cache: the prompts alone would leave their blocks for the prompts together.)
  const engine = new LocalEngine(model, { prefillChunk: 16, decodeSteps: 1, prefixCache: false });
  try {
    const prompt = (n: number, from: number) => ({
      ids: [1, 3, ...Array.from({ length: n - 3 }, (_, i) => from + i), 4],
      images: [],
      sampling: GREEDY,
      maxTokens: 2,
      stopIds: [],
    });
    const a = prompt(60, 1200), b = prompt(40, 1500), c = { ...prompt(5, 1700), maxTokens: 1 };
    const alone = [await collect(engine.generate(a)), await collect(engine.generate(b))];
    // a and b queue while c runs, and are admitted together when it ends.
    const [, ...together] = await Promise.all([c, a, b].map((p) => collect(engine.generate(p))));
    assert.deepEqual(together, alone);
    assert.ok((engine.stats().preemptions ?? 0) > 0, "b gave way");
  } finally {
    await engine.close();
  }
});

Deno.test("a preempted sequence is computed again to exactly the tokens and log-probabilities of an unbroken run", async (t) => {
  // Prefill kernels and decode steps round differently: generated tokens must come back into the cache through
  // decode steps, as they first went in.
  for (const act of ["f32", "f16"] as const) {
    await t.step(`${act} activations and cache`, async () => {
      const model = await loadTiny("mistral", {
        quant: act === "f32" ? "f32" : "q4",
        activations: act,
        kv: act,
        kvTokens: 64,
      });
      const engine = new LocalEngine(model, { decodeSteps: 1 });
      try {
        const b = {
          ids: [1, 3, 1300, 1301, 4],
          images: [],
          sampling: { ...GREEDY, temperature: 1, seed: 5 },
          maxTokens: 40,
          stopIds: [],
          topLogprobs: 0,
        };
        const alone = await collect(engine.generate(b));
        const before = engine.stats().preemptions ?? 0;
        // When both need a block and none is free, b (the newest) gives way, midway through its answer.
        const [, preempted] = await Promise.all([
          collect(engine.generate(OLDER)),
          collect(engine.generate(b)),
        ]);
        assert.ok((engine.stats().preemptions ?? 0) > before, "b was not preempted");
        assert.deepEqual(preempted.events, alone.events);
        assert.equal(model.pool.usedBlocks, 0);
      } finally {
        await engine.close();
      }
    });
  }
});

Deno.test("an image is encoded a few layers per step while other streams decode, to the same answer", async () => {
  const model = await loadTiny("mistral", EXACT);
  const engine = new LocalEngine(model, { decodeSteps: 1 });
  try {
    const text = { ids: [1, 3, 1100, 1101, 4], images: [], sampling: GREEDY, maxTokens: 12, stopIds: [] };
    const withImage = { ...requests()[0], maxTokens: 3 };
    const alone = await collect(engine.generate(withImage));
    const a = engine.generate(text);
    const first = await a.next(); // a is decoding
    assert.ok(!first.done);
    const b = engine.generate(withImage);
    const seen: string[] = [];
    const drain = async (name: string, stream: AsyncGenerator<TokenEvent, string>) => {
      const ids: number[] = [];
      while (true) {
        const next = await stream.next();
        if (next.done) return ids;
        seen.push(name);
        ids.push(next.value.id);
      }
    };
    const [, bIds] = await Promise.all([drain("a", a), drain("b", b)]);
    assert.deepEqual(bIds, alone.ids);
    // The vision pass (patch embedding, each layer, the adapter) went two stages a step, each step decoding a.
    const stages = model.config.vision!.nLayers + 2;
    assert.ok(seen.indexOf("b") >= Math.ceil(stages / 2) - 1, seen.join(" "));
  } finally {
    await engine.close();
  }
});

Deno.test("requests the sampler or the model cannot take are refused before they reach a step", async () => {
  const model = await loadTiny("mistral", { kvTokens: 256 });
  const engine = new LocalEngine(model);
  try {
    const ok = { ids: [1, 3, 1100, 4], images: [], sampling: GREEDY, maxTokens: 2, stopIds: [] };
    const refused = [
      { ...ok, sampling: { ...GREEDY, topP: 0 } },
      { ...ok, sampling: { ...GREEDY, seed: 1.5 } },
      { ...ok, sampling: { ...GREEDY, temperature: Number.NaN } },
      { ...ok, ids: [1, 3, 10, 13, 4] }, // an [IMG] token without its image
      { ...ok, maxTokens: 0 },
    ];
    for (const r of refused) assert.throws(() => engine.generate(r), RangeError, JSON.stringify(r.sampling));
    // Out-of-range values that have a meaning are taken: top_k above the vocabulary, a 64-bit seed.
    const wide = await collect(
      engine.generate({ ...ok, sampling: { ...GREEDY, topK: 5e9, seed: 2 ** 52 + 7 } }),
    );
    assert.equal(wide.ids.length, 2);
  } finally {
    await engine.close();
  }
});

Deno.test("decode runs (steps fed on the GPU between readbacks) change no token, log-probability or finish", async () => {
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 1024 });
  // Steps fed on the GPU, and runs fed by the run before them (submitted before its tokens were read back).
  let fed = 0, chained = 0;
  let lastFed: GPUBuffer | undefined;
  const step = model.step.bind(model);
  model.step = (rec, steps) => {
    const feed = steps.map((s) => "buffer" in s.ids ? s.ids.buffer : undefined)[0];
    if (feed) fed++;
    if (feed && lastFed && feed !== lastFed) chained++;
    lastFed = feed;
    return step(rec, steps);
  };
  const base = { images: [], stopIds: [] as number[], topLogprobs: 0 };
  const prompts = [[1, 3, 1100, 1200, 4], [1, 3, ...Array(9).fill(1300), 4], [1, 3, 1500, 4]];
  const requests = (stopId?: number): GenerateRequest[] => [
    // 21 tokens: two runs of 8 and one of 5.
    { ...base, ids: prompts[0], sampling: GREEDY, maxTokens: 21 },
    { ...base, ids: prompts[1], sampling: { ...GREEDY, temperature: 0.9, topK: 50, seed: 7 }, maxTokens: 13 },
    { ...base, ids: prompts[2], sampling: { ...GREEDY, temperature: 1.2, seed: 8 }, maxTokens: 17 },
    // Stops mid-run on a token it generates.
    {
      ...base,
      ids: prompts[0],
      sampling: GREEDY,
      maxTokens: 21,
      stopIds: stopId === undefined ? [] : [stopId],
    },
  ];
  const oneByOne = new LocalEngine(model, { decodeSteps: 1 });
  const first = await Promise.all(requests().map((r) => collect(oneByOne.generate(r))));
  assert.equal(fed, 0);
  const stopId = first[3].events[10].id;
  const stopAt = first[3].ids.indexOf(stopId);
  const expected = await Promise.all(requests(stopId).map((r) => collect(oneByOne.generate(r))));
  assert.equal(expected[3].finish, "stop");
  assert.equal(expected[3].ids.length, stopAt);

  const runs = new LocalEngine(model, { decodeSteps: 8, decodeRunMs: Infinity });
  try {
    const got = await Promise.all(requests(stopId).map((r) => collect(runs.generate(r))));
    assert.deepEqual(got, expected);
    assert.ok(fed > 0, "decode runs were used");
    assert.ok(chained > 0, "runs were chained");
    // Penalties count the draws of the run they are in (on the GPU); such runs are not chained, the host's counts
    // being a run behind then.
    const penalised: GenerateRequest[] = [
      // Negative ones too: the answers repeat few tokens.
      { ...requests()[0], sampling: { ...GREEDY, frequencyPenalty: -2 } },
      {
        ...requests()[1],
        sampling: { ...requests()[1].sampling, presencePenalty: -3 },
      },
      { ...requests()[2], sampling: { ...requests()[2].sampling, repetitionPenalty: 0.8 } },
    ];
    const alone = await Promise.all(penalised.map((r) => collect(oneByOne.generate(r))));
    penalised.forEach((_, i) => assert.notDeepEqual(alone[i].ids, expected[i].ids, `request ${i}'s penalty`));
    fed = chained = 0;
    assert.deepEqual(await Promise.all(penalised.map((r) => collect(runs.generate(r)))), alone);
    assert.deepEqual(await collect(runs.generate(penalised[0])), alone[0]);
    assert.ok(fed > 0, "penalised decode runs");
    assert.equal(chained, 0);
    // Top log-probabilities are found on the GPU with each step's draw, so runs give them too.
    const scored = requests().slice(0, 3).map((r, i) => ({ ...r, topLogprobs: [3, 0, 20][i] }));
    const stepwise = await Promise.all(scored.map((r) => collect(oneByOne.generate(r))));
    fed = chained = 0;
    assert.deepEqual(await Promise.all(scored.map((r) => collect(runs.generate(r)))), stepwise);
    assert.ok(fed > 0 && chained > 0, "runs with top log-probabilities");
    stepwise.forEach(({ events }, i) => {
      assert.deepEqual(events.map((e) => e.id), expected[i].ids);
      for (const [k, e] of events.entries()) {
        // The sampler's log-probability of the same token, through other kernels.
        assert.ok(Math.abs(e.logprob! - expected[i].events[k].logprob!) < 1e-4, `request ${i} token ${k}`);
        if (scored[i].topLogprobs === 0) {
          assert.equal(e.top, undefined);
          continue;
        }
        const top = e.top!;
        assert.equal(top.length, scored[i].topLogprobs);
        for (let r = 1; r < top.length; r++) assert.ok(top[r].logprob <= top[r - 1].logprob);
        assert.equal(new Set(top.map((t) => t.id)).size, top.length);
        const own = top.find((t) => t.id === e.id);
        if (own) assert.equal(own.logprob, e.logprob);
        else assert.ok(e.logprob! <= top.at(-1)!.logprob);
        if (i === 0) assert.deepEqual(top[0], { id: e.id, logprob: e.logprob }); // greedy
      }
    });
    fed = 0;
    // Runs are kept under decodeRunMs (judged from the steps' times): 0 allows none.
    const paced = new LocalEngine(model, { decodeRunMs: 0 });
    assert.deepEqual(await collect(paced.generate(requests()[0])), expected[0]);
    assert.equal(fed, 0);
    assert.equal(model.pool.usedBlocks, 0);
  } finally {
    await runs.close();
  }
});

Deno.test("a shutdown refuses at once what has not begun, and gives the running answers their grace", async () => {
  const model = await loadTiny("mistral", { kvTokens: 256 });
  const engine = new LocalEngine(model, { maxRunning: 1, prefillChunk: 16 });
  const running = engine.generate({ ...long, maxTokens: 40 });
  await running.next();
  const queued = engine.generate({ ...long, maxTokens: 4 });
  const closing = engine.close(60_000);
  // The queued one fails before the running one ends, which it does in full, within the grace.
  await assert.rejects(queued.next(), EngineClosedError);
  const rest = await collect(running);
  assert.equal(rest.events.length, 39);
  await closing;
});

Deno.test("a short prompt is read before a long one that came first, and the long one still goes on", async () => {
  const model = await loadTiny("mistral", EXACT);
  const engine = new LocalEngine(model, { prefillChunk: 4, decodeSteps: 1 });
  try {
    const prompt = (n: number, from: number) => ({
      ids: [1, 3, ...Array.from({ length: n }, (_, i) => from + i), 4],
      images: [],
      sampling: GREEDY,
      maxTokens: 2,
      stopIds: [],
    });
    const long = engine.generate(prompt(60, 1200)), short = engine.generate(prompt(3, 1500));
    const firsts: string[] = [];
    const first = (name: string, stream: AsyncGenerator<TokenEvent, string>) =>
      stream.next().then(() => firsts.push(name));
    // Both join the same step; the long one, first in the queue, has 16 chunks to read.
    await Promise.all([first("long", long), first("short", short)]);
    assert.deepEqual(firsts, ["short", "long"]);
    await Promise.all([collect(long), collect(short)]);
  } finally {
    await engine.close();
  }
});
