/**
 * compressed-tensors checkpoints (llm-compressor's FP8, INT8 and W4A16 Hugging Face folders): decoded as the
 * library decodes them (golden vectors it made), loaded into the same function as a dense checkpoint of the
 * dequantized weights, and 4- and 8-bit codes copied into q4 / q8_0 blocks without loss.
 */
import assert from "node:assert/strict";
import { dequantizeRef } from "../runtime/gpu/ops/quantize.ts";
import { rowBytes } from "../runtime/gpu/dtype.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { openModel } from "../runtime/model/open.ts";
import { PixtralModel, type PixtralOptions } from "../runtime/model/pixtral.ts";
import { checkPlan, planMemory, type Precision, precision } from "../runtime/model/plan.ts";
import { SafetensorsFile } from "../runtime/model/weights/safetensors.ts";
import { BlockDecoder } from "../runtime/model/weights/decode_pool.ts";
import {
  decodeScaled,
  exactBlockFormat,
  joinScaled,
  readScales,
  scaleRows,
  toBlocks,
} from "../runtime/model/weights/scaled.ts";
import type { ScaledType } from "../runtime/model/weights/dtype.ts";
import {
  assertDecodesAsGolden,
  compressMatrix,
  hintOf,
  type Scheme,
  writeCompressedTiny,
} from "./compressed_helpers.ts";
import { pixtral } from "./helpers.ts";
import { EXACT, goldenImage, gpu, gridOf, loadedWeight, manifest, maxAbsDiff } from "./model_helpers.ts";
import {
  readSafetensors,
  type SafetensorsEntry,
  tempDir,
  TINY,
  writeSafetensors,
} from "./weights_helpers.ts";

const SCHEMES: Record<string, Scheme> = {
  "FP8 per channel (FP8_DYNAMIC), vision tower too": { codes: "fp8", strategy: "channel", all: true },
  "FP8 per tensor": { codes: "fp8", strategy: "tensor" },
  "FP8 blocks of 128x128": { codes: "fp8", strategy: "block" },
  "INT8 per channel (W8A8)": { codes: "int8", strategy: "channel" },
  "INT4 groups of 128 (W4A16)": { codes: "int4", strategy: "group", groupSize: 128 },
  "INT4 groups of 32, asymmetric": { codes: "int4", strategy: "group", groupSize: 32, symmetric: false },
  "INT4 groups of 32, activation order (g_idx)": {
    codes: "int4",
    strategy: "group",
    groupSize: 32,
    actorder: true,
  },
  "INT8 packed, groups of 64 (W8A16)": { codes: "int8", strategy: "group", groupSize: 64, packed: true },
};

async function open(dir: string) {
  return await openModel(await locateModel(dir));
}

async function logitsOf(dir: string, options: Partial<PixtralOptions>): Promise<Float32Array> {
  const mm = manifest.multimodal[0];
  const image = await goldenImage(mm.pixels_from, ...Object.values(gridOf(mm.ids)) as [number, number]);
  const opened = await open(dir);
  const model = await PixtralModel.load(await gpu(), opened.config, opened.weights, {
    kvTokens: 256,
    ...options,
  });
  opened.weights.close();
  try {
    return await model.sequenceLogits(mm.ids, [image]);
  } finally {
    model.release();
  }
}

