/**
 * GGUF Q4_K_M through the model: the quantized kernels compute exactly what the dequantized weights compute, so
 * the difference from the f32 goldens is the format's (llama.cpp agrees on about half the top-1 tokens on this
 * random-weight model), not the kernels'. GGUF blocks decode as llama.cpp's gguf-py decodes them, on the GPU or
 * (the legacy types no kernel reads) on the CPU, and a model in them loads and runs.
 */
import assert from "node:assert/strict";
import { dequantize, dequantizeRef, quantizeRef } from "../runtime/gpu/ops/quantize.ts";
import { type BlockFormat, isBlockFormat } from "../runtime/gpu/dtype.ts";
import { joinRows } from "../runtime/gpu/tensor.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { matrixShape, pieceRows, STORED } from "../runtime/model/load.ts";
import { openModel } from "../runtime/model/open.ts";
import { openModelFiles } from "../runtime/model/boot.ts";
import { PixtralModel } from "../runtime/model/pixtral.ts";
import type { WeightSource } from "../runtime/model/weights/source.ts";
import { fixture } from "./helpers.ts";
import { planMemory } from "../runtime/model/plan.ts";
import { grid } from "../runtime/gpu/ops/iq.ts";
import { tensorBytes } from "../runtime/model/weights/dtype.ts";
import { expectedTensors } from "../runtime/model/tensors.ts";
import { canonicalName } from "../runtime/model/weights/names.ts";
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
import { buildGguf, ggufEntries, kvsOf } from "./weights_helpers.ts";
import { assertKQuantClose, randomBlocks } from "./gpu_helpers.ts";

const VOCAB = 2048;

/** The i-quants (read as stored since they have kernels) and their ggml type ids. */
const IQ = [
  ["IQ2_XXS", 16],
  ["IQ2_XS", 17],
  ["IQ2_S", 22],
  ["IQ3_XXS", 18],
  ["IQ3_S", 21],
  ["IQ1_S", 19],
  ["IQ1_M", 29],
] as const;
const TYPES = [...IQ, ["Q2_K", 10]] as const;

/** The GGUF block types the kernels read, and their GPU formats. */
const GPU_TYPE = Object.fromEntries(
  Object.entries(STORED).filter(([, gpu]) => isBlockFormat(gpu)),
) as Record<string, BlockFormat>;

/**
 * The same weights with every quantized tensor decoded to F32 on the CPU (ggml's dequantize_row_*): the kernels'
 * reference for the types they read, and for the others the decoding checked against gguf-py.
 */
function dequantizedOnCpu(source: WeightSource): WeightSource {
  const quantized = (dtype: string) => dtype in GPU_TYPE;
  const decode = async (name: string): Promise<Uint8Array<ArrayBuffer>> => {
    const info = source.info(name);
    const bytes = await source.read(name);
    if (!quantized(info.dtype)) return bytes;
    const [rows, k] = matrixShape(info.shape);
    return new Uint8Array(
      dequantizeRef(GPU_TYPE[info.dtype], bytes, rows, k).buffer as ArrayBuffer,
    );
  };
  const info = (name: string) => {
    const i = source.info(name);
    return quantized(i.dtype)
      ? { ...i, dtype: "F32" as const, byteLength: i.shape.reduce((a, b) => a * b, 4) }
      : i;
  };
  return {
    ...source,
    tensors: () => source.tensors().map((t) => info(t.name)),
    info,
    read: decode,
    async *chunks(name) {
      yield { byteOffset: 0, bytes: await decode(name) };
    },
    scales: (name) => source.scales(name),
    close: () => source.close(),
  };
}

async function openQ4KM() {
  const spec = LAYOUTS.ggufQ4KM;
  return await openModel(
    await locateModel(fixture(spec.model).pathname, { mmproj: fixture(spec.mmproj).pathname }),
  );
}

