/**
 * LoRA adapters merged at load (runtime/model/weights/lora.ts): PEFT's adapter folders and mistral-finetune's
 * lora.safetensors, on every base layout and storage, against the logits of PEFT's own forward
 * (scripts/gen_lora_goldens.py wrote the adapters and those logits).
 */
import assert from "node:assert/strict";
import { openModelFiles, withLocalModel } from "../runtime/model/boot.ts";
import { PixtralModel, type PixtralOptions } from "../runtime/model/pixtral.ts";
import { planMemory } from "../runtime/model/plan.ts";
import { dequantizeRef, quantizeRef } from "../runtime/gpu/ops/quantize.ts";
import { toFloat32 } from "../runtime/model/weights/convert.ts";
import { openLora } from "../runtime/model/weights/lora.ts";
import { GgufFile } from "../runtime/model/weights/gguf.ts";
import { configFromGguf } from "../runtime/model/config.ts";
import type { WeightSource } from "../runtime/model/weights/source.ts";
import { writeCompressedTiny } from "./compressed_helpers.ts";
import { fixture, pixtral } from "./helpers.ts";
import {
  argmaxRows,
  EXACT,
  goldenImage,
  gpu,
  gridOf,
  LAYOUTS,
  loadedWeight,
  manifest,
  maxAbsDiff,
  readF32,
} from "./model_helpers.ts";
import {
  buildGguf,
  ggufEntries,
  kvsOf,
  readSafetensors,
  tempDir,
  writeSafetensors,
} from "./weights_helpers.ts";

const DIR = new URL("./fixtures/lora/", import.meta.url).pathname;
const CASES = ["text_six", "mm_gradient_64x48"] as const;
type Case = typeof CASES[number];

/**
 * PEFT's forward in float32 against ours in float32: the base model alone agrees with the float64 goldens to
 * 4e-5 in both; the adapters' products (rank 2-8, values up to ~0.3) move logits by several units, and the two
 * sum them in different orders. 2e-3 is 4x the largest difference seen (4.5e-4, logits up to 18).
 */
const TOLERANCE = 2e-3;

async function reference(adapter: Reference, c: Case): Promise<Float32Array> {
  const bytes = await Deno.readFile(`${DIR}${adapter}.${c}.logits.f32.bin`);
  return new Float32Array(bytes.buffer);
}

async function sequence(c: Case) {
  if (c === "text_six") return { ids: manifest.text.find((t) => t.name === c)!.ids, images: [] };
  const mm = manifest.multimodal.find((m) => m.name === c)!;
  const { rows, cols } = gridOf(mm.ids);
  return { ids: mm.ids, images: [await goldenImage(mm.pixels_from, rows, cols)] };
}

/** A model folder or file of the fixture, or any path. */
function modelPath(model: keyof typeof LAYOUTS | string) {
  const spec = (LAYOUTS as Record<string, { model: string; mmproj?: string }>)[model];
  return spec
    ? { model: fixture(spec.model).pathname, mmproj: spec.mmproj && fixture(spec.mmproj).pathname }
    : { model };
}

async function logitsWith(
  model: keyof typeof LAYOUTS | string,
  lora: string[],
  cases: readonly Case[] = CASES,
  options: Partial<PixtralOptions> = EXACT,
): Promise<{ logits: Float32Array[]; weights: WeightSource }> {
  const files = await openModelFiles({ ...modelPath(model), lora });
  files.tokenizer.free();
  const loaded = await PixtralModel.load(await gpu(), files.config, files.weights, {
    kvTokens: 256,
    ...options,
  });
  files.weights.close();
  try {
    const logits = [];
    for (const c of cases) {
      const { ids, images } = await sequence(c);
      logits.push(await loaded.sequenceLogits(ids, images));
    }
    return { logits, weights: files.weights };
  } finally {
    loaded.release();
  }
}

