/**
 * The engine in a worker thread (what `serve` runs): the same tokens as the engine in this thread, errors that
 * keep their classes, cancellation that frees memory, and a server thread that keeps running while it works.
 */
import assert from "node:assert/strict";
import {
  type Engine,
  EngineBusyError,
  EngineClosedError,
  type GenerateRequest,
  GREEDY,
  InvalidRequestError,
  RequestTooLongError,
} from "../runtime/engine/engine.ts";
import { LocalEngine } from "../runtime/engine/local.ts";
import { WorkerEngine } from "../runtime/engine/worker.ts";
import type { ModelOptions } from "../runtime/model/boot.ts";
import { fixture } from "./helpers.ts";
import { collect, EXACT, goldenImage, gridOf, loadTiny, manifest } from "./model_helpers.ts";

const mm = manifest.multimodal[0];
const image = await goldenImage(mm.pixels_from, gridOf(mm.ids).rows, gridOf(mm.ids).cols);
const MODEL: ModelOptions = {
  model: fixture("mistral").pathname,
  quant: "f32",
  visionQuant: "f32",
  activations: "f32",
  kv: "f32",
  ctx: 2048,
};

function requests(): GenerateRequest[] {
  const text = (n: number, from: number) =>
    Array.from({ length: n }, (_, i) => 1000 + ((from + 37 * i) % 1048));
  return [
    { ids: [1, 3, ...text(12, 5), 4], images: [], sampling: GREEDY, maxTokens: 6, stopIds: [2] },
    {
      ids: [1, 3, ...mm.ids.slice(2, 17), ...text(5, 9), 4],
      images: [image],
      sampling: { ...GREEDY, temperature: 0.8, topP: 0.9, seed: 7 },
      maxTokens: 9,
      stopIds: [2],
      topLogprobs: 3,
    },
    {
      ids: [1, 3, ...text(40, 2), 4],
      images: [],
      sampling: { ...GREEDY, temperature: 1, topK: 20, seed: 3, presencePenalty: 0.5 },
      maxTokens: 5,
      stopIds: [2],
    },
  ];
}

/** The worker's statistics arrive every few tens of milliseconds: waits until they show an idle cache. */
async function idle(engine: Engine): Promise<void> {
  for (let i = 0; i < 100 && (engine.stats().kvBlocksUsed > 0 || engine.stats().running > 0); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(engine.stats().running, 0);
  assert.equal(engine.stats().kvBlocksUsed, 0);
}

Deno.test("the worker engine yields the tokens, log-probabilities and finishes of the engine in this thread", async () => {
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 2048 });
  const local = new LocalEngine(model, { prefillChunk: 64 });
  const here = await Promise.all(requests().map((r) => collect(local.generate(r))));
  await local.close();
  const worker = await WorkerEngine.start({ model: MODEL, engine: { prefillChunk: 64 } });
  try {
    assert.equal(worker.vocabSize, 2048);
    const there = await Promise.all(requests().map((r) => collect(worker.generate(r))));
    assert.deepEqual(there, here);
    assert.ok(there[1].events[0].top?.length === 3);
    await idle(worker);
  } finally {
    await worker.close();
  }
});

Deno.test("worker engine: refusals keep their classes, cancelling frees the cache, closing ends the streams", async () => {
  const worker = await WorkerEngine.start({ model: MODEL, engine: { maxQueue: 1, maxRunning: 1 } });
  try {
    const long = { ...requests()[0], maxTokens: 400 };
    assert.throws(() => worker.generate({ ...long, maxTokens: 5000 }), RequestTooLongError);
    assert.throws(() => worker.generate({ ...long, ids: [1, 99999] }), InvalidRequestError);
    assert.throws(() => worker.generate({ ...long, images: [image] }), InvalidRequestError);

    // One runs, one waits: a third finds the queue full.
    const controller = new AbortController();
    const running = worker.generate(long, controller.signal);
    const waiting = worker.generate(long);
    await assert.rejects(worker.generate(long).next(), EngineBusyError);
    await running.next();
    controller.abort();
    await assert.rejects(collect(running), (err: Error) => err.name === "AbortError");
    // Stopping a stream early frees its sequence too.
    assert.ok(!(await waiting.next()).done);
    await waiting.return("stop");
    await idle(worker);

    // Closing with a long grace period: a stream whose client goes away meanwhile still cancels at once, so
    // the close does not wait for its 2000 tokens (about a minute here).
    const open = worker.generate({ ...long, maxTokens: 2000 });
    await open.next();
    const closing = worker.close(600_000);
    assert.throws(() => worker.generate(long), EngineClosedError);
    await open.return("stop");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const waited = new Promise((resolve) => timer = setTimeout(() => resolve("waited"), 15_000));
    assert.equal(await Promise.race([closing.then(() => "closed"), waited]), "closed");
    clearTimeout(timer);
    assert.throws(() => worker.generate(long), EngineClosedError);
  } finally {
    await worker.close();
  }
});

Deno.test("worker engine: a model that cannot load rejects the start with the loader's message", async () => {
  await assert.rejects(
    WorkerEngine.start({ model: { model: "/nonexistent/pixtral-model" } }),
    /nonexistent\/pixtral-model/,
  );
  const stop = new AbortController();
  const starting = WorkerEngine.start({ model: MODEL, signal: stop.signal });
  stop.abort();
  await assert.rejects(starting, EngineClosedError);
});

/** The longest time a 5 ms timer of this thread waited while `work` ran. */
async function longestPause(work: () => Promise<unknown>): Promise<number> {
  let last = performance.now(), longest = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
  }, 5);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return longest;
}

Deno.test("while the worker reads a long prompt this thread keeps running; in this thread it would stall", async () => {
  const prompt = { ...requests()[0], ids: Array.from({ length: 250 }, (_, i) => 1000 + ((i * 13) % 1048)) };
  const model = await loadTiny("mistral", { ...EXACT, kvTokens: 2048 });
  const local = new LocalEngine(model, { prefillChunk: 512 });
  const here = await longestPause(() => collect(local.generate(prompt)));
  await local.close();
  const worker = await WorkerEngine.start({ model: MODEL, engine: { prefillChunk: 512 } });
  try {
    const there = await longestPause(() => collect(worker.generate(prompt)));
    assert.ok(
      there * 4 < here,
      `longest pause: ${there.toFixed(0)} ms with the worker, ${here.toFixed(0)} ms without`,
    );
  } finally {
    await worker.close();
  }
});
