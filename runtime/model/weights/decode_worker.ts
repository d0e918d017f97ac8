/** A thread of the block decoder (decode_pool.ts). */
/// <reference lib="deno.worker" />
import { type DecodeJob, decodeJob, type DecodeResult } from "./decode_pool.ts";

self.onmessage = ({ data }: MessageEvent<DecodeJob>) => {
  try {
    const values = decodeJob(data.type, data.bytes);
    self.postMessage({ id: data.id, values } satisfies DecodeResult, [values.buffer as ArrayBuffer]);
  } catch (err) {
    self.postMessage({ id: data.id, error: (err as Error).message ?? String(err) } satisfies DecodeResult);
  }
};
