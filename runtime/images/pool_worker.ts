/**
 * A thread of the image pool (pool.ts): one image at a time, in this thread's own WASM instance, whose size it
 * reports with each result.
 */
/// <reference lib="deno.worker" />
import { loadWasm, wasmMemoryBytes } from "../wasm.ts";
import type { ImageJob, ImageResult } from "./pool.ts";
import { preprocessImage } from "./preprocess.ts";

self.onmessage = async ({ data }: MessageEvent<ImageJob>) => {
  try {
    const image = await preprocessImage(data.bytes, data.options);
    const result: ImageResult = { id: data.id, image, memoryBytes: wasmMemoryBytes() };
    self.postMessage(result, [image.pixels.buffer as ArrayBuffer]);
  } catch (err) {
    const { name, message, cause } = err instanceof Error ? err : new Error(String(err));
    const trapped = err instanceof WebAssembly.RuntimeError || cause instanceof WebAssembly.RuntimeError;
    const error = { name, message, trapped };
    self.postMessage({ id: data.id, error, memoryBytes: wasmMemoryBytes() } satisfies ImageResult);
  }
};

// Loaded before the first image, so that the image's time limit counts its decoding only (a failure to load is
// this thread's error event).
await loadWasm();
self.postMessage({ ready: true } satisfies ImageResult);