type Reference = "peft" | "plain" | "embed" | "dora";
const MERGES: [string, keyof typeof LAYOUTS, string, Reference, number, readonly Case[]][] = [
  // rank_pattern, alpha_pattern, the embedding's lora_embedding_A/B, modules_to_save, vision and projector.
  ["a PEFT adapter on the Hugging Face layout", "hf", "peft", "peft", 31, CASES],
  [
    "the same PEFT adapter on the Mistral layout (its q/k rows reordered)",
    "mistral",
    "peft",
    "peft",
    31,
    CASES,
  ],
  ["mistral-finetune's lora.safetensors on the Mistral layout", "mistral", "mistral", "plain", 28, CASES],
  ["a PEFT adapter on a GGUF f32 pair", "gguf", "plain", "plain", 28, CASES],
  // llama.cpp's converter keeps the text layers: the image case would miss the vision tower's updates.
  ["llama.cpp's LoRA GGUF of it on the GGUF f32 pair", "gguf", "plain.gguf", "plain", 14, ["text_six"]],
  ["llama.cpp's LoRA GGUF on the Hugging Face layout", "hf", "plain.gguf", "plain", 14, ["text_six"]],
  // An embedding update without its saved base weight, and the GGUF's transposed token_embd.lora_a.
  ["a PEFT embedding update on the Mistral layout", "mistral", "embed", "embed", 3, CASES],
  ["llama.cpp's LoRA GGUF of an embedding update", "gguf", "embed.gguf", "embed", 3, CASES],
  // DoRA: each row rescaled to its magnitude after the update (q/k magnitudes reordered like their rows).
  ["a PEFT DoRA adapter on the Hugging Face layout", "hf", "dora", "dora", 28, CASES],
  ["a PEFT DoRA adapter on the Mistral layout", "mistral", "dora", "dora", 28, CASES],
];

for (const [what, layout, adapter, expected, count, cases] of MERGES) {
  Deno.test(`LoRA: ${what} computes what PEFT's forward computes (f32)`, async () => {
    const { logits, weights } = await logitsWith(layout, [`${DIR}${adapter}`], cases);
    assert.equal(weights.merged!.size, count);
    for (const [i, c] of cases.entries()) {
      const want = await reference(expected, c);
      const diff = maxAbsDiff(logits[i], want);
      assert.ok(diff < TOLERANCE, `${c}: max |diff| ${diff}`);
      assert.deepEqual(argmaxRows(logits[i], 2048), argmaxRows(want, 2048), c);
    }
  });
}

Deno.test("LoRA: the reference logits are not the base model's (a merge doing nothing fails above)", async () => {
  for (const adapter of ["peft", "plain", "embed", "dora"] as const) {
    const base = await readF32(`golden/model/${manifest.multimodal[0].logits.file}`);
    assert.ok(maxAbsDiff(base, await reference(adapter, "mm_gradient_64x48")) > 1, adapter);
  }
});

