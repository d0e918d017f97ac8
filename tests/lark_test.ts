/**
 * Lark grammars as patterns (runtime/grammar/lark.ts): each grammar's pattern accepts exactly the texts Lark
 * itself accepts (goldens of scripts/gen_lark_goldens.py), and a custom tool's input held to one through
 * constrained decoding, escaped as JSON writes it.
 */
import assert from "node:assert/strict";
import { FormatError, toolCallsFormat } from "../runtime/grammar/format.ts";
import { larkPattern, UnwrittenGrammar } from "../runtime/grammar/lark.ts";
import { xgrammarPattern } from "../runtime/grammar/regex.ts";
import { inputPattern, inputSchema } from "../functions/chat/custom_tools.ts";
import { allowedIds, constraints, EOS, seededRandom, tokenizer } from "./grammar_helpers.ts";

const GOLDENS = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/lark/goldens.json", import.meta.url)),
) as { grammars: Record<string, { grammar: string; cases: { text: string; accepted: boolean }[] }> };
const APPLY_PATCH = GOLDENS.grammars.apply_patch.grammar;

Deno.test("a Lark grammar's pattern accepts the texts Lark accepts, and no other", () => {
  for (const [name, { grammar, cases }] of Object.entries(GOLDENS.grammars)) {
    const pattern = new RegExp(larkPattern(grammar, ""), "u");
    assert.ok(cases.filter((c) => c.accepted).length >= 3, name);
    for (const { text, accepted } of cases) {
      assert.equal(pattern.test(text), accepted, `${name}: ${JSON.stringify(text)}`);
    }
  }
});

Deno.test("the grammar engine takes the goldens' grammars as patterns of JSON strings", () => {
  for (const [name, { grammar }] of Object.entries(GOLDENS.grammars)) {
    assert.ok(xgrammarPattern(larkPattern(grammar, ""), "json", "").length > 0, name);
  }
});

Deno.test("the grammar engine takes Codex's apply_patch grammar as the pattern of a JSON string", () => {
  // Its copies part within a few characters (a hunk's `*** End of File` line and the next hunk's header).
  const printed = xgrammarPattern(larkPattern(APPLY_PATCH, ""), "json", "");
  assert.match(printed, /^\\\*\\\*\\\* Begin Patch\\\\n/);
  // A line's `.` takes quotes, backslashes and tabs, escaped.
  assert.ok(printed.includes("|\\\\[\\x22\\x5C\\x72\\x74]"), printed);
});

Deno.test("what no pattern writes is an UnwrittenGrammar; what Lark would not read, a FormatError", () => {
  const unwritten: [string, RegExp][] = [
    ['start: "(" start ")" | "x"', /refers to itself/],
    ['start: a\na: "[" b "]"\nb: a | "x"', /refers to itself/],
    ['start: _sep{"a", ","}\n_sep{x, s}: x (s x)*', /template/],
    ["start: /a++/", /possessive/],
    ["start: /\\N{BULLET}/", /\\N/],
    ["start: /(?i)ab/", /\(\?i\)/],
    ["start: x\n%declare x", /%declare/],
    ["%import .other.x\nstart: x", /imports/],
    // Every name copied where it is used: 2^13 copies of "ab".
    [
      "start: r12 r12\n" + Array.from({ length: 12 }, (_, i) => `r${i + 1}: r${i} r${i}`).join("\n") +
      '\nr0: "ab"',
      /over 32768/,
    ],
  ];
  for (const [grammar, reason] of unwritten) {
    assert.throws(
      () => larkPattern(grammar, ""),
      (e: Error) => e instanceof UnwrittenGrammar && reason.test(e.message),
      grammar,
    );
  }
  const invalid: [string, RegExp][] = [
    ['rule: "a"', /no `start` rule/],
    ["start: missing", /names missing, which is not defined/],
    ['start: "open', /string is not closed/],
    ['start: ("a" | "b"', /not closed/],
    ['start: "ab".."z"', /one character each/],
    ['start: "z".."a"', /runs down/],
    ['start: "a" ~ x', /takes a count/],
    ['start: "a"\nstart: "b"', /defined twice/],
    ["start: A\n%import common.NOPE -> A", /no terminal NOPE/],
    ["start: /ab", /not closed/],
  ];
  for (const [grammar, reason] of invalid) {
    assert.throws(
      () => larkPattern(grammar, ""),
      (e: Error) => e instanceof FormatError && reason.test(e.message),
      grammar,
    );
  }
});

