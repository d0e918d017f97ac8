/** A Service over a tokenizer with no engine: what the routes see while a model loads, or for prompt tests. */
import { AddressAllowList } from "../functions/images/address.ts";
import { DEFAULT_IMAGE_FETCH } from "../functions/images/fetch.ts";
import { createMetrics } from "../functions/metrics.ts";
import type { Service } from "../functions/service.ts";
import type { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";

export function engineLessService(tokenizer: Tokenizer, chatTemplate?: string): Service {
  return {
    model: { id: "tiny", aliases: [], created: 0, demo: false, description: "" },
    tokenizer,
    images: {
      enabled: true,
      maxImages: 8,
      fetch: { ...DEFAULT_IMAGE_FETCH, allow: new AddressAllowList() },
      resize: "mistral",
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
