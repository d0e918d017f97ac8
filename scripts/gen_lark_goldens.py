"""Lark grammar goldens: which texts Lark itself accepts, for the grammars custom tools send.

Writes tests/fixtures/lark/goldens.json: for each grammar (Codex's apply_patch, OpenAI's examples, and ones that
use the rest of the syntax), texts written to pass and their mutations (characters dropped, doubled, replaced by
others the grammar uses), each with whether Lark's Earley parser, with the lexer that tries every division of
the text into terminals (`dynamic_complete`, what the grammar describes without a lexer's choices), accepts it.

    pip install lark==1.3.1 && python3 scripts/gen_lark_goldens.py
"""
import json
import pathlib
import random

import lark

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "lark" / "goldens.json"

APPLY_PATCH = r"""start: begin_patch hunk+ end_patch
begin_patch: "*** Begin Patch" LF
end_patch: "*** End Patch" LF?

hunk: add_hunk | delete_hunk | update_hunk
add_hunk: "*** Add File: " filename LF add_line+
delete_hunk: "*** Delete File: " filename LF
update_hunk: "*** Update File: " filename LF change_move? change?

filename: /(.+)/
add_line: "+" /(.*)/ LF -> line

change_move: "*** Move to: " filename LF
change: (change_context | change_line)+ eof_line?
change_context: ("@@" | "@@ " /(.+)/) LF
change_line: ("+" | "-" | " ") /(.*)/ LF
eof_line: "*** End of File" LF

%import common.LF
"""

GRAMMARS = {
    "apply_patch": (
        APPLY_PATCH,
        [
            "*** Begin Patch\n*** Add File: hello.txt\n+Hello, \"world\"\n+\tC:\\path\n*** End Patch\n",
            "*** Begin Patch\n*** Update File: src/app.py\n*** Move to: src/main.py\n@@ def greet():\n"
            "-print(\"Hi\")\n+print(\"Hello, world!\")\n*** Delete File: obsolete.txt\n*** End Patch",
            "*** Begin Patch\n*** Update File: a.rs\n@@\n fn main() {\n-    old();\n+    new();\n }\n"
            "*** End of File\n*** Update File: b.rs\n+x\n*** End Patch\n",
            "*** Begin Patch\n*** Delete File: é/ü 😀.md\n*** End Patch\n",
        ],
    ),
    # As OpenAI's example of a Lark grammar for a custom tool (whose `| term` alternatives Lark refuses as the
    # zero repetitions written again).
    "math": (
        r"""start: expr
expr: term (SP ADD SP term)* -> add
term: factor (SP MUL SP factor)* -> mul
factor: INT
SP: " "
ADD: "+"
MUL: "*"
%import common.INT
""",
        ["1 + 2 * 3", "42", "7 * 8 * 9 + 10", "0 + 0"],
    ),
    "commons": (
        r"""// A call: a name, numbers and strings, written with Lark's common terminals.
?start: call
call: CNAME "(" [arg ("," WS_INLINE? arg)*] ")" NEWLINE?
!arg: SIGNED_NUMBER | ESCAPED_STRING | HEXDIGIT~2
%import common.CNAME
%import common (SIGNED_NUMBER, ESCAPED_STRING, WS_INLINE)
%import common.HEXDIGIT
%import common.NEWLINE
""",
        ['f(1, "a\\"b", ff)', "_go()", "g(-1.5e3,2)\r\n", 'h("x y",  -7)'],
    ),
    "syntax": (
        r"""start: greeting ~ 1..2 NAME TAIL? date
greeting: ("hi"i | "hello") ","? " " -> hello
NAME.2: ("a".."z" | "A".."Z")+
TAIL: /\s*!+/
date: DIGIT~4 "-" DIGIT~2 "-" DIGIT~2
DIGIT: "0".."9"
""",
        ["hi, Ann2024-01-31", "HI hello Bob !!1999-12-01", "Hello Zed0000-00-00"],
    ),
    # A common terminal's parts are its own (WORD's letters are not this LETTER); `\d` in a string is itself.
    "imports": (
        r"""start: WORD "=" DIGITS "\d" LETTER?
LETTER: "a"
DIGITS: INT
%import common.WORD
%import common.INT
""",
        ["bcd=12\\d", "Zed=0\\da", "a=7\\d"],
    ),
    # What %ignore ignores comes between any two terminals.
    "ignored": (
        r"""start: "SELECT" columns "FROM" NAME ("WHERE" NAME "=" NUMBER)? ";"
columns: NAME ("," NAME)* | "*"
NAME: /[a-z_]+/
%import common.NUMBER
%import common.WS
%ignore WS
%ignore "\\\n"
""",
        ["SELECT a, b FROM t WHERE x = 3;", " SELECT * FROM t ;\n", "SELECT a\n,b FROM t\\\nWHERE y=1.5e3;"],
    ),
    # Python's regular expressions as Lark reads them: flags, Unicode's \w, Python's escapes.
    "python_regex": (
        r"""# a comment as Python writes one
start: KEY " " NAME ("," " "? NAME)* END
KEY: /select|show/i
NAME: /\w+/ \
    | /"[^"\n]+"/
END: /[.!?] \s* /x
""",
        ['SELECT café, "x y".', "show a!", "Select é1,b2 ?  ", "selecT x_9.\n"],
    ),
    "regex_flags": (
        r"""start: "<" BODY ">" (";" /[^;<>]+/)*
BODY: /.+/s
""",
        ["<a\nb>", "<x>;y;z", "<\n>"],
    ),
}

# Characters mutations draw from beside the grammar's own.
EXTRA = ["\n", " ", "\t", '"', "\\", "é", "*", "+", "-", "@", "0", "a", "Z", ";"]


def mutations(text, alphabet, rng, count):
    out = []
    for _ in range(count):
        chars = list(text)
        for _ in range(rng.randint(1, 2)):
            if not chars:
                break
            i = rng.randrange(len(chars))
            kind = rng.choice(["drop", "double", "replace", "insert"])
            if kind == "drop":
                del chars[i]
            elif kind == "double":
                chars.insert(i, chars[i])
            elif kind == "replace":
                chars[i] = rng.choice(alphabet)
            else:
                chars.insert(i, rng.choice(alphabet))
        out.append("".join(chars))
    return out


def main():
    rng = random.Random(1729)
    goldens = {}
    for name, (grammar, texts) in GRAMMARS.items():
        # Lark's dynamic lexers take no terminal that matches the empty text: `/(.*)/` is read as the same
        # optional `[/(.+)/]` there.
        parser = lark.Lark(grammar.replace("/(.*)/", "[/(.+)/]"), parser="earley", lexer="dynamic_complete")
        alphabet = sorted(set("".join(texts)) | set(EXTRA))
        cases = []
        seen = set()
        for text in texts + [m for t in texts for m in mutations(t, alphabet, rng, 12)]:
            if text in seen:
                continue
            seen.add(text)
            try:
                parser.parse(text)
                accepted = True
            except lark.exceptions.LarkError:
                accepted = False
            cases.append({"text": text, "accepted": accepted})
        goldens[name] = {"grammar": grammar, "cases": cases}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"lark": lark.__version__, "grammars": goldens}, ensure_ascii=False, indent=2) + "\n")
    for name, g in goldens.items():
        print(name, sum(c["accepted"] for c in g["cases"]), "of", len(g["cases"]), "accepted")


if __name__ == "__main__":
    main()
