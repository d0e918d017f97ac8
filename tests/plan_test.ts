import assert from "node:assert/strict";
import { parseParamsJson } from "../runtime/model/config.ts";
import { locateModel } from "../runtime/model/locate.ts";
import { parseSize } from "../runtime/model/offer.ts";
import { openModel } from "../runtime/model/open.ts";
import {
  type AdapterOffer,
  checkPlan,
  CONTEXT_WHEN_MEMORY_UNKNOWN,
  decodedFormat,
  KV_BLOCK_TOKENS,
  LOAD_STAGING_BYTES,
  mixFormat,
  PlanError,
  planMemory,
  rowFormat,
} from "../runtime/model/plan.ts";
import { pixtral } from "./helpers.ts";
import { TINY } from "./weights_helpers.ts";

const PARAMS = new URL("./fixtures/model/pixtral-12b-2409/params.json", import.meta.url).pathname;
const pixtral12b = parseParamsJson(JSON.parse(await Deno.readTextFile(PARAMS)));
const GiB = 2 ** 30;

function gpu(memoryGiB: number | null, maxBufferSize = 2 ** 31): AdapterOffer {
  return {
    name: "test GPU",
    memoryBytes: memoryGiB === null ? null : memoryGiB * GiB,
    maxBufferSize,
    maxStorageBufferBindingSize: 2 ** 27,
  };
}

Deno.test("Pixtral 12B weights: q4 decoder at 4.5 bits, vision and adapter at f16, norms and biases f32", () => {
  const plan = planMemory(pixtral12b, { ctx: 4096 });
  const decoderNorms = 40 * 2 * 5120 + 5120;
  const decoderMatrices = plan.weights.decoder.parameters - decoderNorms;
  assert.equal(plan.weights.decoder.bytes, (decoderMatrices * 4.5) / 8 + decoderNorms * 4);
  assert.equal(plan.weights.decoder.format, "q4");
  const visionNorms = 1024 + 24 * 2 * 1024;
  assert.equal(
    plan.weights.vision.bytes,
    (plan.weights.vision.parameters - visionNorms) * 2 + visionNorms * 4,
  );
  const adapterBiases = 2 * 5120;
  assert.equal(
    plan.weights.adapter.bytes,
    (plan.weights.adapter.parameters - adapterBiases) * 2 + adapterBiases * 4,
  );
  assert.equal(
    plan.weights.total,
    plan.weights.decoder.bytes + plan.weights.vision.bytes + plan.weights.adapter.bytes,
  );
  assert.equal((plan.weights.decoder.bytes / GiB).toFixed(2), "6.42");

  const q8 = planMemory(pixtral12b, { ctx: 4096, quant: "q8", visionQuant: "q8" });
  assert.equal(q8.weights.decoder.bytes, (decoderMatrices * 8.5) / 8 + decoderNorms * 4);
  const conv = 1024 * 3 * 16 * 16; // the patch convolution stays f16
  assert.equal(
    q8.weights.vision.bytes,
    ((q8.weights.vision.parameters - visionNorms - conv) * 8.5) / 8 + conv * 2 + visionNorms * 4,
  );
  // q4k: Q4_K blocks of 256 at q4's size; every Pixtral 12B matrix's rows are whole blocks, the patch
  // convolution's 768 too (it stays float all the same).
  const q4k = planMemory(pixtral12b, { ctx: 4096, quant: "q4k", visionQuant: "q4k" });
  assert.equal(q4k.weights.decoder.bytes, plan.weights.decoder.bytes);
  assert.equal(q4k.weights.decoder.format, "q4k");
  assert.equal(
    q4k.weights.vision.bytes,
    ((q4k.weights.vision.parameters - visionNorms - conv) * 4.5) / 8 + conv * 2 + visionNorms * 4,
  );
  // q4km, llama.cpp's Q4_K_M recipe: Q6_K (6.5625 bits) for the output head and for wv and w2 in 20 of the 40
  // layers (0-4, 7, 10, ..., 34, 35-39), Q4_K for the rest: 6.96 GiB, as llama.cpp's Pixtral 12B Q4_K_M.
  const q4km = planMemory(pixtral12b, { ctx: 4096, quant: "q4km" });
  const sixBit = 131072 * 5120 + 20 * (1024 * 5120 + 5120 * 14336);
  assert.equal(
    q4km.weights.decoder.bytes,
    (sixBit * 6.5625 + (decoderMatrices - sixBit) * 4.5) / 8 + decoderNorms * 4,
  );
  assert.equal(q4km.weights.decoder.format, "q4k+q6k");
  assert.equal(q4km.weights.vision.bytes, plan.weights.vision.bytes);
  const f16 = planMemory(pixtral12b, { ctx: 4096, quant: "f16" });
  assert.equal(f16.weights.decoder.bytes, decoderMatrices * 2 + decoderNorms * 4);
  assert.equal(f16.largestTensor.bytes, 131072 * 5120 * 2);
});

