/** Compute pipelines built from the WGSL files in kernels/, cached per device, file, entry point and constants. */

const KERNELS_DIR = new URL("../../kernels/", import.meta.url);
const sources = new Map<string, Promise<string>>();
const cache = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

function kernelSource(file: string): Promise<string> {
  let source = sources.get(file);
  if (!source) {
    source = Deno.readTextFile(new URL(file, KERNELS_DIR));
    sources.set(file, source);
  }
  return source;
}

export function computePipeline(
  device: GPUDevice,
  file: string,
  entryPoint: string,
  constants: Record<string, number> = {},
): Promise<GPUComputePipeline> {
  let pipelines = cache.get(device);
  if (!pipelines) cache.set(device, pipelines = new Map());
  const key = `${file}:${entryPoint}:${JSON.stringify(constants)}`;
  let pipeline = pipelines.get(key);
  if (!pipeline) {
    pipeline = build(device, file, entryPoint, constants);
    pipelines.set(key, pipeline);
    pipeline.catch(() => pipelines.delete(key));
  }
  return pipeline;
}

async function build(
  device: GPUDevice,
  file: string,
  entryPoint: string,
  constants: Record<string, number>,
): Promise<GPUComputePipeline> {
  const code = await kernelSource(file);
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ label: file, code });
  const pipeline = device.createComputePipeline({
    label: `${file}:${entryPoint}`,
    layout: "auto",
    compute: { module, entryPoint, constants },
  });
  const error = await device.popErrorScope();
  if (error) throw new Error(`kernel ${file} (${entryPoint}) does not compile: ${error.message}`);
  return pipeline;
}

/** Workgroup counts covering `invocations` threads, folded into a second dimension past the 65535 limit. */
export function workgroups2d(
  device: GPUDevice,
  invocations: number,
  workgroupSize: number,
): [number, number] {
  const groups = Math.max(1, Math.ceil(invocations / workgroupSize));
  const x = Math.min(groups, device.limits.maxComputeWorkgroupsPerDimension);
  return [x, Math.ceil(groups / x)];
}
