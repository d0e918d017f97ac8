/**
 * bitsandbytes checkpoints (transformers' load_in_4bit / load_in_8bit): codes decode as bitsandbytes
 * dequantizes them (golden vectors it wrote, scripts/gen_bnb_goldens.py), and a tiny model saved that way loads
 * into the same function as a dense checkpoint of its dequantized weights.
 */
import assert from "node:assert/strict";
import { SafetensorsFile, type StoredTensor } from "../runtime/model/weights/safetensors.ts";
import { joinBnb } from "../runtime/model/weights/bnb.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { openModel } from "../runtime/model/open.ts";
import { openModelFiles } from "../runtime/model/boot.ts";
import { PixtralModel } from "../runtime/model/pixtral.ts";
import { assertDecodesAsGolden, type Quantized, writeQuantizedTiny } from "./compressed_helpers.ts";
import { EXACT, goldenImage, gpu, gridOf, manifest, maxAbsDiff } from "./model_helpers.ts";
import { tempDir, writeSafetensors } from "./weights_helpers.ts";
import { readScales } from "../runtime/model/weights/scaled.ts";
import { fixture } from "./helpers.ts";
import { planMemory } from "../runtime/model/plan.ts";
import { storedFromConfig } from "../runtime/model/weights/quantization_config.ts";

const DIR = new URL("./fixtures/bnb/", import.meta.url).pathname;

Deno.test("bitsandbytes nf4, fp4 (double quantized or not, any storage) and int8 decode as bitsandbytes does", async () => {
  const { cases } = JSON.parse(await Deno.readTextFile(`${DIR}manifest.json`)) as {
    cases: { name: string; shape: number[]; blocksize?: number }[];
  };
  const file = await SafetensorsFile.open(`${DIR}cases.safetensors`);
  try {
    const decoded: string[] = [];
    for (const { name, shape, blocksize } of cases) {
      const tensors = new Map<string, StoredTensor>();
      for (const [n, t] of file.tensors) {
        if (!n.startsWith(`${name}.`) || /\.(expected|expected_native|original|bias)$/.test(n)) continue;
        const renamed = `m.${n.slice(name.length + 1)}`;
        tensors.set(renamed, { ...t, name: renamed });
      }
      if (blocksize && shape[1] % blocksize !== 0) {
        // Blocks across rows (a ragged or odd weight): no Pixtral matrix has them; refused by name.
        await assert.rejects(
          () => joinBnb([{ file: file.file, tensors }]),
          /only blocks that divide the rows/,
        );
        continue;
      }
      await joinBnb([{ file: file.file, tensors }]);
      await assertDecodesAsGolden(file, tensors, name, shape);
      decoded.push(name);
    }
    assert.equal(decoded.length, cases.length - 2);
  } finally {
    file.close();
  }
});

/** The 16 levels bitsandbytes stores for a quant type (as its golden file holds them). */
async function levelsOf(type: "nf4" | "fp4"): Promise<Float32Array> {
  const file = await SafetensorsFile.open(`${DIR}cases.safetensors`);
  try {
    const t = file.tensors.get(`${type}.weight.quant_map`)!;
    return new Float32Array((await file.file.read(t.offset, t.byteLength)).buffer);
  } finally {
    file.close();
  }
}