Deno.test("rowFormat: rows must be whole blocks (k-quants 256, q4 and q8 32), the patch convolution stays float", () => {
  assert.equal(rowFormat("q4k", 5120), "q4k");
  assert.equal(rowFormat("q4k", 288), "q4");
  assert.equal(rowFormat("q4k", 100), "f16");
  assert.equal(rowFormat("q4k", 768, true), "f16");
  assert.equal(rowFormat("q6k", 14336), "q6k");
  assert.equal(rowFormat("q6k", 288), "q8");
  assert.equal(rowFormat("q6k", 100), "f16");
  assert.equal(rowFormat("q5k", 288), "q8");
  assert.equal(rowFormat("q8", 96), "q8");
  assert.equal(rowFormat("q4", 100), "f16");
  assert.equal(rowFormat("f32", 7), "f32");
  // Codes: int4 ones become q4 rather than q4k (copied exactly), the others what the flag asks.
  assert.equal(decodedFormat("I4", "q4k", true), "q4");
  assert.equal(decodedFormat("N4", "q4k", true), "q4k");
  assert.equal(decodedFormat("Q4_K", "q4k", true), "q4k");
  // GGUF blocks a LoRA merge changes: by default Q4_K again (q4's size) from those of 4.5 bits or fewer, q4 from
  // Q4_0 (its blocks are q4's), Q6_K and Q5_K themselves, q8 from the others; a flag wins.
  assert.equal(decodedFormat("Q4_K", "q4"), "q4k");
  assert.equal(decodedFormat("IQ3_S", "q4"), "q4k");
  assert.equal(decodedFormat("Q4_0", "q4"), "q4");
  assert.equal(decodedFormat("Q6_K", "q4"), "q6k");
  assert.equal(decodedFormat("Q5_K", "q4"), "q5k");
  assert.equal(decodedFormat("Q5_1", "q4"), "q8");
  assert.equal(decodedFormat("Q8_0", "q6k"), "q8");
  assert.equal(decodedFormat("Q4_K", "q4", true), "q4");
  assert.equal(decodedFormat("Q4_K", "f16"), "f16");
});

