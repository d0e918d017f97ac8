/**
 * WebGPU adapter and device acquisition.
 *
 * The device is created with the adapter's own maxima for the limits that bound model size (buffer and binding
 * sizes, workgroup storage), because the WebGPU defaults (256 MiB buffers, 128 MiB bindings) are far below what
 * a 12B model needs. `shader-f16` is enabled whenever the adapter offers it.
 */

export class GpuUnavailableError extends Error {
  override name = "GpuUnavailableError";
}

export interface Gpu {
  adapter: GPUAdapter;
  device: GPUDevice;
  /** Human-readable adapter name, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  name: string;
  /** Whether kernels may use `enable f16;`. */
  f16: boolean;
  /** A software adapter running kernels on the CPU (Mesa's lavapipe): slow, and it blocks while it works. */
  software: boolean;
}

export interface GpuOptions {
  /**
   * Require an adapter whose vendor, architecture, device or description contains this text
   * (case-insensitive). Defaults to the PIXTRAL_GPU_ADAPTER environment variable.
   */
  adapter?: string;
}

const MAX_LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
] as const;

const OPTIONAL_FEATURES: GPUFeatureName[] = ["shader-f16", "subgroups" as GPUFeatureName, "timestamp-query"];

export function describeAdapter(adapter: GPUAdapter): string {
  const { vendor, architecture, device, description } = adapter.info;
  return [description, vendor && `vendor ${vendor}`, architecture, device && `device ${device}`]
    .filter(Boolean).join(", ");
}

/** Every distinct adapter the platform offers (WebGPU hands out one per request, chosen by preference). */
export async function listAdapters(): Promise<GPUAdapter[]> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new GpuUnavailableError("this JavaScript runtime has no WebGPU (navigator.gpu is missing)");
  }
  // Mesa's Vulkan loader probes Wayland and prints an alarming error when this is unset on headless hosts.
  if (Deno.env.get("XDG_RUNTIME_DIR") === undefined) Deno.env.set("XDG_RUNTIME_DIR", "/tmp");
  const requests: GPURequestAdapterOptions[] = [
    { powerPreference: "high-performance" },
    { powerPreference: "low-power" },
    { forceFallbackAdapter: true },
  ];
  const adapters: GPUAdapter[] = [];
  const seen = new Set<string>();
  for (const options of requests) {
    const adapter = await navigator.gpu.requestAdapter(options);
    if (adapter && !seen.has(describeAdapter(adapter))) {
      seen.add(describeAdapter(adapter));
      adapters.push(adapter);
    }
  }
  return adapters;
}

export async function acquireGpu(options: GpuOptions = {}): Promise<Gpu> {
  const wanted = options.adapter ?? Deno.env.get("PIXTRAL_GPU_ADAPTER");
  const adapters = await listAdapters();
  if (adapters.length === 0) {
    throw new GpuUnavailableError(
      "no WebGPU adapter found: install a Vulkan driver for your GPU, or Mesa's CPU driver " +
        "(apt-get install mesa-vulkan-drivers) to run slowly on lavapipe",
    );
  }
  const adapter = wanted
    ? adapters.find((a) => describeAdapter(a).toLowerCase().includes(wanted.toLowerCase()))
    : adapters[0];
  if (!adapter) {
    throw new GpuUnavailableError(
      `no WebGPU adapter matches "${wanted}"; found: ${adapters.map(describeAdapter).join("; ")}`,
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const limit of MAX_LIMITS) requiredLimits[limit] = adapter.limits[limit];
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  return {
    adapter,
    device,
    name: describeAdapter(adapter),
    f16: device.features.has("shader-f16"),
    // GPUAdapterInfo.isFallbackAdapter is newer than Deno's type declarations.
    software: (adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true,
  };
}
