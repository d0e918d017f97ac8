import assert from "node:assert/strict";
import {
  ConfigError,
  configFromGguf,
  type ModelConfig,
  parseHfConfig,
  parseParamsJson,
} from "../runtime/model/config.ts";
import { openModelFiles } from "../runtime/model/boot.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { loadConfig, openModel } from "../runtime/model/open.ts";
import { parameterCounts } from "../runtime/model/tensors.ts";
import { GgufFile } from "../runtime/model/weights/gguf.ts";
import { fixtureJson } from "./helpers.ts";
import {
  buildGguf,
  copyFixture,
  GGUF,
  ggufEntries,
  type GgufKv,
  kvsOf,
  tempDir,
  TINY,
} from "./weights_helpers.ts";

const REAL = new URL("./fixtures/model/", import.meta.url).pathname;

const withoutSource = ({ source: _, ...rest }: ModelConfig) => rest;

async function realParams(): Promise<Record<string, unknown>> {
  return JSON.parse(await Deno.readTextFile(`${REAL}pixtral-12b-2409/params.json`));
}
async function realHf(): Promise<Record<string, Record<string, unknown>>> {
  return JSON.parse(await Deno.readTextFile(`${REAL}pixtral-12b-hf/config.json`));
}

Deno.test("params.json, config.json and GGUF metadata of the tiny model give one config", async () => {
  const configs = await Promise.all([
    `${TINY}mistral`,
    `${TINY}hf`,
    `${TINY}gguf/tiny-pixtral-text-f32.gguf`,
  ].map(async (p, i) =>
    loadConfig(
      await locateModel(p, { mmproj: i === 2 ? `${TINY}gguf/tiny-pixtral-mmproj-Q8_0.gguf` : undefined }),
    )
  ));
  assert.deepEqual(configs.map((c) => c.source), ["params.json", "config.json", "gguf"]);
  assert.deepEqual(withoutSource(configs[1]), withoutSource(configs[0]));
  assert.deepEqual(withoutSource(configs[2]), withoutSource(configs[0]));
  assert.deepEqual(configs[0], {
    source: "params.json",
    decoder: {
      dim: 256,
      nLayers: 2,
      nHeads: 8,
      nKvHeads: 2,
      headDim: 64,
      hiddenDim: 768,
      vocabSize: 2048,
      ropeTheta: 1e9,
      normEps: 1e-5,
    },
    vision: {
      hiddenSize: 256,
      nLayers: 2,
      nHeads: 4,
      headDim: 64,
      intermediateSize: 512,
      patchSize: 16,
      imageSize: 1024,
      ropeTheta: 1e4,
      numChannels: 3,
      normEps: 1e-5,
    },
    adapter: { bias: true },
    imageTokens: { img: 10, imgBreak: 12, imgEnd: 13 },
    contextLength: 128_000,
  });
  // A text GGUF alone has the same decoder and no vision tower.
  const located = await locateModel(`${TINY}gguf/tiny-pixtral-text-Q4_K_M.gguf`);
  const textOnly = await loadConfig({ ...located, mmproj: null });
  assert.deepEqual(textOnly.decoder, configs[0].decoder);
  assert.equal(textOnly.vision, null);
  assert.equal(textOnly.adapter, null);
});

Deno.test("the real Pixtral-12B-2409 params.json and HF config agree and count 12.25B + 403.5M + 31.5M parameters", async () => {
  const native = parseParamsJson(await realParams());
  const hf = parseHfConfig(await realHf());
  assert.deepEqual(withoutSource(hf), withoutSource(native), "HF class defaults fill the absent keys");
  assert.deepEqual(native.decoder, {
    dim: 5120,
    nLayers: 40,
    nHeads: 32,
    nKvHeads: 8,
    headDim: 128,
    hiddenDim: 14336,
    vocabSize: 131072,
    ropeTheta: 1e9,
    normEps: 1e-5,
  });
  assert.equal(native.vision?.headDim, 64);
  assert.deepEqual(native.imageTokens, { img: 10, imgBreak: 12, imgEnd: 13 });
  assert.equal(native.contextLength, 128_000);
  const counts = parameterCounts(native);
  assert.equal(
    counts.decoder,
    2 * 131072 * 5120 + 40 * (2 * 5120 * 4096 + 2 * 5120 * 1024 + 3 * 5120 * 14336 + 2 * 5120) + 5120,
  );
  assert.equal((counts.decoder / 1e9).toFixed(2), "12.25");
  assert.equal((counts.vision / 1e6).toFixed(1), "403.5");
  assert.equal((counts.adapter / 1e6).toFixed(1), "31.5");
});

