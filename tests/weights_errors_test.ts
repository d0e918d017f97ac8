import assert from "node:assert/strict";
import { locateModel, ModelNotFoundError } from "../runtime/model/locate.ts";
import { loadConfig, openModel } from "../runtime/model/open.ts";
import { type WeightErrorKind, WeightFileError } from "../runtime/model/weights/errors.ts";
import { GgufFile } from "../runtime/model/weights/gguf.ts";
import { openShardedSafetensors, SafetensorsFile } from "../runtime/model/weights/safetensors.ts";
import {
  buildGguf,
  copyFixture,
  GGUF,
  ggufEntries,
  type GgufKv,
  kvsOf,
  readSafetensors,
  tempDir,
  TINY,
  writeSafetensors,
} from "./weights_helpers.ts";

/** Runs `body` in a fresh temporary folder that is removed afterwards. */
async function inTemp(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function openDir(path: string, mmproj?: string) {
  const model = await openModel(await locateModel(path, { mmproj }));
  model.weights.close();
  return model;
}

function weightError(kind: WeightErrorKind, file: string, tensor?: string, text?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof WeightFileError, `expected a WeightFileError, got ${err}`);
    assert.equal(err.kind, kind, err.message);
    assert.ok(err.message.includes(file), `message names the file ${file}: ${err.message}`);
    if (tensor !== undefined) {
      assert.ok(err.message.includes(`"${tensor}"`), `message names ${tensor}: ${err.message}`);
    }
    if (text) assert.match(err.message, text);
    return true;
  };
}

/** The Mistral fixture folder rebuilt with its tensors passed through `edit`. */
async function mistralWith(
  dir: string,
  edit: (entries: Awaited<ReturnType<typeof readSafetensors>>) => void,
): Promise<string> {
  await copyFixture(dir, "mistral/params.json");
  const entries = await readSafetensors(`${TINY}mistral/consolidated.safetensors`);
  edit(entries);
  await writeSafetensors(`${dir}/consolidated.safetensors`, entries);
  return `${dir}/consolidated.safetensors`;
}

Deno.test("a truncated safetensors file names the file and the tensor cut off", async () => {
  await inTemp(async (dir) => {
    await copyFixture(dir, "mistral/params.json");
    const full = await Deno.readFile(`${TINY}mistral/consolidated.safetensors`);
    await Deno.writeFile(`${dir}/consolidated.safetensors`, full.subarray(0, full.length - 100));
    const original = await SafetensorsFile.open(`${TINY}mistral/consolidated.safetensors`);
    original.close();
    const last = [...original.tensors.values()].reduce((a, b) => (a.offset > b.offset ? a : b)).name;
    await assert.rejects(
      () => openDir(dir),
      weightError("truncated", `${dir}/consolidated.safetensors`, last),
    );

    // Cut inside the JSON header.
    await Deno.writeFile(`${dir}/consolidated.safetensors`, full.subarray(0, 100));
    await assert.rejects(() => openDir(dir), weightError("truncated", `${dir}/consolidated.safetensors`));
    await Deno.writeFile(`${dir}/consolidated.safetensors`, full.subarray(0, 5));
    await assert.rejects(() => openDir(dir), weightError("truncated", `${dir}/consolidated.safetensors`));
  });
});

Deno.test("a truncated GGUF names the file and the tensor; a cut header says so", async () => {
  await inTemp(async (dir) => {
    const full = await Deno.readFile(`${TINY}gguf/tiny-pixtral-text-f32.gguf`);
    await Deno.writeFile(`${dir}/text.gguf`, full.subarray(0, full.length - 10));
    await assert.rejects(
      () => GgufFile.open(`${dir}/text.gguf`),
      weightError("truncated", `${dir}/text.gguf`, "output_norm.weight"),
    );
    await Deno.writeFile(`${dir}/text.gguf`, full.subarray(0, 5000));
    await assert.rejects(
      () => GgufFile.open(`${dir}/text.gguf`),
      weightError("truncated", `${dir}/text.gguf`, undefined, /header/),
    );
  });
});