Deno.test("a custom tool's input pattern: none where the grammar engine would refuse it, the model then left to follow it", () => {
  assert.equal(inputPattern("t", { syntax: "lark", definition: APPLY_PATCH }), larkPattern(APPLY_PATCH, ""));
  assert.equal(inputPattern("t", { syntax: "regex", definition: "^a+$" }), "^a+$");
  for (
    const definition of [
      'start: "(" start ")" | "x"',
      // What is ignored divides a text in more than one way: `--a--b` is one comment or two.
      'start: "x"\n%ignore /--[^\\n]*/',
    ]
  ) {
    assert.equal(inputPattern("t", { syntax: "lark", definition }), undefined, definition);
  }
  assert.equal(inputPattern("t", { syntax: "regex", definition: "(?=a)a" }), undefined);
  // Python's and Rust's syntax, as OpenAI's regex grammars are written.
  assert.equal(
    inputPattern("t", { syntax: "regex", definition: "(?P<ans>yes|no) \\d+\\z" }),
    "(?:yes|no) \\d+$",
  );
  // What is no grammar, or no regular expression, is the client's error.
  for (
    const grammar of [
      { syntax: "lark", definition: "start: x" },
      { syntax: "lark", definition: "start: /(a/" },
      { syntax: "regex", definition: "(abc" },
      { syntax: "regex", definition: "a{2,1}" },
    ] as const
  ) {
    assert.throws(() => inputPattern("t", grammar), FormatError, grammar.definition);
  }
});

/** Whether the format takes `text` whole (tokenized as the model would write it), the stop token after it. */
async function takes(format: ReturnType<typeof toolCallsFormat>, text: string): Promise<boolean> {
  const constraint = await constraints.constrain(format, [EOS]);
  try {
    for (const id of [...tokenizer.encode(text), EOS]) {
      await constraint.allowed();
      if (!constraint.accept(id)) return false;
    }
    return true;
  } finally {
    constraint.release();
  }
}

Deno.test("a custom tool's input is held to its grammar, with what JSON escapes escaped", async (t) => {
  const pattern = larkPattern(APPLY_PATCH, "");
  const format = toolCallsFormat([
    { name: "apply_patch", parameters: inputSchema(pattern) },
    {
      name: "shell",
      parameters: { type: "object", properties: { cmd: { type: "string" } }, required: ["cmd"] },
    },
  ], false);
  const call = (input: string) => JSON.stringify([{ name: "apply_patch", arguments: { input } }]);
  await t.step("patches the grammar takes", async () => {
    for (const { text, accepted } of GOLDENS.grammars.apply_patch.cases) {
      assert.equal(await takes(format, call(text)), accepted, JSON.stringify(text));
    }
    // Another function's arguments are as free as before.
    assert.ok(await takes(format, JSON.stringify([{ name: "shell", arguments: { cmd: "ls\n" } }])));
  });
  await t.step("random walks that finish write patches the pattern matches", async () => {
    const whole = new RegExp(pattern, "u");
    const random = seededRandom(11);
    // Tokens that end a line or the string: a walk leans to them, as a model ends lines.
    const ending = new Set(
      Array.from({ length: tokenizer.vocabSize }, (_, id) => id).filter((id) => {
        const text = tokenizer.decode([id]);
        return /\\n|"|\]/.test(text) && text.length <= 4;
      }),
    );
    let finished = 0;
    for (let walk = 0; walk < 12 && finished < 3; walk++) {
      const constraint = await constraints.constrain(format, [EOS]);
      const ids: number[] = [];
      try {
        for (let i = 0; i < 600; i++) {
          const allowed = allowedIds(await constraint.allowed());
          const ends = allowed.filter((id) => id === EOS || ending.has(id));
          const from = ends.length && random() < 0.6 ? ends : allowed;
          const pick = from[Math.floor(random() * from.length)];
          assert.ok(constraint.accept(pick));
          if (pick === EOS) break;
          ids.push(pick);
        }
      } finally {
        constraint.release();
      }
      let calls;
      try {
        calls = JSON.parse(tokenizer.decode(ids));
      } catch {
        continue; // ran out of tokens
      }
      finished++;
      for (const c of calls) {
        if (c.name === "apply_patch") {
          assert.ok(whole.test(c.arguments.input), JSON.stringify(c.arguments.input));
        }
      }
    }
    assert.ok(finished >= 1, "no walk finished");
  });
});
