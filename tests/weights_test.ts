import assert from "node:assert/strict";
import { locateModel } from "../runtime/model/locate.ts";
import { type OpenedModel, openModel } from "../runtime/model/open.ts";
import { toFloat32 } from "../runtime/model/weights/convert.ts";
import { rotateHalfToInterleaved } from "../runtime/model/weights/permute.ts";
import { SafetensorsFile } from "../runtime/model/weights/safetensors.ts";
import { fixtureJson } from "./helpers.ts";
import {
  buildGguf,
  dequantQ4_K,
  dequantQ8_0,
  ggufEntries,
  kvsOf,
  readSafetensors,
  tempDir,
  TINY,
  writeSafetensors,
} from "./weights_helpers.ts";

const GGUF = `${TINY}gguf/`;

async function open(model: string, mmproj?: string): Promise<OpenedModel> {
  return await openModel(await locateModel(model, { mmproj }));
}

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length),
    y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

interface Manifest {
  tensors: { mistral: string; hf: string; shape: number[]; hf_rope_permuted: boolean }[];
}

Deno.test("Mistral, Hugging Face and GGUF F32 layouts give the same canonical tensors, bit for bit", async () => {
  const manifest = await fixtureJson<Manifest>("weights-manifest.json");
  const mistral = await open(`${TINY}mistral`);
  const hf = await open(`${TINY}hf`);
  const gguf = await open(`${GGUF}tiny-pixtral-text-f32.gguf`, `${GGUF}tiny-pixtral-mmproj-f32.gguf`);
  try {
    const names = mistral.weights.tensors().map((t) => t.name);
    assert.deepEqual(names.toSorted(), manifest.tensors.map((t) => t.mistral).toSorted());
    assert.deepEqual(hf.weights.tensors().map((t) => t.name).toSorted(), names.toSorted());
    assert.deepEqual(gguf.weights.tensors().map((t) => t.name).toSorted(), names.toSorted());
    assert.deepEqual(mistral.weights.unused, []);
    // The mmproj's copy of the [IMG_BREAK] text row is expected there: nothing to warn about.
    assert.deepEqual(gguf.weights.unused, []);

    for (const entry of manifest.tensors) {
      const name = entry.mistral;
      const info = hf.weights.info(name);
      assert.equal(info.storedName, entry.hf);
      assert.equal(info.permuted, entry.hf_rope_permuted, name);
      assert.deepEqual(info.shape, entry.shape);
      assert.deepEqual(
        gguf.weights.info(name).shape,
        entry.shape,
        `GGUF dims reversed into PyTorch order: ${name}`,
      );

      const native = await mistral.weights.read(name);
      assert.equal(mistral.weights.info(name).dtype, "BF16");
      assert.ok(bytesEqual(await hf.weights.read(name), native), `HF ${entry.hf} equals Mistral ${name}`);
      const g = gguf.weights.info(name);
      assert.equal(g.dtype, "F32");
      assert.ok(
        bitsEqual(toFloat32("F32", await gguf.weights.read(name)), toFloat32("BF16", native)),
        `GGUF ${name}`,
      );
    }
  } finally {
    [mistral, hf, gguf].forEach((m) => m.weights.close());
  }
});