Deno.test("LoRA: llama.cpp's --outtype q8_0 conversion (lora_a in Q8_0) merges its decoded values", async () => {
  // The same adapter with its Q8_0 tensors decoded by the kernels' CPU reference into F32: equal logits.
  const { kvs, tensors } = await ggufEntries(`${DIR}plain-q8_0.gguf`);
  assert.ok(tensors.some((t) => t.type === 8) && tensors.some((t) => t.type === 1));
  const dir = await tempDir();
  try {
    const decoded = tensors.map((t) =>
      t.type === 8
        ? { ...t, type: 0, data: new Uint8Array(dequantizeRef("q8_0", t.data, t.ne[1], t.ne[0]).buffer) }
        : t
    );
    await Deno.writeFile(`${dir}/f32.gguf`, buildGguf(kvsOf(kvs), decoded));
    const q8 = await logitsWith("gguf", [`${DIR}plain-q8_0.gguf`], ["text_six"]);
    const f32 = await logitsWith("gguf", [`${dir}/f32.gguf`], ["text_six"]);
    assert.equal(maxAbsDiff(q8.logits[0], f32.logits[0]), 0);
    assert.equal(q8.weights.merged!.size, 14);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LoRA: several adapters add up; mistral-finetune's scaling comes from params.json", async () => {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir}/x4`);
    await Deno.copyFile(`${DIR}mistral/lora.safetensors`, `${dir}/x4/lora.safetensors`);
    const params = JSON.parse(await Deno.readTextFile(`${DIR}mistral/params.json`));
    await Deno.writeTextFile(`${dir}/x4/params.json`, JSON.stringify({ ...params, lora: { scaling: 4.0 } }));
    const twice = await logitsWith("mistral", [`${DIR}mistral`, `${DIR}mistral/lora.safetensors`], [
      "text_six",
    ]);
    const once = await logitsWith("mistral", [`${dir}/x4`], ["text_six"]);
    // A bare file name finds the params.json of the folder it is in: in a process of its own, whose working
    // folder is that one (the working folder is the whole process's, and test files run in parallel).
    const module = (path: string) => JSON.stringify(new URL(path, import.meta.url).href);
    const child = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--config",
        new URL("../deno.json", import.meta.url).pathname,
        `import { openModelFiles } from ${module("../runtime/model/boot.ts")};
        import { openLora } from ${module("../runtime/model/weights/lora.ts")};
        const files = await openModelFiles(${JSON.stringify(modelPath("mistral"))});
        files.tokenizer.free();
        files.weights.close();
        const adapter = await openLora("lora.safetensors", files.config);
        adapter.file.close();
        console.log([...adapter.updates.values()][0].scale);`,
      ],
      cwd: `${dir}/x4`,
    }).output();
    assert.equal(child.code, 0, new TextDecoder().decode(child.stderr));
    assert.equal(new TextDecoder().decode(child.stdout).trim(), "4");
    assert.ok(maxAbsDiff(twice.logits[0], once.logits[0]) < 1e-4);
    const single = await logitsWith("mistral", [`${DIR}mistral`], ["text_six"]);
    assert.ok(maxAbsDiff(single.logits[0], once.logits[0]) > 0.5);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("LoRA on quantized bases: codes are decoded, not copied, and GGUF blocks are quantized again", async () => {
  const dir = await tempDir();
  try {
    // W4A16 codes load as exact q4 copies without an adapter; with one, its update must reach them.
    await writeCompressedTiny(dir, { codes: "int4", strategy: "group", groupSize: 128 });
    // An explicit q4 for both (the checkpoint's float lm_head would otherwise take q8 beside codes).
    const q4: Partial<PixtralOptions> = {
      ...EXACT,
      quant: "q4",
      explicit: { quant: true, visionQuant: false },
    };
    const lora = [`${DIR}plain`];
    const codes = await logitsWith(`${dir}/compressed`, lora, ["text_six"], q4);
    const dense = await logitsWith(`${dir}/dense`, lora, ["text_six"], q4);
    // The same float32 values meet the same update (0 here; chunks of other sizes could round apart).
    assert.ok(maxAbsDiff(codes.logits[0], dense.logits[0]) <= 1e-4);
    const without = await logitsWith(`${dir}/compressed`, [], ["text_six"], q4);
    assert.ok(maxAbsDiff(codes.logits[0], without.logits[0]) > 0.5);

    // A Q8_0 GGUF: the updated matrices become q8_0 again (as the plan says), the rest stay as stored; each holds
    // q8_0(dequantized Q8_0 + Δ) with Δ = 2·B·A computed here in float64: the rounding is the format's.
    const files = await openModelFiles({ ...modelPath("ggufQ8"), lora });
    files.tokenizer.free();
    const stored = new Map(files.weights.tensors().map((t) => [t.name, t.dtype]));
    const plan = (merged?: ReadonlySet<string>) =>
      planMemory(files.config, {
        quant: "q8",
        explicit: { quant: true, visionQuant: false },
        stored,
        merged,
      });
    assert.equal(plan().weights.decoder.format, "Q8_0");
    assert.equal(plan(files.weights.merged).weights.decoder.format, "Q8_0+Q8_0→q8");
    const planned = async (adapter: string) =>
      new TextDecoder().decode(
        (await pixtral([
          "plan",
          "--model",
          fixture(LAYOUTS.ggufQ4KM.model).pathname,
          "--lora",
          `${DIR}${adapter}`,
          "--quant",
          "q4",
          "--no-gpu",
        ]).output()).stdout,
      );
    assert.match(await planned("plain"), /decoder .* Q4_K\+Q4_K→q4\+Q6_K\+Q6_K→q4\n/);
    // The PEFT adapter replaces the embedding whole (its bf16 base_layer), which then takes --quant.
    assert.match(await planned("peft"), /decoder .* Q4_K→q4\+Q6_K\+Q6_K→q4\+q4\n/);
    const name = "layers.1.feed_forward.w2.weight", [rows, k] = [256, 768];
    const base = dequantizeRef("q8_0", await files.weights.read(name), rows, k);
    const model = await PixtralModel.load(await gpu(), files.config, files.weights, {
      ...EXACT,
      quant: "q8",
      explicit: { quant: true, visionQuant: false },
      kvTokens: 64,
    });
    files.weights.close();
    let loaded: Float32Array;
    try {
      assert.equal(model.weight(name).dtype, "q8_0");
      loaded = await loadedWeight(model, name);
    } finally {
      model.release();
    }
    const adapter = await readSafetensors(`${DIR}plain/adapter_model.safetensors`);
    const part = (p: string) =>
      toFloat32("F32", adapter.find((t) => t.name.endsWith(`layers.1.mlp.down_proj.lora_${p}.weight`))!.data);
    const [a, b] = [part("A"), part("B")];
    const merged = new Float32Array(rows * k);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < k; j++) {
        let d = 0;
        for (let r = 0; r < 8; r++) d += b[i * 8 + r] * a[r * k + j];
        merged[i * k + j] = base[i * k + j] + 2 * d;
      }
    }
    const expected = dequantizeRef("q8_0", quantizeRef("q8_0", merged, rows, k), rows, k);
    // A float32 product may land across a rounding boundary where float64 does not: one step, rarely.
    const off = expected.filter((v, i) => v !== loaded[i]).length;
    assert.ok(off <= rows * k / 1000, `${off} weights differ`);
    assert.ok(maxAbsDiff(expected, loaded) < 0.01);
    assert.ok(maxAbsDiff(base, loaded) > 0.1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a LoRA merged into Q4_K_M blocks: Q4_K and Q6_K again by default, nearer the exact merge than q4", async () => {
  const lora = [`${DIR}plain`];
  const files = await openModelFiles({ ...modelPath("ggufQ4KM"), lora });
  files.tokenizer.free();
  const stored = new Map(files.weights.tensors().map((t) => [t.name, t.dtype]));
  const plan = planMemory(files.config, { quant: "q4", stored, merged: files.weights.merged });
  assert.equal(plan.weights.decoder.format, "Q4_K+Q4_K→q4k+Q6_K+Q6_K→q6k");
  const model = await PixtralModel.load(await gpu(), files.config, files.weights, {
    ...EXACT,
    quant: "q4",
    kvTokens: 64,
  });
  files.weights.close();
  try {
    for (const [type, into] of [["Q4_K", "q4_k"], ["Q6_K", "q6_k"]]) {
      const merged = [...files.weights.merged!].find((n) => stored.get(n) === type)!;
      assert.equal(model.weight(merged).dtype, into);
    }
  } finally {
    model.release();
  }
  const exact = await logitsWith("gguf", lora, ["text_six"]);
  const [q4k, q4] = await Promise.all([
    logitsWith("ggufQ4KM", lora, ["text_six"], { ...EXACT, quant: "q4" }),
    logitsWith("ggufQ4KM", lora, ["text_six"], { ...EXACT, quant: "q4", explicit: { quant: true } }),
  ]);
  const [dq4k, dq4] = [q4k, q4].map((r) => maxAbsDiff(r.logits[0], exact.logits[0]));
  console.log(
    `merged into Q4_K_M: max |logit - exact merge| ${dq4k.toFixed(3)} as Q4_K, ${dq4.toFixed(3)} as q4`,
  );
  assert.ok(dq4k < dq4, `q4k ${dq4k}, q4 ${dq4}`);
});