Deno.test("GGUF Q8_0, Q4_K and Q6_K blocks: the GPU decodes every fixture tensor exactly as ggml does", async () => {
  const ctx = await gpu();
  const counts: Record<string, number> = {};
  for (const layout of ["ggufQ8", "ggufQ4KM"] as const) {
    const spec = LAYOUTS[layout];
    const { weights } = await openModel(
      await locateModel(fixture(spec.model).pathname, { mmproj: fixture(spec.mmproj).pathname }),
    );
    try {
      for (const info of weights.tensors()) {
        if (!(info.dtype in GPU_TYPE)) continue;
        const [rows, k] = matrixShape(info.shape);
        const type = GPU_TYPE[info.dtype];
        const bytes = await weights.read(info.name);
        const rec = ctx.record("dequantize");
        const src = rec.upload(type, [rows, k], bytes);
        const out = rec.scratch("f32", [rows, k]);
        dequantize(rec, out, src);
        const read = rec.read(out);
        await rec.submit();
        assert.deepEqual(
          new Float32Array((await read).buffer),
          dequantizeRef(type, bytes, rows, k),
          info.name,
        );
        counts[info.dtype] = (counts[info.dtype] ?? 0) + 1;
      }
    } finally {
      weights.close();
    }
  }
  // Q8_0: the text model's 16 matrices and the mmproj's; Q4_K_M: 13 Q4_K and 3 Q6_K.
  assert.deepEqual({ q4k: counts.Q4_K, q6k: counts.Q6_K }, { q4k: 13, q6k: 3 });
  assert.ok(counts.Q8_0 >= 16, JSON.stringify(counts));
});

Deno.test("GGUF Q4_K_M logits equal those of its weights dequantized on the CPU and run in f32", async () => {
  const ctx = await gpu();
  const mm = manifest.multimodal[0];
  const image = await goldenImage(mm.pixels_from, ...Object.values(gridOf(mm.ids)) as [number, number]);
  const options = { activations: "f32", kv: "f32", quant: "f32", visionQuant: "f32", kvTokens: 256 } as const;
  const opened = [await openQ4KM(), await openQ4KM()];
  const quantized = await PixtralModel.load(ctx, opened[0].config, opened[0].weights, options);
  const decoded = await PixtralModel.load(
    ctx,
    opened[1].config,
    dequantizedOnCpu(opened[1].weights),
    options,
  );
  opened.forEach((o) => o.weights.close());
  try {
    const a = await quantized.sequenceLogits(mm.ids, [image]);
    const b = await decoded.sequenceLogits(mm.ids, [image]);
    const diff = maxAbsDiff(a, b);
    console.log(`Q4_K_M kernels vs CPU-dequantized weights: max |logit diff| ${diff.toExponential(2)}`);
    assert.ok(diff < 1e-3, String(diff));
  } finally {
    quantized.release();
    decoded.release();
  }
});

Deno.test("GGUF blocks of every type decode on the GPU exactly as llama.cpp's gguf-py decodes them", async () => {
  const golden: Record<string, { blocks: string; values: string; grid_sha256?: string }> = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/gguf/blocks.json", import.meta.url)),
  );
  assert.deepEqual(
    Object.keys(golden).sort(),
    ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q5_K", "IQ4_NL", "IQ4_XS", ...IQ.map(([type]) => type)]
      .sort(),
  );
  const ctx = await gpu();
  for (const [type, { blocks, values, grid_sha256 }] of Object.entries(golden)) {
    if (grid_sha256) {
      // The random blocks reach a fraction of an i-quant grid's rows: the whole grid, unpacked, against gguf-py's.
      const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", grid(type as "IQ1_S")));
      assert.equal(digest.toHex(), grid_sha256, `${type} grid`);
    }
    const want = new Float32Array(Uint8Array.fromBase64(values).buffer);
    const bytes = Uint8Array.fromBase64(blocks);
    const format = GPU_TYPE[type];
    const rec = ctx.record("dequantize");
    const out = rec.scratch("f32", [1, want.length]);
    dequantize(rec, out, rec.upload(format, [1, want.length], bytes));
    const read = rec.read(out);
    await rec.submit();
    const decoded: [string, Float32Array][] = [
      [`${type} reference`, dequantizeRef(format, bytes, 1, want.length)],
      [`${type} kernel`, new Float32Array((await read).buffer)],
    ];
    for (const [what, got] of decoded) {
      assert.equal(got.length, want.length, what);
      const wrong = got.findIndex((v, i) => v !== want[i]);
      assert.equal(wrong, -1, `${what}: value ${wrong} is ${got[wrong]}, gguf-py ${want[wrong]}`);
    }
  }
});

