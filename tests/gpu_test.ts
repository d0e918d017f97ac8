import assert from "node:assert/strict";
import { acquireGpu, GpuUnavailableError, listAdapters } from "../runtime/gpu/device.ts";
import { addF32, addRef } from "../runtime/gpu/ops/add.ts";

function seededRandom(seed: number): () => number {
  return () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
}

Deno.test("a compute shader runs on the WebGPU adapter and matches the CPU reference", async () => {
  const gpu = await acquireGpu();
  try {
    console.log(`adapter: ${gpu.name}, shader-f16: ${gpu.f16}`);
    const random = seededRandom(7);
    // 1, a prime, a size not divisible by the workgroup, and one past the 65535-workgroup limit of one dimension.
    for (const n of [1, 257, 1021, 65535 * 256 + 3]) {
      const a = Float32Array.from({ length: n }, random);
      const b = Float32Array.from({ length: n }, random);
      assert.deepEqual(await addF32(gpu, a, b), addRef(a, b), `n = ${n}`);
    }
  } finally {
    gpu.device.destroy();
  }
});

Deno.test("the device gets the adapter's maximum buffer limits and shader-f16 when offered", async () => {
  const gpu = await acquireGpu();
  try {
    const { adapter, device } = gpu;
    assert.equal(device.limits.maxBufferSize, adapter.limits.maxBufferSize);
    assert.equal(device.limits.maxStorageBufferBindingSize, adapter.limits.maxStorageBufferBindingSize);
    assert.equal(device.features.has("shader-f16"), adapter.features.has("shader-f16"));
    assert.equal(gpu.f16, adapter.features.has("shader-f16"));
  } finally {
    gpu.device.destroy();
  }
});

Deno.test("requiring an adapter that does not exist is a clear error listing what exists", async () => {
  const found = await listAdapters();
  await assert.rejects(
    acquireGpu({ adapter: "no-such-gpu-xyz" }),
    (err: Error) => {
      assert.ok(err instanceof GpuUnavailableError);
      assert.match(err.message, /no WebGPU adapter matches "no-such-gpu-xyz"/);
      assert.ok(found.length > 0 && err.message.includes(found[0].info.description));
      return true;
    },
  );
});

Deno.test("an adapter can be required by part of its name", async () => {
  const [first] = await listAdapters();
  const gpu = await acquireGpu({ adapter: first.info.description.slice(0, 6).toUpperCase() });
  try {
    assert.equal(gpu.adapter.info.description, first.info.description);
  } finally {
    gpu.device.destroy();
  }
});
