/**
 * Model speed and memory: load (and quantize) time, prefill tokens/s, decode tokens/s at batch 1 and 8, the
 * vision encoder on one 1024x1024 image, time to first token with and without the prefix cache, decode with LoRA
 * adapters served per request against without, peak GPU memory,
 * and decode speed against the memory-bandwidth limit (bandwidth / bytes read per decode step). Prints a
 * markdown table, a row as each is measured.
 *
 *   deno task bench:model --synthetic 12b   Pixtral 12B's exact shapes, random weights made on the GPU (no files)
 *   deno task bench:model --synthetic tiny  the demo's shape (runs on lavapipe)
 *   ... --layers 40                           the same with another number of decoder layers (host costs of a
 *                                             step shaped like Pixtral 12B's, at the demo's size)
 *   deno task bench:model --model PATH      real weights
 *   ... --loras 0                             without the LoRA rows (4 rank-16 adapters, loaded with the model)
 *
 * Imports nothing from npm, so it runs with the Deno binary and this repository alone (e.g. on a GPU host).
 */
import { parseArgs } from "node:util";
import { GpuContext } from "../runtime/gpu/context.ts";
import type { FloatType } from "../runtime/gpu/dtype.ts";
import { type ModelConfig, parseParamsJson } from "../runtime/model/config.ts";
import { demoConfig } from "../runtime/model/demo_config.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { openModel } from "../runtime/model/open.ts";
import { PixtralModel } from "../runtime/model/pixtral.ts";
import type { LoraModule } from "../runtime/model/lora_modules.ts";
import { DECODER_FORMATS, type WeightFormat } from "../runtime/model/plan.ts";
import { logprobRows, sample, type SamplingParams } from "../runtime/gpu/ops/sampling.ts";
import { GREEDY } from "../runtime/engine/engine.ts";
import { LocalEngine } from "../runtime/engine/local.ts";

const { values } = parseArgs({
  options: {
    synthetic: { type: "string" },
    model: { type: "string" },
    quant: { type: "string" },
    activations: { type: "string" },
    prefill: { type: "string" },
    steps: { type: "string" },
    layers: { type: "string" },
    bandwidth: { type: "string", default: "4.8e12" },
    loras: { type: "string", default: "4" },
  },
});

const ctx = await GpuContext.create();
const act = (values.activations ?? (ctx.f16 ? "f16" : "f32")) as FloatType;
const quant = (values.quant ?? "q4") as WeightFormat;
if (!DECODER_FORMATS.includes(quant)) throw new Error(`--quant must be one of ${DECODER_FORMATS.join(", ")}`);
let config: ModelConfig;
let source: Parameters<typeof PixtralModel.load>[2] = "random";
if (values.model) {
  const opened = await openModel(await locateModel(values.model));
  config = opened.config;
  source = opened.weights;
} else if (values.synthetic === "tiny") {
  config = demoConfig();
} else {
  const params = new URL("../tests/fixtures/model/pixtral-12b-2409/params.json", import.meta.url);
  config = parseParamsJson(JSON.parse(await Deno.readTextFile(params)), params.pathname);
}
if (values.layers) config = { ...config, decoder: { ...config.decoder, nLayers: Number(values.layers) } };
const big = config.decoder.dim >= 4096;
const prefillTokens = Number(values.prefill ?? (big ? 2048 : 256));
const steps = Math.ceil(Number(values.steps ?? (big ? 64 : 16)) / 8) * 8; // whole runs of 8
const kvTokens = 8 * Math.ceil((prefillTokens + steps + 16) / 16) * 16; // 8 sequences of the prefill's length

let t = performance.now();
// A --quant given applies to codes stored quantized too (plan.ts decodedFormat).
const explicit = { quant: values.quant !== undefined };
// With rank-16 LoRA adapters served per request, for the rows that measure them.
const loraCount = Number(values.loras);
const model = await PixtralModel.load(ctx, config, source, {
  quant,
  explicit,
  activations: act,
  kvTokens,
  randomLoras: loraCount ? { count: loraCount, rank: 16 } : undefined,
});
await ctx.device.queue.onSubmittedWorkDone();
const loadSeconds = (performance.now() - t) / 1000;
// Each row as soon as it is measured: a run cut short (a device's time limit) keeps what it measured.
console.log("| measure | value |\n| --- | --- |");
const row = (what: string, value: string) => console.log(`| ${what} | ${value} |`);
row(
  "model",
  `${values.model ?? `synthetic ${values.synthetic ?? "12b"}`}, decoder ${quant}, activations ${act}`,
);
row("adapter", ctx.gpu.name);
row(
  `load${source === "random" ? " (random weights made and quantized on the GPU)" : " and quantize"}`,
  `${loadSeconds.toFixed(2)} s`,
);