Deno.test("a GGUF in the legacy types (Q4_0 ... Q5_1) is read as stored: planned at its size, computing what its decoded weights compute", async () => {
  const path = new URL("./fixtures/gguf/tiny-pixtral-text-mixed.gguf", import.meta.url).pathname;
  const open = async () =>
    await openModel(await locateModel(path, { mmproj: fixture(LAYOUTS.gguf.mmproj).pathname }));
  const opened = [await open(), await open()];
  const tensors = opened[0].weights.tensors();
  assert.deepEqual(
    [...new Set(tensors.map((t) => t.dtype))].sort(),
    ["F32", "IQ4_NL", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q5_K"],
  );
  // Every block at its own size, whatever --quant asks.
  const stored = new Map(tensors.map((t) => [t.name, t.dtype]));
  const decoder = tensors.filter((t) => t.component === "decoder");
  for (const quant of ["q4", "q8"] as const) {
    const plan = planMemory(opened[0].config, { stored, quant, explicit: { quant: true }, ctx: 1024 });
    assert.equal(plan.weights.decoder.bytes, decoder.reduce((n, t) => n + tensorBytes(t.dtype, t.shape)!, 0));
    assert.equal(plan.weights.decoder.format, "IQ4_NL+Q4_0+Q4_1+Q5_0+Q5_1+Q5_K");
  }

  const ctx = await gpu();
  const mm = manifest.multimodal[0];
  const image = await goldenImage(mm.pixels_from, ...Object.values(gridOf(mm.ids)) as [number, number]);
  const exact = { activations: "f32", kv: "f32", quant: "f32", visionQuant: "f32", kvTokens: 256 } as const;
  const models = [
    await PixtralModel.load(ctx, opened[0].config, opened[0].weights, exact),
    await PixtralModel.load(ctx, opened[1].config, dequantizedOnCpu(opened[1].weights), exact),
  ];
  opened.forEach((o) => o.weights.close());
  try {
    const [loaded, decoded] = await Promise.all(models.map((m) => m.sequenceLogits(mm.ids, [image])));
    const diff = maxAbsDiff(loaded, decoded);
    assert.ok(diff < 1e-3, String(diff));
    const golden = await readF32(`golden/model/${mm.logits.file}`);
    const [want, got] = [golden, loaded].map((l) => argmaxRows(l, VOCAB));
    console.log(
      `mixed GGUF: kernels vs its decoded weights ${diff.toExponential(1)}; against the f32 goldens ${
        maxAbsDiff(loaded, golden).toFixed(3)
      }, top-1 ${got.filter((id, i) => id === want[i]).length} of ${want.length}`,
    );
  } finally {
    models.forEach((m) => m.release());
  }
});

Deno.test("a GGUF of i-quants (IQ1_S ... IQ3_S) and Q2_K is read as stored and computes what its decoded weights compute", async () => {
  // gguf-py cannot quantize to i-quants (they need an importance matrix): random blocks with small finite scales,
  // whose decoding is checked bit for bit against gguf-py above.
  const { kvs, tensors } = await ggufEntries(fixture(LAYOUTS.gguf.model).pathname);
  const quantized = [], decoded = [];
  let n = 0;
  for (const t of tensors) {
    if (t.ne.length !== 2 || t.ne[0] % 256 !== 0) {
      quantized.push(t);
      decoded.push(t);
      continue;
    }
    const [type, id] = TYPES[n % TYPES.length];
    const format = GPU_TYPE[type];
    const bytes = randomBlocks(format, t.ne[1], t.ne[0], 100 + n++);
    quantized.push({ ...t, type: id, data: bytes });
    decoded.push({ ...t, data: new Uint8Array(dequantizeRef(format, bytes, t.ne[1], t.ne[0]).buffer) });
  }
  const dir = await Deno.makeTempDir();
  try {
    const logits = [];
    for (const [name, entries] of [["iq", quantized], ["f32", decoded]] as const) {
      await Deno.writeFile(`${dir}/${name}.gguf`, buildGguf(kvsOf(kvs), entries));
      const opened = await openModel(await locateModel(`${dir}/${name}.gguf`));
      if (name === "iq") {
        // Planned at their own size, whatever the default quantization.
        const tensors = opened.weights.tensors();
        const stored = new Map(tensors.map((t) => [t.name, t.dtype]));
        const plan = planMemory(opened.config, { stored, quant: "q4", ctx: 64 }).weights.decoder;
        assert.equal(plan.format, "IQ1_M+IQ1_S+IQ2_S+IQ2_XS+IQ2_XXS+IQ3_S+IQ3_XXS+Q2_K");
        const decoder = tensors.filter((t) => t.component === "decoder");
        assert.equal(decoder.filter((t) => t.dtype !== "F32").length, 16);
        assert.equal(plan.bytes, decoder.reduce((n, t) => n + tensorBytes(t.dtype, t.shape)!, 0));
      }
      const model = await PixtralModel.load(await gpu(), opened.config, opened.weights, {
        activations: "f32",
        kv: "f32",
        quant: "f32",
        kvTokens: 64,
      });
      opened.weights.close();
      try {
        // 6 tokens take the matrix-vector kernels, 40 the tiled ones.
        const long = [...manifest.text[1].ids, ...Array.from({ length: 34 }, (_, i) => 20 + (i * 97) % 2000)];
        logits.push([
          await model.sequenceLogits(manifest.text[1].ids, []),
          await model.sequenceLogits(long, []),
        ]);
      } finally {
        model.release();
      }
    }
    // f32 sums of the same products in another order: within a few ulps of the largest logit.
    for (const [i, path] of ["matrix-vector", "tiled"].entries()) {
      const [iq, f32] = [logits[0][i], logits[1][i]];
      const diff = maxAbsDiff(iq, f32), largest = Math.max(...f32.map(Math.abs));
      assert.ok(diff <= 1e-5 * largest, `${path}: ${diff} of ${largest}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a GGUF's quantization is named as llama.cpp and Ollama name it (general.file_type)", async () => {
  for (const [layout, name] of [["ggufQ4KM", "Q4_K_M"], ["ggufQ8", "Q8_0"], ["gguf", "F32"]] as const) {
    const files = await openModelFiles({ model: fixture(LAYOUTS[layout].model).pathname });
    files.tokenizer.free();
    files.weights.close();
    assert.equal(files.fileType, name);
  }
});

Deno.test("quantize on load with --quant q4km remakes llama.cpp's Q4_K_M file of the fixture: types, blocks, logits", async (t) => {
  // The fixture's Q4_K_M file is llama-quantize's of its f32 file (no importance matrix): 13 Q4_K and 3 Q6_K.
  const { tensors: f32 } = await ggufEntries(fixture(LAYOUTS.gguf.model).pathname);
  const { tensors: file } = await ggufEntries(fixture(LAYOUTS.ggufQ4KM.model).pathname);
  const K_QUANTS: Record<number, "q4_k" | "q6_k"> = { 12: "q4_k", 14: "q6_k" };
  await t.step("the CPU reference writes every one of the file's Q4_K and Q6_K blocks", () => {
    const blocks = file.filter((e) => e.type in K_QUANTS);
    assert.equal(blocks.length, 16);
    for (const stored of blocks) {
      const x = new Float32Array(f32.find((e) => e.name === stored.name)!.data.slice().buffer);
      const k = stored.ne[0];
      assert.deepEqual(quantizeRef(K_QUANTS[stored.type], x, x.length / k, k), stored.data, stored.name);
    }
  });
  const ctx = await gpu();
  const [ours, theirs, exact] = [
    await loadTiny("gguf", { ...EXACT, quant: "q4km" }, ctx),
    await loadTiny("ggufQ4KM", EXACT, ctx),
    await loadTiny("gguf", EXACT, ctx),
  ];
  let same = true; // every block the file's
  try {
    await t.step(
      "the GPU: each decoder matrix of the file's type, its blocks as close as the kernel test asks",
      async () => {
        const matrices = expectedTensors(ours.config).filter((s) =>
          s.component === "decoder" && s.shape.length === 2
        );
        for (const { name } of matrices) {
          const [a, b] = [ours.weight(name), theirs.weight(name)];
          assert.equal(a.dtype, b.dtype, name);
          const x = await ctx.readFloats(exact.weight(name));
          const [got, want] = [await ctx.readBytes(a), await ctx.readBytes(b)];
          assertKQuantClose(ctx, a.dtype as "q4_k" | "q6_k", got, want, x, a.rowLength);
          same &&= got.every((byte, i) => byte === want[i]);
        }
        assert.deepEqual(
          matrices.filter(({ name }) => ours.weight(name).dtype === "q6_k").map(({ name }) => name),
          ["layers.1.attention.wv.weight", "layers.1.feed_forward.w2.weight", "output.weight"],
        );
        // Layer 1's q and k still share one product, its v (Q6_K) takes its own.
        const qkv = ["wq", "wk", "wv"].map((w) => ours.weight(`layers.1.attention.${w}.weight`));
        assert.ok(joinRows(qkv.slice(0, 2)) && !joinRows(qkv));
      },
    );
    await t.step("the logits: the file's, where the blocks are the same", async () => {
      // Text only: the recipe leaves the vision encoder alone.
      const ids = manifest.text.flatMap((t) => t.ids);
      const a = await ours.sequenceLogits(ids), b = await theirs.sequenceLogits(ids);
      const diff = maxAbsDiff(a, b);
      console.log(
        `q4km from the f32 file vs llama.cpp's Q4_K_M file: max |logit diff| ${diff.toExponential(2)}`,
      );
      if (same) assert.equal(diff, 0);
      else assert.ok(diff < 0.05, `${diff}`);
    });
  } finally {
    for (const model of [ours, theirs, exact]) model.release();
  }
});

