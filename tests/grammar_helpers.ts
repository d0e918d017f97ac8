/** Random walks through what an output format allows, over the real Tekken vocabulary (as a random model). */
import assert from "node:assert/strict";
import { XGrammarConstraints } from "../runtime/grammar/constraints.ts";
import { jsonSchemaFormat, type OutputFormat } from "../runtime/grammar/format.ts";
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import { seededRandom as centred } from "./gpu_helpers.ts";
import { fixture } from "./helpers.ts";

export const tokenizer = await loadTokenizer(fixture("tekken-full.json"), { cache: false });
export const EOS = tokenizer.special("</s>");
export const constraints = XGrammarConstraints.forTokenizer(tokenizer, tokenizer.vocabSize);

/** Tokens allowed by a mask. */
export function allowedIds(mask: Uint32Array): number[] {
  const ids: number[] = [];
  mask.forEach((word, w) => {
    for (let b = 0; b < 32; b++) if ((word >>> b) & 1) ids.push(w * 32 + b);
  });
  return ids;
}

// A walk may begin with U+FEFF (`\s` allows it): it is text, not a byte-order mark.
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Tokens that begin with a quote, a bracket or a brace. */
const CLOSES = Array.from({ length: tokenizer.vocabSize }, (_, id) => {
  const first = tokenizer.tokenBytes(id)[0];
  return first === 0x22 || first === 0x5d || first === 0x7d;
});

/** One random walk: random allowed tokens until it stops. */
export async function walk(
  format: OutputFormat,
  random: () => number,
  limit = 400,
): Promise<string | undefined> {
  const constraint = await constraints.constrain(format, [EOS]);
  try {
    const ids: number[] = [];
    for (let i = 0; i < limit; i++) {
      const allowed = allowedIds(await constraint.allowed());
      assert.ok(allowed.length > 0, "no token allowed");
      const special = allowed.filter((id) => tokenizer.isSpecial(id));
      assert.ok(special.every((id) => id === EOS), `special tokens allowed: ${special}`);
      // Half the time the walk leans to an end: a token that closes a string, an object or an array, if any.
      const closing = allowed.filter((id) => id === EOS || CLOSES[id]);
      const from = closing.length && random() < 0.5 ? closing : allowed;
      const pick = from[Math.floor(random() * from.length)];
      assert.ok(constraint.accept(pick), `token ${pick} was allowed but not accepted`);
      // Decoded strictly: a walk that wrote invalid UTF-8 fails.
      if (pick === EOS) {
        return UTF8.decode(new Uint8Array(ids.flatMap((id) => [...tokenizer.tokenBytes(id)])));
      }
      ids.push(pick);
    }
    return undefined; // a long string or array: the walk ran out, as max_tokens would
  } finally {
    constraint.release();
  }
}

/** Uniform in [0, 1), from a seed. */
export function seededRandom(seed: number): () => number {
  const random = centred(seed);
  return () => random() + 0.5;
}

/**
 * Ten random walks through `format` (seeded by `source`'s length, at most `limit` tokens each): every one that
 * finishes matches `whole`, and at least three finish.
 */
export async function walksMatch(format: OutputFormat, source: string, whole: RegExp, limit: number) {
  const random = seededRandom(source.length);
  let finished = 0;
  for (let i = 0; i < 10; i++) {
    const text = await walk(format, random, limit);
    if (text === undefined) continue;
    finished++;
    assert.ok(whole.test(text), `${source}: ${JSON.stringify(text)}`);
  }
  assert.ok(finished >= 3, `${source}: only ${finished} of 10 walks finished`);
}

/** What a schema's format allows after `prefix` (tokenized as the model would write it): texts, "</s>" the stop. */
export function allowedAfter(schema: unknown, prefix: string): Promise<Set<string>> {
  return allowedAfterFormat(jsonSchemaFormat(schema), prefix);
}

/** What a format allows after `prefix`, as allowedAfter. */
export async function allowedAfterFormat(format: OutputFormat, prefix: string): Promise<Set<string>> {
  const constraint = await constraints.constrain(format, [EOS]);
  try {
    for (const id of tokenizer.encode(prefix)) {
      await constraint.allowed();
      assert.ok(constraint.accept(id), `${prefix}: ${tokenizer.decode([id])}`);
    }
    return new Set(
      allowedIds(await constraint.allowed()).map((id) => id === EOS ? "</s>" : tokenizer.decode([id])),
    );
  } finally {
    constraint.release();
  }
}
