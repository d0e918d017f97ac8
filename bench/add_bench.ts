/** Residual add of a Pixtral-sized activation block (2048 tokens x 5120): GPU kernel against the CPU reference. */
import { acquireGpu } from "../runtime/gpu/device.ts";
import { addF32, addRef } from "../runtime/gpu/ops/add.ts";

const gpu = await acquireGpu();
const n = 2048 * 5120;
const a = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
const b = Float32Array.from({ length: n }, (_, i) => Math.cos(i));

Deno.bench("add f32, CPU reference", { group: "add", baseline: true }, () => {
  addRef(a, b);
});

Deno.bench("add f32, GPU (upload + dispatch + readback)", { group: "add" }, async () => {
  await addF32(gpu, a, b);
});