/** A matrix as transformers saves it with load_in_4bit (absmax in float32, blocks of 64) or load_in_8bit. */
function bnbMatrix(
  w: Float32Array,
  rows: number,
  k: number,
  type: "nf4" | "fp4" | "int8",
  levels: Float32Array,
): Quantized {
  const bytes = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const dequantized = new Float32Array(rows * k);
  if (type === "int8") {
    const scb = new Float32Array(rows), q = new Int8Array(rows * k);
    for (let r = 0; r < rows; r++) {
      scb[r] = Math.max(...w.subarray(r * k, (r + 1) * k).map(Math.abs));
      for (let c = 0; c < k; c++) {
        q[r * k + c] = Math.round((w[r * k + c] * 127) / scb[r]);
        dequantized[r * k + c] = Math.fround(Math.fround(q[r * k + c] * scb[r]) * Math.fround(1 / 127));
      }
    }
    return {
      stored: {
        weight: { dtype: "I8", shape: [rows, k], data: bytes(q) },
        SCB: { dtype: "F32", shape: [rows], data: bytes(scb) },
        weight_format: { dtype: "U8", shape: [], data: new Uint8Array(1) },
      },
      dequantized,
    };
  }
  const blocks = (rows * k) / 64, absmax = new Float32Array(blocks), packed = new Uint8Array((rows * k) / 2);
  for (let b = 0; b < blocks; b++) {
    absmax[b] = Math.max(...w.subarray(b * 64, (b + 1) * 64).map(Math.abs)) || 1;
    for (let e = b * 64; e < (b + 1) * 64; e++) {
      let best = 0;
      for (let c = 1; c < 16; c++) {
        if (Math.abs(levels[c] - w[e] / absmax[b]) < Math.abs(levels[best] - w[e] / absmax[b])) best = c;
      }
      packed[e >> 1] |= e % 2 ? best : best << 4;
      dequantized[e] = levels[best] * absmax[b];
    }
  }
  const state = JSON.stringify({ quant_type: type, blocksize: 64, dtype: "bfloat16", shape: [rows, k] });
  return {
    stored: {
      weight: { dtype: "U8", shape: [packed.length, 1], data: packed },
      "weight.absmax": { dtype: "F32", shape: [blocks], data: bytes(absmax) },
      "weight.quant_map": { dtype: "F32", shape: [16], data: bytes(levels) },
      [`weight.quant_state.bitsandbytes__${type}`]: {
        dtype: "U8",
        shape: [state.length],
        data: new TextEncoder().encode(state),
      },
    },
    dequantized,
  };
}

