/** `pixtral tokenize` and `pixtral detokenize`: the Tekken tokenizer from the command line. */
import { loadTokenizer } from "../runtime/tokenizer/mod.ts";
import { parseFlags, UsageError } from "./args.ts";

export const tokenizeUsage = `pixtral tokenize --tokenizer FILE (--text S | --file F)

  --tokenizer FILE  tekken.json (parsed once: a compact form is kept in $PIXTRAL_CACHE/tokenizers)
  --text S          the text to encode
  --file F          read the text from a file (- for standard input)

Prints the token ids as a JSON array. Control-token names in the text are encoded as plain text.`;

export const detokenizeUsage = `pixtral detokenize --tokenizer FILE --ids '[...]' [--keep-special]

  --tokenizer FILE  tekken.json
  --ids JSON        the token ids, a JSON array of integers
  --keep-special    write special tokens by name ([INST], </s>...) instead of dropping them

Prints the text.`;

function tokenizerPath(path: string | undefined): string {
  if (!path) throw new UsageError("--tokenizer FILE is required");
  return path;
}

export async function tokenize(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, {
    tokenizer: { type: "string" },
    text: { type: "string" },
    file: { type: "string" },
  });
  const path = tokenizerPath(flags.tokenizer);
  if ((flags.text === undefined) === (flags.file === undefined)) {
    throw new UsageError("give the text with exactly one of --text S or --file F");
  }
  const text = flags.text ??
    (flags.file === "-"
      ? await new Response(Deno.stdin.readable).text()
      : await Deno.readTextFile(flags.file!).catch((err) => {
        throw new Error(`cannot read --file ${flags.file}: ${err.message}`);
      }));
  const tokenizer = await loadTokenizer(path);
  console.log(JSON.stringify(Array.from(tokenizer.encode(text))));
}

export async function detokenize(argv: string[]): Promise<void> {
  const flags = parseFlags(argv, {
    tokenizer: { type: "string" },
    ids: { type: "string" },
    "keep-special": { type: "boolean" },
  });
  const path = tokenizerPath(flags.tokenizer);
  if (flags.ids === undefined) throw new UsageError("--ids '[...]' is required");
  let ids: unknown;
  try {
    ids = JSON.parse(flags.ids);
  } catch (err) {
    throw new UsageError(`--ids is not JSON: ${(err as Error).message}`);
  }
  if (!Array.isArray(ids) || !ids.every((id) => Number.isInteger(id))) {
    throw new UsageError("--ids must be a JSON array of integers, e.g. [1, 22177, 1044]");
  }
  const tokenizer = await loadTokenizer(path);
  console.log(tokenizer.decode(ids, { keepSpecial: flags["keep-special"] ?? false }));
}
