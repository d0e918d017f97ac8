/** Building the tokenizer from a llama.cpp GGUF's vocabulary instead of tekken.json. */
import assert from "node:assert/strict";
import {
  gpt2TokenBytes,
  loadTokenizer,
  partsFromGguf,
  Tokenizer,
  TokenizerError,
} from "../runtime/tokenizer/mod.ts";
import { GgufFile } from "../runtime/model/weights/gguf.ts";
import { fixture } from "./helpers.ts";

Deno.test("a GGUF vocabulary (GPT-2 byte strings, control tokens first) gives the tekken.json tokenizer", async () => {
  const gguf = await GgufFile.open(fixture("gguf/tiny-pixtral-text-f32.gguf").pathname);
  gguf.close();
  const tokens = gguf.metadata.get("tokenizer.ggml.tokens") as string[];
  const tokenTypes = gguf.metadata.get("tokenizer.ggml.token_type") as number[];
  const fromGguf = await Tokenizer.fromParts(partsFromGguf({ tokens, tokenTypes }));
  const tekken = await loadTokenizer(fixture("mistral/tekken.json"), { cache: false });
  assert.deepEqual([fromGguf.vocabSize, fromGguf.numSpecial], [tekken.vocabSize, tekken.numSpecial]);
  assert.equal(fromGguf.special("[IMG_END]"), 13);
  const reference = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/tokenizer/reference.json", import.meta.url)),
  );
  for (const { text, ids_tiny } of reference.encode) assert.deepEqual([...fromGguf.encode(text)], ids_tiny);
  for (let id = 0; id < tekken.vocabSize; id++) {
    assert.deepEqual(fromGguf.tokenBytes(id), tekken.tokenBytes(id));
  }

  // Without token types the first 1000 are the specials, as in every Tekken GGUF.
  const untyped = await Tokenizer.fromParts(partsFromGguf({ tokens }));
  assert.equal(untyped.numSpecial, 1000);
  assert.throws(
    () => partsFromGguf({ tokens, tokenTypes: tokenTypes.slice(1) }),
    /2047 entries for 2048 tokens/,
  );
});

Deno.test("GPT-2 byte strings decode to bytes, and other characters are refused", () => {
  assert.deepEqual([...gpt2TokenBytes("Ġhello")], [0x20, ...new TextEncoder().encode("hello")]);
  assert.deepEqual([...gpt2TokenBytes("ĊĊ")], [10, 10]);
  assert.deepEqual([...gpt2TokenBytes("Ā")], [0]);
  assert.deepEqual([...gpt2TokenBytes("Ã©")], [0xc3, 0xa9]);
  assert.throws(
    () => gpt2TokenBytes("日"),
    (err: Error) => err instanceof TokenizerError && /日/.test(err.message),
  );
});

Deno.test("raw parts are checked like a tekken.json", async () => {
  const bytes = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
  const ab = new TextEncoder().encode("ab");
  const parts = { tokens: [...bytes, ab], specials: ["<unk>", "<s>"], pattern: "\\S+|\\s+" };
  const t = await Tokenizer.fromParts(parts);
  assert.deepEqual([...t.encode("ab a")], [258, 34, 99]);
  await assert.rejects(
    Tokenizer.fromParts({ ...parts, tokens: [...bytes, ab, ab] }),
    /tokens 256 and 257 have the same bytes "ab"/,
  );
  await assert.rejects(
    Tokenizer.fromParts({ ...parts, tokens: bytes.slice(1) }),
    /no room for the 256 byte tokens/,
  );
  await assert.rejects(Tokenizer.fromParts({ ...parts, vocabSize: 300 }), /needs 298 BPE tokens .* only 257/);
  await assert.rejects(
    Tokenizer.fromParts({ ...parts, specials: ["<s>", "<s>"] }),
    /special tokens 0 and 1 are both named "<s>"/,
  );
  await assert.rejects(Tokenizer.fromParts({ ...parts, pattern: "(" }), /not a valid regex/);
  assert.equal((await Tokenizer.fromParts({ ...parts, vocabSize: 258 })).vocabSize, 258);
});