for (const type of ["nf4", "fp4", "int8"] as const) {
  Deno.test(`a bitsandbytes ${type} checkpoint computes what its dequantized weights compute, bit for bit (f32)`, async () => {
    const dir = await tempDir();
    try {
      const levels = await levelsOf(type === "fp4" ? "fp4" : "nf4");
      // As transformers quantizes by default: every linear layer but lm_head, the vision tower's too.
      const count = await writeQuantizedTiny(
        dir,
        (name, w, rows, k) =>
          /_proj\.weight$|linear_\d\.weight$/.test(name) ? bnbMatrix(w, rows, k, type, levels) : undefined,
        { quant_method: "bitsandbytes", load_in_4bit: type !== "int8", load_in_8bit: type === "int8" },
      );
      assert.equal(count, 14 + 14 + 2);
      const opened = await openModel(await locateModel(`${dir}/compressed`));
      opened.weights.close();
      assert.deepEqual(opened.weights.unused, []);
      assert.equal(
        opened.weights.tensors().filter((t) => t.dtype === (type === "int8" ? "I8" : "N4")).length,
        count,
      );
      const mm = manifest.multimodal[0];
      const image = await goldenImage(mm.pixels_from, ...Object.values(gridOf(mm.ids)) as [number, number]);
      const logits = [];
      for (const model of [`${dir}/compressed`, `${dir}/dense`]) {
        const o = await openModel(await locateModel(model));
        const m = await PixtralModel.load(await gpu(), o.config, o.weights, { ...EXACT, kvTokens: 256 });
        o.weights.close();
        logits.push(await m.sequenceLogits(mm.ids, [image]));
        m.release();
      }
      assert.equal(maxAbsDiff(logits[0], logits[1]), 0);
      if (type === "nf4") {
        // QLoRA's case: an adapter trained over nf4 weights merges into their decoded values.
        const lora = [new URL("./fixtures/lora/plain", import.meta.url).pathname];
        const adapted = [];
        for (const model of [`${dir}/compressed`, `${dir}/dense`]) {
          const files = await openModelFiles({ model, lora });
          files.tokenizer.free();
          const m = await PixtralModel.load(await gpu(), files.config, files.weights, {
            ...EXACT,
            kvTokens: 256,
          });
          files.weights.close();
          adapted.push(await m.sequenceLogits(mm.ids, [image]));
          m.release();
        }
        assert.equal(maxAbsDiff(adapted[0], adapted[1]), 0);
        assert.ok(maxAbsDiff(adapted[0], logits[0]) > 0.5);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("bitsandbytes layers that cannot load say why, naming the file and the tensor", async () => {
  const dir = await tempDir();
  try {
    const levels = await levelsOf("nf4");
    const write = async (type: "nf4" | "int8", change: (stored: Quantized["stored"]) => void = () => {}) => {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      return await writeQuantizedTiny(
        dir,
        (name, w, rows, k) => {
          if (!/layers\.0\.self_attn\.q_proj\.weight$/.test(name)) return undefined;
          const q = bnbMatrix(w, rows, k, type, levels);
          change(q.stored);
          return q;
        },
        { quant_method: "bitsandbytes", load_in_4bit: type === "nf4", load_in_8bit: type === "int8" },
      );
    };
    const refused = (pattern: RegExp) =>
      assert.rejects(
        async () => (await openModel(await locateModel(`${dir}/compressed`))).weights.close(),
        pattern,
      );
    const q = "language_model.model.layers.0.self_attn.q_proj.";
    await write("nf4", (s) => delete s["weight.quant_map"]);
    await refused(
      new RegExp(`tensor "${q}weight.quant_state.bitsandbytes__nf4": needs ${q}weight.quant_map`),
    );
    await write(
      "nf4",
      (s) =>
        s["weight.quant_state.bitsandbytes__nf4"] = { dtype: "U8", shape: [1], data: Uint8Array.of(123) },
    );
    await refused(/bitsandbytes__nf4": is not a bitsandbytes quant state/);
    await write("nf4", (s) => {
      const state = JSON.stringify({
        quant_type: "nf4",
        blocksize: 48,
        dtype: "bfloat16",
        shape: [512, 256],
      });
      s["weight.quant_state.bitsandbytes__nf4"] = {
        dtype: "U8",
        shape: [state.length],
        data: new TextEncoder().encode(state),
      };
    });
    await refused(/has blocks of 48 over rows of 256: only blocks that divide the rows are read/);
    // Double quantization's companions must be what bitsandbytes writes (float32, one nested scale per block).
    const doubled = (change: (stored: Quantized["stored"], state: Record<string, unknown>) => void) =>
      write("nf4", (s) => {
        const blocks = s["weight.absmax"].data.length / 4;
        const state: Record<string, unknown> = {
          quant_type: "nf4",
          blocksize: 64,
          dtype: "bfloat16",
          shape: [512, 256],
          nested_blocksize: 256,
          nested_offset: 0.2,
          nested_dtype: "float32",
        };
        s["weight.absmax"] = { dtype: "U8", shape: [blocks], data: new Uint8Array(blocks) };
        s["weight.nested_absmax"] = {
          dtype: "F32",
          shape: [Math.ceil(blocks / 256)],
          data: new Uint8Array(4 * Math.ceil(blocks / 256)),
        };
        s["weight.nested_quant_map"] = { dtype: "F32", shape: [256], data: new Uint8Array(1024) };
        change(s, state);
        const json = new TextEncoder().encode(JSON.stringify(state));
        s["weight.quant_state.bitsandbytes__nf4"] = { dtype: "U8", shape: [json.length], data: json };
      });
    await doubled(() => {});
    (await openModel(await locateModel(`${dir}/compressed`))).weights.close();
    await doubled((s) => s["weight.nested_absmax"] = { ...s["weight.nested_absmax"], dtype: "I32" });
    await refused(/has 8-bit absmax without float32 nested_absmax and nested_quant_map/);
    await doubled((_, state) => state.nested_dtype = "float16");
    await refused(
      /or a nested_blocksize, nested_offset or nested_dtype \(float32, bfloat16\) it does not give/,
    );
    await doubled((_, state) => state.nested_blocksize = 8);
    await refused(/has 8 nested_absmax for 2048 blocks in blocks of 8/);
    // Scales left without their quant state.
    await write("nf4", (s) => delete s["weight.quant_state.bitsandbytes__nf4"]);
    await refused(/weight\.(absmax|quant_map)": is a bitsandbytes scale without its weight's quant_state/);
    await write("int8", (s) => s.weight_format.data = Uint8Array.of(2));
    await refused(
      new RegExp(`tensor "${q}SCB": has weight_format 2, a tile layout this reader does not know`),
    );
    await write("int8", (s) => delete s.SCB);
    // Without SCB the int8 codes are a weight with no scales.
    await refused(
      new RegExp(
        `tensor "${q}weight": is I8 without the scales beside it \\(a weight_scale, or bitsandbytes' absmax or SCB\\)`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("a bitsandbytes model's plan from its config alone: every linear layer but lm_head (or the skip list) in codes", async () => {
  const { config } = await openModel(await locateModel(fixture("hf/config.json").pathname));
  const nf4 = storedFromConfig(config, { quant_method: "bitsandbytes", load_in_4bit: true })!;
  assert.equal(nf4.get("layers.0.attention.wq.weight"), "N4");
  assert.equal(nf4.get("vision_encoder.transformer.layers.1.feed_forward.w2.weight"), "N4");
  assert.equal(nf4.get("vision_language_adapter.w_in.weight"), "N4");
  assert.equal(nf4.get("output.weight"), "BF16");
  assert.equal(nf4.get("tok_embeddings.weight"), "BF16");
  const int8 = storedFromConfig(config, {
    quant_method: "bitsandbytes",
    load_in_8bit: true,
    llm_int8_skip_modules: ["vision_tower", "multi_modal_projector"],
  })!;
  assert.equal(int8.get("layers.0.attention.wq.weight"), "I8");
  assert.equal(int8.get("output.weight"), "I8");
  assert.equal(int8.get("vision_encoder.transformer.layers.0.attention.wq.weight"), "BF16");
  assert.equal(planMemory(config, { stored: nf4, quant: "q4", ctx: 64 }).weights.decoder.format, "N4→q4+q8");
});

Deno.test("bitsandbytes double quantization rounds as bitsandbytes does; q_proj's rows are read from the quant state", async () => {
  const dir = await tempDir();
  try {
    // bfloat16 nested steps, the offset in float32: absmax = bf16(bf16(map[code] · nested) + f32(offset)).
    const offset = 0.20884,
      map = Float32Array.from({ length: 256 }, (_, i) => (i - 128) / 97),
      nested = 0.0371;
    const state = new TextEncoder().encode(JSON.stringify({
      quant_type: "nf4",
      blocksize: 64,
      dtype: "bfloat16",
      shape: [2, 64],
      nested_blocksize: 256,
      nested_offset: offset,
      nested_dtype: "bfloat16",
    }));
    const f32 = (a: Float32Array) => new Uint8Array(a.buffer);
    await writeSafetensors(`${dir}/m.safetensors`, [
      { name: "m.weight", dtype: "U8", shape: [64, 1], data: new Uint8Array(64).fill(0x7f) },
      { name: "m.weight.absmax", dtype: "U8", shape: [2], data: Uint8Array.of(4, 250) },
      { name: "m.weight.quant_map", dtype: "F32", shape: [16], data: f32(await levelsOf("nf4")) },
      { name: "m.weight.nested_absmax", dtype: "F32", shape: [1], data: f32(Float32Array.of(nested)) },
      { name: "m.weight.nested_quant_map", dtype: "F32", shape: [256], data: f32(map) },
      { name: "m.weight.quant_state.bitsandbytes__nf4", dtype: "U8", shape: [state.length], data: state },
    ]);
    const file = await SafetensorsFile.open(`${dir}/m.safetensors`);
    await joinBnb([file]);
    const { scale } = await readScales(file.tensors.get("m.weight")!);
    file.close();
    const bf16 = (x: number) => {
      const u = new Uint32Array(Float32Array.of(x).buffer);
      u[0] = (u[0] + 0x7fff + ((u[0] >> 16) & 1)) & 0xffff0000;
      return new Float32Array(u.buffer)[0];
    };
    assert.deepEqual(
      [...scale],
      [4, 250].map((c) => bf16(bf16(map[c] * Math.fround(nested)) + Math.fround(offset))),
    );
    // (the offset rounded to bfloat16 first would move the first one)
    assert.notEqual(scale[0], bf16(bf16(map[4] * Math.fround(nested)) + bf16(offset)));

    // Without head_dim in the config, the rows of q_proj (not its packed bytes) say which head size is meant.
    const levels = await levelsOf("nf4");
    await writeQuantizedTiny(
      `${dir}/tiny`,
      (name, w, rows, k) => name.endsWith("_proj.weight") ? bnbMatrix(w, rows, k, "nf4", levels) : undefined,
      { quant_method: "bitsandbytes", load_in_4bit: true },
    );
    const configPath = `${dir}/tiny/compressed/config.json`;
    const config = JSON.parse(await Deno.readTextFile(configPath));
    delete config.text_config.head_dim;
    await Deno.writeTextFile(configPath, JSON.stringify(config));
    await assert.rejects(
      async () => (await openModel(await locateModel(`${dir}/tiny/compressed`))).weights.close(),
      /the weights have 512 q_proj rows = 8 heads x 64/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
