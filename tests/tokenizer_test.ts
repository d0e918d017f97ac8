import assert from "node:assert/strict";
import { loadTokenizer, type Tokenizer, TokenizerError } from "../runtime/tokenizer/mod.ts";
import { fixture, fixtureJson } from "./helpers.ts";

interface GoldenTexts {
  cases: { text: string; ids_full: number[]; ids_tiny: number[] }[];
}

interface ChatGolden {
  cases: { name: string; text_full_vocab: string; ids_full_vocab: number[]; ids_tiny_vocab: number[] }[];
}

/** tests/fixtures/tokenizer/reference.json, written by scripts/gen_tokenizer_goldens.py from mistral_common. */
interface Reference {
  encode: { text: string; ids_full: number[]; ids_tiny: number[] }[];
  lone_surrogates: { utf16: number[]; ids_full: number[] }[];
  decode_full: { ids: number[]; ignore: string; keep: string }[];
  specials_full: Record<string, number>;
  vocab_size: { full: number; tiny: number };
}

const reference: Reference = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/tokenizer/reference.json", import.meta.url)),
);

let loaded: Promise<{ full: Tokenizer; tiny: Tokenizer }> | undefined;
function tokenizers() {
  loaded ??= (async () => ({
    full: await loadTokenizer(fixture("tekken-full.json"), { cache: false }),
    tiny: await loadTokenizer(fixture("mistral/tekken.json"), { cache: false }),
  }))();
  return loaded;
}

const isWellFormed = (s: string) => !/\p{Cs}/u.test(s);

Deno.test("encode reproduces every golden text, full and tiny vocabulary", async () => {
  const { full, tiny } = await tokenizers();
  const golden = await fixtureJson<GoldenTexts>("golden/tokenizer/texts.json");
  assert.ok(golden.cases.length >= 30);
  for (const c of golden.cases) {
    assert.deepEqual([...full.encode(c.text)], c.ids_full, `full: ${JSON.stringify(c.text)}`);
    assert.deepEqual([...tiny.encode(c.text)], c.ids_tiny, `tiny: ${JSON.stringify(c.text)}`);
  }
});

Deno.test("encode reproduces mistral_common on corner cases, recent Unicode and seeded random strings", async () => {
  const { full, tiny } = await tokenizers();
  assert.ok(reference.encode.length >= 400);
  for (const c of reference.encode) {
    assert.deepEqual([...full.encode(c.text)], c.ids_full, `full: ${JSON.stringify(c.text).slice(0, 200)}`);
    assert.deepEqual([...tiny.encode(c.text)], c.ids_tiny, `tiny: ${JSON.stringify(c.text).slice(0, 200)}`);
  }
});

Deno.test("the text parts of the chat goldens encode to their ids, and the whole decodes to their text", async () => {
  const { full, tiny } = await tokenizers();
  const chat = await fixtureJson<ChatGolden>("golden/chat/manifest.json");
  assert.ok(chat.cases.length >= 5);
  for (const c of chat.cases) {
    for (const [tok, ids] of [[full, c.ids_full_vocab], [tiny, c.ids_tiny_vocab]] as const) {
      // Special tokens separate the BPE runs; each run is one text part of the prompt.
      const texts = c.text_full_vocab.split(/<s>|<\/s>|\[\/?INST\]|\[IMG(?:_BREAK|_END)?\]/).filter((t) => t);
      const runs: number[][] = [];
      ids.forEach((id, i) => {
        if (id < tok.numSpecial) return;
        if (i === 0 || ids[i - 1] < tok.numSpecial) runs.push([]);
        runs.at(-1)!.push(id);
      });
      assert.equal(runs.length, texts.length, c.name);
      texts.forEach((text, i) => assert.deepEqual([...tok.encode(text)], runs[i], `${c.name}: ${text}`));
      assert.equal(tok.decode(ids, { keepSpecial: true }), c.text_full_vocab, c.name);
      assert.equal(tok.decode(ids), texts.join(""), c.name);
    }
  }
});

Deno.test("encode then decode gives back every valid string", async () => {
  const { full, tiny } = await tokenizers();
  const golden = await fixtureJson<GoldenTexts>("golden/tokenizer/texts.json");
  for (const text of [...golden.cases.map((c) => c.text), ...reference.encode.map((c) => c.text)]) {
    assert.equal(full.decode(full.encode(text)), text);
    assert.equal(tiny.decode(tiny.encode(text)), text);
  }
});

