/**
 * The engine of a GPU host: continuous batching over one PixtralModel.
 *
 * Each step runs, in one submit, a prefill chunk for some of the sequences still reading their prompt and one
 * decode token for every sequence that is generating; new requests join at the next step boundary, finished and
 * cancelled ones leave it and return their KV blocks at once. Long prompts are cut into fixed-size chunks so
 * that they never stall the running streams for long.
 *
 * Batching must not change results: every sequence's rows go through exactly the kernels they would take alone
 * (prefill chunks of fixed size, each sequence in its own pass; decode tokens in groups no larger than the
 * matrix-vector kernel takes, whose rows do not depend on each other), and sampling is seeded per sequence.
 */
import { MATVEC_MAX_ROWS } from "../gpu/ops/linear.ts";
import { logprobRows, sample, type SamplingParams } from "../gpu/ops/sampling.ts";
import type { Recorder } from "../gpu/recorder.ts";
import type { Tensor } from "../gpu/tensor.ts";
import type { SequenceStep } from "../model/decoder.ts";
import type { LoraModule } from "../model/lora_modules.ts";
import type { PixtralModel } from "../model/pixtral.ts";
import type { ImageInput, VisionPass } from "../model/vision.ts";
import { nextTurn } from "../event_loop.ts";

/** How long a step waits for the masks of its constrained sequences before it runs without those still coming. */
const MASK_WAIT_MS = 50;
/** How long a failed step waits to learn whether the device was lost. */
const LOST_WAIT_MS = 100;
/**
 * Vision stages (encoder layers) a step runs for an image while other streams decode: Pixtral's 24 layers over a
 * 1024x1024 image are ~200 GFLOP each, about 10 ms for two at tens of TFLOP/s.
 */
const VISION_STAGES_PER_STEP = 2;
/** Generated tokens a replaying sequence puts back into the cache per step (see Sequence.decodeRows). */
const REPLAY_ROWS = 4;