/** A copy of the PEFT adapter with its config and tensors changed. */
async function peftVariant(
  dir: string,
  config: (c: Record<string, unknown>) => void = () => {},
  tensors: (entries: Awaited<ReturnType<typeof readSafetensors>>) => typeof entries = (e) => e,
): Promise<string> {
  const out = `${dir}/variant-${crypto.randomUUID()}`;
  await Deno.mkdir(out);
  const json = JSON.parse(await Deno.readTextFile(`${DIR}peft/adapter_config.json`));
  config(json);
  await Deno.writeTextFile(`${out}/adapter_config.json`, JSON.stringify(json));
  await writeSafetensors(
    `${out}/adapter_model.safetensors`,
    tensors(await readSafetensors(`${DIR}peft/adapter_model.safetensors`)),
  );
  return out;
}

Deno.test("LoRA adapters that cannot be merged say why, naming the file and the tensor", async () => {
  const dir = await tempDir();
  const files = await openModelFiles(modelPath("hf"));
  files.tokenizer.free();
  files.weights.close();
  const { config } = files;
  const refused = async (path: string, pattern: RegExp, of = config) => {
    await assert.rejects(() => openLora(path, of), pattern);
  };
  const Q = "base_model.model.model.language_model.layers.0.self_attn.q_proj";
  try {
    await refused(
      await peftVariant(dir, (c) => c.use_dora = true),
      /tensor "tok_embeddings\.weight": has no lora_magnitude_vector \(use_dora is set\)/,
    );
    await refused(await peftVariant(dir, (c) => c.peft_type = "LOHA"), /peft_type "LOHA": only LoRA/);
    await refused(
      await peftVariant(dir, (c) => c.init_lora_weights = "pissa"),
      /PiSSA.*change the base weights/,
    );
    await refused(await peftVariant(dir, (c) => c.init_lora_weights = "lora_ga"), /LoRA-GA/);
    await refused(await peftVariant(dir, (c) => c.kasa_config = {}), /KaSA changes the base weights/);
    await refused(
      await peftVariant(dir, (c) => c.rank_pattern = { "q_proj(": 2 }),
      /rank_pattern has a key that is not a regular expression this reader takes: "q_proj\("/,
    );
    await refused(
      await peftVariant(dir, (c) => c.rank_pattern = {}),
      /q_proj\.lora_A\.weight": has rank 2 but adapter_config\.json gives this module r = 4/,
    );
    await refused(
      await peftVariant(
        dir,
        undefined,
        (e) => e.map((t) => ({ ...t, name: t.name.replace("layers.1.", "layers.7.") })),
      ),
      /layers\.7\..*is not a tensor of this model/,
    );
    await refused(
      await peftVariant(dir, undefined, (e) => e.filter((t) => t.name !== `${Q}.lora_B.weight`)),
      /tensor "layers\.0\.attention\.wq\.weight": has lora_B missing/,
    );
    await refused(
      await peftVariant(
        dir,
        undefined,
        (e) =>
          e.map((t) =>
            t.name === `${Q}.lora_A.weight`
              ? { ...t, shape: [2, 128], data: t.data.subarray(0, 2 * 128 * 2) }
              : t
          ),
      ),
      /q_proj\.lora_A\.weight.*do not fit the weight \[512,256\]/,
    );
    await refused(
      await peftVariant(
        dir,
        undefined,
        (e) => e.map((t) => t.name === `${Q}.lora_A.weight` ? { ...t, dtype: "I8", shape: [2, 512] } : t),
      ),
      /is I8; adapter tensors must be F32, F16 or BF16/,
    );
    const pickle = `${dir}/pickle`;
    await Deno.mkdir(pickle);
    await Deno.copyFile(`${DIR}peft/adapter_config.json`, `${pickle}/adapter_config.json`);
    await Deno.writeFile(`${pickle}/adapter_model.bin`, new Uint8Array(8));
    await refused(pickle, /adapter_model\.bin only: PyTorch pickles are not read/);
    await refused(fixture("hf").pathname, /is not a LoRA adapter/);
    await refused(fixture(LAYOUTS.gguf.model).pathname, /is not a LoRA GGUF \(general.type "model"/);
    // As PEFT's get_pattern_key: the first pattern that matches applies, even where a later one names the module.
    const ordered = await openLora(
      await peftVariant(dir, (c) => {
        c.rank_pattern = { q_proj: 2, "model.language_model.layers.0.self_attn.q_proj": 4 };
        c.alpha_pattern = { down_proj: 3, "model.language_model.layers.0.mlp.down_proj": 5 };
      }),
      config,
    );
    ordered.file.close();
    assert.equal(ordered.updates.get("layers.0.feed_forward.w2.weight")!.scale, 3 / 4);
    assert.equal(ordered.updates.get("layers.0.attention.wq.weight")!.scale, 8 / 2);
    // An adapter of the vision tower alone, for a GGUF text model without its mmproj.
    const text = await GgufFile.open(fixture(LAYOUTS.gguf.model).pathname);
    text.close();
    await refused(
      await peftVariant(dir, undefined, (e) => e.filter((t) => t.name.includes("vision_tower"))),
      /updates only the vision encoder, which this model does not have/,
      configFromGguf(text),
    );
    await refused(`${dir}/nothing`, /no such LoRA adapter/);
    // Two adapters that both replace one tensor; a demo model with an adapter.
    await assert.rejects(
      () => openModelFiles({ ...modelPath("hf"), lora: [`${DIR}peft`, `${DIR}peft`] }),
      /tensor "tok_embeddings\.weight": .*replaced by two adapters/,
    );
    await assert.rejects(() => openModelFiles({ lora: [`${DIR}peft`] }), /--lora needs --model/);
    await assert.rejects(
      () => openModelFiles({ ...modelPath("hf"), lora: [`${DIR}plain`, `${DIR}dora`] }),
      /dora\/adapter_model\.safetensors: tensor ".*": is a DoRA update, which cannot be combined with another/,
    );
    // Without --model, the base model a PEFT adapter names: a folder here, or a hub model (hub_test.ts).
    const named = await peftVariant(dir, (c) => c.base_model_name_or_path = fixture("hf").pathname);
    assert.equal((await withLocalModel({ lora: [named] })).model, fixture("hf").pathname);
    for (
      const [base, why] of [[null, /does not name its base model/], [
        "a b",
        /neither a folder here nor/,
      ]] as const
    ) {
      const variant = await peftVariant(dir, (c) => c.base_model_name_or_path = base);
      await assert.rejects(() => withLocalModel({ lora: [variant] }), why);
    }
    await assert.rejects(() => withLocalModel({ lora: [`${DIR}mistral`] }), /does not name its base model/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
