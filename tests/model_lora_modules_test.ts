/**
 * LoRA adapters served per request (runtime/model/lora_modules.ts): kept apart from the weights and added to the
 * rows of the sequences that name them, against the logits of PEFT's own forward
 * (tests/fixtures/lora, scripts/gen_lora_goldens.py) and against the same adapter merged at load.
 */
import assert from "node:assert/strict";
import { type GenerateRequest, GREEDY } from "../runtime/engine/engine.ts";
import { LocalEngine } from "../runtime/engine/local.ts";
import { openModelFiles } from "../runtime/model/boot.ts";
import { PixtralModel } from "../runtime/model/pixtral.ts";
import { openLora } from "../runtime/model/weights/lora.ts";
import { loraModuleBytes } from "../runtime/model/lora_modules.ts";
import { fixture } from "./helpers.ts";
import {
  argmaxRows,
  EXACT,
  goldenImage,
  gpu,
  gridOf,
  LAYOUTS,
  loadTiny,
  manifest,
  maxAbsDiff,
  readF32,
} from "./model_helpers.ts";

const DIR = new URL("./fixtures/lora/", import.meta.url).pathname;
const VOCAB = 2048;
/** As tests/model_lora_test.ts: 4x the largest difference between PEFT's float32 forward and a merged one. */
const TOLERANCE = 2e-3;

/** The tiny model in `layout` (f32) with adapters served per request, by name. */
const withModules = (layout: keyof typeof LAYOUTS, modules: Record<string, string>) =>
  loadTiny(layout, { ...EXACT, kvTokens: 512 }, undefined, modules);

const text = manifest.text.find((t) => t.name === "text_six")!;
const mm = manifest.multimodal.find((m) => m.name === "mm_gradient_64x48")!;
const mmImages = async () => {
  const { rows, cols } = gridOf(mm.ids);
  return [await goldenImage(mm.pixels_from, rows, cols)];
};
const peft = async (adapter: string, c: string) =>
  new Float32Array((await Deno.readFile(`${DIR}${adapter}.${c}.logits.f32.bin`)).buffer);

for (
  const [layout, adapter] of [["hf", "plain"], ["mistral", "plain"], ["mistral", "mistral"], [
    "gguf",
    "plain.gguf",
  ]] as const
) {
  Deno.test(`LoRA modules: ${adapter} served per request on the ${layout} layout computes PEFT's forward`, async () => {
    const model = await withModules(layout, { ft: `${DIR}${adapter}` });
    try {
      const lora = model.loras.get("ft")!;
      // The memory plan counts what the bank holds (f32 here).
      const opened = await openLora(`${DIR}${adapter}`, model.config);
      opened.file.close();
      assert.equal(loraModuleBytes(opened, 4), lora.bytes);
      assert.ok(lora.bytes > 0);
      const cases = adapter.endsWith(".gguf") ? [["text_six", text.ids, []] as const] : [
        ["text_six", text.ids, []] as const,
        ["mm_gradient_64x48", mm.ids, await mmImages()] as const,
      ];
      for (const [c, ids, images] of cases) {
        const got = await model.sequenceLogits(ids, images, { lora });
        const want = await peft("plain", c);
        assert.ok(maxAbsDiff(got, want) < TOLERANCE, `${c}: ${maxAbsDiff(got, want)}`);
        assert.deepEqual(argmaxRows(got, VOCAB), argmaxRows(want, VOCAB));
        // Without it, the same model is the base model.
        const base = await model.sequenceLogits(ids, images);
        const golden = await readF32(
          `golden/model/${(c === "text_six" ? text : mm).logits.file}`,
        );
        assert.ok(maxAbsDiff(base, golden) < 1e-3, `${c} base: ${maxAbsDiff(base, golden)}`);
      }
    } finally {
      model.release();
    }
  });
}

