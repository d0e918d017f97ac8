/**
 * Differential tests against npm `tiktoken` (the Rust tiktoken that mistral_common runs, compiled to WASM)
 * loaded with the same ranks and pattern: real multilingual text and code from Debian packages, and seeded
 * random strings over every kind of character. Zero differences allowed.
 */
import assert from "node:assert/strict";
import { loadTokenizer, TEKKEN_PATTERN, Tokenizer } from "../runtime/tokenizer/mod.ts";
import { fixture } from "./helpers.ts";
import { corpus, TEXT_KINDS } from "./tokenizer_corpus.ts";
import { readTekkenRanks, tiktokenPeer } from "./tokenizer_peers.ts";

const ranks = await readTekkenRanks(fixture("tekken-full.json"));
const peer = tiktokenPeer(ranks);
const ours = await loadTokenizer(fixture("tekken-full.json"), { cache: false });

/** Fails with the first differing token and the text around it. */
function assertSameIds(tokenizer: Tokenizer, text: string, label: string) {
  const got = tokenizer.encode(text);
  const want = peer.encode(text);
  let i = 0;
  while (i < got.length && i < want.length && got[i] === want[i]) i++;
  if (i < got.length || i < want.length) {
    const context = tokenizer.decode(got.slice(Math.max(0, i - 5), i + 5));
    assert.fail(
      `${label}: token ${i} differs (ours ${got[i]}, tiktoken ${
        want[i]
      }; ${got.length} vs ${want.length} ids) ` +
        `near ${JSON.stringify(context)}`,
    );
  }
}

Deno.test("ids equal tiktoken's on over 1 MB of real multilingual text and code", async () => {
  let bytes = 0;
  for (const kind of TEXT_KINDS) {
    const text = await corpus(kind, 250_000);
    bytes += new TextEncoder().encode(text).length;
    assertSameIds(ours, text, kind);
    assert.equal(ours.decode(ours.encode(text)), text, `${kind}: round trip`);
  }
  assert.ok(bytes >= 1_000_000, `only ${bytes} bytes of corpus`);
});

/** mulberry32: small, seeded, good enough to spread test cases. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Generators of one run of characters each, covering what stresses a Tekken pre-tokenizer. */
function generators(rand: () => number) {
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]) => xs[int(0, xs.length - 1)];
  const chars = (n: number, f: () => number) => String.fromCodePoint(...Array.from({ length: n }, f));
  const scalar = () => {
    const cp = int(0, 0x10ffff);
    return cp >= 0xd800 && cp < 0xe000 ? 0xfffd : cp;
  };
  return [
    // emoji: ZWJ families, skin tones, flags, keycaps, variation selectors
    () =>
      pick(["👩‍👩‍👧‍👦", "👍🏽", "🇫🇷", "🇯🇵", "1️⃣", "❤️", "🏳️‍🌈", "🧑🏿‍🚀", "😀"]) +
      chars(int(0, 3), () => int(0x1f300, 0x1faff)),
    // combining marks stacked on letters, digits, spaces, or nothing
    () => pick(["a", "Z", "1", " ", "", "ß", "ǅ"]) + chars(int(1, 6), () => int(0x300, 0x36f)),
    // CJK: BMP ideographs, kana, hangul, extension planes
    () =>
      chars(
        int(1, 40),
        () => pick([int(0x4e00, 0x9fff), int(0x3040, 0x30ff), int(0xac00, 0xd7a3), int(0x20000, 0x323af)]),
      ),
    // right-to-left: Hebrew with points, Arabic with harakat and Arabic-Indic digits
    () =>
      chars(
        int(1, 30),
        () =>
          pick([
            int(0x5d0, 0x5ea),
            int(0x591, 0x5c7),
            int(0x620, 0x64a),
            int(0x64b, 0x652),
            int(0x660, 0x669),
          ]),
      ),
    // control characters
    () =>
      chars(
        int(1, 5),
        () => pick([int(0, 0x1f), 0x7f, int(0x80, 0x9f), 0x200b, 0x200e, 0x2028, 0x2029, 0xfeff]),
      ),
    // long whitespace runs
    () =>
      chars(
        int(1, 200),
        () => pick([0x20, 0x20, 0x9, 0xa, 0xd, 0xb, 0xc, 0x85, 0xa0, 0x3000, 0x2003, 0x1680]),
      ),
    // ASCII words, numbers and punctuation
    () =>
      pick(["Hello", " world", "HTTP", "iPhone", " 2024", "3.14", " //", "/*", "\r\n", "'s", "...", " -- "]),
    // digits and letters of many scripts
    () =>
      chars(
        int(1, 8),
        () =>
          pick([
            int(0x966, 0x96f),
            int(0xbe6, 0xbef),
            int(0x2160, 0x2188),
            int(0x391, 0x3c9),
            int(0x410, 0x44f),
          ]),
      ),
    // any scalar value: unassigned, private use, noncharacters, recent additions
    () => chars(int(1, 10), scalar),
  ];
}

function randomStrings(seed: number, count: number): string[] {
  const rand = random(seed);
  const runs = generators(rand);
  return Array.from({ length: count }, () => {
    let s = "";
    const n = 1 + Math.floor(rand() * 12);
    for (let i = 0; i < n; i++) s += runs[Math.floor(rand() * runs.length)]();
    return s;
  });
}

Deno.test("ids equal tiktoken's on seeded random strings of every kind of character", () => {
  for (const [i, text] of randomStrings(20240911, 4000).entries()) {
    assertSameIds(ours, text, `random string ${i}`);
    assert.equal(ours.decode(ours.encode(text)), text, `random string ${i}: round trip`);
  }
});

Deno.test("ids equal tiktoken's on pieces of thousands of bytes that merge through the rank queue", () => {
  const rand = random(7);
  const letters = (n: number, alphabet: string) =>
    Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join("");
  const texts = [
    "a".repeat(5000),
    "z".repeat(4097),
    "ab".repeat(2500),
    "aab".repeat(1500),
    "ing".repeat(1500),
    letters(5000, "ab"),
    letters(5000, "abc"),
    letters(5000, "abcdefghijklmnopqrstuvwxyz"),
    " " + letters(3000, "etaoinshr"),
    "\u{4e00}".repeat(1500),
    letters(1500, "\u{4e00}\u{4e8c}\u{4e09}\u{56db}\u{7684}\u{662f}"),
  ];
  for (const [i, text] of texts.entries()) assertSameIds(ours, text, `long piece ${i}`);
});

Deno.test("another pattern goes through the regex engine and splits Tekken text the same way", async () => {
  // The same pattern in a group is not recognized as Tekken's, so fancy-regex runs it.
  const tokens = ranks.tokens.map((t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0)));
  const specials = Array.from({ length: ranks.numSpecial }, (_, id) => ours.specialName(id)!);
  const regex = await Tokenizer.fromParts({ tokens, specials, pattern: `(?:${TEKKEN_PATTERN})` });
  for (const kind of TEXT_KINDS) {
    const text = await corpus(kind, 30_000);
    assert.deepEqual(regex.encode(text), ours.encode(text), kind);
  }
  const other = await Tokenizer.fromParts({ tokens, specials, pattern: "\\S+|\\s+" });
  assert.deepEqual([...other.encode("ab cd")], [
    ...ours.encode("ab"),
    ...ours.encode(" "),
    ...ours.encode("cd"),
  ]);
});
