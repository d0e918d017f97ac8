/**
 * The tokenizer that comes with a model: its tekken.json, or, for checkpoints shipped without one, the same
 * vocabulary rebuilt from a Hugging Face tokenizer.json or from a GGUF's tokenizer.ggml.* metadata (GPT-2
 * byte-to-unicode token strings, 1000 control tokens first, then the BPE tokens in rank order).
 */
import { partsFromGguf } from "../tokenizer/gguf.ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import { Tokenizer, TokenizerError } from "../tokenizer/tokenizer.ts";
import { ConfigError, type ModelConfig } from "./config.ts";
import type { ModelLocation } from "./locate.ts";
import type { GgufFile } from "./weights/gguf.ts";

/** tokenizer.json's vocabulary in id order: added (control) tokens by id, then the BPE vocabulary. */
async function hfTokens(path: string): Promise<string[]> {
  const json = JSON.parse(await Deno.readTextFile(path));
  const vocab: Record<string, number> | undefined = json?.model?.vocab;
  if (!vocab || typeof vocab !== "object") throw new TokenizerError(`${path}: no model.vocab`);
  const tokens: string[] = [];
  for (const [token, id] of Object.entries(vocab)) tokens[id] = token;
  for (const added of json.added_tokens ?? []) tokens[added.id] = added.content;
  const hole = tokens.findIndex((t) => t === undefined);
  if (hole >= 0 || tokens.length === 0) throw new TokenizerError(`${path}: no token with id ${hole}`);
  return tokens;
}

export async function modelTokenizer(
  location: ModelLocation,
  vocabSize: number,
  gguf?: GgufFile,
): Promise<Tokenizer> {
  const where = location.tokenizer;
  switch (where.kind) {
    case "tekken":
      return await loadTokenizer(where.path, { vocabSize });
    case "hf":
      return await Tokenizer.fromParts({
        ...partsFromGguf({ tokens: await hfTokens(where.path) }),
        vocabSize,
      });
    case "gguf": {
      if (!gguf) throw new TokenizerError("the GGUF's tokenizer needs its header");
      const tokens = gguf.get<string[]>("tokenizer.ggml.tokens", "array");
      const types = gguf.metadata.get("tokenizer.ggml.token_type") as number[] | undefined;
      return await Tokenizer.fromParts({ ...partsFromGguf({ tokens, tokenTypes: types }), vocabSize });
    }
    case "none":
      throw new TokenizerError(
        `no tokenizer beside the model in ${location.dir}: put Pixtral's tekken.json (or the Hugging Face ` +
          "tokenizer.json) there",
      );
  }
}

/** Control tokens of the chat format, which no image token may be. */
const TEXT_CONTROLS = new Set(["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "<pad>"]);

/**
 * Refuses a model whose image token ids the tokenizer contradicts: ids the tokenizer gives other control tokens
 * (an `image_token_index` of 1 would read every BOS as an image patch), or a tokenizer whose own [IMG] tokens
 * have other ids. Either way every image request would fail, or be answered wrongly.
 */
export function checkImageTokens(config: ModelConfig, tokenizer: Tokenizer, file: string): void {
  if (!config.vision) return;
  const names = { img: "[IMG]", imgBreak: "[IMG_BREAK]", imgEnd: "[IMG_END]" } as const;
  const problems: string[] = [];
  for (const [key, name] of Object.entries(names) as [keyof typeof names, string][]) {
    const id = config.imageTokens[key];
    const own = tokenizer.specialName(id);
    let expected: number | undefined;
    try {
      expected = tokenizer.special(name);
    } catch {
      // A tokenizer without the name (none of the known ones) cannot contradict the config.
    }
    if (expected !== undefined && expected !== id) {
      problems.push(`${name} is ${id} in the config but ${expected} in the tokenizer`);
    } else if (own === undefined) {
      problems.push(`${name} = ${id} is not a control token of the tokenizer`);
    } else if (expected === undefined && TEXT_CONTROLS.has(own)) {
      problems.push(`${name} = ${id} is the tokenizer's ${own}`);
    }
  }
  const ids = Object.values(config.imageTokens);
  if (new Set(ids).size !== ids.length) {
    problems.push(`[IMG], [IMG_BREAK] and [IMG_END] share an id (${ids})`);
  }
  if (problems.length) {
    throw new ConfigError(file, `image tokens disagree with the tokenizer: ${problems.join("; ")}`);
  }
}