Deno.test("HF q/k rows are stored in rotate-half order and are permuted back per head (spec 3.3)", async () => {
  // Two heads of four rows, one byte per row: native row h*4 + 2i = HF row h*4 + i, native h*4+2i+1 = HF h*4+i+2.
  const hfRows = Uint8Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual([...rotateHalfToInterleaved(hfRows, 1, 4)], [0, 2, 1, 3, 4, 6, 5, 7]);
  assert.throws(() => rotateHalfToInterleaved(hfRows, 1, 3), /whole heads/);

  // On the fixture the raw HF rows differ from the native ones, so the permutation is doing the work above.
  const raw = await SafetensorsFile.open(`${TINY}hf/model.safetensors`);
  const mistral = await open(`${TINY}mistral`);
  try {
    for (
      const [hfName, name, heads] of [
        ["language_model.model.layers.0.self_attn.q_proj.weight", "layers.0.attention.wq.weight", 8],
        ["language_model.model.layers.1.self_attn.k_proj.weight", "layers.1.attention.wk.weight", 2],
        [
          "vision_tower.transformer.layers.0.attention.k_proj.weight",
          "vision_encoder.transformer.layers.0.attention.wk.weight",
          4,
        ],
      ] as const
    ) {
      const t = raw.tensors.get(hfName)!;
      const stored = await t.file.read(t.offset, t.byteLength);
      const native = await mistral.weights.read(name);
      assert.ok(!bytesEqual(stored, native), `${hfName} is stored permuted`);
      const rowBytes = t.shape[1] * 2, headDim = t.shape[0] / heads;
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < headDim / 2; i++) {
          const row = (bytes: Uint8Array, r: number) => bytes.subarray(r * rowBytes, (r + 1) * rowBytes);
          assert.ok(bytesEqual(row(native, h * headDim + 2 * i), row(stored, h * headDim + i)));
          assert.ok(
            bytesEqual(row(native, h * headDim + 2 * i + 1), row(stored, h * headDim + i + headDim / 2)),
          );
        }
      }
    }
  } finally {
    raw.close();
    mistral.weights.close();
  }
});

Deno.test("GGUF Q8_0 and Q4_K_M tensors come back as raw blocks of the right size and orientation", async () => {
  const mistral = await open(`${TINY}mistral`);
  const q8 = await open(`${GGUF}tiny-pixtral-text-Q8_0.gguf`, `${GGUF}tiny-pixtral-mmproj-Q8_0.gguf`);
  // The text GGUF alone (its folder's mmproj left out).
  const q4 = await openModel({ ...await locateModel(`${GGUF}tiny-pixtral-text-Q4_K_M.gguf`), mmproj: null });
  try {
    assert.equal(q4.config.vision, null, "text-only without an mmproj");
    const counts: Record<string, number> = {};
    for (const t of q4.weights.tensors()) counts[t.dtype] = (counts[t.dtype] ?? 0) + 1;
    assert.deepEqual(counts, { F32: 5, Q4_K: 13, Q6_K: 3 });
    assert.equal(q4.weights.info("output.weight").dtype, "Q6_K");

    for (const source of [q8, q4]) {
      for (const t of source.weights.tensors()) {
        const bytes = await source.weights.read(t.name);
        const elements = t.shape.reduce((n, d) => n * d, 1);
        const blockBytes = { Q8_0: 34 / 32, Q4_K: 144 / 256, Q6_K: 210 / 256, F32: 4 } as Record<
          string,
          number
        >;
        assert.equal(bytes.length, elements * blockBytes[t.dtype], `${t.name} ${t.dtype}`);
        assert.equal(t.byteLength, bytes.length);
        if (t.dtype === "F32" && t.role === "norm") {
          const master = toFloat32("BF16", await mistral.weights.read(t.name));
          assert.ok(bitsEqual(toFloat32("F32", bytes), master), `${t.name} F32 stays exact`);
        }
        if (t.dtype !== "Q8_0" && t.dtype !== "Q4_K") continue;
        // Decoded with the format's definition, the blocks approximate the masters in the same row order.
        const master = toFloat32("BF16", await mistral.weights.read(t.name));
        const decoded = t.dtype === "Q8_0" ? dequantQ8_0(bytes) : dequantQ4_K(bytes);
        let err = 0, norm = 0;
        for (let i = 0; i < master.length; i++) {
          err += (decoded[i] - master[i]) ** 2;
          norm += master[i] ** 2;
        }
        const relative = Math.sqrt(err / norm);
        assert.ok(
          relative < (t.dtype === "Q8_0" ? 0.01 : 0.12),
          `${t.name} ${t.dtype} relative error ${relative}`,
        );
      }
    }
    const mmproj = q8.weights.tensors().filter((t) => t.component !== "decoder");
    for (const t of mmproj) {
      const float = t.role === "conv" || t.role === "norm" || t.role === "bias";
      assert.equal(t.dtype, float ? "F32" : "Q8_0", t.name);
    }
  } finally {
    [mistral, q8, q4].forEach((m) => m.weights.close());
  }
});