Deno.test("text that looks like a control token is plain text", async () => {
  const { full } = await tokenizers();
  for (const text of ["[INST]", "</s>", "<s>[IMG][/INST]", "<SPECIAL_20>"]) {
    const ids = full.encode(text);
    assert.ok(ids.every((id) => id >= full.numSpecial), text);
    assert.equal(full.decode(ids), text);
  }
});

Deno.test("lone UTF-16 surrogates become U+FFFD before encoding, as in mistral_common", async () => {
  const { full } = await tokenizers();
  for (const c of reference.lone_surrogates) {
    const text = String.fromCharCode(...c.utf16);
    assert.deepEqual([...full.encode(text)], c.ids_full, JSON.stringify(text));
    assert.deepEqual([...full.encode(text)], [...full.encode(text.toWellFormed())]);
  }
});

Deno.test("special tokens by name and id", async () => {
  const { full, tiny } = await tokenizers();
  for (const [name, id] of Object.entries(reference.specials_full)) {
    assert.equal(full.special(name), id, name);
    assert.equal(full.specialName(id), name);
    assert.ok(full.isSpecial(id));
  }
  assert.equal(tiny.special("[IMG_BREAK]"), 12);
  assert.equal(full.specialName(1000), undefined);
  assert.equal(full.isSpecial(1000), false);
  assert.throws(
    () => full.special("[NOPE]"),
    (err: Error) => err instanceof TokenizerError && /\[NOPE\]/.test(err.message),
  );
  assert.deepEqual(
    [full.vocabSize, full.numSpecial, tiny.vocabSize, full.version],
    [reference.vocab_size.full, 1000, reference.vocab_size.tiny, "v3"],
  );
  assert.deepEqual(full.imageConfig, { patchSize: 16, maxImageSize: 1024, spatialMergeSize: 1 });
});

Deno.test("decode drops special tokens, or names them with keepSpecial, exactly as mistral_common", async () => {
  const { full } = await tokenizers();
  assert.ok(reference.decode_full.length > 40);
  for (const c of reference.decode_full) {
    assert.equal(full.decode(c.ids), c.ignore, JSON.stringify(c.ids));
    assert.equal(full.decode(c.ids, { keepSpecial: true }), c.keep, JSON.stringify(c.ids));
  }
});

Deno.test("decode rejects ids that are not token ids", async () => {
  const { full } = await tokenizers();
  assert.throws(() => full.decode([1000, 131072]), /ids\[1\] 131072 is not a token id.*0\.\.131071/);
  assert.throws(() => full.decode([-1]), /ids\[0\] -1 is not a token id/);
  assert.throws(() => full.decode([1.5]), /ids\[0\] 1.5 is not a token id/);
  assert.throws(() => full.decoder().push(2 ** 40), /not a token id/);
  assert.equal(full.decode([]), "");
});

Deno.test("the stream decoder emits only whole characters and adds up to decode()", async () => {
  const { full, tiny } = await tokenizers();
  const sequences = [
    ...reference.decode_full.map((c) => c.ids),
    ...reference.encode.slice(0, 150).map((c) => [...full.encode(c.text)]),
  ];
  for (const keepSpecial of [false, true]) {
    for (const ids of sequences) {
      const stream = full.decoder({ keepSpecial });
      const pieces = ids.map((id) => stream.push(id));
      pieces.push(stream.flush());
      assert.ok(pieces.every(isWellFormed));
      assert.equal(pieces.join(""), full.decode(ids, { keepSpecial }), JSON.stringify(ids));
    }
  }
  // With the tiny vocabulary most non-ASCII characters span several tokens: none may surface early or as U+FFFD.
  for (const c of reference.encode.filter((c) => !c.text.includes("\ufffd"))) {
    const stream = tiny.decoder();
    let text = "";
    for (const id of c.ids_tiny) {
      const piece = stream.push(id);
      assert.ok(!piece.includes("\ufffd"), JSON.stringify(c.text));
      text += piece;
      assert.ok(c.text.startsWith(text));
    }
    assert.equal(text + stream.flush(), c.text);
  }
});

Deno.test("the model's vocab size truncates the vocabulary as the reference does", async () => {
  const { tiny } = await tokenizers();
  const cut = await loadTokenizer(fixture("tekken-full.json"), { vocabSize: 2048, cache: false });
  assert.equal(cut.vocabSize, 2048);
  for (const c of reference.encode.slice(0, 100)) {
    assert.deepEqual([...cut.encode(c.text)], [...tiny.encode(c.text)]);
  }
  await assert.rejects(
    loadTokenizer(fixture("mistral/tekken.json"), { vocabSize: 4096, cache: false }),
    /vocab size 4096 is larger than the tokenizer's default_vocab_size 2048/,
  );
});
