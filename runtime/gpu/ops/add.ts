/** Residual add on the GPU (kernels/add.wgsl) and its CPU reference. */
import type { Gpu } from "../device.ts";
import { computePipeline, workgroups2d } from "../pipeline.ts";

const WORKGROUP_SIZE = 256;

export async function addF32(
  gpu: Gpu,
  a: Float32Array<ArrayBuffer>,
  b: Float32Array<ArrayBuffer>,
): Promise<Float32Array> {
  if (a.length !== b.length) throw new RangeError(`add: length mismatch (${a.length} vs ${b.length})`);
  const { device } = gpu;
  const pipeline = await computePipeline(device, "add.wgsl", "add_f32", { WORKGROUP_SIZE });
  const bytes = Math.max(4, a.byteLength);
  const input = (data: Float32Array<ArrayBuffer>) => {
    const buffer = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(buffer, 0, data);
    return buffer;
  };
  const bufA = input(a), bufB = input(b);
  const out = device.createBuffer({ size: bytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({
    size: bytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [bufA, bufB, out].map((buffer, binding) => ({ binding, resource: { buffer } })),
    });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(...workgroups2d(device, a.length, WORKGROUP_SIZE));
    pass.end();
    encoder.copyBufferToBuffer(out, 0, readback, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    return new Float32Array(readback.getMappedRange().slice(0, a.byteLength));
  } finally {
    for (const buffer of [bufA, bufB, out, readback]) buffer.destroy();
  }
}

export function addRef(a: Float32Array, b: Float32Array): Float32Array {
  return a.map((x, i) => x + b[i]);
}