for (const [what, scheme] of Object.entries(SCHEMES)) {
  Deno.test(`compressed-tensors ${what}: the logits of its dequantized weights, bit for bit (f32)`, async () => {
    const dir = await tempDir();
    try {
      const matrices = await writeCompressedTiny(dir, scheme);
      assert.equal(matrices, scheme.all ? 14 + 14 + 2 : 14);
      const opened = await open(`${dir}/compressed`);
      const scaled = opened.weights.tensors().filter((t) => t.dtype !== "BF16");
      opened.weights.close();
      assert.equal(scaled.length, matrices);
      assert.deepEqual(opened.weights.unused, []);
      const a = await logitsOf(`${dir}/compressed`, EXACT);
      const b = await logitsOf(`${dir}/dense`, EXACT);
      assert.equal(maxAbsDiff(a, b), 0);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("compressed-tensors 4- and 8-bit codes become q4 and q8_0 blocks that hold them exactly", async () => {
  const cases: [Scheme, ScaledType, "q4" | "q8_0" | undefined][] = [
    [{ codes: "int4", strategy: "group", groupSize: 128 }, "I4", "q4"],
    [{ codes: "int4", strategy: "group", groupSize: 32 }, "I4", "q4"],
    [{ codes: "int4", strategy: "channel" }, "I4", "q4"],
    [{ codes: "int8", strategy: "channel" }, "I8", "q8_0"],
    [{ codes: "int8", strategy: "group", groupSize: 64, packed: true }, "I8", "q8_0"],
    [{ codes: "int8", strategy: "block" }, "I8", "q8_0"],
    // Not held exactly: a group of 32 columns across two scales, zero points, shuffled groups, FP8.
    [{ codes: "int4", strategy: "group", groupSize: 16 }, "I4", undefined],
    [{ codes: "int4", strategy: "group", groupSize: 32, symmetric: false }, "I4", undefined],
    [{ codes: "int4", strategy: "group", groupSize: 32, actorder: true }, "I4", undefined],
    [{ codes: "fp8", strategy: "channel" }, "F8_E4M3", undefined],
  ];
  const dir = await tempDir();
  try {
    const [rows, k] = [256, 512];
    const w = Float32Array.from(
      { length: rows * k },
      (_, i) => Math.sin(i * 0.37) * 0.05 * (i % 97 === 0 ? 8 : 1),
    );
    for (const [i, [scheme, dtype, format]] of cases.entries()) {
      const { stored, dequantized } = compressMatrix(w, rows, k, scheme);
      const path = `${dir}/m${i}.safetensors`;
      await writeSafetensors(path, Object.entries(stored).map(([s, t]) => ({ name: `m.${s}`, ...t })));
      const file = await SafetensorsFile.open(path);
      try {
        await joinScaled([file], hintOf(scheme));
        const t = file.tensors.get("m.weight")!;
        assert.equal(t.dtype, dtype, JSON.stringify(scheme));
        const scales = await readScales(t);
        const codes = await file.file.read(t.offset, t.byteLength);
        const values = decodeScaled(dtype, codes, 0, scales);
        assert.deepEqual(values, dequantized, JSON.stringify(scheme));
        assert.equal(exactBlockFormat(dtype, scales), format, JSON.stringify(scheme));
        if (!format) continue;
        // Rows from the middle on, as a chunk of a load would give them.
        const first = 100, from = first * (dtype === "I4" ? k / 2 : k);
        const blocks = toBlocks(format, codes.subarray(from), first, scales, rowBytes(format, k));
        assert.deepEqual(dequantizeRef(format, blocks, rows - first, k), values.subarray(first * k));
      } finally {
        file.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The decoder's linear layers as loaded on the GPU, dequantized to float32, by name. */
async function loadedDecoderLinears(dir: string, options: Partial<PixtralOptions>) {
  const opened = await open(dir);
  const model = await PixtralModel.load(await gpu(), opened.config, opened.weights, {
    kvTokens: 64,
    ...options,
  });
  const names = opened.weights.tensors().filter((t) => t.component === "decoder" && t.role === "linear")
    .map((t) => t.name).filter((n) => n.startsWith("layers."));
  opened.weights.close();
  try {
    const out = new Map<string, Float32Array>();
    for (const name of names) out.set(name, await loadedWeight(model, name));
    return { out, types: new Set(names.map((n) => model.weight(n).dtype)) };
  } finally {
    model.release();
  }
}

const EXACT_BLOCKS: [string, Scheme, "q4" | "q8", string][] = [
  // lm_head and the embedding, which the recipes leave unquantized, take q8 beside the codes.
  ["a W4A16 checkpoint loads as q4", { codes: "int4", strategy: "group", groupSize: 128 }, "q4", "I4→q4+q8"],
  ["a W8A8 checkpoint loads as q8_0", { codes: "int8", strategy: "channel" }, "q8", "I8→q8+q8"],
];

for (const [what, scheme, quant, format] of EXACT_BLOCKS) {
  Deno.test(`${what} without requantizing: the GPU holds its weights exactly`, async () => {
    const dir = await tempDir();
    try {
      await writeCompressedTiny(dir, scheme);
      const opened = await open(`${dir}/compressed`);
      const stored = new Map(opened.weights.tensors().map((t) => [t.name, t.dtype]));
      opened.weights.close();
      // The embedding and the output head are stored unquantized, as the recipes leave lm_head.
      assert.equal(planMemory(opened.config, { quant, stored }).weights.decoder.format, format);
      const exact = await loadedDecoderLinears(`${dir}/dense`, EXACT);
      const loaded = await loadedDecoderLinears(`${dir}/compressed`, { quant });
      // Requantizing the same weights from float (a dense checkpoint at that --quant) moves them.
      const requantized = await loadedDecoderLinears(`${dir}/dense`, { quant });
      assert.deepEqual([...loaded.types], [quant === "q8" ? "q8_0" : "q4"]);
      assert.equal(loaded.out.size, 14);
      for (const [name, values] of exact.out) {
        assert.deepEqual(loaded.out.get(name), values, name);
        assert.ok(maxAbsDiff(requantized.out.get(name)!, values) > 0, name);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("compressed-tensors checkpoints that cannot load say why, naming the file and the tensor", async () => {
  const dir = await tempDir();
  try {
    await writeCompressedTiny(dir, { codes: "int4", strategy: "group", groupSize: 128 });
    const path = `${dir}/compressed/model.safetensors`;
    const config = JSON.parse(await Deno.readTextFile(`${dir}/compressed/config.json`));
    const entries = await readSafetensors(path);
    const q = "language_model.model.layers.0.self_attn.q_proj.";
    const rewrite = async (change: (e: SafetensorsEntry[]) => SafetensorsEntry[], json = config) => {
      await writeSafetensors(path, change(entries.map((e) => ({ ...e }))));
      await Deno.writeTextFile(`${dir}/compressed/config.json`, JSON.stringify(json));
    };
    const refused = async (pattern: RegExp) => {
      await assert.rejects(async () => (await open(`${dir}/compressed`)).weights.close(), pattern);
    };
    for (const method of ["awq", "gptq", "fp8"]) {
      await rewrite((e) => e, { ...config, quantization_config: { quant_method: method } });
      await refused(new RegExp(`"quantization_config" has quant_method "${method}": .*compressed-tensors`));
    }
    await rewrite((e) => e, {
      ...config,
      quantization_config: { ...config.quantization_config, format: "nvfp4-pack-quantized" },
    });
    await refused(/format "nvfp4-pack-quantized": only float-quantized/);
    await rewrite((e) => e, {
      ...config,
      quantization_config: { ...config.quantization_config, sparsity_config: { format: "sparse-bitmask" } },
    });
    await refused(/sparsity format "sparse-bitmask": sparse \(compressed\) weights do not load/);
    const rotated = (location: string) => ({
      ...config,
      quantization_config: {
        ...config.quantization_config,
        transform_config: {
          config_groups: { R1: { type: "hadamard", apply: [{ targets: ["Linear"], location }] } },
        },
      },
    });
    await rewrite((e) => e, rotated("input"));
    await refused(/a transform applied at "input" as the model runs \(an online rotation\)/);
    // Fused into the weights (offline), with the KV cache scales of a kv_cache_scheme beside them: loads.
    await rewrite(
      (
        e,
      ) => [...e, {
        name: "language_model.model.layers.0.self_attn.k_scale",
        dtype: "F32",
        shape: [],
        data: new Uint8Array(4),
      }],
      rotated("weight_input"),
    );
    const loads = await open(`${dir}/compressed`);
    assert.deepEqual(loads.weights.unused, []);
    loads.weights.close();
    // ... before the files' dtypes (NVFP4 codes are U8, which the safetensors reader does not take).
    await rewrite(
      (e) => [...e, { name: "x.weight_packed", dtype: "U8", shape: [2], data: new Uint8Array(2) }],
      {
        ...config,
        quantization_config: { ...config.quantization_config, format: "nvfp4-pack-quantized" },
      },
    );
    await refused(/format "nvfp4-pack-quantized": only float-quantized/);
    // 3-bit codes: three int32 words per 32 columns.
    await rewrite((e) =>
      e.map((t) =>
        t.name === `${q}weight_packed`
          ? { ...t, shape: [512, 24], data: t.data.subarray(0, 512 * 24 * 4) }
          : t
      )
    );
    await refused(
      new RegExp(
        `tensor "${q}weight_packed": is I32 \\[512,24\\] for a \\[512,256\\] weight: only 4- and 8-bit`,
      ),
    );
    await rewrite((e) => e.filter((t) => t.name !== `${q}weight_shape`));
    await refused(/needs language_model\.model\.layers\.0\.self_attn\.q_proj\.weight_shape/);
    const scales = (shape: number[]) => (e: SafetensorsEntry[]) =>
      e.map((t) =>
        t.name === `${q}weight_scale`
          ? { ...t, shape, data: new Uint8Array(shape.reduce((a, b) => a * b, 2)).fill(0x3c) }
          : t
      );
    await rewrite(scales([512, 3]));
    await refused(/weight_scale": is BF16 \[512,3\], which is not float scales dividing a 512x256 weight/);
    // Groups of 96 columns leave a ragged last one (3 scales a row): taken where quantization_config says so,
    // and a config that says otherwise of a layer is refused rather than read by another grouping.
    const grouped96 = (size: number) => ({
      ...config,
      quantization_config: {
        ...config.quantization_config,
        config_groups: {
          group_0: {
            weights: { ...config.quantization_config.config_groups.group_0.weights, group_size: size },
          },
        },
      },
    });
    await rewrite(scales([512, 3]), grouped96(128));
    await refused(
      /q_proj\.weight_scale": is BF16 \[512,3\], which is not float scales dividing a 512x256 weight/,
    );
    await rewrite(scales([512, 3]), grouped96(96));
    await refused(
      /k_proj\.weight_scale": is BF16 \[128,2\], which is not float scales dividing a 128x256 weight/,
    );
    // An asymmetric scheme's weight without its zero point would read every code off by it.
    const asymmetric = structuredClone(config);
    asymmetric.quantization_config.config_groups.group_0.weights.symmetric = false;
    await rewrite((e) => e, asymmetric);
    await refused(
      new RegExp(`tensor "${q}weight_packed": has no ${q}weight_zero_point, which .* asymmetric`),
    );
    await rewrite((e) => e.filter((t) => t.name !== `${q}weight_scale`));
    await refused(new RegExp(`tensor "${q}weight_packed": is I32 without the scales beside it`));
    // An FP8 weight without its scale, and a NaN code in one with a scale.
    await writeCompressedTiny(dir, { codes: "fp8", strategy: "channel" });
    const fp8 = await readSafetensors(path);
    await writeSafetensors(path, fp8.filter((t) => t.name !== `${q}weight_scale`));
    await refused(new RegExp(`tensor "${q}weight": is F8_E4M3 without the scales beside it`));
    await writeSafetensors(
      path,
      fp8.map((t) =>
        t.name === `${q}weight` ? { ...t, data: t.data.map((b, i) => i === 300 ? 0x7f : b) } : t
      ),
    );
    await assert.rejects(
      () => logitsOf(`${dir}/compressed`, EXACT),
      new RegExp(
        `model\\.safetensors: tensor "layers\\.0\\.attention\\.wq\\.weight" \\(stored as "${q}weight"\\): ` +
          `the code at row \\d+, column \\d+ is NaN`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("compressed-tensors codes decode as the library decodes them (golden vectors it wrote, 0.7 to 0.20)", async () => {
  const dir = new URL("./fixtures/compressed/", import.meta.url).pathname;
  const { cases } = JSON.parse(await Deno.readTextFile(`${dir}manifest.json`)) as {
    cases: Record<
      string,
      {
        weight_shape: number[];
        scheme: { group_size: number | null; block_structure: [number, number] | null };
      }
    >;
  };
  const file = await SafetensorsFile.open(`${dir}cases.safetensors`);
  try {
    const decoded: string[] = [];
    for (const [name, { weight_shape: shape, scheme }] of Object.entries(cases)) {
      const tensors = new Map(
        [...file.tensors].filter(([n]) => n.startsWith(`${name}.`) && !/\.(expected|library)$/.test(n))
          .map((
            [n, t],
          ) => [`m.${n.slice(name.length + 1)}`, { ...t, name: `m.${n.slice(name.length + 1)}` }]),
      );
      const hint = { groupSize: scheme.group_size ?? undefined, block: scheme.block_structure ?? undefined };
      if (shape[1] % 8 !== 0) {
        // 4-bit rows that end inside an int32 word: no Pixtral matrix has them, and they are refused by name.
        await assert.rejects(() => joinScaled([{ file: file.file, tensors }], hint), /whole words a row/);
        continue;
      }
      await joinScaled([{ file: file.file, tensors }], hint);
      await assertDecodesAsGolden(file, tensors, name, shape);
      decoded.push(name);
    }
    assert.equal(decoded.length, Object.keys(cases).length - 1);
  } finally {
    file.close();
  }
});

Deno.test("the block decoder's threads decode rows of scaled codes as one thread decodes them all", async () => {
  const [rows, k] = [64, 256];
  const w = Float32Array.from({ length: rows * k }, (_, i) => Math.cos(i * 0.11) * 0.03);
  const decoder = new BlockDecoder(2);
  const dir = await tempDir();
  try {
    for (const scheme of Object.values(SCHEMES)) {
      const { stored, dequantized } = compressMatrix(w, rows, k, scheme);
      await writeSafetensors(
        `${dir}/m.safetensors`,
        Object.entries(stored).map(([s, t]) => ({ name: `m.${s}`, ...t })),
      );
      const file = await SafetensorsFile.open(`${dir}/m.safetensors`);
      try {
        await joinScaled([file], hintOf(scheme));
        const t = file.tensors.get("m.weight")!;
        const codes = await file.file.read(t.offset, t.byteLength), scales = await readScales(t);
        const type = t.dtype as ScaledType, half = codes.length / 2;
        const pieces = await Promise.all([0, 1].map((p) =>
          decoder.decode(
            { type, scales: scaleRows(scales, p * rows / 2, rows / 2) },
            codes.subarray(p * half, (p + 1) * half),
          )
        ));
        assert.deepEqual(new Float32Array([...pieces[0], ...pieces[1]]), dequantized, JSON.stringify(scheme));
      } finally {
        file.close();
      }
    }
    const nan = {
      type: "F8_E4M3" as const,
      scales: { rows: 1, k: 4, groups: 1, groupSize: 4, scale: new Float32Array([1]), offset: 0 },
    };
    await assert.rejects(
      () => decoder.decode(nan, Uint8Array.of(1, 2, 0xff, 3)),
      /^Error: the code at row 0, column 2 is NaN/,
    );
  } finally {
    decoder.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("codes keep their own size by default; a --quant flag below it is followed (plan, hints and load)", async () => {
  const dir = await tempDir();
  try {
    await writeCompressedTiny(dir, { codes: "fp8", strategy: "channel" });
    const opened = await open(`${dir}/compressed`);
    const stored = new Map(opened.weights.tensors().map((t) => [t.name, t.dtype]));
    opened.weights.close();
    const { config } = opened;
    const format = (options: Partial<Precision>) =>
      planMemory(config, { stored, ...precision(config, options), ctx: 64 }).weights.decoder.format;
    // This model is small enough to load exactly (f32) by default; a large one would take q4 and keep q8, and
    // lm_head and the embedding, left unquantized by the recipe, would take q8 too unless a flag says otherwise.
    assert.equal(format({}), "F8_E4M3→f32+f32");
    assert.equal(
      planMemory(config, { stored, quant: "q4", ctx: 64 }).weights.decoder.format,
      "F8_E4M3→q8+q8",
    );
    assert.equal(format({ quant: "q4" }), "F8_E4M3→q4+q4");
    assert.equal(format({ quant: "f16" }), "F8_E4M3→f16+f16");
    // A GPU too small for q8 codes (and for q5k) is told that --quant q4 fits, though q4 is already the default.
    const options = { stored, quant: "q4" as const, ctx: 64 };
    const at = (quant: "q4" | "q5k") => {
      const p = planMemory(config, { ...options, quant, explicit: { quant: true } });
      return p.total;
    };
    const offer = {
      name: "small",
      memoryBytes: Math.floor((at("q4") + at("q5k")) / 2),
      maxBufferSize: null,
      maxStorageBufferBindingSize: null,
    };
    assert.throws(
      () => checkPlan(config, planMemory(config, options, offer), offer, options),
      /Try: .*--quant q4 \(now F8_E4M3→q8\+q8\) fits/,
    );
    const loaded = await loadedDecoderLinears(`${dir}/compressed`, {
      quant: "q4",
      explicit: { quant: true },
    });
    assert.deepEqual([...loaded.types], ["q4"]);
    const kept = await loadedDecoderLinears(`${dir}/compressed`, { quant: "q4" });
    assert.deepEqual([...kept.types], ["q8_0"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pixtral plan counts a compressed-tensors model as stored: from its files, or from its config alone", async () => {
  const dir = await tempDir();
  try {
    await writeCompressedTiny(dir, { codes: "fp8", strategy: "channel" });
    await Deno.mkdir(`${dir}/config-only`);
    await Deno.copyFile(`${dir}/compressed/config.json`, `${dir}/config-only/config.json`);
    for (const model of [`${dir}/compressed`, `${dir}/config-only/config.json`]) {
      for (
        const [flags, format] of [[[], "F8_E4M3→f32+f32"], [["--quant", "q4"], "F8_E4M3→q4+q4"]] as const
      ) {
        const { code, stdout, stderr } = await pixtral([
          "plan",
          "--model",
          model,
          "--no-gpu",
          "--json",
          ...flags,
        ])
          .output();
        assert.equal(code, 0, new TextDecoder().decode(stderr));
        assert.equal(JSON.parse(new TextDecoder().decode(stdout)).plan.weights.decoder.format, format, model);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("codes where no scale can be meant, twice-stored codes, and per-tensor zero points", async () => {
  const dir = await tempDir();
  try {
    const [rows, k] = [64, 256];
    const w = Float32Array.from({ length: rows * k }, (_, i) => Math.sin(i) * 0.02);
    const write = async (path: string, scheme: Scheme, extra: SafetensorsEntry[] = []) => {
      const { stored } = compressMatrix(w, rows, k, scheme);
      await writeSafetensors(path, [
        ...Object.entries(stored).map(([s, t]) => ({ name: `m.${s}`, ...t })),
        ...extra,
      ]);
      return await SafetensorsFile.open(path);
    };
    const float = { name: "m.weight", dtype: "F32", shape: [rows, k], data: new Uint8Array(w.buffer) };
    let file = await write(`${dir}/a.safetensors`, { codes: "int4", strategy: "channel" }, [float]);
    await assert.rejects(() => joinScaled([file]), /"m\.weight_packed": has m\.weight beside it too/);
    file.close();
    // The same codes in two shards.
    const a = await write(`${dir}/a.safetensors`, { codes: "int4", strategy: "channel" });
    const b = await write(`${dir}/b.safetensors`, { codes: "int4", strategy: "channel" });
    await assert.rejects(
      () => joinScaled([a, b]),
      /b\.safetensors: tensor "m\.weight_\w+": stored twice \(also in .*a\.safetensors\)/,
    );
    a.close();
    b.close();
    // compressed-tensors writes a per-tensor zero point as [1].
    const { stored, dequantized } = compressMatrix(w, rows, k, {
      codes: "int8",
      strategy: "tensor",
      symmetric: false,
    });
    stored.weight_zero_point.shape = [1];
    await writeSafetensors(
      `${dir}/c.safetensors`,
      Object.entries(stored).map(([s, t]) => ({ name: `m.${s}`, ...t })),
    );
    file = await SafetensorsFile.open(`${dir}/c.safetensors`);
    await joinScaled([file]);
    const t = file.tensors.get("m.weight")!;
    assert.deepEqual(
      decodeScaled("I8", await file.file.read(t.offset, t.byteLength), 0, await readScales(t)),
      dequantized,
    );
    file.close();
    // Codes in a Mistral-layout file, where no scales are read beside them.
    const entries = await readSafetensors(`${TINY}mistral/consolidated.safetensors`);
    await Deno.mkdir(`${dir}/mistral`);
    for (const f of ["params.json", "tekken.json"]) {
      await Deno.copyFile(`${TINY}mistral/${f}`, `${dir}/mistral/${f}`);
    }
    await writeSafetensors(
      `${dir}/mistral/consolidated.safetensors`,
      entries.map((e) =>
        e.name === "layers.0.attention.wq.weight"
          ? { ...e, dtype: "F8_E4M3", data: new Uint8Array(e.data.length / 2) }
          : e
      ),
    );
    await assert.rejects(
      async () => (await open(`${dir}/mistral`)).weights.close(),
      /tensor "layers\.0\.attention\.wq\.weight": is F8_E4M3 codes without their scales/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
