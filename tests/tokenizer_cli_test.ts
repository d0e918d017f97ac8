import assert from "node:assert/strict";
import { fixture, fixtureJson, pixtral } from "./helpers.ts";

async function run(args: string[]) {
  const { code, stdout, stderr } = await pixtral(args).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code, stdout: decode(stdout), stderr: decode(stderr) };
}

const tokenizer = fixture("tekken-full.json").pathname;

Deno.test("pixtral tokenize prints the golden ids as a JSON array, from --text or --file", async () => {
  const golden = await fixtureJson<{ cases: { text: string; ids_full: number[] }[] }>(
    "golden/tokenizer/texts.json",
  );
  const c = golden.cases.find((c) => [...c.text].some((ch) => ch > "\u007f") && c.text.includes(" "))!;
  const fromText = await run(["tokenize", "--tokenizer", tokenizer, "--text", c.text]);
  assert.equal(fromText.code, 0, fromText.stderr);
  assert.deepEqual(JSON.parse(fromText.stdout), c.ids_full);

  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/input.txt`, "[INST] Hello\n");
    const fromFile = await run(["tokenize", "--tokenizer", tokenizer, "--file", `${dir}/input.txt`]);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    const ids: number[] = JSON.parse(fromFile.stdout);
    assert.ok(ids.length > 3 && ids.every((id) => id >= 1000));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pixtral detokenize prints the text, dropping or naming control tokens", async () => {
  const ids = JSON.stringify([1, 3, 22177, 1044, 4304, 1033, 4]);
  const plain = await run(["detokenize", "--tokenizer", tokenizer, "--ids", ids]);
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(plain.stdout, "Hello, world!\n");
  const kept = await run(["detokenize", "--tokenizer", tokenizer, "--ids", ids, "--keep-special"]);
  assert.equal(kept.stdout, "<s>[INST]Hello, world![/INST]\n");
});

Deno.test("pixtral tokenize and detokenize report bad input", async () => {
  const cases: [string[], number, RegExp][] = [
    [["tokenize", "--text", "x"], 2, /--tokenizer FILE is required/],
    [["tokenize", "--tokenizer", tokenizer], 2, /exactly one of --text S or --file F/],
    [
      ["tokenize", "--tokenizer", "/nonexistent/tekken.json", "--text", "x"],
      1,
      /cannot read the tokenizer file/,
    ],
    [["tokenize", "--tokenizer", tokenizer, "--file", "/nonexistent.txt"], 1, /cannot read --file/],
    [["detokenize", "--tokenizer", tokenizer, "--ids", "[1,"], 2, /--ids is not JSON/],
    [["detokenize", "--tokenizer", tokenizer, "--ids", "[1.5]"], 2, /array of integers/],
    [
      ["detokenize", "--tokenizer", tokenizer, "--ids", "[5, 131072]"],
      1,
      /ids\[1\] 131072 is not a token id/,
    ],
  ];
  for (const [args, code, message] of cases) {
    const result = await run(args);
    assert.equal(result.code, code, args.join(" "));
    assert.match(result.stderr, message);
  }
});