const vocab = config.decoder.vocabSize;
const ids = (n: number, seed: number) =>
  Array.from({ length: n }, (_, i) => 1000 + ((i * 7919 + seed) % (vocab - 1000)));

// Prefill one long prompt in 512-token chunks.
const blocks: number[][] = Array.from({ length: 8 }, () => []);
if (!model.pool.reserve(blocks[0], prefillTokens + steps + 1)) throw new Error("KV pool too small");
t = performance.now();
for (let at = 0; at < prefillTokens; at += 512) {
  const rec = ctx.record("prefill");
  const part = ids(Math.min(512, prefillTokens - at), at);
  model.step(rec, [{
    ids: part,
    past: at,
    blocks: blocks[0],
    logits: at + 512 >= prefillTokens ? "last" : "none",
  }]);
  await rec.submit();
}
await ctx.device.queue.onSubmittedWorkDone();
row(
  `prefill ${prefillTokens} tokens`,
  `${(prefillTokens / ((performance.now() - t) / 1000)).toFixed(1)} tokens/s`,
);

/** Host time of the decode steps (JavaScript recording, command encoding, queue.submit), summed. */
const host = { steps: 0, dispatches: 0, record: 0, encode: 0, submit: 0 };

/** A repetition penalty over a prompt's worth of tokens, as a request with `repetition_penalty` has. */
const PENALTY: SamplingParams = {
  temperature: 0,
  repetitionPenalty: 1.1,
  penalties: { ids: [...Array(prefillTokens).keys()], counts: new Array(prefillTokens).fill(0) },
};

/**
 * Decode steps for `batch` sequences, reading the sampled ids back after every `run` steps. Within a run each
 * step embeds the ids the previous one sampled, on the GPU; `chained` submits the next run before reading this
 * one back (fed by its last ids), as the engine does, so that the readback's wait overlaps the next run.
 * `sampling`: every sequence's settings (penalties count the run's earlier draws, as in the engine); `top`: the
 * most likely tokens found with each draw, as for a request with top_logprobs.
 */
async function decode(
  batch: number,
  run: number,
  { chained = false, loras = [], sampling = { temperature: 0 }, top = 0 }: {
    chained?: boolean;
    loras?: readonly LoraModule[];
    sampling?: SamplingParams;
    top?: number;
  } = {},
): Promise<number> {
  const past = new Array(batch).fill(prefillTokens);
  for (let s = 1; s < batch; s++) {
    model.pool.release(blocks[s]);
    if (!model.pool.reserve(blocks[s], prefillTokens + steps + 1)) throw new Error("KV pool too small");
  }
  const chosen = ctx.tensor("u32", [run, batch]);
  const tops = top > 0 ? ctx.tensor("u32", [run, batch * (1 + 2 * top)]) : undefined;
  const start = performance.now();
  let pending: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < steps; i += run) {
    let read: Promise<unknown> = Promise.resolve();
    for (let k = 0; k < run; k++) {
      const recordStart = performance.now();
      const rec = ctx.record("decode");
      const fedByRun = k === 0 && chained && i > 0;
      const out = model.step(
        rec,
        past.map((p, s) => ({
          ids: k === 0 && !fedByRun ? [1100 + s] : chosen.sliceRows((k + run - 1) % run, 1).sliceCols(s, 1),
          past: p + k,
          blocks: blocks[s],
          logits: "last" as const,
          lora: loras[s % loras.length],
        })),
      );
      sample(rec, {
        logits: out.logits!,
        // The run's earlier draws above this step's, as the engine passes them (penalties count them).
        ids: chosen.sliceRows(0, k + 1),
        params: past.map(() => sampling),
      });
      if (tops) logprobRows(rec, out.logits!, chosen.sliceRows(k, 1), { top, out: tops.sliceRows(k, 1) });
      if (k === run - 1) read = Promise.all([chosen, ...tops ? [tops] : []].map((t) => rec.read(t)));
      host.record += performance.now() - recordStart;
      host.dispatches += rec.dispatches;
      await rec.submit();
      host.encode += rec.timing.encodeMs;
      host.submit += rec.timing.submitMs;
      host.steps++;
    }
    if (chained) {
      // As the engine does: the readback is polled (blocking until this run is done), and the next run is
      // recorded during its 10 ms sleep.
      await new Promise((resolve) => setTimeout(resolve, 0));
      await pending;
    } else await read;
    pending = read;
    for (let s = 0; s < batch; s++) past[s] += run;
  }
  await pending;
  ctx.release(chosen);
  if (tops) ctx.release(tops);
  return (batch * steps) / ((performance.now() - start) / 1000);
}
const single = await decode(1, 1);
row("decode, batch 1, one step per readback", `${single.toFixed(1)} tokens/s`);
Object.assign(host, { steps: 0, dispatches: 0, record: 0, encode: 0, submit: 0 });
const singleWaiting = await decode(1, 8);
row(
  "decode, batch 1, 8 steps per readback, each run waiting for the last",
  `${singleWaiting.toFixed(1)} tokens/s`,
);
const singleRuns = await decode(1, 8, { chained: true });
row("decode, batch 1, runs of 8 chained (the engine's default)", `${singleRuns.toFixed(1)} tokens/s`);
const perStep = (ms: number) => `${(ms / host.steps).toFixed(2)} ms`;
const hostRow = `${host.dispatches / host.steps} dispatches: record ${perStep(host.record)}, encode ` +
  `${perStep(host.encode)}, queue.submit ${
    perStep(host.submit)
  } (a run overlaps them with the previous step)`;