Deno.test("quantize on load with --quant q5km and q6k remakes llama.cpp's Q5_K_M and Q6_K files of the fixture", async (t) => {
  // scripts/gen_k_quant_goldens.py: llama_model_quantize of the fixture's f32 file, each tensor's type and hash.
  const golden: Record<string, Record<string, { type: string; sha256: string }>> = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/gguf/k_quant_models.json", import.meta.url)),
  );
  const { tensors: f32 } = await ggufEntries(fixture(LAYOUTS.gguf.model).pathname);
  const sha256 = async (bytes: Uint8Array<ArrayBuffer>) =>
    new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)).toHex();
  const ctx = await gpu();
  const exact = await loadTiny("gguf", EXACT, ctx);
  try {
    for (const [file, quant] of [["Q5_K_M", "q5km"], ["Q6_K", "q6k"]] as const) {
      await t.step(`${file} (--quant ${quant})`, async () => {
        const model = await loadTiny("gguf", { ...EXACT, quant }, ctx);
        try {
          assert.equal(Object.keys(golden[file]).length, 16);
          for (const [name, want] of Object.entries(golden[file])) {
            const dtype = want.type.toLowerCase() as "q5_k" | "q6_k";
            const entry = f32.find((e) => e.name === name)!;
            const x = new Float32Array(entry.data.slice().buffer), k = entry.ne[0];
            assert.equal(
              await sha256(quantizeRef(dtype, x, x.length / k, k)),
              want.sha256,
              `${name}: CPU reference`,
            );
            // On the GPU: the file's type, and blocks as close as the kernel test asks (rows in the loaded order).
            const w = model.weight(canonicalName("gguf", name)!);
            assert.equal(w.dtype, dtype, name);
            const loaded = await ctx.readFloats(exact.weight(canonicalName("gguf", name)!));
            const reference = quantizeRef(dtype, loaded, loaded.length / k, k);
            assertKQuantClose(ctx, dtype, await ctx.readBytes(w), reference, loaded, k);
          }
        } finally {
          model.release();
        }
      });
    }
  } finally {
    exact.release();
  }
});