Deno.test("a file truncated after opening is caught when the tensor is read", async () => {
  await inTemp(async (dir) => {
    const path = await mistralWith(dir, () => {});
    const model = await openModel(await locateModel(dir));
    try {
      const size = (await Deno.stat(path)).size;
      await Deno.truncate(path, size - 100);
      const name = model.weights.tensors().at(-1)!.name;
      await assert.rejects(() => model.weights.read(name), weightError("truncated", path, name));
    } finally {
      model.weights.close();
    }
  });
});

Deno.test("a missing tensor names the tensor and the file that should hold it", async () => {
  await inTemp(async (dir) => {
    const path = await mistralWith(dir, (entries) => {
      entries.splice(entries.findIndex((e) => e.name === "layers.1.feed_forward.w2.weight"), 1);
    });
    await assert.rejects(() => openDir(dir), weightError("missing", path, "layers.1.feed_forward.w2.weight"));
  });
  // Vision tensors of a GGUF live in the mmproj: a text file passed as both says where to look.
  await assert.rejects(
    () => openDir(`${TINY}gguf/tiny-pixtral-text-f32.gguf`, `${TINY}gguf/tiny-pixtral-text-f32.gguf`),
    /general\.architecture is "llama", not "clip"/,
  );
});

Deno.test("a tensor of the wrong shape names file, tensor, and both shapes", async () => {
  await inTemp(async (dir) => {
    const path = await mistralWith(dir, (entries) => {
      const e = entries.find((e) => e.name === "vision_language_adapter.w_in.weight")!;
      e.shape = [128, 512]; // same bytes, transposed-looking shape
    });
    await assert.rejects(
      () => openDir(dir),
      weightError("shape", path, "vision_language_adapter.w_in.weight", /\[128,512\].*\[256,256\]/),
    );
  });
  // A GGUF names the tensor as the model does and as the file stores it.
  await inTemp(async (dir) => {
    const { kvs, tensors } = await ggufEntries(`${TINY}gguf/tiny-pixtral-text-f32.gguf`);
    const norm = tensors.find((t) => t.name === "output_norm.weight")!;
    norm.ne = [norm.ne[0] / 2, 2];
    await Deno.writeFile(`${dir}/text.gguf`, buildGguf(kvsOf(kvs), tensors));
    await assert.rejects(
      () => openDir(`${dir}/text.gguf`),
      weightError(
        "shape",
        `${dir}/text.gguf`,
        "norm.weight",
        /"norm\.weight" \(stored as "output_norm\.weight"\): has/,
      ),
    );
  });
  // A config whose head_dim disagrees with the weights fails the same way.
  await inTemp(async (dir) => {
    await mistralWith(dir, () => {});
    const params = JSON.parse(await Deno.readTextFile(`${dir}/params.json`));
    await Deno.writeTextFile(`${dir}/params.json`, JSON.stringify({ ...params, head_dim: 32 }));
    await assert.rejects(
      () => openDir(dir),
      weightError("shape", dir, "layers.0.attention.wq.weight", /\[512,256\].*\[256,256\]/),
    );
  });
});

