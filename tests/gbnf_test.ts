/**
 * GBNF grammars (llama.cpp's `grammar`, vLLM's `guided_grammar`): random walks through the tokens a grammar allows,
 * over the real Tekken vocabulary, end in text that an equivalent regular expression matches; what cannot be
 * enforced is refused with the reason before anything compiles; and the API takes the grammar in each form.
 */
import assert from "node:assert/strict";
import { FormatError, grammarFormat } from "../runtime/grammar/format.ts";
import { constraints, EOS, seededRandom, tokenizer, walk, walksMatch } from "./grammar_helpers.ts";
import { XGrammarConstraints } from "../runtime/grammar/constraints.ts";
import { InvalidRequestError } from "../runtime/engine/engine.ts";
import { post, withServer } from "./api_helpers.ts";

/** A grammar and a regular expression matching the same texts. */
const GRAMMARS: [string, RegExp][] = [
  ['root ::= "yes" | "no"', /^(yes|no)$/],
  [
    // llama.cpp's style: rules over several lines, comments, a group going on over line ends.
    `# a tiny JSON object
root ::= "{" ws pair ("," ws pair)* "}"
pair ::= "\\"" [a-z]{1,3} "\\":" ws (
  [0-9]{1,2} |
  "true"
)
ws ::= [ \\t\\n]{0,2}`,
    /^\{[ \t\n]{0,2}"[a-z]{1,3}":[ \t\n]{0,2}([0-9]{1,2}|true)(,[ \t\n]{0,2}"[a-z]{1,3}":[ \t\n]{0,2}([0-9]{1,2}|true))*\}$/,
  ],
  // Classes beyond ASCII are code points (xgrammar alone would read them as bytes), `.` is any character.
  ['root ::= [é-ü]{1,4} "x"', /^[é-ü]{1,4}x$/u],
  ["root ::= [α-ω😀-🙏]{2}", /^[α-ω😀-🙏]{2}$/u],
  ['root ::= [^é]{2} "."', /^[^é]{2}\.$/u],
  ['root ::= . . "!"', /^[^]{2}!$/u],
  // Left recursion, a rule reached twice, names xgrammar would not read (a digit first).
  ['root ::= root "a" | "b"', /^ba*$/],
  // A repeated rule of a class and an escape, as json-schema-to-grammar writes strings (rewritten for speed).
  [
    String.raw`root ::= "'" c* "'"` + "\n" + String.raw`c ::= [^'\\\n] | "\\" ['n]`,
    /^'([^'\\\n]|\\['n])*'$/u,
  ],
  ['root ::= 1-x 1-x\n1-x ::= "é" | [a-c]', /^(é|[a-c]){2}$/u],
  // Escapes: quotes and backslashes in literals, \x \u in literals and classes, a literal's hex before hex digits.
  ['root ::= "a\\"b\\\\c" [0-9]', /^a"b\\c[0-9]$/],
  ['root ::= "\\x41\\u00e9" [\\x30-\\x39] "\\x22a"', /^Aé[0-9]"a$/u],
  ['root ::= ("ab" | "cd"?) "e"? "" "f"', /^(ab|cd)?e?f$/],
];

/** llama.cpp's grammars/json.gbnf, as written there. */
const JSON_GBNF = String.raw`root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "
" [ 	]{0,20}
`;

Deno.test("llama.cpp's json.gbnf: random walks end in JSON objects", async () => {
  const random = seededRandom(7);
  let finished = 0;
  for (let i = 0; i < 6; i++) {
    const text = await walk(grammarFormat(JSON_GBNF), random, 60);
    if (text === undefined) continue;
    finished++;
    const value = JSON.parse(text);
    assert.ok(typeof value === "object" && value !== null && !Array.isArray(value), text);
  }
  assert.ok(finished >= 3, `only ${finished} of 6 walks finished`);
});

Deno.test("random walks through a GBNF grammar's tokens end in text it matches", async () => {
  for (const [grammar, whole] of GRAMMARS) await walksMatch(grammarFormat(grammar), grammar, whole, 60);
});

Deno.test("grammars that cannot be enforced are refused with the reason", () => {
  const refused: [string, RegExp][] = [
    ['start ::= "a"', /no rule "root"/],
    ["root ::= item", /line 1 names the rule "item", which the grammar does not define/],
    ['root ::= "a" x\nroot ::= "b"', /"root" is defined twice/],
    ['root ::= "a', /line 1, column 12: a literal without its closing quote/],
    ["root ::= [a-z", /a class without its closing "]"/],
    ['root ::= ("a"', /expected "\)"/],
    ['root := "a"', /expected "::=" after the name/],
    ['root ::= "a"\n| "b"', /line 2, column 1: expected a rule name/],
    ['root ::= "\\q"', /the escape \\q/],
    ['root ::= "\\x4"', /\\x needs 2 hex digits/],
    ['root ::= "\\uD800"', /U\+D800 is not a character/],
    ['root ::= "a"{3,2}', /bounds the wrong way round/],
    ['root ::= "a"{20000}', /bound above 10000/],
    ["root ::= [z-a]", /end comes before its start/],
    ['root ::= "a\\x01"', /needs U\+0001, which no token may write/],
    ["root ::= [\\x00-\\x08]", /a class of such characters only/],
    ['root ::= "a" root', /matches no text/],
    ["root ::= .{40}", /too long to compile/],
    [
      'root ::= x*\nx ::= [a-z]* " "?',
      /the rule "root" repeats a part whose copies can divide the same text/,
    ],
    ['root ::= ("a"?){2,}', /can divide the same text/],
    // Copies that can divide one text in several ways (masks grew with the text), optional parts in a row.
    ['root ::= w+ "!"\nw ::= [a-z]+', /can divide the same text in more than one way \(w\+\)/],
    ['root ::= (w " "?)+ "!"\nw ::= [a-z]+', /can divide the same text/],
    ['root ::= (x | y)+ "!"\nx ::= [a-z]+\ny ::= [a-m]+', /can divide the same text/],
    ["root ::= " + "[a-z]? ".repeat(9) + '"!"', /9 optional parts in a row/],
    ['root ::= w w "!"\nw ::= [a-z]+', /can divide the same text in more than one way \(w w "!"\)/],
    ['root ::= [a-z]* " "? w\nw ::= [a-z]+', /can divide the same text/],
    ["root ::= " + "y ".repeat(9) + '"!"\ny ::= [a-z]?', /9 optional parts in a row/],
    // Optional parts inside optional rules count: 8 rules of 8 `[ -~]?` made each mask take 1.3 s.
    [`root ::= ${"r ".repeat(8)}"!"\nr ::= ${"[ -~]? ".repeat(8)}`, /64 optional parts in a row/],
    ["root ::= x{30}\nx ::= .{30} .{30}", /too long to compile/],
    [42 as unknown as string, /GBNF text/],
    ["root ::= <[1000]>", /token references .* are not supported/],
    ['root ::= "a" !<think>', /token references/],
    ["root ::= " + "(".repeat(51) + '"a"' + ")".repeat(51), /groups nested deeper than 50/],
    ["root ::= " + '("a" | "b" '.repeat(45) + '"c"' + ")?".repeat(45), /nests its parts deeper than 120/],
    ['root ::= "a"' + "?".repeat(5), /more than 4 repetitions in a row/],
    ["root ::= " + '"a" '.repeat(20_000), /larger than 65536 bytes/],
  ];
  for (const [grammar, message] of refused) {
    assert.throws(
      () => grammarFormat(grammar),
      (err: Error) => err instanceof FormatError && message.test(err.message),
      JSON.stringify(grammar).slice(0, 80),
    );
  }
  // Rules the root does not reach cost nothing and are not checked further, as a reader of the grammar would expect
  // of an unused one.
  grammarFormat('root ::= "a"\nunused ::= [\\x00-\\x08]{5000}');
  // A byte order mark first, comments ended by a lone carriage return (as llama.cpp ends them).
  grammarFormat('\uFEFFroot ::= x # a comment\rx ::= "a"');
  // Thousands of rules in a chain, and a long grammar of references, are checked in linear time and no deep
  // recursion.
  const chain = Array.from({ length: 3000 }, (_, i) => `r${i} ::= r${i + 1} "x"`).join("\n");
  grammarFormat(`root ::= r0\n${chain}\nr3000 ::= "y"`);
  grammarFormat(`root ::= ${"a ".repeat(20_000)}\na ::= "a"`);
});

Deno.test("the stop token is allowed wherever the grammar may end", async () => {
  // xgrammar alone left it out of the mask after "hi!" here (though it accepts it): answers ran to max_tokens.
  for (
    const [grammar, text] of [['root ::= .* "!"', "hi!"], ['root ::= ([^<] | "<" [a-z]+ ">")* "$"', "a<b>$"]]
  ) {
    const constraint = await constraints.constrain(grammarFormat(grammar), [EOS]);
    try {
      for (const id of tokenizer.encode(text)) {
        await constraint.allowed();
        assert.ok(constraint.accept(id), `${grammar}: ${text}`);
      }
      const mask = await constraint.allowed();
      assert.ok(mask[EOS >> 5] & (1 << (EOS & 31)), `${grammar}: no stop token after ${text}`);
      assert.ok(constraint.accept(tokenizer.encode("x")[0]), "the matcher goes on after the trial");
    } finally {
      constraint.release();
    }
  }
});

Deno.test("a sequence whose masks are slow twice in a row ends with an error that says why", async () => {
  const strict = XGrammarConstraints.forTokenizer(tokenizer, tokenizer.vocabSize, { slowMaskMs: 0 });
  const constraint = await strict.constrain(grammarFormat('root ::= [a-z]+ "!"'), [EOS]);
  try {
    await constraint.allowed(); // one slow mask is forgiven (a busy machine)
    await assert.rejects(constraint.allowed(), (err: Error) => {
      assert.ok(err instanceof InvalidRequestError);
      assert.match(err.message, /too slow to follow: two tokens in a row took over 0 ms/);
      return true;
    });
  } finally {
    constraint.release();
  }
  // The default bound leaves ordinary grammars alone.
  const text = await walk(grammarFormat('root ::= [a-z]{1,8} "!"'), seededRandom(3), 20);
  assert.match(text ?? "", /^[a-z]{1,8}!$/);
});

Deno.test("the API takes a grammar as llama.cpp's grammar, vLLM's guided_grammar and structured_outputs.grammar", async () => {
  await withServer({}, async ({ url }) => {
    const chat = `${url}/v1/chat/completions`, completions = `${url}/v1/completions`;
    const messages = [{ role: "user", content: "Answer." }];
    const grammar = 'root ::= [A-Z] [a-z]{1,4} " " ("yes" | "no")';
    for (
      const [route, extra] of [
        [chat, { grammar }],
        [chat, { guided_grammar: grammar }],
        [chat, { structured_outputs: { grammar } }],
        [completions, { grammar }],
      ] as const
    ) {
      const body = route === chat ? { messages } : { prompt: "Answer:" };
      const got = await post(route, { ...body, ...extra, max_tokens: 20, temperature: 1, seed: 3 });
      assert.equal(got.status, 200, JSON.stringify(got.json));
      const [choice] = got.json.choices;
      assert.match(route === chat ? choice.message.content : choice.text, /^[A-Z][a-z]{1,4} (yes|no)$/);
      assert.equal(choice.finish_reason, "stop");
    }
    for (
      const [extra, param, message] of [
        [{ grammar: "root ::= x" }, "grammar", /does not define/],
        [{ guided_grammar: 'root ::= "a' }, "guided_grammar", /closing quote/],
        [
          { grammar, guided_regex: "a" },
          "grammar",
          /guided_regex and grammar both ask for a format; give one/,
        ],
        [
          { structured_outputs: { structural_tag: {} } },
          "structured_outputs.structural_tag",
          /not supported/,
        ],
      ] as const
    ) {
      const res = await post(chat, { messages, ...extra });
      assert.equal(res.status, 400, JSON.stringify(extra));
      assert.equal(res.json.error.param, param, JSON.stringify(res.json));
      assert.match(res.json.error.message, message);
    }
  });
});