row("decode, batch 8, one step per readback", `${(await decode(8, 1)).toFixed(1)} tokens/s`);
row("decode, batch 8, runs of 8 chained", `${(await decode(8, 8, { chained: true })).toFixed(1)} tokens/s`);
row("host time of a decode step, batch 1", hostRow);
// Penalties count a run's draws on the GPU, so a penalised request decodes in runs too (not chained: the host's
// counts would be a run behind); it used to step one token per readback.
const [penaltyStepwise, penaltyRuns] = [
  await decode(1, 1, { sampling: PENALTY }),
  await decode(1, 8, { sampling: PENALTY }),
];
const penaltyRatio = (penaltyRuns / penaltyStepwise).toFixed(2);
row(
  `decode, batch 1, repetition penalty over ${prefillTokens} tokens, 8 steps per readback`,
  `${penaltyRuns.toFixed(1)} tokens/s (${penaltyRatio}x one step per readback: ${
    penaltyStepwise.toFixed(1)
  })`,
);
// Top log-probabilities are found on the GPU with each draw, so such a request decodes in chained runs too; it used
// to step one token per readback (and read its row of logits back).
const TOP = 5;
await decode(1, 8, { chained: true, top: TOP }); // compiles the scoring kernel
const [topStepwise, topRuns, plainRuns] = [
  await decode(1, 1, { top: TOP }),
  await decode(1, 8, { chained: true, top: TOP }),
  await decode(1, 8, { chained: true }),
];
row(
  `decode, batch 1, top_logprobs ${TOP}, runs of 8 chained`,
  `${topRuns.toFixed(1)} tokens/s (${(topRuns / topStepwise).toFixed(2)}x one step per readback: ` +
    `${topStepwise.toFixed(1)}; ${(topRuns / plainRuns).toFixed(2)} of ${plainRuns.toFixed(1)} without)`,
);

// LoRA adapters served per request (rank 16 on the decoder's linear layers): the same decode runs, each sequence
// with one, against the same runs without, measured again beside them.
if (model.loraBank) {
  const loras = model.loraBank.modules;
  await decode(1, 8, { chained: true, loras: loras.slice(0, 1) }); // compiles the kernels' LoRA variants
  const [single, withLora] = [
    await decode(1, 8, { chained: true }),
    await decode(1, 8, { chained: true, loras: loras.slice(0, 1) }),
  ];
  row(
    "decode, batch 1, runs of 8 chained, with a rank-16 LoRA adapter",
    `${withLora.toFixed(1)} tokens/s (${(withLora / single).toFixed(2)} of ${single.toFixed(1)} without; ` +
      `${(loras[0].bytes / 2 ** 20).toFixed(0)} MiB each)`,
  );
  await decode(8, 8, { chained: true, loras });
  const [batch8, mixed] = [
    await decode(8, 8, { chained: true }),
    await decode(8, 8, { chained: true, loras }),
  ];
  row(
    `decode, batch 8, runs of 8 chained, ${loras.length} LoRA adapters (sequence i takes adapter i mod ${loras.length})`,
    `${mixed.toFixed(1)} tokens/s (${(mixed / batch8).toFixed(2)} of ${batch8.toFixed(1)} without)`,
  );
}