Deno.test("an unsupported or wrong dtype names the file and tensor", async () => {
  await inTemp(async (dir) => {
    const path = await mistralWith(dir, (entries) => {
      entries.find((e) => e.name === "norm.weight")!.dtype = "I16";
    });
    await assert.rejects(() => openDir(dir), weightError("unsupported", path, "norm.weight", /I16/));
  });
  await inTemp(async (dir) => {
    // A name every JavaScript object answers to is no dtype either.
    const path = await mistralWith(dir, (entries) => {
      entries.find((e) => e.name === "norm.weight")!.dtype = "toString";
    });
    await assert.rejects(() => openDir(dir), weightError("unsupported", path, "norm.weight", /toString/));
  });
  await inTemp(async (dir) => {
    // A norm stored quantized (never produced by llama.cpp), in a type the kernels read and in one decoded at
    // load, and a tensor in a type we do not read.
    const { kvs, tensors } = await ggufEntries(`${TINY}gguf/tiny-pixtral-text-Q8_0.gguf`);
    const norm = tensors.find((t) => t.name === "output_norm.weight")!;
    norm.type = 8;
    norm.data = new Uint8Array((256 / 32) * 34);
    await Deno.writeFile(`${dir}/text.gguf`, buildGguf(kvsOf(kvs), tensors));
    await assert.rejects(
      () => openDir(`${dir}/text.gguf`),
      weightError("dtype", `${dir}/text.gguf`, "norm.weight", /Q8_0/),
    );

    norm.type = 2; // Q4_0: 18 bytes per 32
    norm.data = new Uint8Array((256 / 32) * 18);
    await Deno.writeFile(`${dir}/text.gguf`, buildGguf(kvsOf(kvs), tensors));
    await assert.rejects(
      () => openDir(`${dir}/text.gguf`),
      weightError("dtype", `${dir}/text.gguf`, "norm.weight", /Q4_0/),
    );

    norm.type = 34; // TQ1_0: 54 bytes per 256
    norm.data = new Uint8Array(54);
    await Deno.writeFile(`${dir}/text.gguf`, buildGguf(kvsOf(kvs), tensors));
    await assert.rejects(
      () => openDir(`${dir}/text.gguf`),
      weightError(
        "unsupported",
        `${dir}/text.gguf`,
        "output_norm.weight",
        /TQ1_0 is not supported \(F32, F16, Q4_0, .*IQ1_M, BF16 are\)/,
      ),
    );
  });
});

Deno.test("files that are not safetensors or GGUF, and inconsistent headers, are refused clearly", async () => {
  await inTemp(async (dir) => {
    await Deno.writeFile(`${dir}/junk.gguf`, new TextEncoder().encode("this is not a model file at all"));
    await assert.rejects(
      () => GgufFile.open(`${dir}/junk.gguf`),
      weightError("format", `${dir}/junk.gguf`, undefined, /no GGUF magic/),
    );
    await Deno.writeFile(`${dir}/v9.gguf`, buildGguf([], [], 9));
    await assert.rejects(
      () => GgufFile.open(`${dir}/v9.gguf`),
      weightError("unsupported", `${dir}/v9.gguf`, undefined, /version 9/),
    );

    const bad = new Uint8Array(40);
    new DataView(bad.buffer).setBigUint64(0, 16n, true);
    bad.set(new TextEncoder().encode("{not json here!}"), 8);
    await Deno.writeFile(`${dir}/bad.safetensors`, bad);
    await assert.rejects(
      () => SafetensorsFile.open(`${dir}/bad.safetensors`),
      weightError("format", `${dir}/bad.safetensors`, undefined, /not JSON/),
    );

    await writeSafetensors(`${dir}/span.safetensors`, [{
      name: "x",
      dtype: "F32",
      shape: [3],
      data: new Uint8Array(8),
    }]);
    await assert.rejects(
      () => SafetensorsFile.open(`${dir}/span.safetensors`),
      weightError("format", `${dir}/span.safetensors`, "x", /8 bytes.*needs 12/),
    );
  });
  await assert.rejects(
    () => SafetensorsFile.open("/nonexistent/model.safetensors"),
    weightError("io", "/nonexistent/model.safetensors"),
  );
});