/** Waits for `work`, or `ms` at most. */
export async function within(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<void>((resolve) => timer = setTimeout(resolve, ms));
  try {
    await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
import type { OutputFormat } from "../grammar/format.ts";
import { log } from "../log.ts";
import { Channel } from "./channel.ts";
import { PrefixKeys } from "./prefix.ts";
import {
  type Constraints,
  type Engine,
  EngineBusyError,
  EngineClosedError,
  type EngineStats,
  type FinishReason,
  type GenerateRequest,
  InvalidRequestError,
  type PromptLogprob,
  samplerSeed,
  type TokenConstraint,
  type TokenEvent,
} from "./engine.ts";
import { type RequestLimits, validateRequest } from "./validate.ts";

export interface LocalEngineOptions {
  /** Tokens per prefill chunk (default 512). */
  prefillChunk?: number;
  /** Prefill tokens per step across sequences (default one chunk). */
  prefillBudget?: number;
  /** Sequences running at once (default 64). */
  maxRunning?: number;
  /** Sequences waiting (a request's n choices count n) beyond which new ones are refused (default 256). */
  maxQueue?: number;
  /**
   * Pixel bytes of the images of waiting requests beyond which a request with images is refused (default 1 GiB,
   * about 80 images at 1024x1024): a queue of small image requests would otherwise hold gigabytes.
   */
  maxQueuedImageBytes?: number;
  /** Tokens per sequence, if lower than the model's context. */
  contextLength?: number;
  /**
   * Decode steps run back to back on the GPU between token readbacks when no prompt is being read (default 8):
   * each step feeds the ids the previous one sampled. A readback costs about 10 ms in Deno's WebGPU (its
   * mapAsync polls the device every 10 ms), which would otherwise cap decoding near 100 tokens/s. Sequences that
   * finish early waste the rest of the run; output formats need each token on the host, so their batches take 1
   * (penalties count a run's draws on the GPU, but wait for the run's readback before the next). 1 reads every
   * token back.
   */
  decodeSteps?: number;
  /**
   * The longest a run may take, judged from the last decode steps' times (default 100 ms): tokens stream in
   * bursts of a run, so a slow GPU (or a CPU emulation) gets shorter runs and keeps streaming smoothly.
   */
  decodeRunMs?: number;
  /**
   * Reuse the KV blocks of earlier prompts with the same beginning (default true): a chat's next turn, or the
   * same system prompt or image, is not computed again. Reuse starts only at multiples of the prefill chunk, so
   * that the rest is read in the chunks it would be read in anyway and results stay identical.
   */
  prefixCache?: boolean;
  /** Keeps outputs inside the formats requests ask for (`format`); without it such requests are refused. */
  constraints?: Constraints;
}

class Sequence {
  readonly tokens: number[];
  readonly blocks: number[] = [];
  readonly channel = new Channel<TokenEvent, FinishReason>();
  /** Tokens whose keys and values are in the cache. */
  past = 0;
  generated = 0;
  /** Image embeddings of the prompt, and how many of their rows earlier chunks (or the prefix cache) consumed. */
  embeddings?: Tensor;
  /** The vision pass making `embeddings`, while it runs in stages (see #encode). */
  vision?: VisionPass;
  imageRows = 0;
  /** The prefix cache's keys of this sequence's blocks, and how many of its first blocks are published. */
  prefix?: PrefixKeys;
  published = 0;
  /**
   * Prompt tokens the prefix cache gave when the sequence was first admitted, reported with its first token
   * (usage's cached tokens); a preempted sequence admitted again may reuse what it published itself, not counted.
   */
  cachedTokens?: number;
  /** [IMG] tokens in the prompt: its images' patches. */
  readonly imagePatches: number;
  /** The LoRA adapter its request named. */
  lora?: LoraModule;
  /** Why it was cancelled, once it is: the error its stream ends with. */
  cancelled?: Error;
  /** Penalised tokens and how often each was generated (prompt tokens count 0, for the repetition penalty). */
  readonly counts = new Map<number, number>();
  readonly seed: number;
  /**
   * The output format's matcher, made before the sequence is queued (a triggered format's while it runs, in
   * `matcher`), and the tokens it allows next.
   */
  constraint?: TokenConstraint;
  matcher?: Promise<void>;
  /** Whether `matcher` is still being made (its masks will not come soon). */
  matcherPending = false;
  allowed?: Uint32Array;
  /** Whether the sequence is done with its matcher: one that comes later is released at once. */
  #constraintDone = false;
  /**
   * With a trigger token: true once the output wrote it (the format applies), false when the first token was not
   * it under an alternative format (which then applies), undefined before.
   */
  triggered?: boolean;
  /**
   * Bumped when tokens sampled past an accepted one no longer hold (the trigger came inside a decode run, and what
   * followed it was sampled without the format): runs launched before are void for this sequence.
   */
  epoch = 0;
  /** The matcher of the format that applies unless the first token is the trigger (`orElse`). */
  alternative?: TokenConstraint;
  /** A triggered format that could not be compiled: the output is free. */
  formatDropped = false;
  /** The count of generated tokens `allowed` was made for, the request for the next mask, and its failure. */
  maskFor = -1;
  maskPending?: Promise<void>;
  maskError?: unknown;
  /** Every token but the banned ones, when some are: the same mask each step, so no need to step one by one. */
  readonly unbanned?: Uint32Array;
  /** The prompt's log-probabilities by position (the token at p + 1 given those up to p), when asked for. */
  readonly promptScores?: PromptLogprob[];
  /** Every token but the banned ones and the stop ids, while fewer than `minTokens` were generated. */
  readonly early?: Uint32Array;

  constructor(readonly request: GenerateRequest<ImageInput>, readonly vocabSize: number) {
    this.tokens = [...request.ids];
    const except = (ids: readonly number[]) => {
      const mask = new Uint32Array(Math.ceil(vocabSize / 32));
      for (let id = 0; id < vocabSize; id++) mask[id >> 5] |= 1 << (id & 31);
      for (const id of ids) mask[id >> 5] &= ~(1 << (id & 31));
      return mask;
    };
    if (request.banned?.length) this.unbanned = except(request.banned);
    if (request.promptLogprobs !== undefined) this.promptScores = [];
    if (request.minTokens) this.early = except([...request.banned ?? [], ...request.stopIds]);
    this.imagePatches = request.images.reduce((n, image) => n + image.rows * image.cols, 0);
    const seed = request.sampling.seed;
    this.seed = seed === undefined ? crypto.getRandomValues(new Uint32Array(1))[0] : samplerSeed(seed);
    if (request.sampling.repetitionPenalty !== 1) { for (const id of request.ids) this.counts.set(id, 0); }
  }

  /**
   * Positions prefill chunks put in the cache: the prompt's. Generated tokens are put there by decode steps, also
   * when a preempted sequence is computed again (replaying), since the prefill's kernels round otherwise and
   * every later token would differ from the run that was not preempted.
   */
  get prefillEnd(): number {
    return this.request.ids.length;
  }

  get prefilling(): boolean {
    return this.past < this.prefillEnd;
  }

  /**
   * Rows it takes in a decode step: one, or while replaying, up to REPLAY_ROWS of the tokens it puts back. Each is
   * a row of its own at its position, as each was when first decoded (a row's kernels do not depend on the
   * others'), so the cache comes back the same, several times faster.
   */
  get decodeRows(): number {
    return this.replaying ? Math.min(REPLAY_ROWS, this.tokens.length - 1 - this.past) : 1;
  }

  /** Whether its prompt's images still have to be encoded before it can be prefilled. */
  get awaitsImages(): boolean {
    return !this.embeddings && this.imageRows < this.imagePatches;
  }

  /** Whether decode steps are putting generated tokens back in the cache (after a preemption), sampling nothing. */
  get replaying(): boolean {
    return !this.prefilling && this.past < this.tokens.length - 1;
  }

  /** [IMG] tokens of the prompt before `end`: image rows the sequence has no more use for once past it. */
  imageTokensBefore(end: number, img: number): number {
    let n = 0;
    for (let p = 0; p < Math.min(end, this.request.ids.length); p++) if (this.tokens[p] === img) n++;
    return n;
  }

  /** Whether penalties apply, which need the counts of every token generated so far. */
  get penalised(): boolean {
    const s = this.request.sampling;
    return s.repetitionPenalty !== 1 || s.presencePenalty !== 0 || s.frequencyPenalty !== 0;
  }

  /** Sampling settings of the token `ahead` steps after the next (decode runs sample several unread). */
  samplingParams(ahead = 0): SamplingParams {
    const s = this.request.sampling;
    return {
      temperature: s.temperature,
      topK: s.topK >= this.vocabSize ? 0 : s.topK,
      topP: s.topP,
      minP: s.minP,
      repetitionPenalty: s.repetitionPenalty,
      presencePenalty: s.presencePenalty,
      frequencyPenalty: s.frequencyPenalty,
      seed: this.seed,
      counter: this.generated + ahead,
      penalties: this.penalised
        ? { ids: [...this.counts.keys()], counts: [...this.counts.values()] }
        : undefined,
      mask: this.allowed ??
        (this.generated + ahead < (this.request.minTokens ?? 0) ? this.early : this.unbanned),
      bias: s.bias,
    };
  }

  /** Whether its output format applies to the next token (a triggered one only after its trigger). */
  get constrained(): boolean {
    if (this.alternate) return true;
    return this.request.format !== undefined && !this.formatDropped &&
      (this.request.trigger === undefined || this.triggered === true);
  }

  /**
   * Whether the next token follows the alternative format: the first token (that format's, or the trigger)
   * and, when the first was not the trigger, the rest.
   */
  get alternate(): boolean {
    return this.request.orElse !== undefined && this.triggered !== true;
  }

  /**
   * Whether its tokens must come to the host one by one: a format's next mask depends on them. (Penalties count a
   * run's earlier draws on the GPU, and top log-probabilities are found there.)
   */
  get stepwise(): boolean {
    return this.constrained;
  }

  /** Takes the matcher made for it, or frees it if the sequence no longer needs one. */
  takeConstraint(constraint: TokenConstraint): void {
    this.constraint = constraint;
    if (this.#constraintDone) this.releaseConstraint();
  }

  /** Frees the matcher; a grammar engine that fails here must not take the step (or the stream's end) with it. */
  releaseConstraint(): void {
    this.#constraintDone = true;
    release(this.constraint);
    this.constraint = this.allowed = undefined;
  }

  /** Frees the alternative format's matcher (the trigger came, or the sequence ended). */
  releaseAlternative(): void {
    release(this.alternative);
    this.alternative = this.allowed = undefined;
  }

  /** Frees every matcher: the sequence is done. */
  releaseFormats(): void {
    this.releaseConstraint();
    this.releaseAlternative();
  }
}

/** One model pass of a step and the sequences whose next token it samples. */
interface Pass {
  seqs: Sequence[];
  ids: Promise<Uint8Array<ArrayBuffer>>;
  logprobs: Promise<Uint8Array<ArrayBuffer>>;
  /** logprobRows' output for the drawn tokens, `top` alternatives each, when a sequence asked for them. */
  tops?: Promise<Uint8Array<ArrayBuffer>>;
  top: number;
}

/**
 * Decode steps submitted back to back: ids and log-probabilities of each step (rows) and sequence (columns), and
 * the top alternatives (`top` each) when a sequence asked for them.
 */
interface DecodeRun {
  seqs: Sequence[];
  /** Each sequence's epoch when the run was launched. */
  epochs: number[];
  steps: number;
  ids: Tensor;
  logprobs: Tensor;
  top: number;
  tops?: Tensor;
  reads: Promise<Uint8Array<ArrayBuffer>[]>;
}

/** The most alternatives any of `seqs` asked for: one logprobRows pass gives them all. */
function topOf(seqs: readonly Sequence[]): number {
  return seqs.reduce((n, s) => Math.max(n, s.request.topLogprobs ?? 0), 0);
}

export class LocalEngine implements Engine {
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly #model: PixtralModel;
  /** Prompt tokens per prefill step. */
  readonly prefillChunk: number;
  readonly #prefillBudget: number;
  readonly #maxRunning: number;
  readonly #maxQueue: number;
  readonly #maxQueuedImageBytes: number;
  readonly limits: RequestLimits;
  readonly #decodeSteps: number;
  readonly #decodeRunMs: number;
  readonly #constraints?: Constraints;
  /** Where prefix reuse may end: multiples of both the block size and the prefill chunk; 0: no reuse. */
  readonly #prefixUnit: number;
  #prefixHitTokens = 0;
  #preemptions = 0;
  /** Steps that chose among several prompts to read (see #schedule). */
  #prefillTurns = 0;
  /** Time of one decode step, averaged over recent steps; undefined until one ran. */
  #stepMs?: number;
  /** Sequences whose output format's matcher is being made (its grammar compiled); they wait outside the queue. */
  #compiling = new Set<Sequence>();
  #waiting: Sequence[] = [];
  #running: Sequence[] = [];
  #loop?: Promise<void>;
  #closed = false;
  /** Why the engine cannot run anything again (its GPU device was lost), once it cannot. */
  #failure?: EngineClosedError;

  constructor(model: PixtralModel, options: LocalEngineOptions = {}) {
    this.#model = model;
    this.vocabSize = model.config.decoder.vocabSize;
    this.contextLength = Math.min(
      options.contextLength ?? Infinity,
      model.config.contextLength,
      model.pool.capacity,
    );
    this.prefillChunk = options.prefillChunk ?? 512;
    this.#prefillBudget = options.prefillBudget ?? this.prefillChunk;
    this.#maxRunning = options.maxRunning ?? 64;
    this.#maxQueue = options.maxQueue ?? 256;
    this.#maxQueuedImageBytes = options.maxQueuedImageBytes ?? 1024 ** 3;
    this.limits = {
      contextLength: this.contextLength,
      vocabSize: this.vocabSize,
      imageToken: model.config.imageTokens.img,
      vision: Boolean(model.config.vision),
      loras: [...model.loras.keys()],
    };
    this.#decodeSteps = Math.max(1, Math.floor(options.decodeSteps ?? 8));
    this.#decodeRunMs = options.decodeRunMs ?? 100;
    this.#constraints = options.constraints;
    const { blockSize } = model.pool;
    const gcd = (a: number, b: number): number => b ? gcd(b, a % b) : a;
    this.#prefixUnit = options.prefixCache === false
      ? 0
      : blockSize * this.prefillChunk / gcd(blockSize, this.prefillChunk);
    model.ctx.lost.then((reason) => this.#fail(reason));
  }

  /** Resolves with the error every request gets once the engine cannot run anything again (a lost device). */
  get failed(): Promise<EngineClosedError> {
    return this.#model.ctx.lost.then(() => this.#failure!); // #fail ran first: it was registered first
  }

  /** The device is gone: every request, running or to come, fails with the reason (HTTP 503). */
  #fail(reason: string): void {
    this.#failure = new EngineClosedError(`${reason}; the server must be restarted`);
    log.error("the GPU device was lost; the engine stops", { reason });
    for (const seq of [...this.#compiling, ...this.#waiting, ...this.#running]) {
      this.#cancel(seq, this.#failure);
    }
  }

  stats(): EngineStats {
    const { pool } = this.#model;
    return {
      waiting: this.#waiting.length + this.#compiling.size,
      maxWaiting: this.#maxWaiting(),
      running: this.#running.length,
      kvBlocks: pool.blocks,
      kvBlocksUsed: pool.usedBlocks,
      kvUsage: pool.usedBlocks / pool.blocks,
      prefixHitTokens: this.#prefixHitTokens,
      preemptions: this.#preemptions,
      gpuSubmits: this.#model.ctx.submits,
    };
  }

  generate(request: GenerateRequest, signal?: AbortSignal): AsyncGenerator<TokenEvent, FinishReason> {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw new EngineClosedError("the server is shutting down");
    validateRequest(request, this.limits);
    if (request.format && !this.#constraints) {
      throw new InvalidRequestError("this engine cannot constrain the output to a format");
    }
    const waiting = this.#waiting.length + this.#compiling.size;
    if (waiting >= this.#maxWaiting()) {
      // Each choice of a request (`n`) is a sequence of its own.
      throw new EngineBusyError(
        `${waiting} sequences are already waiting (a request's n choices count n)`,
        1,
      );
    }
    const imageBytes = request.images.reduce((n, image) => n + image.pixels.byteLength, 0);
    const queuedImageBytes = waiting && imageBytes ? this.#queuedImageBytes() : 0;
    if (queuedImageBytes && queuedImageBytes + imageBytes > this.#maxQueuedImageBytes) {
      throw new EngineBusyError(
        `${Math.round(queuedImageBytes / 2 ** 20)} MiB of images are already waiting`,
        1,
      );
    }
    const seq = new Sequence(request, this.vocabSize);
    if (request.lora !== undefined) seq.lora = this.#model.loras.get(request.lora);
    // Registered now, not when the stream is first read: a stream that is never read must still be cancellable.
    const abort = () => this.#cancel(seq);
    signal?.addEventListener("abort", abort);
    if (request.format && request.trigger === undefined) {
      this.#prepare(seq, request.format, (c) => seq.constraint = c);
    } else {
      // The alternative's mask is the first token's: it is made (first) before the sequence queues.
      if (request.orElse) this.#prepare(seq, request.orElse, (c) => seq.alternative = c);
      if (request.format) this.#prepareLater(seq, request.format);
      if (!request.orElse) this.#waiting.push(seq);
    }
    if (signal?.aborted) abort();
    this.#kick();
    return this.#stream(seq, () => signal?.removeEventListener("abort", abort));
  }

  /**
   * Sequences that may wait at once: the queue, and the running places still free (a burst arriving between two
   * steps waits for the next to be admitted, and should not be refused while there is room to run it).
   */
  #maxWaiting(): number {
    return this.#maxQueue + Math.max(0, this.#maxRunning - this.#running.length);
  }

  /** Pixel bytes of the images of the sequences not running yet. */
  #queuedImageBytes(): number {
    let bytes = 0;
    for (const seq of [...this.#compiling, ...this.#waiting]) {
      for (const image of seq.request.images) bytes += image.pixels.byteLength;
    }
    return bytes;
  }

  /**
   * Makes the matcher of `seq`'s output format, then queues it. Compiling a grammar can take seconds; with
   * constraints served from another thread (GrammarWorker) the other sequences step on meanwhile.
   */
  #prepare(seq: Sequence, format: OutputFormat, take: (constraint: TokenConstraint) => void): void {
    this.#compiling.add(seq);
    const queue = () => {
      this.#compiling.delete(seq);
      if (seq.cancelled) return false; // its stream has failed already
      if (this.#closed) {
        seq.channel.fail(new EngineClosedError("the server shut down before the request started"));
        return false;
      }
      this.#waiting.push(seq);
      this.#kick();
      return true;
    };
    this.#constraints!.constrain(format, seq.request.stopIds).then((constraint) => {
      take(constraint);
      if (!queue()) seq.releaseFormats();
    }, (err) => {
      this.#compiling.delete(seq);
      seq.releaseFormats(); // a triggered format's matcher, made meanwhile, goes too
      if (!seq.cancelled) seq.channel.fail(err);
    });
  }

  /**
   * Makes the matcher of a triggered format while `seq` runs: most answers never write the trigger (text rather
   * than tool calls), and one that does waits for the matcher after it, so the compile overlaps the prefill.
   */
  #prepareLater(seq: Sequence, format: OutputFormat): void {
    seq.matcherPending = true;
    seq.matcher = this.#constraints!.constrain(format, seq.request.stopIds).then((constraint) => {
      seq.matcherPending = false;
      seq.takeConstraint(constraint);
    }, (err) => {
      seq.matcherPending = false;
      // The format is a refinement: without it the output is free.
      if (!(err instanceof InvalidRequestError)) throw err;
      log.warn("a triggered output format cannot be compiled; the output stays free", { error: err.message });
      seq.formatDropped = true;
    });
    // Another failure ends the sequence only if it wrote its trigger (at its next mask).
    seq.matcher.catch(() => {});
  }

  async *#stream(seq: Sequence, detach: () => void): AsyncGenerator<TokenEvent, FinishReason> {
    try {
      return yield* seq.channel.drain();
    } finally {
      detach();
      if (!seq.channel.closed) this.#cancel(seq);
    }
  }

  #cancel(seq: Sequence, reason: Error = new DOMException("the request was cancelled", "AbortError")): void {
    seq.cancelled ??= reason;
    if (this.#compiling.delete(seq)) return seq.channel.fail(seq.cancelled);
    const waiting = this.#waiting.indexOf(seq);
    if (waiting >= 0) {
      this.#waiting.splice(waiting, 1);
      seq.releaseFormats(); // a preempted sequence keeps its matchers while it waits
      seq.channel.fail(seq.cancelled);
    }
    // A running sequence leaves at the next step boundary (its blocks may be in use by the step in flight).
  }

  #kick(): void {
    this.#loop ??= this.#run().finally(() => {
      this.#loop = undefined;
      if (this.#waiting.length && !this.#closed) this.#kick();
    });
  }

  async #run(): Promise<void> {
    while (true) {
      this.#reap();
      this.#admit();
      if (this.#running.length === 0) return;
      try {
        await this.#step();
      } catch (err) {
        // A lost device fails the step with a bare message, and may report its loss a little later.
        await within(this.#model.ctx.lost, LOST_WAIT_MS);
        if (!this.#failure) log.error("engine step failed", { error: String((err as Error)?.stack ?? err) });
        for (const seq of [...this.#running]) this.#finish(seq, this.#failure ?? err);
      }
      // Else a prompt read in steps without readbacks would hold the event loop until its end.
      if (this.#running.length) await nextTurn();
    }
  }

  /** Removes cancelled sequences and returns their memory. */
  #reap(): void {
    for (const seq of this.#running.filter((s) => s.cancelled)) {
      this.#finish(seq, seq.cancelled);
    }
  }

  #admit(): void {
    const { pool } = this.#model;
    for (let i = 0; i < this.#waiting.length && this.#running.length < this.#maxRunning;) {
      const seq = this.#waiting[i];
      // Prompt log-probabilities need every position computed.
      const reusing = this.#prefixUnit > 0 && seq.past === 0 && !seq.promptScores;
      if (reusing && this.#follows(seq)) {
        i++;
        continue;
      }
      // Room for the whole prompt plus one block of growth for every running sequence.
      const needed = pool.blocksFor(seq.tokens.length + 1) + this.#running.length;
      if (needed > pool.freeBlocks && this.#running.length > 0) return;
      this.#waiting.splice(i, 1);
      this.#running.push(seq);
      if (reusing) this.#reuse(seq);
    }
  }

  /** The prefix keys of a sequence that may use the prefix cache, and how many of its blocks it could reuse. */
  #prefixOf(seq: Sequence): { keys: PrefixKeys; reusable: number } {
    const { pool } = this.#model, { img } = this.#model.config.imageTokens;
    seq.prefix ??= new PrefixKeys(
      seq.tokens,
      seq.request.images,
      seq.request.ids.length,
      img,
      pool.blockSize,
      seq.request.lora,
    );
    // At least the last token is computed: its logits give the first sample.
    const reusable = Math.floor((seq.prefillEnd - 1) / this.#prefixUnit) * this.#prefixUnit / pool.blockSize;
    return { keys: seq.prefix, reusable };
  }

  /** How many of its first blocks are in the cache. */
  #cachedBlocks(seq: Sequence): number {
    const { keys, reusable } = this.#prefixOf(seq);
    let cached = 0;
    while (cached < reusable && this.#model.pool.has(keys.key(cached))) cached++;
    return cached;
  }

  /**
   * Whether `seq` waits for a running sequence that is reading the same prompt: that one's prefill publishes the
   * next prefix unit `seq` begins with, which `seq` then takes from the cache rather than computing it again
   * alongside (the `n` choices of a request; one prompt sent by several clients at once, an image included, whose
   * vision encoder then runs once). It waits only while the other reads that unit.
   */
  #follows(seq: Sequence): boolean {
    const { blockSize } = this.#model.pool;
    const { keys, reusable } = this.#prefixOf(seq);
    const perUnit = this.#prefixUnit / blockSize;
    const unitEnd = (Math.floor(this.#cachedBlocks(seq) / perUnit) + 1) * perUnit;
    if (unitEnd > reusable) return false;
    const wanted = keys.key(unitEnd - 1);
    return this.#running.some((leader) =>
      leader.prefix !== undefined && leader.prefilling && leader.published < unitEnd &&
      leader.prefillEnd >= unitEnd * blockSize && leader.prefix.key(unitEnd - 1) === wanted
    );
  }

  /** Starts `seq` after the longest prefix whose blocks are cached, cut to whole prefix units. */
  #reuse(seq: Sequence): void {
    const { pool } = this.#model, { img } = this.#model.config.imageTokens;
    const tokens = Math.floor(this.#cachedBlocks(seq) * pool.blockSize / this.#prefixUnit) * this.#prefixUnit;
    seq.cachedTokens ??= tokens;
    if (tokens === 0) return;
    pool.share(seq.blocks, Array.from({ length: tokens / pool.blockSize }, (_, i) => seq.prefix!.key(i)));
    seq.past = tokens;
    seq.published = tokens / pool.blockSize;
    seq.imageRows = seq.imageTokensBefore(tokens, img);
    this.#prefixHitTokens += tokens;
  }

  /**
   * Publishes the blocks of the whole prefix units a prefill step completed: those were computed by full chunks,
   * as an uncached run computes them. (A prompt's last, shorter chunk may take other kernels, and decode steps
   * do; their blocks could never start a reuse anyway, which ends at a unit boundary.)
   */
  #publish(seq: Sequence): void {
    if (!seq.prefix) return;
    const { pool } = this.#model;
    const end = Math.floor(seq.past / this.#prefixUnit) * this.#prefixUnit / pool.blockSize;
    for (; seq.published < end; seq.published++) {
      pool.publish(seq.blocks[seq.published], seq.prefix.key(seq.published));
    }
  }

  #finish(seq: Sequence, result: FinishReason | unknown): void {
    const i = this.#running.indexOf(seq);
    if (i >= 0) this.#running.splice(i, 1);
    this.#model.pool.release(seq.blocks);
    this.#dropImages(seq);
    seq.releaseFormats();
    if (result === "stop" || result === "length") seq.channel.close(result);
    else seq.channel.fail(result);
  }

  #dropImages(seq: Sequence): void {
    if (seq.embeddings) this.#model.ctx.release(seq.embeddings);
    seq.vision?.release();
    seq.embeddings = seq.vision = undefined;
  }

  /**
   * Makes room for `seq` to hold `tokens` positions, preempting the newest sequences not yet scheduled in this
   * step if needed (with `newer`, only those admitted after it); false when no such one could make room (then
   * `seq` waits for a later step).
   */
  #grow(seq: Sequence, tokens: number, scheduled: ReadonlySet<Sequence>, newer = false): boolean {
    const { pool } = this.#model;
    while (!pool.reserve(seq.blocks, tokens)) {
      // Preferably one that frees blocks: a sequence holding only shared ones frees nothing.
      const from = newer ? this.#running.indexOf(seq) + 1 : 0;
      const candidates = this.#running.slice(from).filter((s) => s !== seq && !scheduled.has(s));
      const victim = candidates.findLast((s) => pool.exclusiveBlocks(s.blocks) > 0) ?? candidates.at(-1);
      if (!victim) return false;
      // Recompute later: drop its cache, keep its tokens, and put it first in line.
      this.#running.splice(this.#running.indexOf(victim), 1);
      pool.release(victim.blocks);
      this.#dropImages(victim);
      victim.past = victim.imageRows = victim.published = 0;
      this.#waiting.unshift(victim);
      this.#preemptions++;
      log.warn("KV cache full: a sequence was preempted and will be recomputed", {
        tokens: victim.tokens.length,
      });
    }
    return true;
  }

  /** Which sequences advance this step, each with the KV blocks it needs reserved: decoders first, then prefills. */
  #schedule(): { decoders: Sequence[]; prefills: { seq: Sequence; end: number }[] } {
    const scheduled = new Set<Sequence>();
    const decoders: Sequence[] = [];
    for (const seq of this.#running.filter((s) => !s.prefilling)) {
      if (this.#running.includes(seq) && this.#grow(seq, seq.past + seq.decodeRows, scheduled)) {
        scheduled.add(seq);
        decoders.push(seq);
      }
    }
    const prefills: { seq: Sequence; end: number }[] = [];
    let budget = this.#prefillBudget;
    // A sequence whose vision pass is under way takes no chunk and no blocks yet.
    const reading = this.#running.filter((s) => s.prefilling && !s.awaitsImages);
    // The prompt with the fewest tokens left goes first, so that a short prompt is not held behind a long one's
    // chunks (a 16k-token prompt held a greeting for its whole reading); every other step the one admitted first
    // does, so that a run of short prompts cannot hold a long one for ever.
    if (reading.length > 1 && this.#prefillTurns++ % 2 === 0) {
      reading.sort((a, b) => (a.prefillEnd - a.past) - (b.prefillEnd - b.past));
    }
    for (const seq of reading) {
      if (budget <= 0) break;
      const end = Math.min(seq.past + this.prefillChunk, seq.prefillEnd);
      // A prompt read before an older one (it has fewer tokens left) must not throw away the older one's work;
      // when it finds no room, the older ones are tried, and may take its blocks.
      if (!this.#running.includes(seq) || !this.#grow(seq, end, scheduled, true)) continue;
      scheduled.add(seq);
      prefills.push({ seq, end });
      budget -= end - seq.past;
    }
    if (scheduled.size === 0 && !this.#running.some((s) => s.prefilling && s.awaitsImages)) {
      throw new Error("the KV cache cannot hold one sequence");
    }
    return { decoders, prefills };
  }

  async #step(): Promise<void> {
    const model = this.#model;
    // One request's images at a time, before scheduling: a sequence prefills once its embeddings exist.
    const encoding = this.#running.find((s) => s.prefilling && s.awaitsImages);
    if (encoding) await this.#encode(encoding, this.#running.some((s) => !s.prefilling));
    const { decoders: scheduled, prefills } = this.#schedule();
    const { img } = model.config.imageTokens;
    // Decode steps are timed without the vision stages (a step's decode run length comes from it).
    const started = performance.now();
    const unready = await this.#constrain([
      ...prefills.filter(({ seq, end }) => end === seq.prefillEnd && seq.generated === 0).map(({ seq }) =>
        seq
      ),
      ...scheduled.filter((seq) => !seq.replaying),
    ]);
    const runs = (seq: Sequence) => this.#running.includes(seq) && !unready.has(seq);
    const decoders = scheduled.filter(runs);
    const ready = prefills.filter(({ seq }) => runs(seq));
    if (decoders.length === 0 && ready.length === 0) {
      // Every sequence waits for its mask (a grammar compiling on the grammar thread): wait for one, or a
      // while, so that new requests are still admitted.
      await within(Promise.race([...unready].map((seq) => seq.maskPending)), MASK_WAIT_MS);
      return;
    }
    const steps = ready.map(({ seq, end }) => {
      const ids = seq.tokens.slice(seq.past, end);
      // Only the prompt's [IMG] tokens are images (a recomputed sequence may have generated the id too).
      const images = seq.tokens.slice(seq.past, Math.min(end, seq.request.ids.length))
        .filter((id) => id === img).length;
      const final = end === seq.prefillEnd && seq.generated === 0;
      const step = {
        ids,
        past: seq.past,
        blocks: seq.blocks,
        images: images ? seq.embeddings!.sliceRows(seq.imageRows, images) : undefined,
        lora: seq.lora,
        logits: seq.promptScores && seq.generated === 0
          ? "scored" as const
          : final
          ? "last" as const
          : "none" as const,
      } satisfies SequenceStep;
      return { seq, step, final };
    });
    if (steps.length === 0 && decoders.length > 0) {
      const run = this.#runLength(decoders);
      if (run > 1) return await this.#decodeRuns(decoders, run);
    }

    const rec = model.ctx.record("step");
    const passes: Pass[] = [];
    const scored: { seq: Sequence; past: number; scores: Promise<Uint8Array<ArrayBuffer>> }[] = [];
    try {
      for (const { seq, step, final } of steps) {
        const out = model.step(rec, [step]);
        if (!out.logits) continue;
        let last = out.logits;
        if (step.logits === "scored") {
          // Row r scores the prompt token after it (the last row, the prompt's last token: anything).
          const { ids } = seq.request;
          const targets = step.ids.map((_, r) => ids[Math.min(step.past + r + 1, ids.length - 1)]);
          const top = seq.request.promptLogprobs!;
          scored.push({
            seq,
            past: step.past,
            scores: rec.read(logprobRows(rec, out.logits, targets, { top })),
          });
          last = out.logits.sliceRows(step.ids.length - 1, 1);
        }
        if (final) passes.push(this.#sample(rec, last, [seq]));
      }
      // A row per decoding sequence; a replaying one puts several of its tokens back, each its own row.
      const rows = decoders.flatMap((seq) =>
        Array.from({ length: seq.decodeRows }, (_, j) => ({ seq, at: seq.past + j }))
      );
      for (let i = 0; i < rows.length; i += MATVEC_MAX_ROWS) {
        const group = rows.slice(i, i + MATVEC_MAX_ROWS);
        const out = model.step(
          rec,
          group.map(({ seq, at }) => ({
            ids: [seq.tokens[at]],
            past: at,
            blocks: seq.blocks,
            lora: seq.lora,
            logits: seq.replaying ? "none" as const : "last" as const,
          })),
        );
        const sampling = group.filter(({ seq }) => !seq.replaying).map(({ seq }) => seq);
        if (sampling.length) passes.push(this.#sample(rec, out.logits!, sampling));
      }
    } catch (err) {
      for (const pass of passes) {
        for (const read of [pass.ids, pass.logprobs, pass.tops]) read?.catch(() => {});
      }
      for (const { scores } of scored) scores.catch(() => {});
      rec.discard();
      throw err;
    }
    await rec.submit();

    for (const { seq, step } of steps) {
      seq.past += step.ids.length;
      seq.imageRows += step.images?.rows ?? 0;
      this.#publish(seq);
    }
    for (const seq of decoders) seq.past += seq.decodeRows;
    for (const { seq, past, scores } of scored) this.#scorePrompt(seq, past, await scores);
    for (const pass of passes) await this.#deliver(pass);
    if (steps.length === 0 && decoders.length > 0) this.#timeSteps(performance.now() - started, 1);
  }

  /**
   * Advances the vision pass of a prefilling sequence whose images are still needed: all of it at once when no
   * stream is decoding, else VISION_STAGES_PER_STEP stages (encoder layers) per step, so that a large image
   * (2,496 patches held every stream for 17 s on lavapipe) costs each step a little instead. All the request's
   * images are encoded, even those the prefix cache covered: encoding them together is what makes the
   * embeddings identical to an uncached run's.
   */
  async #encode(seq: Sequence, streaming: boolean): Promise<void> {
    try {
      const pass = seq.vision ??= this.#model.visionPass(seq.request.images, seq.lora);
      const rec = this.#model.ctx.record("vision");
      try {
        pass.record(rec, streaming ? VISION_STAGES_PER_STEP : pass.remaining);
      } catch (err) {
        rec.discard();
        throw err;
      }
      await rec.submit();
      if (pass.done) {
        seq.embeddings = pass.take();
        pass.release();
        seq.vision = undefined;
      }
    } catch (err) {
      this.#finish(seq, err); // this request's images fail it alone
    }
  }

  /**
   * The tokens each of `seqs` with an output format may sample next (without the banned ones); a sequence whose
   * matcher fails ends with the error (its own request alone).
   */
  async #constrain(seqs: Sequence[]): Promise<Set<Sequence>> {
    const pending: Promise<void>[] = [];
    for (const seq of seqs) {
      if (!seq.constrained || seq.cancelled || !this.#running.includes(seq)) continue;
      if (seq.maskFor === seq.generated) continue;
      seq.maskPending ??= this.#mask(seq);
      // A matcher still being made will not come within the wait (unless the alternative's mask is asked).
      if (!seq.matcherPending || seq.alternate) pending.push(seq.maskPending);
    }
    // Masks come in well under a millisecond, unless the grammar thread is compiling: then the step goes on
    // without the sequences still waiting, rather than stall every stream for the compile.
    if (pending.length) await within(Promise.all(pending), MASK_WAIT_MS);
    const unready = new Set<Sequence>();
    for (const seq of seqs) {
      if (seq.maskError !== undefined) this.#finish(seq, seq.maskError);
      else if (seq.constrained && this.#running.includes(seq) && seq.maskFor !== seq.generated) {
        unready.add(seq);
      }
    }
    return unready;
  }

  /** Asks for `seq`'s next mask; a failure is kept for the step to end the sequence with. */
  async #mask(seq: Sequence): Promise<void> {
    const generated = seq.generated;
    try {
      let allowed: Uint32Array;
      if (seq.alternate) {
        // Not waiting for the triggered format's matcher: the first token needs only the alternative's mask.
        if (!seq.alternative) throw new Error("a sequence with an alternative output format has no matcher");
        allowed = await seq.alternative.allowed();
        if (seq.triggered === undefined) {
          const trigger = seq.request.trigger!;
          allowed = allowed.slice();
          allowed[trigger >> 5] |= 1 << (trigger & 31);
        }
      } else {
        await seq.matcher;
        if (!seq.constrained) return; // a triggered format that could not be compiled
        if (!seq.constraint) throw new Error("a sequence with an output format has no matcher");
        allowed = await seq.constraint.allowed();
      }
      if (seq.unbanned) allowed = allowed.map((word, i) => word & seq.unbanned![i]);
      if (allowed.every((word) => word === 0)) {
        throw new InvalidRequestError(
          "the output format allows no next token (no token writes what it needs)",
        );
      }
      if (seq.generated === generated) {
        seq.allowed = allowed;
        seq.maskFor = generated;
      }
    } catch (err) {
      seq.maskError = err;
    } finally {
      seq.maskPending = undefined;
    }
  }

  /** The prompt log-probabilities of a prefill chunk (logprobRows' output, rows from position `past`). */
  #scorePrompt(seq: Sequence, past: number, bytes: Uint8Array<ArrayBuffer>): void {
    const { ids, promptLogprobs } = seq.request;
    const words = new Uint32Array(bytes.buffer), width = 1 + 2 * promptLogprobs!;
    for (let row = 0; width * row < words.length && past + row + 1 < ids.length; row++) {
      const { logprob, top } = scoresOf(words.subarray(width * row, width * (row + 1)), promptLogprobs!);
      seq.promptScores![past + row] = promptLogprobs! > 0 ? { logprob, top } : { logprob };
    }
  }

  #sample(rec: Recorder, logits: Tensor, seqs: Sequence[]): Pass {
    const ids = rec.scratch("u32", [seqs.length]), logprobs = rec.scratch("f32", [seqs.length]);
    sample(rec, { logits, ids, logprobs, params: seqs.map((s) => s.samplingParams()) });
    const top = topOf(seqs);
    return {
      seqs,
      ids: rec.read(ids),
      logprobs: rec.read(logprobs),
      tops: top > 0 ? rec.read(logprobRows(rec, logits, ids, { top })) : undefined,
      top,
    };
  }

  /**
   * How many decode steps the decoders can run back to back (see LocalEngineOptions.decodeSteps), `ahead` steps
   * after those already in flight, with the KV blocks for all of them reserved; 1 when any of them needs its
   * tokens on the host after each step.
   */
  #runLength(decoders: readonly Sequence[], ahead = 0): number {
    let run = this.#decodeSteps;
    for (const seq of decoders) {
      if (seq.stepwise || seq.replaying) return 1;
      run = Math.min(
        run,
        seq.request.maxTokens - seq.generated - ahead,
        this.contextLength - seq.tokens.length - ahead,
      );
    }
    if (this.#stepMs === undefined) return 1;
    run = Math.min(run, Math.floor(this.#decodeRunMs / this.#stepMs));
    if (run <= 1) return 1;
    // All or nothing: blocks taken for a run that cannot happen would only crowd out other sequences.
    const { pool } = this.#model;
    const end = (seq: Sequence) => seq.past + ahead + run;
    const needed = decoders.reduce(
      (n, seq) => n + Math.max(0, pool.blocksFor(end(seq)) - seq.blocks.length),
      0,
    );
    if (needed > pool.freeBlocks) return 1;
    for (const seq of decoders) pool.reserve(seq.blocks, end(seq));
    return run;
  }

  #timeSteps(ms: number, steps: number): void {
    this.#stepMs = this.#stepMs === undefined ? ms / steps : (this.#stepMs + ms / steps) / 2;
  }

  /**
   * Decode runs of `decoders`, the first `run` steps long. While nothing else waits, the next run is submitted
   * before this one's tokens are read back, fed on the GPU by this run's last ids: a readback blocks until the
   * GPU is idle and then sleeps 10 ms (Deno's mapAsync), and the next run's steps are recorded and run during
   * that sleep instead of after it. A sequence that finishes in a run wastes its steps of the next.
   */
  async #decodeRuns(decoders: Sequence[], run: number): Promise<void> {
    let current: DecodeRun | undefined = await this.#launchRun(decoders, run, 0);
    let mark = performance.now();
    while (current) {
      let next: DecodeRun | undefined;
      try {
        // One turn of the event loop first: Deno polls the readback there, blocking only until `current` is done
        // (it waits for all submitted work), and the next run is then recorded during the readback's 10 ms sleep.
        await nextTurn();
        next = await this.#chain(current);
        await this.#acceptRun(current);
      } catch (err) {
        current.reads.catch(() => {});
        if (next) {
          next.reads.catch(() => {});
          this.#releaseRun(next);
        }
        throw err;
      } finally {
        this.#releaseRun(current);
      }
      this.#timeSteps(performance.now() - mark, current.steps);
      mark = performance.now();
      current = next;
    }
  }

  /** The run that follows `current` without waiting for its tokens, when nothing else needs the next step. */
  async #chain(current: DecodeRun): Promise<DecodeRun | undefined> {
    const seqs = current.seqs.filter((s) => this.#running.includes(s));
    // A sequence whose tokens past the trigger were dropped is stepwise now (#runLength says so too): it must not
    // go on from `current`'s last ids.
    // Penalties count the draws of the run they are in, not those of the run before, still unread.
    const idle = !this.#closed && this.#waiting.length === 0 && seqs.length === this.#running.length &&
      seqs.every((s) => !s.cancelled && !s.penalised && s.epoch === current.epochs[current.seqs.indexOf(s)]);
    if (!idle) return undefined;
    const run = this.#runLength(seqs, current.steps);
    return run > 1 ? await this.#launchRun(seqs, run, current.steps, current) : undefined;
  }

  /**
   * Records and submits `run` decode steps of `seqs`, `ahead` steps past their accepted tokens, each fed the ids
   * the previous step sampled (the first from `after`'s last step, or from the host), with one readback.
   */
  async #launchRun(seqs: Sequence[], run: number, ahead: number, after?: DecodeRun): Promise<DecodeRun> {
    const model = this.#model, { ctx } = model;
    const ids = ctx.tensor("u32", [run, seqs.length]), logprobs = ctx.tensor("f32", [run, seqs.length]);
    const top = topOf(seqs), width = 1 + 2 * top;
    const tops = top > 0 ? ctx.tensor("u32", [run, seqs.length * width]) : undefined;
    const launched: DecodeRun = {
      seqs,
      epochs: seqs.map((s) => s.epoch),
      steps: run,
      ids,
      logprobs,
      top,
      tops,
      reads: Promise.resolve([]),
    };
    const firstIds = (s: Sequence): SequenceStep["ids"] =>
      after
        ? after.ids.sliceRows(after.steps - 1, 1).sliceCols(after.seqs.indexOf(s), 1)
        : [s.tokens.at(-1)!];
    try {
      for (let k = 0; k < run; k++) {
        const rec = ctx.record("decode");
        try {
          for (let i = 0; i < seqs.length; i += MATVEC_MAX_ROWS) {
            const group = seqs.slice(i, i + MATVEC_MAX_ROWS);
            const out = model.step(
              rec,
              group.map((s, j) => ({
                ids: k === 0 ? firstIds(s) : ids.sliceRows(k - 1, 1).sliceCols(i + j, 1),
                past: s.past + ahead + k,
                blocks: s.blocks,
                lora: s.lora,
                logits: "last" as const,
              })),
            );
            sample(rec, {
              logits: out.logits!,
              // The run's draws so far, above this step's row: penalties count them.
              ids: ids.sliceRows(0, k + 1).sliceCols(i, group.length),
              logprobs: logprobs.sliceRows(k, 1).sliceCols(i, group.length),
              params: group.map((s) => s.samplingParams(ahead + k)),
            });
            if (tops) {
              logprobRows(rec, out.logits!, ids.sliceRows(k, 1).sliceCols(i, group.length), {
                top,
                out: tops.sliceRows(k, 1).sliceCols(i * width, group.length * width),
              });
            }
          }
          if (k === run - 1) {
            launched.reads = Promise.all([ids, logprobs, ...tops ? [tops] : []].map((t) => rec.read(t)));
            // Awaited only after the next run is launched; a failed readback must not go unhandled meanwhile.
            launched.reads.catch(() => {});
          }
        } catch (err) {
          rec.discard();
          throw err;
        }
        await rec.submit();
      }
    } catch (err) {
      launched.reads.catch(() => {});
      this.#releaseRun(launched);
      throw err;
    }
    return launched;
  }

  /** Streams a run's tokens, step by step, to the sequences still running. */
  async #acceptRun(run: DecodeRun): Promise<void> {
    const [idWords, logprobWords, topWords] = await run.reads;
    const all = new Uint32Array(idWords.buffer), allLogprobs = new Float32Array(logprobWords.buffer);
    const allTops = topWords && new Uint32Array(topWords.buffer);
    const n = run.seqs.length, stride = n * (1 + 2 * run.top);
    for (let k = 0; k < run.steps; k++) {
      const live = run.seqs.filter((s, i) =>
        !s.cancelled && this.#running.includes(s) && s.epoch === run.epochs[i]
      );
      for (const seq of live) seq.past += 1;
      this.#accept(
        live,
        all.subarray(k * n, (k + 1) * n),
        allLogprobs.subarray(k * n, (k + 1) * n),
        run.seqs,
        allTops && { words: allTops.subarray(k * stride, (k + 1) * stride), top: run.top },
      );
    }
  }

  #releaseRun(run: DecodeRun): void {
    this.#model.ctx.release(run.ids);
    this.#model.ctx.release(run.logprobs);
    if (run.tops) this.#model.ctx.release(run.tops);
  }

  async #deliver(pass: Pass): Promise<void> {
    const ids = new Uint32Array((await pass.ids).buffer);
    const logprobs = new Float32Array((await pass.logprobs).buffer);
    const tops = pass.tops && { words: new Uint32Array((await pass.tops).buffer), top: pass.top };
    this.#accept(pass.seqs, ids, logprobs, pass.seqs, tops);
  }

  /**
   * Takes sampled tokens: ids[i] and logprobs[i] belong to order[i]; only the sequences in `seqs` still take
   * them. Streams each token and finishes sequences that hit a stop token, max_tokens or the context.
   */
  #accept(
    seqs: readonly Sequence[],
    ids: Uint32Array,
    logprobs: Float32Array,
    order: readonly Sequence[],
    tops?: { words: Uint32Array; top: number },
  ): void {
    for (const seq of seqs) {
      const i = order.indexOf(seq);
      if (seq.cancelled || !this.#running.includes(seq)) continue;
      const id = ids[i];
      if (id >= this.vocabSize || Number.isNaN(logprobs[i])) {
        // No token found (greedy over logits all NaN), or one drawn from logits holding NaN or +Inf.
        this.#finish(
          seq,
          new Error(
            "the model computed logits that are not numbers (NaN or Inf): its weights may hold such values",
          ),
        );
        continue;
      }
      const { request } = seq;
      let follows: TokenConstraint | undefined;
      if (request.trigger !== undefined && seq.triggered === undefined) {
        if (id === request.trigger) {
          // What follows is the format's, wherever the trigger comes: tokens a decode run sampled past it, free,
          // are dropped (their keys and values are overwritten as the sequence goes on).
          seq.triggered = true;
          seq.releaseAlternative();
          if (!seq.formatDropped) seq.epoch++;
        } else if (request.orElse) {
          // Only the first token may be the trigger: anything else puts the answer, itself included, under the
          // alternative.
          seq.triggered = false;
          seq.releaseConstraint();
          follows = seq.alternative;
        }
      } else follows = seq.alternate ? seq.alternative : seq.constraint;
      if (follows && !accepts(follows, id)) {
        this.#finish(seq, new Error(`token ${id} is outside the output format`));
        continue;
      }
      seq.tokens.push(id);
      seq.generated++;
      if (seq.counts.size || request.sampling.presencePenalty || request.sampling.frequencyPenalty) {
        seq.counts.set(id, (seq.counts.get(id) ?? 0) + 1);
      }
      // The prompt's log-probabilities and cached tokens come with the first token, even one that stops at once.
      const first = seq.generated === 1;
      const prompt = first ? seq.promptScores : undefined;
      const cached = first && seq.cachedTokens ? seq.cachedTokens : undefined;
      const event: TokenEvent = { id, ...(prompt ? { prompt } : {}), ...(cached ? { cached } : {}) };
      if (request.stopIds.includes(id)) {
        if (prompt || cached) seq.channel.push({ ...event, stop: true });
        this.#finish(seq, "stop");
        continue;
      }
      if (request.topLogprobs !== undefined) {
        event.logprob = logprobs[i];
        if (request.topLogprobs > 0 && tops) {
          // Both from logprobRows' normaliser, so that the token's log-probability equals its entry among the top.
          const width = 1 + 2 * tops.top;
          const { logprob, top } = scoresOf(
            tops.words.subarray(i * width, (i + 1) * width),
            request.topLogprobs,
          );
          event.logprob = logprob;
          event.top = top;
        }
      }
      seq.channel.push(event);
      if (seq.generated >= request.maxTokens || seq.tokens.length >= this.contextLength) {
        this.#finish(seq, "length");
      }
    }
  }

  async close(graceMs = 0): Promise<void> {
    this.#closed = true;
    // Not an AbortError: no client gave up; the server did (HTTP 503).
    const reason = new EngineClosedError("the server shut down before the request finished");
    // What has not begun is refused at once, so that its clients retry elsewhere, rather than started in the
    // grace period and cut off at its end; the grace is for answers under way (a preempted one among them).
    for (const seq of [...this.#compiling, ...this.#waiting]) {
      if (seq.generated === 0) this.#cancel(seq, reason);
    }
    const deadline = Date.now() + graceMs;
    while (this.#loop && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const seq of [...this.#compiling, ...this.#waiting, ...this.#running]) this.#cancel(seq, reason);
    await this.#loop;
    this.#model.release();
  }
}

/** Frees a matcher; a grammar engine that fails here must not take the step (or the stream's end) with it. */
function release(constraint: TokenConstraint | undefined): void {
  try {
    constraint?.release();
  } catch (err) {
    log.warn("releasing an output format's matcher failed", { error: String(err) });
  }
}

/** Whether the format takes the token; a grammar engine that throws takes nothing (its sequence alone ends). */
function accepts(constraint: TokenConstraint, id: number): boolean {
  try {
    return constraint.accept(id);
  } catch {
    return false;
  }
}

/** One row of logprobRows' output: the target's log-probability and the first `n` alternatives. */
function scoresOf(row: Uint32Array, n: number): { logprob: number; top: { id: number; logprob: number }[] } {
  const floats = new Float32Array(row.buffer, row.byteOffset, row.length);
  return {
    logprob: floats[0],
    top: Array.from({ length: n }, (_, k) => ({ id: row[1 + 2 * k], logprob: floats[2 + 2 * k] })),
  };
}
