import assert from "node:assert/strict";
import { parseParamsJson } from "../runtime/model/config.ts";
import { expectedTensors } from "../runtime/model/tensors.ts";
import { toFloat32 } from "../runtime/model/weights/convert.ts";
import { syntheticWeights } from "../runtime/model/weights/synthetic.ts";
import { fixtureJson } from "./helpers.ts";

const config = parseParamsJson(await fixtureJson("mistral/params.json"));

Deno.test("synthetic weights cover every tensor of the config with its shape, in bf16", () => {
  const weights = syntheticWeights(config, 1);
  const specs = expectedTensors(config);
  assert.deepEqual(weights.tensors().map((t) => [t.name, t.shape]), specs.map((s) => [s.name, s.shape]));
  for (const t of weights.tensors()) assert.equal(t.byteLength, t.shape.reduce((n, d) => n * d, 2));
  assert.throws(() => weights.info("layers.99.attention.wq.weight"), /not a tensor of this model/);
});

Deno.test("synthetic weights are deterministic, seed-dependent, and chunks join to the whole tensor", async () => {
  const a = syntheticWeights(config, 1), b = syntheticWeights(config, 1), c = syntheticWeights(config, 2);
  const name = "layers.1.feed_forward.w2.weight";
  const whole = await a.read(name);
  assert.deepEqual(whole, await b.read(name));
  assert.notDeepEqual(whole, await c.read(name));
  const parts: Uint8Array<ArrayBuffer>[] = [];
  for await (const chunk of a.chunks(name, 5000)) {
    assert.equal(chunk.byteOffset, parts.reduce((n, p) => n + p.byteLength, 0));
    parts.push(chunk.bytes);
  }
  assert.ok(parts.length > 1);
  assert.deepEqual(new Uint8Array(await new Blob(parts).arrayBuffer()), whole);
});

Deno.test("synthetic weights have the recipe's scales", async () => {
  const weights = syntheticWeights(config, 3);
  const stats = async (name: string) => {
    const v = toFloat32("BF16", await weights.read(name));
    const mean = v.reduce((s, x) => s + x, 0) / v.length;
    const std = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / v.length);
    return { mean, std };
  };
  const linear = await stats("layers.0.attention.wq.weight");
  assert.ok(Math.abs(linear.mean) < 0.002 && Math.abs(linear.std - 0.08) < 0.002, JSON.stringify(linear));
  const embed = await stats("tok_embeddings.weight");
  assert.ok(Math.abs(embed.std - 0.5) < 0.01, JSON.stringify(embed));
  const head = await stats("output.weight");
  assert.ok(Math.abs(head.std - 0.25) < 0.005, JSON.stringify(head));
  const norm = await stats("norm.weight");
  assert.ok(Math.abs(norm.mean - 1) < 0.03 && Math.abs(norm.std - 0.1) < 0.03, JSON.stringify(norm));
});