Deno.test("GGUF metadata is exposed, arrays included", async () => {
  const text = await GgufFile.open(`${TINY}gguf/tiny-pixtral-text-f32.gguf`);
  text.close();
  const tokens = text.get<string[]>("tokenizer.ggml.tokens", "array");
  assert.equal(tokens.length, 2048);
  assert.equal(tokens[10], "[IMG]");
  assert.equal(tokens[1], "<s>");
  assert.equal((text.get<string[]>("tokenizer.ggml.merges", "array")).length, 1077);
  assert.equal(text.get<string>("tokenizer.ggml.pre", "string"), "tekken");
  assert.equal(text.get<number>("tokenizer.ggml.bos_token_id", "number"), 1);
  assert.equal(text.get<boolean>("tokenizer.ggml.add_bos_token", "boolean"), true);
  assert.equal(text.version, 3);
  // A header longer than the first read (here 1 KiB instead of 16 MiB) is read in growing windows.
  const small = await GgufFile.open(`${TINY}gguf/tiny-pixtral-text-f32.gguf`, 1024);
  small.close();
  assert.deepEqual(small.metadata, text.metadata);
  assert.deepEqual([...small.tensors.keys()], [...text.tensors.keys()]);
  assert.throws(() => text.get("tokenizer.ggml.nope", "string"), /"tokenizer\.ggml\.nope" is missing/);
  assert.throws(() => text.get("tokenizer.ggml.pre", "number"), /is a string, expected a number/);
  const mmproj = await GgufFile.open(`${TINY}gguf/tiny-pixtral-mmproj-f32.gguf`);
  mmproj.close();
  const mean = mmproj.get<number[]>("clip.vision.image_mean", "array");
  assert.deepEqual(mean.map((v) => Number(v.toFixed(6))), [0.481455, 0.457828, 0.408211]);
});

