/**
 * The tokenizer that comes with a model: its tekken.json, or, for checkpoints shipped without one, the same
 * vocabulary rebuilt from a Hugging Face tokenizer.json or from a GGUF's tokenizer.ggml.* metadata (GPT-2
 * byte-to-unicode token strings, 1000 control tokens first, then the BPE tokens in rank order).
 */
import { partsFromGguf } from "../tokenizer/gguf.ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import { Tokenizer, TokenizerError } from "../tokenizer/tokenizer.ts";
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
        `no tokenizer beside the model in ${location.dir}: put Pixtral's tekken.json there`,
      );
  }
}