Deno.test("params.json: unknown keys ignored, mistral-inference defaults for absent ones", () => {
  const base = {
    dim: 256,
    n_layers: 2,
    head_dim: 64,
    hidden_dim: 768,
    n_heads: 8,
    n_kv_heads: 2,
    norm_eps: 1e-5,
    vocab_size: 2048,
  };
  const text = parseParamsJson({ ...base, some_future_key: { nested: true }, max_batch_size: 4 });
  assert.equal(text.decoder.ropeTheta, 1e6, "mistral-inference: rope_theta or 1e6");
  assert.equal(text.vision, null);
  assert.equal(text.contextLength, 128_000);
  assert.equal(parseParamsJson({ ...base, max_seq_len: 32768 }).contextLength, 32768);
  const vision = parseParamsJson({
    ...base,
    vision_encoder: {
      hidden_size: 256,
      num_channels: 3,
      image_size: 512,
      patch_size: 16,
      intermediate_size: 512,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      adapter_bias: false,
      unknown: 1,
    },
  });
  assert.equal(vision.vision?.ropeTheta, 1e4);
  assert.deepEqual(vision.imageTokens, { img: 10, imgBreak: 12, imgEnd: 13 });
  assert.deepEqual(vision.adapter, { bias: false });
});

Deno.test("params.json errors name the file and the key", async () => {
  const params = await realParams();
  const rejects = (value: unknown, pattern: RegExp) =>
    assert.throws(() => parseParamsJson(value, "x/params.json"), (err: Error) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, /^x\/params\.json: /);
      assert.match(err.message, pattern);
      return true;
    });
  const { head_dim: _, ...noHeadDim } = params;
  rejects(noHeadDim, /"head_dim" is missing/);
  rejects({ ...params, n_heads: "32" }, /"n_heads" must be an integer, got "32"/);
  // JSON's 1e999 reads as Infinity, which JSON would write as null.
  rejects(
    JSON.parse(JSON.stringify(params).replace(/"rope_theta":[^,}]+/, '"rope_theta":1e999')),
    /"rope_theta" must be a number, got Infinity/,
  );
  rejects({ ...params, n_kv_heads: 7 }, /heads \(32\) must be a multiple of the KV heads \(7\)/);
  rejects({ ...params, dim: -5 }, /decoder dim must be a positive integer/);
  // Shapes the attention kernels do not run are refused with the config, not on the first request.
  rejects({ ...params, n_heads: 12, n_kv_heads: 4 }, /kernels do not run 12 query heads over 4 KV heads/);
  rejects({ ...params, head_dim: 160 }, /decoder attention: .*head dimension 160 \(must be a multiple of 4/);
  rejects(
    {
      ...params,
      vision_encoder: { ...(params.vision_encoder as object), hidden_size: 1200, num_attention_heads: 6 },
    },
    /vision attention: .*head dimension 200/,
  );
  rejects({ ...params, moe: { num_experts: 8 } }, /"moe" is set/);
  rejects({ ...params, sliding_window: 4096 }, /sliding-window attention is not supported/);
  rejects({ ...params, model_type: "mamba" }, /"model_type" is "mamba"/);
  rejects(
    { ...params, vision_encoder: { ...(params.vision_encoder as object), mm_projector_id: "patch_merge" } },
    /"vision_encoder.mm_projector_id" is "patch_merge"/,
  );
  rejects(
    {
      ...params,
      vision_encoder: { ...(params.vision_encoder as object), patch_size: 512, image_size: 1024 },
    },
    /vision patch_size \(512\) above 256/,
  );
  rejects(
    { ...params, vision_encoder: { ...(params.vision_encoder as object), image_size: 1000 } },
    /image_size \(1000\) must be a multiple of patch_size \(16\)/,
  );
  rejects(
    { ...params, vision_encoder: { ...(params.vision_encoder as object), image_token_id: 200000 } },
    /outside the vocabulary/,
  );
  rejects([1, 2], /the file is not a JSON object/);
});