Deno.test("locateModel finds each layout, the tokenizer, and the mmproj beside a GGUF", async () => {
  const mistral = await locateModel(`${TINY}mistral`);
  assert.equal(mistral.layout, "mistral");
  assert.deepEqual(mistral.weightFiles, [`${TINY}mistral/consolidated.safetensors`]);
  assert.deepEqual(mistral.tokenizer, { kind: "tekken", path: `${TINY}mistral/tekken.json` });
  const hf = await locateModel(`${TINY}hf/config.json`);
  assert.equal(hf.layout, "hf");
  assert.deepEqual(hf.weightFiles, [`${TINY}hf/model.safetensors`]);

  // The fixture's gguf/ folder has two mmproj files: the one of the text model's quantization is taken, else the
  // most precise (as `pull` chooses from a repository).
  const q8 = await locateModel(`${TINY}gguf/tiny-pixtral-text-Q8_0.gguf`);
  assert.equal(q8.mmproj, `${TINY}gguf/tiny-pixtral-mmproj-Q8_0.gguf`);
  assert.equal(q8.mmprojCandidates.length, 2);
  assert.deepEqual(q8.tokenizer, { kind: "gguf", path: `${TINY}gguf/tiny-pixtral-text-Q8_0.gguf` });
  // A series of shards with one missing (and no index to say so) is named before any tensor is looked for.
  await inTemp(async (dir) => {
    await copyFixture(dir, "hf/config.json", "hf/tekken.json");
    await Deno.copyFile(`${TINY}hf/model.safetensors`, `${dir}/model-00001-of-00002.safetensors`);
    await assert.rejects(
      locateModel(dir),
      /part of the weights is missing: model-00002-of-00002\.safetensors/,
    );
  });
  // A stray file of a series it would take billions of parts to complete: the first few are named.
  await inTemp(async (dir) => {
    await copyFixture(dir, "mistral/params.json");
    await Deno.writeFile(`${dir}/x-1-of-99999999999.safetensors`, new Uint8Array());
    await assert.rejects(
      locateModel(dir),
      /missing: x-2-of-99999999999\.safetensors, .*x-9-of-99999999999\.safetensors, 99999999990 more of x-\*-of-/,
    );
  });
  await assert.rejects(
    locateModel(`${TINY}mistral`, { mmproj: `${TINY}gguf/tiny-pixtral-mmproj-f32.gguf` }),
    /--mmproj is the vision half of a GGUF text model; .* is in Mistral's layout/,
  );
  const q4 = await locateModel(`${TINY}gguf/tiny-pixtral-text-Q4_K_M.gguf`);
  assert.equal(q4.mmproj, `${TINY}gguf/tiny-pixtral-mmproj-f32.gguf`);
  assert.notEqual((await loadConfig(q4)).vision, null);

  await inTemp(async (dir) => {
    await copyFixture(dir, "gguf/tiny-pixtral-text-Q4_K_M.gguf", "gguf/tiny-pixtral-mmproj-Q8_0.gguf");
    for (const spec of [dir, `${dir}/tiny-pixtral-text-Q4_K_M.gguf`]) {
      const found = await locateModel(spec);
      assert.equal(
        found.mmproj,
        `${dir}/tiny-pixtral-mmproj-Q8_0.gguf`,
        "the one mmproj is found automatically",
      );
      assert.equal((await loadConfig(found)).vision?.hiddenSize, 256);
    }
    await assert.rejects(() => locateModel(`${dir}/tiny-pixtral-mmproj-Q8_0.gguf`), /is an mmproj.*--mmproj/);
    // GGUF repositories often keep the original config.json (or params.json) without its weights.
    await copyFixture(dir, "hf/config.json", "mistral/params.json");
    const beside = await locateModel(dir);
    assert.equal(beside.layout, "gguf");
    assert.equal(beside.configFile, `${dir}/tiny-pixtral-text-Q4_K_M.gguf`);
    assert.equal(
      (await locateModel(`${dir}/config.json`)).layout,
      "hf",
      "naming the config picks its layout",
    );
    await copyFixture(dir, "gguf/tiny-pixtral-text-Q8_0.gguf");
    await assert.rejects(() => locateModel(dir), /several GGUF models.*Q4_K_M.*Q8_0/);
    await assert.rejects(() => locateModel(`${dir}/x.gguf`), ModelNotFoundError);
    await assert.rejects(
      () => locateModel(`${dir}/tiny-pixtral-text-Q8_0.gguf`, { mmproj: `${dir}/none.gguf` }),
      /--mmproj .*no such file/,
    );
  });

  await inTemp(async (dir) => {
    // params.json alone: enough for the config (and the memory plan), not for loading.
    await copyFixture(dir, "mistral/params.json");
    const alone = await locateModel(dir);
    assert.deepEqual(alone.weightFiles, []);
    assert.equal(alone.tokenizer.kind, "none");
    assert.equal((await loadConfig(alone)).decoder.dim, 256);
    await assert.rejects(() => openModel(alone), weightError("missing", dir, undefined, /no weight files/));
    await Deno.writeTextFile(`${dir}/notes.txt`, "hello");
    await assert.rejects(() => locateModel(`${dir}/notes.txt`), /expected a model folder/);
    await Deno.remove(`${dir}/params.json`);
    await assert.rejects(() => locateModel(dir), /not a model folder/);
    await new Deno.Command("mkfifo", { args: [`${dir}/fifo`] }).output();
    await assert.rejects(() => locateModel(`${dir}/fifo`), /got a device, pipe or socket/);
  });
});

Deno.test("metadata round trip: a rewritten GGUF reads back the same (writer sanity for these tests)", async () => {
  await inTemp(async (dir) => {
    const { kvs, tensors } = await ggufEntries(`${TINY}gguf/tiny-pixtral-text-Q4_K_M.gguf`);
    await Deno.writeFile(`${dir}/copy.gguf`, buildGguf(kvsOf(kvs), tensors));
    // The text model alone, as the copy (no mmproj beside it).
    const located = await locateModel(`${TINY}gguf/tiny-pixtral-text-Q4_K_M.gguf`);
    const original = await openModel({ ...located, mmproj: null });
    const copy = await openModel(await locateModel(`${dir}/copy.gguf`));
    try {
      assert.deepEqual(copy.config, original.config);
      for (const t of original.weights.tensors()) {
        assert.deepEqual(await copy.weights.read(t.name), await original.weights.read(t.name));
      }
    } finally {
      original.weights.close();
      copy.weights.close();
    }
    assert.equal(GGUF.STRING, 8);
  });
});

