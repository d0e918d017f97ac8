/** `pixtral logits` and `pixtral generate` on the tiny model, against the reference goldens. */
import assert from "node:assert/strict";
import { loadTokenizer } from "../runtime/tokenizer/load.ts";
import { fixture } from "./helpers.ts";
import { pixtral } from "./helpers.ts";
import { manifest, maxAbsDiff, readF32 } from "./model_helpers.ts";

const mm = manifest.multimodal[0];
const model = fixture("mistral").pathname;

async function run(args: string[]) {
  const { code, stdout, stderr } = await pixtral(args).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

Deno.test("pixtral logits: an image segment expands to its token layout; logits and embeddings match the goldens", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const start = mm.ids.indexOf(10), end = mm.ids.indexOf(13);
    await Deno.copyFile(fixture("golden/images/gradient_64x48.png"), `${dir}/a.png`);
    await Deno.writeTextFile(
      `${dir}/seq.json`,
      JSON.stringify({
        segments: [{ ids: mm.ids.slice(0, start) }, { image: "a.png" }, { ids: mm.ids.slice(end + 1) }],
      }),
    );
    // No precision flags: the defaults must be the exact ones.
    const logitsOf = (out: string, ...flags: string[]) =>
      run(["logits", "--model", model, "--input", `${dir}/seq.json`, "--out", out, ...flags]);
    const out = await logitsOf(`${dir}/logits.f32`, "--embeddings-out", `${dir}/emb.f32`);
    assert.equal(out.code, 0, out.stderr);
    // Stdout is the result alone (logs go to stderr); the patches are counted without --embeddings-out too.
    const result = { tokens: mm.ids.length, vocab: 2048, patches: 12 };
    assert.deepEqual(JSON.parse(out.stdout), result);
    const bare = await logitsOf(`${dir}/l2.f32`);
    assert.equal(bare.code, 0, bare.stderr);
    assert.deepEqual(JSON.parse(bare.stdout), result);
    const logits = new Float32Array((await Deno.readFile(`${dir}/logits.f32`)).buffer);
    assert.ok(maxAbsDiff(logits, await readF32(`golden/model/${mm.logits.file}`)) < 1e-3);
    const emb = new Float32Array((await Deno.readFile(`${dir}/emb.f32`)).buffer);
    assert.ok(maxAbsDiff(emb, await readF32("golden/model/vision_gradient_64x48.emb.f32.bin")) < 1e-3);

    // --lora (twice: the flag repeats) merges adapters; PEFT's forward gives the reference (model_lora_test.ts).
    const lora = new URL("./fixtures/lora/", import.meta.url).pathname;
    const adapted = await logitsOf(`${dir}/l3.f32`, "--lora", `${lora}mistral`, "--lora", `${lora}peft`);
    assert.equal(adapted.code, 0, adapted.stderr);
    assert.match(adapted.stderr, /LoRA adapter: merged into the weights as they load.*"kind":"peft"/);
    const once = await logitsOf(`${dir}/l4.f32`, "--lora", `${lora}mistral`);
    const [l3, l4] = [`${dir}/l3.f32`, `${dir}/l4.f32`].map((f) =>
      new Float32Array(Deno.readFileSync(f).buffer)
    );
    assert.ok(
      maxAbsDiff(l4, new Float32Array(Deno.readFileSync(`${lora}plain.${mm.name}.logits.f32.bin`).buffer)) <
        2e-3,
    );
    assert.ok(maxAbsDiff(l3, l4) > 0.5, once.stderr);

    await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify({ segments: [{ text: "x" }] }));
    const bad = await run(["logits", "--model", model, "--input", `${dir}/bad.json`, "--out", `${dir}/x`]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /segments/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pixtral generate: the prompt is built by Mistral's rules and decoded greedily", async () => {
  const out = await run([
    "generate",
    "--model",
    model,
    // No precision flags: a model this small loads exactly by default.
    "--prompt",
    "Describe the image.",
    "--image",
    fixture("golden/images/gradient_64x48.png").pathname,
    "--max-tokens",
    String(mm.greedy_8.length),
  ]);
  assert.equal(out.code, 0, out.stderr);
  const tokenizer = await loadTokenizer(fixture("mistral/tekken.json").pathname);
  assert.equal(out.stdout.trimEnd(), tokenizer.decode(mm.greedy_8));
});
