/**
 * Constrained decoding with xgrammar: an output format becomes a grammar compiled against the model's vocabulary,
 * and each sequence gets a matcher that says which tokens may come next (a bitmask the GPU sampler applies) and
 * follows the tokens sampled. Compiled grammars are kept for the formats asked for most recently, so that a
 * schema sent again (or the n choices of one request) is compiled once.
 *
 * A compiled grammar holds token masks precomputed for its states: over Pixtral's 131072 tokens, 50 to 170 MB
 * of xgrammar's WebAssembly memory, which cannot grow past 2 GB. Few are kept. An instance that aborted is not
 * used for new grammars again: when it said why (the schema), the request is refused; when it did not (memory
 * ran out), a fresh instance compiles the schema again. Matchers of an old instance go on while it serves them.
 */
import type { Constraints, TokenConstraint } from "../engine/engine.ts";
import { InvalidRequestError } from "../engine/engine.ts";
import { log } from "../log.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { formatKey, type OutputFormat, xgrammarSchema } from "./format.ts";
import { printChar, xgrammarGrammar } from "./gbnf.ts";
import { BoundsPlan, BoundsTracker } from "./bounds.ts";
import { factored, xgrammarPattern } from "./regex.ts";
import { TokenGuard, type Vocabulary, vocabulary } from "./vocabulary.ts";
import { explained, type XGrammar, xgrammar, XGrammarError } from "./xgrammar.ts";

/** Compiled grammars kept per instance, by default. */
const KEPT = 4;
/**
 * A token's mask slower than this, twice in a row, ends the sequence: a grammar whose parts divide a text in many
 * ways (which the checks of gbnf.ts cannot all see, `s ::= s s | [a-z]` among them) makes each mask slower as the
 * text grows (0.8 s at the 200th character of that one), and holds the grammar thread that other sequences share.
 * Masks of the formats that pass the checks take under 100 ms on this 2-core machine.
 */
const SLOW_MASK_MS = 500;
/**
 * The format's grammar, compiled with any whitespace between JSON tokens (TokenGuard bounds its runs, which in
 * the grammar would cost a state per character at each place).
 */
export function compileFormat(
  compiler: XGrammar.GrammarCompiler,
  format: OutputFormat,
): Promise<XGrammar.CompiledGrammar> {
  if (format.kind === "choice") {
    return compiler.compileGrammar(choiceGrammar(JSON.parse(format.schema) as string[]), "root");
  }
  if (format.kind === "regex") {
    const pattern = xgrammarPattern(format.schema, "text", "");
    return compiler.compileStructuralTag(
      { type: "structural_tag", format: { type: "regex", pattern } } as never,
    );
  }
  if (format.kind === "grammar") return compiler.compileGrammar(xgrammarGrammar(format.schema), "root");
  return compiler.compileJSONSchema(xgrammarSchema(format), true, undefined, undefined, format.strict);
}

/**
 * Strings as EBNF alternatives, factored (regex.ts's factored: xgrammar 0.1.27 runs "AA" | "A" into "AABA"), each
 * group of alternatives a rule of its own: nested, a hundred choices each the last's prefix went deeper than
 * xgrammar's parser goes.
 */
function choiceGrammar(values: readonly string[]): string {
  const rules: string[] = [];
  const root = factored(
    values.map((v) => [...v].map((c) => `"${printChar(c.codePointAt(0)!)}"`)),
    (items) => items.length ? items.join(" ") : '""',
    (branches) => {
      rules.push(`c${rules.length + 1} ::= ${branches.map((b) => `(${b})`).join(" | ")}`);
      return `c${rules.length}`;
    },
  );
  return [`root ::= ${root}`, ...rules].join("\n");
}

/** One instance of xgrammar with the vocabulary loaded, and the grammars compiled in it. */
interface Instance {
  xg: typeof XGrammar;
  compiler: XGrammar.GrammarCompiler;
  compiled: Map<string, Promise<XGrammar.CompiledGrammar>>;
}

export interface ConstraintOptions {
  /** Compiled grammars kept per instance. */
  kept?: number;
  /** A mask slower than this, twice in a row, ends the sequence (see SLOW_MASK_MS). */
  slowMaskMs?: number;
}

export class XGrammarConstraints implements Constraints {
  #instance?: Promise<Instance>;
  #vocab?: Vocabulary;
  #started = 0;
  readonly #kept: number;
  readonly #plans = new Map<string, BoundsPlan | undefined>();

  /** `vocabulary`: the model's, made when first needed. */
  readonly #slowMaskMs: number;

  constructor(readonly vocabulary: () => Vocabulary, options: ConstraintOptions = {}) {
    this.#kept = options.kept ?? KEPT;
    this.#slowMaskMs = options.slowMaskMs ?? SLOW_MASK_MS;
  }

  /** Over a tokenizer's vocabulary; `vocabSize`: the model's (the logits' width), which may exceed it. */
  static forTokenizer(tokenizer: Tokenizer, vocabSize: number, options: ConstraintOptions = {}) {
    return new XGrammarConstraints(() => vocabulary(tokenizer, vocabSize), options);
  }

  /** Gives xgrammar the vocabulary now (0.5-2 s for Pixtral's), rather than at the first constrained request. */
  async warm(): Promise<void> {
    await this.#ready();
  }

  /** Instances of xgrammar started so far (more than one: one ran out of memory). */
  get instances(): number {
    return this.#started;
  }