// Bytes one decode step reads: every decoder matrix but the embedding table (only gathered), plus the KV cache.
let weightBytes = 0;
for (
  const name of [...Array(config.decoder.nLayers).keys()].flatMap((l) =>
    ["wq", "wk", "wv", "wo"].map((w) => `layers.${l}.attention.${w}.weight`).concat(
      ["w1", "w2", "w3"].map((w) => `layers.${l}.feed_forward.${w}.weight`),
    )
  ).concat(["output.weight"])
) weightBytes += model.weight(name).byteLength;
const kvBytes = (prefillTokens + steps / 2) * config.decoder.nLayers * 2 * config.decoder.nKvHeads *
  config.decoder.headDim * 2;
const limit = Number(values.bandwidth) / (weightBytes + kvBytes);
row("bytes read per decode step", `${((weightBytes + kvBytes) / 2 ** 30).toFixed(2)} GiB`);
row(
  `decode, batch 1, against ${Number(values.bandwidth) / 1e12} TB/s`,
  `${(100 * singleRuns / limit).toFixed(1)}% of the ${limit.toFixed(0)} tokens/s limit (runs of 8 chained)`,
);

if (config.vision) {
  const v = config.vision!;
  // The largest image at real size; a 256x256 one for small models (lavapipe takes minutes for 1024x1024).
  const size = big ? v.imageSize : 256;
  const side = size / v.patchSize;
  const pixels = Float32Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i) * 1.5);
  await ctx.readFloats(
    await model.encodeImages([{ rows: side, cols: side, pixels }]).then((e) => e.sliceRows(0, 1)),
  );
  t = performance.now();
  const out = await model.encodeImages([{ rows: side, cols: side, pixels }]);
  await ctx.readFloats(out.sliceRows(0, 1));
  ctx.release(out);
  row(
    `vision encoder + adapter, ${size}x${size} image`,
    `${((performance.now() - t) / 1000).toFixed(3)} s`,
  );
}
{
  // A chat turn asked twice: the second finds its prompt's blocks (text and image) in the prefix cache.
  for (const table of blocks) model.pool.release(table);
  const { img, imgBreak, imgEnd } = config.imageTokens;
  const size = big ? 1024 : 256, side = size / 16;
  const image = config.vision
    ? [{
      rows: side,
      cols: side,
      pixels: Float32Array.from({ length: 3 * size * size }, (_, i) => Math.cos(i)),
    }]
    : [];
  const imageIds = image.length
    ? Array.from({ length: side }, (_, r) => [...Array(side).fill(img), r === side - 1 ? imgEnd : imgBreak])
      .flat()
    : [];
  const request = {
    ids: [1, 3, ...imageIds, ...ids(prefillTokens, 7), 4],
    images: image,
    sampling: { ...GREEDY },
    maxTokens: 1,
    stopIds: [],
  };
  const engine = new LocalEngine(model, { prefillChunk: ctx.gpu.software ? 64 : 512 });
  const firstToken = async () => {
    const start = performance.now();
    for await (const _ of engine.generate(request));
    return (performance.now() - start) / 1000;
  };
  const cold = await firstToken(), cached = await firstToken();
  row(
    `time to first token, ${request.ids.length}-token prompt${
      image.length ? ` with a ${size}x${size} image` : ""
    }`,
    `${cold.toFixed(3)} s; asked again ${cached.toFixed(3)} s (prefix cache, ${(cold / cached).toFixed(1)}x)`,
  );
}
row(
  `GPU memory (weights, KV cache${loraCount ? `, ${loraCount} LoRA adapters` : ""}, peak scratch)`,
  `${(ctx.allocatedBytes / 2 ** 30).toFixed(2)} GiB (pool peak ${
    (ctx.pool.stats.peakInUseBytes / 2 ** 30).toFixed(2)
  } GiB)`,
);
model.release();
ctx.destroy();
