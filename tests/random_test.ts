import assert from "node:assert/strict";
import { GpuContext } from "../runtime/gpu/context.ts";
import { randomUniform, randomUniformRef } from "../runtime/gpu/ops/random.ts";

Deno.test("random fill: equals its CPU reference, and pieces equal one whole fill", async () => {
  const ctx = await GpuContext.create();
  try {
    const rec = ctx.record("random");
    const whole = rec.scratch("f32", [1000, 3]);
    randomUniform(rec, { y: whole, seed: 42, scale: 2, offset: 1 });
    const parts = rec.scratch("f32", [1000, 3]);
    randomUniform(rec, { y: parts.sliceRows(0, 400), seed: 42, scale: 2, offset: 1 });
    randomUniform(rec, { y: parts.sliceRows(400, 600), seed: 42, start: 1200, scale: 2, offset: 1 });
    const [a, b] = [rec.read(whole), rec.read(parts)];
    await rec.submit();
    const got = new Float32Array((await a).buffer);
    assert.deepEqual(new Float32Array((await b).buffer), got);
    const want = randomUniformRef(3000, 42, 2, 1);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-6, `element ${i}`);
    const mean = got.reduce((s, x) => s + x, 0) / got.length;
    assert.ok(Math.abs(mean - 1) < 0.05 && got.every((x) => x >= 0 && x < 2));
  } finally {
    ctx.destroy();
  }
});
