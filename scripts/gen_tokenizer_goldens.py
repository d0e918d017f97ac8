#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer/reference.json: token ids and texts from the reference, mistral_common's
Tekkenizer (tiktoken underneath), for the cases the shared goldens do not cover: pre-tokenizer corner cases,
characters of recent Unicode versions, seeded random strings mixing every script and class, long pieces, lone
UTF-16 surrogates, and decoding with special tokens and broken UTF-8 (IGNORE and KEEP policies).

    pip install mistral_common==1.13.1 tiktoken==0.14.0
    python3 scripts/gen_tokenizer_goldens.py [../shared/fixtures/tiny-pixtral]
"""
import json
import pathlib
import random
import sys
import warnings

import mistral_common
import tiktoken
from mistral_common.tokens.tokenizers.base import SpecialTokenPolicy
from mistral_common.tokens.tokenizers.tekken import Tekkenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ROOT.parent / "shared/fixtures/tiny-pixtral")
OUT = ROOT / "tests/fixtures/tokenizer/reference.json"

CORNER_CASES = [
    "\u0301ABC",  # a combining mark first: A1 backtracks to the mark alone
    "\u0301abc \u0301\u0301 x\u0301\u0302y",
    "日本ABC 日本abc ABCdef ABC日本",
    "ǅungla ǅ Ǆ ʰʰʰ ʰA Aʰ",
    "HELLO world, HeLLo WoRLD",
    "  leading and trailing  ",
    "a  \n b\r\n\r\n  \t x\n\n\n",
    " " * 300 + "x" + "\t" * 50 + "\n",
    "\u00a0\u00a0x\u3000\u3000y\u2028z\u2029",
    "x = 42  // y\n\n/* c */ a//b/ c /\n",
    "١٢٣ ४५६ ௧௨ ½¾ ⅷ ①②",
    "👩\u200d👩\u200d👧\u200d👦 🇫🇷🇯🇵 👍🏽 ❤\ufe0f",
    "مرحبا بالعالم، كيف حالك؟ ٢٠٢٤",
    "שָׁלוֹם עוֹלָם",
    "नमस्ते दुनिया",
    "안녕하세요 세계",
    "สวัสดีชาวโลก",
    "\x00\x01\x1f\x7f\u0085\u200b\u200d\ufeff",
    "[INST]hello[/INST]</s><s>[IMG]",
    # Unicode 15-16 additions: Kawi, CJK extension I, Cyrillic TJE, Latin rams horn, Garay
    "\U00011f04\U00011f05 \U0002ebf0\U0002ebf1 \u1c89\u1c8a \ua7cb\ua7cc \U00010d4a\U00010d4b",
    "丁" * 700,  # one long piece: the heap merge path
    "ああああああ" * 100 + "。" + "Ab" * 300,
]

SURROGATE_CASES = ["a\ud800b", "\udfff", "x\ud83d", "\ude00\ud83d", "ok\ud83d\ude00ok"]

# Code point ranges that random strings draw from: letters of many scripts, marks, digits, spaces, controls,
# emoji, symbols, private use, and any scalar value.
RANGES = [
    (0x20, 0x7E), (0x09, 0x0D), (0x80, 0x24F), (0x300, 0x36F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF),
    (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x1AB0, 0x1AFF), (0x2000, 0x206F),
    (0x20D0, 0x20FF), (0x2100, 0x214F), (0x2460, 0x24FF), (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
    (0xE000, 0xF8FF), (0xFE00, 0xFE0F), (0xFF00, 0xFFEF), (0x1F300, 0x1F6FF), (0x1F900, 0x1F9FF),
    (0x20000, 0x2A6DF), (0x0, 0x10FFFF),
]


def random_text(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randint(1, 60)):
        lo, hi = rng.choice(RANGES)
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp < 0xE000:
            continue
        out.append(chr(cp) * (rng.randint(2, 12) if rng.random() < 0.05 else 1))
    return "".join(out)


def utf16(s: str) -> list[int]:
    raw = s.encode("utf-16-le", "surrogatepass")
    return [int.from_bytes(raw[i : i + 2], "little") for i in range(0, len(raw), 2)]


def decode_cases(tok: Tekkenizer) -> list:
    rng = random.Random(7)
    euro = [1000 + b for b in "€".encode()]
    smile = [1000 + b for b in "😀".encode()]
    cases = [
        euro,
        [euro[0], 2, euro[1], euro[2]],
        [1, 3, *tok.encode("Hi", False, False), 4, *euro[:2]],
        smile[:3] + [1000 + ord("a")],
        [1000 + 0xEF, 1000 + 0xBB, 1000 + 0xBF, 1000 + ord("x")],
        [1000 + 0xED, 1000 + 0xA0, 1000 + 0x80],
        [17, 18, 19, 999, 20],
    ]
    for _ in range(40):
        ids = []
        for _ in range(rng.randint(1, 30)):
            r = rng.random()
            ids.append(rng.randint(0, 30) if r < 0.15 else 1000 + rng.randint(128, 255) if r < 0.6 else rng.randint(1000, tok.n_words - 1))
        cases.append(ids)
    return [
        {
            "ids": ids,
            "ignore": tok.decode(ids, special_token_policy=SpecialTokenPolicy.IGNORE),
            "keep": tok.decode(ids, special_token_policy=SpecialTokenPolicy.KEEP),
        }
        for ids in cases
    ]


def main() -> None:
    warnings.simplefilter("ignore")
    full = Tekkenizer.from_file(FIXTURES / "tekken-full.json")
    tiny = Tekkenizer.from_file(FIXTURES / "mistral/tekken.json")
    rng = random.Random(20240911)
    texts = CORNER_CASES + [random_text(rng) for _ in range(400)]
    enc = lambda tok, s: tok.encode(s, False, False)
    doc = {
        "generator": f"mistral_common {mistral_common.__version__} Tekkenizer (tiktoken {tiktoken.__version__}), "
        "scripts/gen_tokenizer_goldens.py",
        "encode": [{"text": s, "ids_full": enc(full, s), "ids_tiny": enc(tiny, s)} for s in texts],
        # As UTF-16 code units: JSON text with unpaired surrogate escapes is not valid UTF-8 for every reader.
        "lone_surrogates": [
            {"utf16": utf16(s), "ids_full": enc(full, s)}
            for s in SURROGATE_CASES
        ],
        "decode_full": decode_cases(full),
        "specials_full": {
            name: full.get_special_token(name)
            for name in ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]",
                         "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "<SPECIAL_999>"]
        },
        "vocab_size": {"full": full.n_words, "tiny": tiny.n_words},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, ensure_ascii=True, indent=None) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(doc['encode'])} texts)")


if __name__ == "__main__":
    main()
