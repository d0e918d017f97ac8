/**
 * A Service over a tokenizer with no engine (what the routes see while a model loads, or for prompt tests), and an
 * engine that answers a script of token ids.
 */
import { AddressAllowList } from "../functions/images/address.ts";
import { DEFAULT_IMAGE_FETCH } from "../functions/images/fetch.ts";
import { createMetrics } from "../functions/metrics.ts";
import type { Service } from "../functions/service.ts";
import type { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";
import type { Engine, FinishReason, TokenEvent } from "../runtime/engine/engine.ts";
import { decodeImage } from "../runtime/images/preprocess.ts";

export function engineLessService(tokenizer: Tokenizer, chatTemplate?: string): Service {
  return {
    model: { id: "tiny", aliases: [], created: 0, demo: false, description: "" },
    tokenizer,
    images: {
      enabled: true,
      maxImages: 8,
      fetch: { ...DEFAULT_IMAGE_FETCH, allow: new AddressAllowList() },
      resize: "mistral",
      orientation: "exif",
      maxImageSize: 1024,
      patchSize: 16,
      maxPixels: 50_000_000,
      tokens: { img: 10, imgBreak: 12, imgEnd: 13 },
    },
    defaults: { temperature: 0.7, topP: 1 },
    chatTemplate,
    metrics: createMetrics(() => undefined),
  };
}

/** `service` with its image decodes counted (`counts.decodes`). */
export function countingDecodes(service: Service): { service: Service; counts: { decodes: number } } {
  const counts = { decodes: 0 };
  const prepare = (bytes: Uint8Array, options: Parameters<typeof decodeImage>[1]) => {
    counts.decodes++;
    return decodeImage(bytes, options);
  };
  return { service: { ...service, images: { ...service.images, prepare } }, counts };
}

/** An engine that answers every request with the same tokens: what a model that calls functions writes. */
export class ScriptedEngine implements Engine {
  readonly contextLength: number = 4096;
  readonly vocabSize = 131072;
  /** Tokens given so far, and whether a request's signal stopped them. */
  given = 0;
  stopped = false;
  constructor(readonly ids: number[], readonly finish: FinishReason = "stop", readonly delayMs = 0) {}
  async *generate(_request: unknown, signal?: AbortSignal): AsyncGenerator<TokenEvent, FinishReason> {
    for (const id of this.ids) {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      if (signal?.aborted) {
        this.stopped = true;
        throw signal.reason;
      }
      this.given++;
      yield { id };
    }
    return this.finish;
  }
  stats() {
    return { waiting: 0, running: 0, kvUsage: 0, kvBlocks: 0, kvBlocksUsed: 0 };
  }
  async close() {}
}
