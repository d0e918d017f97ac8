/** A thread of the image pool (pool.ts): one image at a time, in this thread's own WASM instance. */
/// <reference lib="deno.worker" />
import type { ImageJob, ImageResult } from "./pool.ts";
import { preprocessImage } from "./preprocess.ts";

self.onmessage = async ({ data }: MessageEvent<ImageJob>) => {
  try {
    const image = await preprocessImage(data.bytes, data.options);
    self.postMessage({ id: data.id, image } satisfies ImageResult, [image.pixels.buffer as ArrayBuffer]);
  } catch (err) {
    const { name, message, cause } = err instanceof Error ? err : new Error(String(err));
    const trapped = cause instanceof WebAssembly.RuntimeError;
    self.postMessage({ id: data.id, error: { name, message, trapped } } satisfies ImageResult);
  }
};