/** `bytes` with the stored offset of GGUF tensor `name` (one with `dims` dimensions) set to `offset`. */
function withTensorOffset(bytes: Uint8Array, name: string, dims: number, offset: number): Uint8Array {
  const key = new TextEncoder().encode(name);
  let at = -1;
  for (let i = 0; i + key.length <= bytes.length && at < 0; i++) {
    if (key.every((b, j) => bytes[i + j] === b)) at = i;
  }
  const out = bytes.slice();
  new DataView(out.buffer).setBigUint64(at + key.length + 4 + 8 * dims + 4, BigInt(offset), true);
  return out;
}

Deno.test("tensors over the same bytes, misaligned or duplicated GGUF entries, and broken shard maps are refused", async () => {
  await inTemp(async (dir) => {
    // safetensors: b's bytes begin inside a's.
    const header = new TextEncoder().encode(JSON.stringify({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
    }));
    const file = new Uint8Array(8 + header.length + 12);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
    file.set(header, 8);
    await Deno.writeFile(`${dir}/overlap.safetensors`, file);
    await assert.rejects(
      () => SafetensorsFile.open(`${dir}/overlap.safetensors`),
      weightError("format", `${dir}/overlap.safetensors`, "b", /overlap those of a/),
    );

    // GGUF: the second tensor moved onto the first, off the alignment, or past a gap: each tensor follows the one
    // before it (ggml's reader refuses others).
    const tensor = (name: string) => ({ name, type: 0, ne: [8], data: new Uint8Array(32) });
    const gguf = buildGguf([], [tensor("first"), tensor("second"), tensor("third")]);
    for (const offset of [0, 36, 64]) {
      await Deno.writeFile(`${dir}/moved.gguf`, withTensorOffset(gguf, "second", 1, offset));
      await assert.rejects(
        () => GgufFile.open(`${dir}/moved.gguf`),
        weightError(
          "format",
          `${dir}/moved.gguf`,
          undefined,
          new RegExp(`"second" starts at ${offset} but the tensors before it end at 32 \\(padded to 32\\)`),
        ),
      );
    }
    // A type id swapped for one of another size (F32 read as F16): the next tensor no longer follows it.
    const swapped = buildGguf([], [
      { name: "wide", type: 0, ne: [16], data: new Uint8Array(64) },
      tensor("next"),
    ]);
    const typeAt = new TextDecoder("latin1").decode(swapped).indexOf("wide") + 4 + 4 + 8;
    assert.equal(new DataView(swapped.buffer).getUint32(typeAt, true), 0);
    new DataView(swapped.buffer).setUint32(typeAt, 1, true);
    await Deno.writeFile(`${dir}/swapped.gguf`, swapped);
    await assert.rejects(
      () => GgufFile.open(`${dir}/swapped.gguf`),
      weightError(
        "format",
        `${dir}/swapped.gguf`,
        undefined,
        /"next" starts at 64 but the tensors before it end at 32/,
      ),
    );
    // An alignment that is not a power of two; an array count no file of this size can hold.
    await Deno.writeFile(`${dir}/align.gguf`, buildGguf([["general.alignment", GGUF.U32, 24]], []));
    await assert.rejects(
      () => GgufFile.open(`${dir}/align.gguf`),
      weightError("format", `${dir}/align.gguf`, undefined, /alignment 24 is not a power of two/),
    );
    const listed = buildGguf([["list", GGUF.ARRAY, ["a", "b"]]], []);
    const count = new TextEncoder().encode("list").length + 8 + 4 + 4; // after the key and both type ids
    new DataView(listed.buffer).setBigUint64(24 + count, 2n ** 40n, true);
    await Deno.writeFile(`${dir}/count.gguf`, listed);
    await assert.rejects(
      () => GgufFile.open(`${dir}/count.gguf`),
      weightError("truncated", `${dir}/count.gguf`, undefined, /array of 1099511627776 items/),
    );
    await Deno.writeFile(`${dir}/twice.gguf`, buildGguf([["k", GGUF.U32, 1], ["k", GGUF.U32, 2]], []));
    await assert.rejects(
      () => GgufFile.open(`${dir}/twice.gguf`),
      weightError("format", `${dir}/twice.gguf`, undefined, /the key k appears twice/),
    );

    // A shard map whose entries are not file names, or that lists nothing.
    for (const map of [{ "tok_embeddings.weight": 7 }, { "tok_embeddings.weight": null }, {}]) {
      await Deno.writeTextFile(`${dir}/model.safetensors.index.json`, JSON.stringify({ weight_map: map }));
      await assert.rejects(
        () => openShardedSafetensors(`${dir}/model.safetensors.index.json`),
        weightError("format", `${dir}/model.safetensors.index.json`),
      );
    }
  });
});