/** mistral-finetune's adapter at twice its scale: a second adapter, unlike the first. */
async function doubled(dir: string): Promise<string> {
  await Deno.mkdir(`${dir}/x4`, { recursive: true });
  await Deno.copyFile(`${DIR}mistral/lora.safetensors`, `${dir}/x4/lora.safetensors`);
  const params = JSON.parse(await Deno.readTextFile(`${DIR}mistral/params.json`));
  await Deno.writeTextFile(`${dir}/x4/params.json`, JSON.stringify({ ...params, lora: { scaling: 4.0 } }));
  return `${dir}/x4`;
}

Deno.test("LoRA modules: one step mixing adapters computes each sequence's logits as it alone", async () => {
  const dir = await Deno.makeTempDir();
  const model = await withModules("mistral", { ft: `${DIR}plain`, x4: await doubled(dir) });
  try {
    const images = await mmImages();
    const ft = model.loras.get("ft")!, x4 = model.loras.get("x4")!;
    const seqs = [
      { ids: mm.ids, images, lora: ft },
      { ids: text.ids, images: [], lora: undefined },
      { ids: [...text.ids, 1100, 1200], images: [], lora: x4 },
      { ids: text.ids.slice(0, 4), images: [], lora: ft },
    ];
    const alone = [];
    for (const s of seqs) alone.push(await model.sequenceLogits(s.ids, s.images, { lora: s.lora }));
    // The adapters differ from each other and from the base model.
    assert.ok(maxAbsDiff(alone[2].subarray(0, 6 * VOCAB), alone[1]) > 0.5);
    assert.ok(
      maxAbsDiff(
        alone[0].subarray(0, 6 * VOCAB),
        (await peft("plain", "mm_gradient_64x48")).subarray(0, 6 * VOCAB),
      ) < TOLERANCE,
    );

    // All four prompts in one prefill step, then a decode step of one row each (the matrix-vector path).
    const embeddings = await model.encodeImages(images, ft);
    const blocks = seqs.map(() => [] as number[]);
    try {
      seqs.forEach((s, i) => assert.ok(model.pool.reserve(blocks[i], s.ids.length + 1)));
      const rec = model.ctx.record("mixed");
      const prefill = model.step(
        rec,
        seqs.map((s, i) => ({
          ids: s.ids,
          past: 0,
          blocks: blocks[i],
          images: s.images.length ? embeddings : undefined,
          logits: "all" as const,
          lora: s.lora,
        })),
      );
      const read = rec.read(prefill.logits!);
      await rec.submit();
      const together = new Float32Array((await read).buffer);
      for (const [i, { start, count }] of prefill.rows.entries()) {
        const diff = maxAbsDiff(together.subarray(start * VOCAB, (start + count) * VOCAB), alone[i]);
        assert.ok(diff < 1e-4, `sequence ${i}: ${diff}`);
      }
      const next = 1500;
      const rec2 = model.ctx.record("mixed decode");
      const decode = model.step(
        rec2,
        seqs.map((s, i) => ({
          ids: [next],
          past: s.ids.length,
          blocks: blocks[i],
          logits: "last" as const,
          lora: s.lora,
        })),
      );
      const read2 = rec2.read(decode.logits!);
      await rec2.submit();
      const stepped = new Float32Array((await read2).buffer);
      for (const [i, s] of seqs.entries()) {
        const solo = await model.sequenceLogits([...s.ids, next], s.images, { lora: s.lora });
        const diff = maxAbsDiff(
          stepped.subarray(i * VOCAB, (i + 1) * VOCAB),
          solo.subarray(s.ids.length * VOCAB),
        );
        assert.ok(diff < 1e-4, `decode ${i}: ${diff}`);
      }
    } finally {
      blocks.forEach((b) => model.pool.release(b));
      model.ctx.release(embeddings);
    }
  } finally {
    model.release();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LoRA modules: adapters only a merge can apply are refused, saying to merge them", async () => {
  for (
    const [adapter, why] of [
      ["peft", /replaces whole tensors/],
      ["embed", /replaces whole tensors|embedding/],
      ["dora", /DoRA/],
    ] as const
  ) {
    await assert.rejects(
      withModules("hf", { x: `${DIR}${adapter}` }),
      (err: Error) => why.test(err.message) && /--lora/.test(err.message),
      adapter,
    );
  }
});

/** The tiny model (Mistral layout) with `lora` merged at load. */
async function merged(lora: string[]): Promise<PixtralModel> {
  const files = await openModelFiles({ model: fixture(LAYOUTS.mistral.model).pathname, lora });
  files.tokenizer.free();
  try {
    return await PixtralModel.load(await gpu(), files.config, files.weights, { kvTokens: 512, ...EXACT });
  } finally {
    files.weights.close();
  }
}

async function tokens(engine: LocalEngine, request: GenerateRequest): Promise<number[]> {
  const ids = [];
  for await (const event of engine.generate(request)) ids.push(event.id);
  return ids;
}

Deno.test("LoRA modules in the engine: mixed requests run together, each as the model merged with its adapter", async () => {
  const dir = await Deno.makeTempDir();
  const x4 = await doubled(dir);
  const images = await mmImages();
  const requests = Array.from({ length: 9 }, (_, i): GenerateRequest => ({
    ids: i % 2 ? [...text.ids.slice(0, -1), 1100 + 7 * i, 4] : mm.ids,
    images: i % 2 ? [] : images,
    sampling: i % 4 === 3 ? { ...GREEDY, temperature: 0.9, seed: i } : GREEDY,
    maxTokens: 6,
    stopIds: [],
    ...[{}, { lora: "ft" }, { lora: "x4" }][i % 3],
  }));
  const served = await withModules("mistral", { ft: `${DIR}plain`, x4 });
  const engine = new LocalEngine(served, { prefillChunk: 16 });
  try {
    const together = await Promise.all(requests.map((r) => tokens(engine, r)));
    for (const [lora, paths] of [[undefined, []], ["ft", [`${DIR}plain`]], ["x4", [x4]]] as const) {
      const model = await merged([...paths]);
      const alone = new LocalEngine(model, { prefillChunk: 16 });
      try {
        for (const [i, r] of requests.entries()) {
          if (r.lora !== lora) continue;
          const { lora: _, ...plain } = r;
          assert.deepEqual(together[i], await tokens(alone, plain), `request ${i} (${lora ?? "base"})`);
        }
      } finally {
        await alone.close();
      }
    }
    // Different adapters gave different answers to one prompt.
    assert.notDeepEqual(together[0], together[4]);
    await assert.rejects(
      async () => await tokens(engine, { ...requests[0], lora: "nope" }),
      /no LoRA adapter "nope"/,
    );
  } finally {
    await engine.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LoRA modules: the prefix cache shares blocks only between requests of one adapter", async () => {
  const model = await withModules("mistral", { ft: `${DIR}plain` });
  const engine = new LocalEngine(model, { prefillChunk: 16 });
  try {
    const prompt: GenerateRequest = {
      ids: [1, 3, ...Array.from({ length: 40 }, (_, i) => 1000 + i), 4],
      images: [],
      sampling: GREEDY,
      maxTokens: 4,
      stopIds: [],
    };
    const hits = () => engine.stats().prefixHitTokens!;
    const first = await tokens(engine, { ...prompt, lora: "ft" });
    assert.equal(hits(), 0);
    const base = await tokens(engine, prompt);
    assert.equal(hits(), 0);
    assert.notDeepEqual(base, first);
    assert.deepEqual(await tokens(engine, { ...prompt, lora: "ft" }), first);
    assert.equal(hits(), 32);
    assert.deepEqual(await tokens(engine, prompt), base);
    assert.equal(hits(), 64);
  } finally {
    await engine.close();
  }
});