Deno.test("chunks() streams whole rows (whole heads for permuted q/k) that concatenate to read()", async () => {
  const hf = await open(`${TINY}hf`);
  const q4 = await open(`${GGUF}tiny-pixtral-text-Q4_K_M.gguf`);
  try {
    for (
      const [source, name, unit] of [
        [hf, "layers.0.attention.wq.weight", 64 * 256 * 2], // one head of 64 rows of 256 bf16
        [hf, "layers.0.feed_forward.w2.weight", 768 * 2], // one row
        [q4, "layers.0.feed_forward.w1.weight", 144], // one Q4_K row of 256 elements
      ] as const
    ) {
      const whole = await source.weights.read(name);
      const pieces: Uint8Array[] = [];
      let expected = 0;
      for await (const { byteOffset, bytes } of source.weights.chunks(name, 100)) {
        assert.equal(byteOffset, expected);
        assert.equal(bytes.length % unit, 0);
        expected += bytes.length;
        pieces.push(bytes);
      }
      assert.ok(pieces.length > 1);
      const joined = new Uint8Array(expected);
      pieces.reduce((at, p) => (joined.set(p, at), at + p.length), 0);
      assert.ok(bytesEqual(joined, whole), name);
    }
  } finally {
    hf.weights.close();
    q4.weights.close();
  }
});