Deno.test("config.json: the known-bad revisions are refused with the fix", async () => {
  const hf = await realHf();
  const rejects = (value: unknown, pattern: RegExp, context = {}) =>
    assert.throws(() => parseHfConfig(value, "config.json", context), (err: Error) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.match(err.message, pattern);
      return true;
    });
  // vision hidden_act "gelu" (until 2024-10-18), explicitly or through PixtralVisionConfig's default.
  rejects(
    { ...hf, vision_config: { ...hf.vision_config, hidden_act: "gelu" } },
    /vision_config.hidden_act" is "gelu".*"silu"/,
  );
  const { hidden_act: _, ...noAct } = hf.vision_config;
  rejects({ ...hf, vision_config: noAct }, /"gelu" \(the default when absent\)/);
  // text head_dim absent: transformers would derive 5120 / 32 = 160.
  const { head_dim: __, ...noHeadDim } = hf.text_config;
  rejects({ ...hf, text_config: noHeadDim }, /head_dim" is missing.*= 160.*known-bad revision/);
  rejects({ ...hf, text_config: noHeadDim }, /weights have 4096 q_proj rows = 32 heads x 128/, {
    qProjRows: 4096,
  });
  // When the weights confirm the derived value (a model where dim / heads is right), it is accepted.
  const narrow = { ...noHeadDim, hidden_size: 4096 };
  const derived = parseHfConfig({ ...hf, text_config: narrow }, "config.json", { qProjRows: 4096 });
  assert.equal(derived.decoder.headDim, 128);
});