  async constrain(format: OutputFormat, stopIds: readonly number[]): Promise<TokenConstraint> {
    const ready = this.#ready();
    let instance = await ready;
    let compiled: XGrammar.CompiledGrammar;
    try {
      compiled = await this.#compile(instance, format);
    } catch (err) {
      if (!(err instanceof XGrammarError)) throw err;
      // An aborted instance is not to be trusted again (aborts leave state behind; dozens break it for good).
      if (this.#instance === ready) this.#instance = undefined;
      // A reason printed: the schema is at fault. None: the instance was (its memory ran out); compile again.
      if (err.reason === undefined) {
        log.warn("the grammar engine aborted; starting a fresh instance", { error: err.message });
        const retry = this.#ready();
        instance = await retry;
        compiled = await this.#compile(instance, format).catch((again) => {
          if (!(again instanceof XGrammarError)) throw again;
          // The fresh instance aborted too: the next format gets another.
          if (this.#instance === retry) this.#instance = undefined;
          throw again.reason === undefined
            ? new InvalidRequestError(
              "the output format's grammar needs more memory than xgrammar has",
            )
            : this.#refused(again);
        });
      } else {
        throw this.#refused(err);
      }
    }
    const matcher = await instance.xg.GrammarMatcher.createGrammarMatcher(compiled, [...stopIds]);
    const vocab = this.#vocabulary();
    const json = format.kind === undefined;
    const plan = json ? this.#plan(format) : undefined;
    const guard = new TokenGuard(vocab, json, plan && new BoundsTracker(plan, vocab));
    const tokens = json ? vocab.safe : vocab.text;
    // Stop ids that write nothing (</s>) are allowed where the format may end; one that is also text (a client's
    // stop_token_ids) ends the answer too, so it is allowed only there, not wherever the text could hold it. Where
    // the format may end is known from </s>, which requests with a format carry (the HTTP layer refuses ignore_eos
    // with one).
    const writesNothing = (id: number) => vocab.offsets[id] === vocab.offsets[id + 1];
    const ending = stopIds.filter(writesNothing), written = stopIds.filter((id) => !writesNothing(id));
    const bit = (mask: ArrayLike<number>, id: number) => mask[id >> 5] & (1 << (id & 31));
    let slow = 0;
    return {
      allowed: async () => {
        const started = performance.now();
        const mask = await matcher.getNextTokenBitmask();
        const ms = performance.now() - started;
        slow = ms > this.#slowMaskMs ? slow + 1 : 0;
        if (slow === 2) {
          throw new InvalidRequestError(
            `the output format is too slow to follow: two tokens in a row took over ${this.#slowMaskMs} ms each ` +
              `to constrain (the last ${
                Math.round(ms)
              } ms), so the answer was cut; a grammar whose parts can ` +
              "divide the same text in many ways (as `s ::= s s | [a-z]`) slows down as the text grows",
          );
        }
        const allowed = new Uint32Array(tokens.length);
        for (let w = 0; w < allowed.length; w++) allowed[w] = mask[w] & tokens[w];
        // xgrammar 0.1.27 leaves the stop token out of some masks where the format may end, though it accepts it
        // there (`.* "!"` after "hi!": a class of ASCII and UTF-8 lead bytes repeated before a literal), so that
        // such answers ran to max_tokens: a stop token left out is tried, and taken back.
        for (const id of ending) {
          if (!bit(mask, id) && matcher.acceptToken(id)) {
            matcher.rollBack(1);
            mask[id >> 5] |= 1 << (id & 31);
          }
          allowed[id >> 5] |= bit(mask, id);
        }
        if (ending.length && !ending.some((id) => bit(mask, id))) {
          for (const id of written) allowed[id >> 5] &= ~(1 << (id & 31));
        }
        guard.narrow(allowed);
        return allowed;
      },
      accept: (id) => {
        const taken = matcher.acceptToken(id);
        if (taken) guard.take(id);
        return taken;
      },
      release: () => matcher.dispose(),
    };
  }

  /** The format's bounds plan (see bounds.ts), made once for the formats asked for most recently. */
  #plan(format: OutputFormat): BoundsPlan | undefined {
    const key = formatKey(format);
    if (this.#plans.has(key)) return this.#plans.get(key);
    const plan = BoundsPlan.of(format.schema);
    if (this.#plans.size >= 4 * this.#kept) this.#plans.delete(this.#plans.keys().next().value!);
    this.#plans.set(key, plan);
    return plan;
  }

  #refused(err: XGrammarError): InvalidRequestError {
    return new InvalidRequestError(`the output format's schema cannot be compiled: ${err.message}`);
  }

  #vocabulary(): Vocabulary {
    return this.#vocab ??= this.vocabulary();
  }

  #ready(): Promise<Instance> {
    return this.#instance ??= (async () => {
      const started = performance.now();
      this.#started++;
      const xg = await xgrammar();
      const info = await xg.TokenizerInfo.createTokenizerInfo(
        this.#vocabulary().tokens,
        "byte_level",
        false,
        this.#vocabulary().tokens.length,
      );
      // Our own cache, bounded; xgrammar's would keep every schema ever sent.
      const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
      log.info("grammar engine ready", { ms: Math.round(performance.now() - started) });
      return { xg, compiler, compiled: new Map() };
    })();
  }

  #compile(instance: Instance, format: OutputFormat): Promise<XGrammar.CompiledGrammar> {
    const key = formatKey(format);
    let compiled = instance.compiled.get(key);
    if (compiled) {
      instance.compiled.delete(key); // most recent last
    } else {
      compiled = explained(() => compileFormat(instance.compiler, format));
      compiled.catch(() => instance.compiled.get(key) === compiled && instance.compiled.delete(key));
      while (instance.compiled.size >= this.#kept) {
        const [oldest, grammar] = instance.compiled.entries().next().value!;
        instance.compiled.delete(oldest);
        // Matchers made from it hold their own reference.
        grammar.then((g) => g.dispose(), () => {});
      }
    }
    instance.compiled.set(key, compiled);
    return compiled;
  }
}