Deno.test("sharded Hugging Face checkpoints (model.safetensors.index.json) read like the single file", async () => {
  const dir = await tempDir();
  try {
    const entries = await readSafetensors(`${TINY}hf/model.safetensors`);
    const half = Math.floor(entries.length / 2);
    const shards = [entries.slice(0, half), entries.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(`${dir}/${file}`, shard);
      for (const e of shard) weightMap[e.name] = file;
    }
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ metadata: {}, weight_map: weightMap }),
    );
    await Deno.copyFile(`${TINY}hf/config.json`, `${dir}/config.json`);

    const sharded = await open(dir);
    const single = await open(`${TINY}hf`);
    try {
      assert.equal(sharded.location.weightFiles[0], `${dir}/model.safetensors.index.json`);
      assert.equal(sharded.weights.files.length, 2);
      for (const t of single.weights.tensors()) {
        assert.ok(bytesEqual(await sharded.weights.read(t.name), await single.weights.read(t.name)), t.name);
      }
    } finally {
      sharded.weights.close();
      single.weights.close();
    }

    // An index that names a tensor its shard lacks is an error naming both.
    const moved = shards[1][0].name;
    weightMap[moved] = "model-00001-of-00002.safetensors";
    await Deno.writeTextFile(
      `${dir}/model.safetensors.index.json`,
      JSON.stringify({ weight_map: weightMap }),
    );
    await assert.rejects(
      () => open(dir),
      (err: Error) =>
        err.name === "WeightFileError" && (err as { kind?: string }).kind === "missing" &&
        err.message.includes("model-00001-of-00002.safetensors") && err.message.includes(moved),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("F32 and F16 safetensors are read as stored, HF q/k permuted whatever the element size", async () => {
  const dir = await tempDir();
  const mistral = await open(`${TINY}mistral`);
  try {
    const entries = await readSafetensors(`${TINY}hf/model.safetensors`);
    const asF32 = entries.map((e) => {
      const values = toFloat32("BF16", e.data);
      return { ...e, dtype: "F32", data: new Uint8Array(values.buffer) };
    });
    // F16 for the decoder, F32 for the rest: one checkpoint may mix dtypes.
    const mixed = asF32.map((e) =>
      e.name.startsWith("language_model.")
        ? {
          ...e,
          dtype: "F16",
          data: new Uint8Array(new Float16Array(new Float32Array(e.data.buffer)).buffer),
        }
        : e
    );
    await Deno.copyFile(`${TINY}hf/config.json`, `${dir}/config.json`);
    for (const [variant, tensors] of [["f32", asF32], ["mixed", mixed]] as const) {
      await writeSafetensors(`${dir}/model.safetensors`, tensors);
      const hf = await open(dir);
      try {
        for (const t of mistral.weights.tensors()) {
          const info = hf.weights.info(t.name);
          const master = toFloat32("BF16", await mistral.weights.read(t.name));
          const values = toFloat32(info.dtype, await hf.weights.read(t.name));
          if (info.dtype === "F32") {
            assert.ok(bitsEqual(values, master), `${variant} ${t.name}`);
          } else {
            assert.equal(info.dtype, "F16");
            const expected = new Float32Array(new Float16Array(master)); // the same rounding, in native row order
            assert.ok(bitsEqual(values, expected), `${variant} ${t.name}`);
          }
        }
      } finally {
        hf.weights.close();
      }
    }
  } finally {
    mistral.weights.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("other spellings of the layouts: transformers >= 4.52 names, split consolidated files, F16/BF16 GGUF", async () => {
  const dir = await tempDir();
  const mistral = await open(`${TINY}mistral`);
  try {
    // Hugging Face checkpoints saved by newer transformers: model.language_model.*, model.vision_tower.*, lm_head.
    const renamed = (await readSafetensors(`${TINY}hf/model.safetensors`)).map((e) => ({
      ...e,
      name: e.name
        .replace(/^language_model\.model\./, "model.language_model.")
        .replace(/^language_model\.lm_head\./, "lm_head.")
        .replace(/^(vision_tower|multi_modal_projector)\./, "model.$1."),
    }));
    await Deno.mkdir(`${dir}/hf`);
    await Deno.copyFile(`${TINY}hf/config.json`, `${dir}/hf/config.json`);
    await writeSafetensors(`${dir}/hf/model.safetensors`, renamed);
    // Mistral weights in two consolidated parts.
    const parts = await readSafetensors(`${TINY}mistral/consolidated.safetensors`);
    await Deno.mkdir(`${dir}/mistral`);
    await Deno.copyFile(`${TINY}mistral/params.json`, `${dir}/mistral/params.json`);
    await writeSafetensors(`${dir}/mistral/consolidated-00001-of-00002.safetensors`, parts.slice(0, 20));
    await writeSafetensors(`${dir}/mistral/consolidated-00002-of-00002.safetensors`, parts.slice(20));
    // GGUF with BF16 tensors (exact: the masters are bf16 values) and with F16 ones.
    const text = await ggufEntries(`${GGUF}tiny-pixtral-text-f32.gguf`);
    const asType = (type: number) =>
      text.tensors.map((t) => {
        const values = toFloat32("F32", t.data);
        const data = type === 30
          ? new Uint8Array(new Uint16Array(new Uint32Array(values.buffer).map((b) => b >>> 16)).buffer)
          : new Uint8Array(new Float16Array(values).buffer);
        return { ...t, type, data };
      });
    await Deno.writeFile(`${dir}/bf16.gguf`, buildGguf(kvsOf(text.kvs), asType(30)));
    await Deno.writeFile(`${dir}/f16.gguf`, buildGguf(kvsOf(text.kvs), asType(1)));

    const hf = await open(`${dir}/hf`);
    const split = await open(`${dir}/mistral`);
    const bf16 = await open(`${dir}/bf16.gguf`);
    const f16 = await open(`${dir}/f16.gguf`);
    try {
      assert.equal(split.weights.files.length, 2);
      for (const t of mistral.weights.tensors()) {
        const native = await mistral.weights.read(t.name);
        assert.ok(bytesEqual(await hf.weights.read(t.name), native), `new-style HF ${t.name}`);
        assert.ok(bytesEqual(await split.weights.read(t.name), native), `split ${t.name}`);
        if (t.component !== "decoder") continue;
        assert.equal(bf16.weights.info(t.name).dtype, "BF16");
        assert.ok(bytesEqual(await bf16.weights.read(t.name), native), `BF16 GGUF ${t.name}`);
        const half = toFloat32("F16", await f16.weights.read(t.name));
        assert.ok(
          bitsEqual(half, new Float32Array(new Float16Array(toFloat32("BF16", native)))),
          `F16 GGUF ${t.name}`,
        );
      }
    } finally {
      [hf, split, bf16, f16].forEach((m) => m.weights.close());
    }
  } finally {
    mistral.weights.close();
    await Deno.remove(dir, { recursive: true });
  }
});