Deno.test("config.json: class defaults and other refusals", async () => {
  const hf = await realHf();
  const rejects = (value: unknown, pattern: RegExp) => assert.throws(() => parseHfConfig(value), pattern);
  rejects({ ...hf, model_type: "mistral", architectures: ["MistralForCausalLM"] }, /not a LLaVA/);
  rejects(
    { ...hf, vision_config: { ...hf.vision_config, model_type: "clip_vision_model" } },
    /model_type.*pixtral/,
  );
  const { vision_feature_layer: _, ...noLayer } = hf;
  rejects(noLayer, /"vision_feature_layer" is -2 \(the default when absent\)/);
  rejects({ ...hf, projector_hidden_act: "gelu_pytorch_tanh" }, /exact \(erf\) GELU/);
  rejects({ ...hf, tie_word_embeddings: true }, /tie_word_embeddings/);
  const { sliding_window: __, ...noWindow } = hf.text_config;
  rejects({ ...hf, text_config: noWindow }, /sliding_window" is 4096 \(the default when absent\)/);
  rejects(
    { ...hf, text_config: { ...hf.text_config, rope_scaling: { type: "linear", factor: 2 } } },
    /scaled RoPE/,
  );
  rejects(
    { ...hf, vision_config: { ...hf.vision_config, head_dim: 32 } },
    /head_dim" is 32 but hidden_size\/num_attention_heads is 64/,
  );

  // transformers >= 5 keeps rope_theta under rope_parameters; the ids of [IMG_BREAK]/[IMG_END] come from
  // tokenizer_config.json when the folder has one.
  const { rope_theta: theta, ...noTheta } = hf.text_config;
  const v5 = parseHfConfig(
    { ...hf, text_config: { ...noTheta, rope_parameters: { rope_type: "default", rope_theta: theta } } },
    "config.json",
    {
      tokenizerConfig: {
        added_tokens_decoder: { "20": { content: "[IMG_BREAK]" }, "21": { content: "[IMG_END]" } },
      },
    },
  );
  assert.equal(v5.decoder.ropeTheta, 1e9);
  assert.deepEqual(v5.imageTokens, { img: 10, imgBreak: 20, imgEnd: 21 });
  // Absent rope_theta: MistralConfig's default 1e4 (a different model, but what the file means).
  assert.equal(parseHfConfig({ ...hf, text_config: noTheta }).decoder.ropeTheta, 1e4);
});

Deno.test("config.json without head_dim in a folder: checked against the weights", async () => {
  const dir = await tempDir();
  try {
    await copyFixture(dir, "hf/model.safetensors");
    const config = await fixtureJson<Record<string, Record<string, unknown>>>("hf/config.json");
    const { head_dim: _, ...noHeadDim } = config.text_config;
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config, text_config: noHeadDim }));
    await assert.rejects(
      async () => openModel(await locateModel(dir)),
      /derive hidden_size\/num_attention_heads = 32, but the weights have 512 q_proj rows = 8 heads x 64/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("image token ids the tokenizer contradicts are refused when the files are opened", async () => {
  const dir = await tempDir();
  try {
    await copyFixture(dir, "hf/model.safetensors", "hf/tekken.json");
    const config = await fixtureJson<Record<string, unknown>>("hf/config.json");
    for (
      const [index, problem] of [
        [1, /\[IMG\] is 1 in the config but 10 in the tokenizer/],
        [12, /\[IMG\] is 12 in the config but 10/],
      ] as const
    ) {
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ ...config, image_token_index: index }));
      await assert.rejects(() => openModelFiles({ model: dir }), problem);
    }
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    const files = await openModelFiles({ model: dir });
    files.weights.close();
    files.tokenizer.free();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function ggufWith(path: string, edit: (kvs: GgufKv[]) => GgufKv[]): Promise<GgufFile> {
  const { kvs, tensors } = await ggufEntries(path);
  const dir = await tempDir();
  const out = `${dir}/${path.split("/").pop()}`;
  await Deno.writeFile(out, buildGguf(edit(kvsOf(kvs)), tensors));
  const file = await GgufFile.open(out);
  file.close();
  await Deno.remove(dir, { recursive: true });
  return file;
}

Deno.test("GGUF metadata: refusals name the file and the key", async () => {
  const textPath = `${TINY}gguf/tiny-pixtral-text-f32.gguf`;
  const mmPath = `${TINY}gguf/tiny-pixtral-mmproj-f32.gguf`;
  const text = await GgufFile.open(textPath);
  const mmproj = await GgufFile.open(mmPath);
  text.close();
  mmproj.close();
  const set = (key: string, type: number, value: GgufKv[2]) => (kvs: GgufKv[]) => [
    ...kvs.filter(([k]) => k !== key),
    [key, type, value] as GgufKv,
  ];
  const drop = (key: string) => (kvs: GgufKv[]) => kvs.filter(([k]) => k !== key);

  const gelu = await ggufWith(mmPath, set("clip.use_gelu", GGUF.BOOL, true));
  assert.throws(() => configFromGguf(text, gelu), /clip\.use_gelu is true: .*known-bad/);
  const llava = await ggufWith(mmPath, set("clip.projector_type", GGUF.STRING, "mlp"));
  assert.throws(() => configFromGguf(text, llava), /clip\.projector_type is "mlp", not "pixtral"/);
  const wide = await ggufWith(mmPath, set("clip.vision.projection_dim", GGUF.U32, 512));
  assert.throws(
    () => configFromGguf(text, wide),
    /projection_dim 512 does not match the text model's dim 256/,
  );
  const qwen = await ggufWith(textPath, set("general.architecture", GGUF.STRING, "qwen2"));
  assert.throws(() => configFromGguf(qwen), /general\.architecture is "qwen2"/);
  const noLayers = await ggufWith(textPath, drop("llama.block_count"));
  assert.throws(
    () => configFromGguf(noLayers),
    (err: Error) =>
      err instanceof ConfigError && /llama\.block_count is missing/.test(err.message) &&
      err.message.includes("tiny-pixtral-text-f32.gguf"),
  );
  assert.throws(() => configFromGguf(mmproj), /general\.architecture is "clip"/);

  // Without key_length the head size comes from rope.dimension_count, then from the q weights: never dim / heads.
  const noKeyLength = await ggufWith(
    textPath,
    (kvs) => drop("llama.rope.dimension_count")(drop("llama.attention.key_length")(kvs)),
  );
  assert.equal(configFromGguf(noKeyLength).decoder.headDim, 64);
});
