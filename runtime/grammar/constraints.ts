/**
 * Constrained decoding with xgrammar: an output format becomes a grammar compiled against the model's vocabulary,
 * and each sequence gets a matcher that says which tokens may come next (a bitmask the GPU sampler applies) and
 * follows the tokens sampled. Compiled grammars are kept for the formats asked for most recently, so that a
 * schema sent again (or the n choices of one request) is compiled once.
 */
import type { Constraints, TokenConstraint } from "../engine/engine.ts";
import { InvalidRequestError } from "../engine/engine.ts";
import { log } from "../log.ts";
import { gpt2TokenString, type Tokenizer } from "../tokenizer/mod.ts";
import type { OutputFormat } from "./format.ts";
import { explained, type XGrammar, xgrammar } from "./xgrammar.ts";

/** Compiled grammars kept (each holds token masks precomputed for its states). */
const KEPT = 32;
/** Whitespace characters allowed in a row between JSON tokens: more would let a model loop on newlines. */
const MAX_WHITESPACE = 20;

/**
 * Whether a token may appear in JSON output at all: no control character but the newline. xgrammar 0.1.27 lets
 * strings with length bounds hold raw control characters (its class there is [^"\\\r\n]), which JSON forbids;
 * outside strings they are whitespace, where a space or a newline does as well.
 */
const jsonSafe = (bytes: Uint8Array) => bytes.every((b) => b >= 0x20 || b === 0x0a);

export class XGrammarConstraints implements Constraints {
  #compiler?: Promise<{ xg: typeof XGrammar; compiler: XGrammar.GrammarCompiler; safe: Uint32Array }>;
  readonly #compiled = new Map<string, Promise<XGrammar.CompiledGrammar>>();

  /** `vocabSize`: the model's (the logits' width), which may exceed the tokenizer's. */
  constructor(readonly tokenizer: Tokenizer, readonly vocabSize: number) {}

  async constrain(format: OutputFormat, stopIds: readonly number[]): Promise<TokenConstraint> {
    const { xg, safe } = await this.#ready();
    const compiled = await this.#compile(format);
    const matcher = await xg.GrammarMatcher.createGrammarMatcher(compiled, [...stopIds]);
    return {
      allowed: async () => {
        const mask = await matcher.getNextTokenBitmask();
        const allowed = new Uint32Array(safe.length);
        for (let w = 0; w < allowed.length; w++) allowed[w] = mask[w] & safe[w];
        for (const id of stopIds) allowed[id >> 5] |= mask[id >> 5] & (1 << (id & 31));
        return allowed;
      },
      accept: (id) => matcher.acceptToken(id),
      release: () => matcher.dispose(),
    };
  }

  /** The vocabulary as xgrammar takes a byte-level one: each token in GPT-2's alphabet, special tokens empty. */
  #ready() {
    return this.#compiler ??= (async () => {
      const started = performance.now();
      const xg = await xgrammar();
      const { tokenizer } = this;
      const vocab: string[] = [];
      const safe = new Uint32Array(Math.ceil(this.vocabSize / 32));
      for (let id = 0; id < this.vocabSize; id++) {
        const bytes = id < tokenizer.vocabSize && !tokenizer.isSpecial(id)
          ? tokenizer.tokenBytes(id)
          : undefined;
        vocab.push(bytes ? gpt2TokenString(bytes) : "");
        if (bytes && jsonSafe(bytes)) safe[id >> 5] |= 1 << (id & 31);
      }
      const info = await xg.TokenizerInfo.createTokenizerInfo(vocab, "byte_level", false, this.vocabSize);
      // Our own cache (#compiled), bounded; xgrammar's would keep every schema ever sent.
      const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
      log.info("grammar engine ready", { ms: Math.round(performance.now() - started) });
      return { xg, compiler, safe };
    })();
  }

  #compile(format: OutputFormat): Promise<XGrammar.CompiledGrammar> {
    const key = `${format.strict}:${format.schema}`;
    let compiled = this.#compiled.get(key);
    if (compiled) {
      this.#compiled.delete(key); // most recent last
    } else {
      compiled = this.#ready().then(({ compiler }) =>
        explained(() =>
          compiler.compileJSONSchema(format.schema, true, undefined, undefined, format.strict, MAX_WHITESPACE)
        ).catch((err) => {
          this.#compiled.delete(key);
          throw new InvalidRequestError(`response_format: the schema cannot be compiled: ${err.message}`);
        })
      );
      while (this.#compiled.size >= KEPT) {
        const [oldest, grammar] = this.#compiled.entries().next().value!;
        this.#compiled.delete(oldest);
        // Matchers made from it hold their own reference.
        grammar.then((g) => g.dispose(), () => {});
      }
    }
    this.#compiled.set(key, compiled);
    return compiled;
  }
}