Deno.test("mixFormat: llama.cpp's Q4_K_M and Q5_K_M recipes place Q6_K by layer as use_more_bits does", () => {
  const sixBit = (layers: number, tensor: string) =>
    Array.from({ length: layers }, (_, i) => i).filter((i) =>
      mixFormat("q4km", `layers.${i}.${tensor}.weight`, layers) === "q6k"
    );
  const pixtral = [0, 1, 2, 3, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31, 34, 35, 36, 37, 38, 39];
  assert.deepEqual(sixBit(40, "attention.wv"), pixtral);
  assert.deepEqual(sixBit(40, "feed_forward.w2"), pixtral);
  assert.deepEqual(sixBit(2, "feed_forward.w2"), [1]); // as in the fixture's Q4_K_M file
  assert.deepEqual(sixBit(32, "attention.wv"), [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
  for (
    const tensor of ["attention.wq", "attention.wk", "attention.wo", "feed_forward.w1", "feed_forward.w3"]
  ) {
    assert.deepEqual(sixBit(40, tensor), []);
  }
  assert.equal(mixFormat("q4km", "output.weight", 40), "q6k");
  // Q5_K_M: the same places, Q5_K elsewhere.
  assert.deepEqual(
    Array.from({ length: 40 }, (_, i) => mixFormat("q5km", `layers.${i}.feed_forward.w2.weight`, 40)),
    Array.from({ length: 40 }, (_, i) => pixtral.includes(i) ? "q6k" : "q5k"),
  );
  assert.equal(mixFormat("q5km", "layers.3.attention.wq.weight", 40), "q5k");
  assert.equal(mixFormat("q5km", "output.weight", 40), "q6k");
  assert.equal(mixFormat("q4km", "tok_embeddings.weight", 40), "q4k");
  assert.equal(mixFormat("q4km", "vision_encoder.transformer.layers.0.attention.wv.weight", 40), "q4k");
  assert.equal(mixFormat("q8", "output.weight", 40), "q8");
});

Deno.test("KV cache: 160 KiB per token at fp16 for Pixtral 12B, in fixed blocks; 8-bit option", () => {
  const full = planMemory(pixtral12b, { ctx: 128_000 });
  assert.equal(full.kvCache.bytesPerToken, 40 * 2 * 8 * 128 * 2);
  assert.equal(full.kvCache.blocks, 128_000 / KV_BLOCK_TOKENS);
  assert.equal(full.kvCache.bytes, 128_000 * 163_840);
  const q8 = planMemory(pixtral12b, { ctx: 128_000, kv: "q8" });
  assert.equal(q8.kvCache.bytesPerToken, (40 * 2 * 8 * 128 * 8.5) / 8);
  const odd = planMemory(pixtral12b, { ctx: 100 });
  assert.equal(odd.kvCache.blocks, 7, "rounded up to whole blocks");
  assert.equal(odd.kvCache.bytes, 7 * KV_BLOCK_TOKENS * 163_840);
  assert.equal(
    full.total,
    full.weights.total + full.kvCache.bytes + full.activations.peak + LOAD_STAGING_BYTES,
  );
  assert.throws(() => planMemory(pixtral12b, { ctx: 200_000 }), /exceeds the model's context of 128000/);
  assert.throws(() => planMemory(pixtral12b, { ctx: 0 }), PlanError);
});

Deno.test("activations: prefill chunk with its logits, one 1024x1024 image through encoder and adapter", () => {
  const plan = planMemory(pixtral12b, { ctx: 4096, prefillChunk: 256, decodeBatch: 1 });
  const perToken = 3 * 5120 + 2 * 32 * 128 + 2 * 8 * 128 + 2 * 14336 + 131072;
  assert.equal(plan.activations.prefill, 256 * perToken * 4);
  assert.equal(plan.activations.decode, perToken * 4);
  const patches = 64 * 64;
  assert.equal(plan.activations.vision, (3 * 1024 * 1024 + patches * (6 * 1024 + 2 * 4096 + 2 * 5120)) * 4);
  const waiting = patches * 5120 * 4; // image embeddings held while the prefill runs
  assert.equal(plan.activations.peak, Math.max(plan.activations.vision, plan.activations.prefill + waiting));
  const text = planMemory({ ...pixtral12b, vision: null, adapter: null }, { ctx: 4096 });
  assert.equal(text.activations.vision, 0);
  assert.equal(text.weights.vision.bytes, 0);
});

Deno.test("default context: the largest whole number of blocks that fits the adapter, up to the model's", () => {
  const offer = gpu(16);
  const plan = planMemory(pixtral12b, {}, offer);
  assert.equal(plan.context.chosen, "fits");
  assert.equal(plan.kvCache.tokens % KV_BLOCK_TOKENS, 0);
  assert.ok(plan.total <= offer.memoryBytes!);
  assert.ok(plan.total + KV_BLOCK_TOKENS * plan.kvCache.bytesPerToken > offer.memoryBytes!);
  checkPlan(pixtral12b, plan, offer);

  const big = planMemory(pixtral12b, {}, gpu(141));
  assert.equal(big.kvCache.tokens, 128_000);
  assert.equal(big.context.chosen, "model");
  const unknown = planMemory(pixtral12b, {}, gpu(null));
  assert.equal(unknown.kvCache.tokens, CONTEXT_WHEN_MEMORY_UNKNOWN);
  assert.equal(unknown.context.chosen, "memory-unknown");
  checkPlan(pixtral12b, unknown, gpu(null));
});

Deno.test("refusals say what is needed, what the adapter offers, and what to change", () => {
  const plan = planMemory(pixtral12b, { ctx: 128_000 });
  assert.throws(() => checkPlan(pixtral12b, plan, gpu(24)), (err: Error) => {
    assert.ok(err instanceof PlanError);
    assert.match(
      err.message,
      /Pixtral needs 27\.\d\d GiB \(weights 7\.23 GiB, KV cache 19\.53 GiB for 128000 tokens at f16/,
    );
    assert.match(err.message, /the adapter "test GPU" offers 24\.00 GiB/);
    assert.match(err.message, /--ctx \d+ fits/);
    assert.match(err.message, /--kv q8/);
    const fitting = Number(/--ctx (\d+)/.exec(err.message)![1]);
    checkPlan(pixtral12b, planMemory(pixtral12b, { ctx: fitting }), gpu(24));
    return true;
  });
  const f16 = planMemory(pixtral12b, { quant: "f16", ctx: 8192 });
  // Only formats that make the weights fit beside the context are suggested, the most precise first: at f16 with
  // 8192 tokens, q8 fits 15 GiB, q6k 14 GiB, q5k 11 GiB, q4 10 GiB; 8.5 GiB needs the vision encoder quantized
  // too, 8 GiB nothing does.
  for (
    const [memory, hint] of [
      [15, /--quant q8 \(now f16\) fits$/],
      [14, /--quant q6k \(now f16\) fits$/],
      [11, /--quant q5k \(now f16\) fits$/],
      [10, /--quant q4 \(now f16\) fits$/],
      [8.5, /--quant q4 \(now f16\) and --vision-quant q4 \(now f16\) fits$/],
      [8, /Try: a GPU with more memory/],
    ] as const
  ) {
    assert.throws(() => checkPlan(pixtral12b, f16, gpu(memory), { quant: "f16" }), hint);
  }
  // At the default q4 only the vision encoder can shrink: no "--quant q4 (now q4)" that changes nothing.
  const q4 = planMemory(pixtral12b, { ctx: 8192 });
  assert.throws(
    () => checkPlan(pixtral12b, q4, gpu(8.7), { ctx: 8192 }),
    /halves the KV cache; --vision-quant q8 \(now f16\) fits$/,
  );
  assert.throws(
    () => checkPlan(pixtral12b, planMemory(pixtral12b, {}, gpu(6)), gpu(6)),
    /a GPU with more memory: the weights and activations alone need 7\.72 GiB/,
  );
  assert.throws(
    () => checkPlan(pixtral12b, f16, gpu(80, 2 ** 30), { quant: "f16" }),
    /tok_embeddings\.weight needs one 1\.25 GiB buffer.*maxBufferSize\); try --quant q8 \(now f16\)$/,
  );
  assert.throws(
    () => checkPlan(pixtral12b, f16, gpu(80, 2 ** 27), { quant: "f16" }),
    /at most 0\.13 GiB \(maxBufferSize\); no weight format makes it fit/,
  );
  // GGUF blocks are uploaded as stored: a smaller --quant cannot help, a smaller quantization of the file can.
  const stored = new Map([["tok_embeddings.weight", "Q8_0" as const]]);
  assert.throws(
    () => checkPlan(pixtral12b, planMemory(pixtral12b, { stored, ctx: 1024 }), gpu(80, 2 ** 29), { stored }),
    /use a GGUF of a smaller quantization/,
  );
  // A suggested format fits the context as the plan sizes it, in whole blocks: 8193 tokens hold 8208.
  const odd = planMemory(pixtral12b, { quant: "f16", ctx: 8193 });
  for (let memory = 8.25; memory <= 8.5; memory += 1 / 1024) {
    let hint: RegExpExecArray | null = null;
    try {
      checkPlan(pixtral12b, odd, gpu(memory), { quant: "f16" });
    } catch (err) {
      hint = /--quant (q4|q8) \(now f16\)(?: and --vision-quant (q4|q8) \(now f16\))? fits/.exec(
        (err as Error).message,
      );
    }
    if (!hint) continue;
    const options = {
      quant: hint[1] as "q4" | "q8",
      visionQuant: (hint[2] ?? "f16") as "q4" | "q8" | "f16",
      ctx: 8193,
    };
    checkPlan(pixtral12b, planMemory(pixtral12b, options), gpu(memory), options);
  }
});

Deno.test("GGUF tensors already quantized are planned as stored", async () => {
  const model = await openModel(await locateModel(`${TINY}gguf/tiny-pixtral-text-Q4_K_M.gguf`));
  model.weights.close();
  const stored = new Map(model.weights.tensors().map((t) => [t.name, t.dtype]));
  const plan = planMemory(model.config, { stored, ctx: 1024 });
  const decoder = model.weights.tensors().filter((t) => t.component === "decoder");
  const bytes = decoder.reduce((n, t) => n + t.byteLength, 0);
  assert.equal(plan.weights.decoder.bytes, bytes);
  assert.equal(plan.weights.decoder.format, "Q4_K+Q6_K");
});

Deno.test("parseSize reads the sizes --gpu-memory accepts", () => {
  assert.equal(parseSize("24GiB"), 24 * GiB);
  assert.equal(parseSize("80 GB"), 80e9);
  assert.equal(parseSize("512mib"), 512 * 2 ** 20);
  assert.equal(parseSize("1073741824"), GiB);
  assert.equal(parseSize("1.5GiB"), 1.5 * GiB);
  assert.equal(parseSize("lots"), null);
});

async function run(args: string[]) {
  const { code, stdout, stderr } = await pixtral(args).output();
  return { code, stdout: new TextDecoder().decode(stdout), stderr: new TextDecoder().decode(stderr) };
}

Deno.test("pixtral plan prints the real Pixtral 12B plan from params.json alone", async () => {
  const text = await run(["plan", "--model", PARAMS, "--no-gpu", "--gpu-memory", "80GB"]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /decoder\s+6\.42 GiB\s+12\.25B parameters, q4/);
  assert.match(text.stdout, /vision\s+0\.75 GiB\s+403\.5M parameters, f16/);
  assert.match(text.stdout, /adapter\s+0\.06 GiB\s+31\.5M parameters, f16/);
  assert.match(text.stdout, /KV cache\s+19\.53 GiB\s+128000 tokens \(model maximum\)/);
  assert.match(text.stdout, /: fits/);

  const json = await run([
    "plan",
    "--model",
    PARAMS,
    "--no-gpu",
    "--json",
    "--ctx",
    "32768",
    "--quant",
    "q8",
    "--kv",
    "q8",
  ]);
  assert.equal(json.code, 0, json.stderr);
  const out = JSON.parse(json.stdout);
  assert.equal(out.config.decoder.headDim, 128);
  assert.equal(out.plan.kvCache.tokens, 32768);
  assert.equal(out.plan.kvCache.format, "q8");
  assert.equal(out.plan.weights.decoder.format, "q8");
  assert.equal(out.fits, null);

  const refused = await run([
    "plan",
    "--model",
    PARAMS,
    "--no-gpu",
    "--gpu-memory",
    "16GiB",
    "--ctx",
    "128000",
  ]);
  assert.equal(refused.code, 1);
  assert.match(refused.stdout, /does NOT fit/);
  assert.match(refused.stderr, /Pixtral needs .* offers 16\.00 GiB\. Try: --ctx \d+ fits/);

  const usage = await run(["plan", "--model", PARAMS, "--quant", "q3"]);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /--quant must be one of q4, q4k, q5k, q6k, q8, f16, f32, q4km, q5km/);
  const missing = await run(["plan", "--model", "/nonexistent/model", "--no-gpu"]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /--model \/nonexistent\/model: no such file or directory/);
});

Deno.test("pixtral plan reads each layout of the tiny model", async () => {
  for (const model of [`${TINY}mistral`, `${TINY}hf`, `${TINY}gguf/tiny-pixtral-text-Q8_0.gguf`]) {
    const { code, stdout, stderr } = await run([
      "plan",
      "--model",
      model,
      "--no-gpu",
      "--json",
      "--ctx",
      "4096",
    ]);
    assert.equal(code, 0, stderr);
    const out = JSON.parse(stdout);
    assert.equal(out.config.decoder.dim, 256);
    // A model this small is planned (and loaded) exactly by default: f32 KV cache and float weights f32.
    assert.equal(out.plan.kvCache.bytesPerToken, 2 * 2 * 2 * 64 * 4);
    assert.equal(out.plan.weights.decoder.format, model.endsWith(".gguf") ? "Q8_0" : "f32");
  }
});
