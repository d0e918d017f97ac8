/**
 * What a WebGPU adapter offers the memory plan. WebGPU reports buffer limits but not memory, so the memory is
 * given (--gpu-memory, PIXTRAL_GPU_MEMORY) or, for a CPU adapter such as lavapipe, the system's available memory.
 */
import type { AdapterOffer } from "./plan.ts";

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** "24GiB", "80 GB", "512MiB", "1073741824" -> bytes; null when the text is not a size. */
export function parseSize(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$/i.exec(text);
  if (!m) return null;
  return Math.round(Number(m[1]) * UNITS[(m[2] ?? "").toLowerCase()]);
}

/** The system's available memory (needs --allow-sys=systemMemoryInfo), or null. */
function systemAvailableMemory(): number | null {
  try {
    return Deno.systemMemoryInfo().available;
  } catch {
    return null;
  }
}

export function adapterOffer(adapter: GPUAdapter, memoryBytes?: number): AdapterOffer {
  const info = adapter.info;
  const cpu = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    /llvmpipe|lavapipe|swiftshader/i.test(info.description);
  return {
    name: info.description || [info.vendor, info.architecture, info.device].filter(Boolean).join(" ") ||
      "WebGPU adapter",
    memoryBytes: memoryBytes ?? (cpu ? systemAvailableMemory() : null),
    maxBufferSize: adapter.limits.maxBufferSize,
    maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
  };
}