Deno.test("a tensor quantized piece by piece is cut where rows start on a word, as the kernels write whole words", async () => {
  assert.equal(pieceRows(21845, "q6_k", 768), 21844); // 630-byte rows: every other one starts on a word
  assert.equal(pieceRows(21845, "q8_0", 96), 21844); // 102-byte rows
  assert.equal(pieceRows(21845, "f16", 3), 21844);
  assert.equal(pieceRows(21845, "q6_k", 512), 21845); // 420-byte rows
  assert.equal(pieceRows(21845, "q4_k", 256), 21845);
  assert.equal(pieceRows(0, "q6_k", 256), 2);
  assert.equal(pieceRows(0, "q5_k", 256), 1);
  // Loaded in pieces of a few rows (w2's Q6_K rows are 630 bytes: a piece of 3 would end mid-word), as stored and
  // with a LoRA merged into the blocks: the same bytes as in one piece (with the merge, the same weights but for
  // rounding: its product over a few rows sums in another order than over the whole tensor).
  const ctx = await gpu();
  const spec = LAYOUTS.ggufQ4KM, lora = [new URL("./fixtures/lora/plain", import.meta.url).pathname];
  for (const [path, merge] of [[LAYOUTS.gguf.model, []], [spec.model, lora]] as const) {
    const load = async (pieceBytes?: number) => {
      const files = await openModelFiles({
        model: fixture(path).pathname,
        mmproj: fixture(spec.mmproj).pathname,
        lora: [...merge],
      });
      files.tokenizer.free();
      try {
        return await PixtralModel.load(ctx, files.config, files.weights, {
          ...EXACT,
          quant: "q6k",
          kvTokens: 16,
          pieceBytes,
        });
      } finally {
        files.weights.close();
      }
    };
    const [whole, pieces] = [await load(), await load(3 * 768 * 4)];
    try {
      const matrices = expectedTensors(whole.config).filter((s) =>
        s.component === "decoder" && s.role !== "norm"
      );
      for (const { name } of matrices) {
        const [a, b] = [pieces.weight(name), whole.weight(name)];
        assert.equal(a.dtype, b.dtype, name);
        const [got, want] = [await ctx.readBytes(a), await ctx.readBytes(b)];
        if (merge.length === 0) assert.deepEqual(got, want, name);
        else {
          const [x, y] = [got, want].map((bytes) => dequantizeRef(a.dtype, bytes, a.rows, a.rowLength));
          const rms = (v: (i: number) => number) =>
            Math.sqrt(x.reduce((n, _, i) => n + v(i) ** 2, 0) / x.length);
          assert.ok(rms((i) => x[i] - y[i]) < 0.01 * rms((i) => y[i]), name);
        }
      }
      // w2 ([256, 768]: odd Q6_K rows) was quantized, in pieces of 2 rows.
      assert.equal(pieces.weight("layers.1.feed_forward.w2.weight").dtype, "q6_k");
    } finally {
      whole.release();
      pieces.release();
    }
  }
});