Deno.test("configs that disagree with their weights, or hold absurd or infinite values, are refused quickly", async () => {
  await inTemp(async (dir) => {
    // Fewer decoder layers than the weights hold: the model would run cut short.
    await copyFixture(dir, "mistral/consolidated.safetensors", "mistral/tekken.json");
    const params = JSON.parse(await Deno.readTextFile(`${TINY}mistral/params.json`));
    await Deno.writeTextFile(`${dir}/params.json`, JSON.stringify({ ...params, n_layers: 1 }));
    await assert.rejects(
      () => openDir(dir),
      weightError(
        "shape",
        `${dir}/consolidated.safetensors`,
        undefined,
        /tensor "layers\.1\..*decoder 1 layers/,
      ),
    );
    // A tensor the model does not use inside the layers it has is only unused.
    const entries = await readSafetensors(`${TINY}mistral/consolidated.safetensors`);
    entries.push({
      name: "layers.0.attention.extra_scale",
      dtype: "F32",
      shape: [1],
      data: new Uint8Array(4),
    });
    await writeSafetensors(`${dir}/consolidated.safetensors`, entries);
    await Deno.writeTextFile(`${dir}/params.json`, JSON.stringify(params));
    assert.deepEqual((await openDir(dir)).weights.unused, ["layers.0.attention.extra_scale"]);
    // A layer count from a corrupt file is refused before anything is listed for it (it ran out of memory).
    await Deno.writeTextFile(`${dir}/params.json`, JSON.stringify({ ...params, n_layers: 2 ** 31 }));
    const started = performance.now();
    await assert.rejects(
      async () => loadConfig(await locateModel(dir)),
      /decoder layers \(2147483648\) above 1024/,
    );
    assert.ok(performance.now() - started < 2000);
  });
  await inTemp(async (dir) => {
    // GGUF: an infinite rope base; an mmproj with one of the adapter's two biases.
    const text = await ggufEntries(`${TINY}gguf/tiny-pixtral-text-f32.gguf`);
    const kvs = kvsOf(text.kvs).map(([k, t, v]): GgufKv =>
      k === "llama.rope.freq_base" ? [k, GGUF.F32, Infinity] : [k, t, v]
    );
    await Deno.writeFile(`${dir}/text.gguf`, buildGguf(kvs, text.tensors));
    await assert.rejects(() => openDir(`${dir}/text.gguf`), /llama.rope.freq_base.*must be a finite number/);
    await Deno.writeFile(`${dir}/text.gguf`, buildGguf(kvsOf(text.kvs), text.tensors));
    const mmproj = await ggufEntries(`${TINY}gguf/tiny-pixtral-mmproj-f32.gguf`);
    await Deno.writeFile(
      `${dir}/mmproj.gguf`,
      buildGguf(kvsOf(mmproj.kvs), mmproj.tensors.filter((t) => t.name !== "mm.1.bias")),
    );
    await assert.rejects(
      () => openDir(`${dir}/text.gguf`, `${dir}/mmproj.gguf`),
      /mm.2.bias but not the other/,
    );
  });
});
