/**
 * Token selection on the GPU (kernels/sampling.wgsl): penalties and biases, greedy or temperature sampling with top-k,
 * top-p and min-p, and a seeded draw, one id (and its log-probability) per sequence. And the CPU reference.
 */
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";

export interface SamplingParams {
  /** 0 picks the most likely token (greedy). */
  temperature: number;
  /** Keep the k most likely tokens (ties at the k-th kept); 0 or absent: no limit. */
  topK?: number;
  /** Keep the most likely tokens whose probability reaches p (after top-k); 1 or absent: no limit. */
  topP?: number;
  /** Keep tokens with probability >= minP times the largest; 0 or absent: no limit. */
  minP?: number;
  /** Divides positive (multiplies negative) logits of every listed token; 1 or absent: none. */
  repetitionPenalty?: number;
  /** Subtracted from the logits of listed tokens with a count above 0. */
  presencePenalty?: number;
  /** Subtracted from the logits of listed tokens, times their count. */
  frequencyPenalty?: number;
  /** The random stream: the draw is a function of (seed, counter) alone. */
  seed?: number;
  /** Which draw of the stream, e.g. the number of tokens generated so far. */
  counter?: number;
  /** The tokens penalties apply to (unique ids) and their counts (0 for tokens only repetition applies to). */
  penalties?: { ids: ArrayLike<number>; counts: ArrayLike<number> };
  /** Added to the logits of these tokens (unique ids) after the penalties: OpenAI's `logit_bias`. */
  bias?: { ids: ArrayLike<number>; values: ArrayLike<number> };
  /**
   * The only tokens that may be chosen (an output format's): bit (id % 32) of word (id >> 5), ceil(vocab / 32)
   * words, at least one bit set. The log-probability stays the model's own.
   */
  mask?: Uint32Array;
}

const INFO_WORDS = 14;
const NO_MASK = 0xffffffff;
/** The kernel's value for a token the mask forbids, and the least an allowed token keeps. */
const FORBIDDEN = Math.fround(-3.4e38);
const ALLOWED_FLOOR = Math.fround(-3.0e38);

function u32(value: number | undefined, what: string): number {
  const v = value ?? 0;
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new RangeError(`sampling: ${what} ${v} is not a u32`);
  }
  return v;
}

/** Unique token ids below `vocab`, one per value. */
function tokenList(ids: ArrayLike<number>, values: ArrayLike<number>, vocab: number, what: string): void {
  if (ids.length !== values.length) throw new RangeError(`sampling: ${what} ids and values differ`);
  const seen = new Set<number>();
  for (let i = 0; i < ids.length; i++) {
    if (u32(ids[i], `${what} id`) >= vocab || seen.has(ids[i])) {
      throw new RangeError(`sampling: ${what} id ${ids[i]} is out of range or repeated`);
    }
    seen.add(ids[i]);
  }
}

function check(p: SamplingParams, vocab: number): void {
  const inRange = (v: number | undefined, lo: number, hi: number) => v === undefined || (v >= lo && v <= hi);
  if (!(p.temperature >= 0 && Number.isFinite(p.temperature))) {
    throw new RangeError(`sampling: temperature ${p.temperature} must be a finite number >= 0`);
  }
  if (!inRange(p.topP, Number.MIN_VALUE, 1)) {
    throw new RangeError(`sampling: top_p ${p.topP} is not in (0, 1]`);
  }
  if (!inRange(p.minP, 0, 1)) throw new RangeError(`sampling: min_p ${p.minP} is not in [0, 1]`);
  if (!inRange(p.repetitionPenalty, Number.MIN_VALUE, Infinity)) {
    throw new RangeError(`sampling: repetition penalty ${p.repetitionPenalty} must be > 0`);
  }
  u32(p.topK, "top_k");
  if (p.penalties) {
    tokenList(p.penalties.ids, p.penalties.counts, vocab, "penalty");
    for (let i = 0; i < p.penalties.counts.length; i++) u32(p.penalties.counts[i], "penalty count");
  }
  if (p.bias) {
    tokenList(p.bias.ids, p.bias.values, vocab, "bias");
    const bad = Array.from(p.bias.values).find((v) => !Number.isFinite(v));
    if (bad !== undefined) throw new RangeError(`sampling: bias ${bad} is not finite`);
  }
  // Some id below the vocabulary's size: bits past it in the last word are padding.
  const whole = vocab >> 5, rest = vocab & 31;
  const allowsOne = (mask: Uint32Array) =>
    mask.subarray(0, whole).some((word) => word !== 0) ||
    (rest > 0 && (mask[whole] & ((1 << rest) - 1)) !== 0);
  if (p.mask && (p.mask.length !== Math.ceil(vocab / 32) || !allowsOne(p.mask))) {
    throw new RangeError(`sampling: a mask needs ${Math.ceil(vocab / 32)} words and an allowed token`);
  }
}

/**
 * ids[s] = the token chosen for sequence s from logits[s, :] (f32 [S, vocab]); logprobs[s] = its log-probability
 * under the raw logits. Reading back `ids` (S words) is all a decode step needs. `ids` may be u32 [rows, S]: the
 * last row takes the draws, and the rows above hold the sequences' earlier draws in a decode run (not yet read
 * back, so not in `penalties`), which the penalties count as well.
 */
export function sample(
  rec: Recorder,
  { logits, ids, logprobs, params }: {
    logits: Tensor;
    ids: Tensor;
    logprobs?: Tensor;
    params: SamplingParams[];
  },
): void {
  const seqs = logits.rows, vocab = logits.rowLength;
  if (logits.dtype !== "f32") throw new TypeError(`sample: logits must be f32, got ${logits}`);
  if (params.length !== seqs) {
    throw new RangeError(`sample: ${seqs} rows of logits, ${params.length} settings`);
  }
  if (ids.dtype !== "u32" || ids.rowLength !== seqs) {
    throw new TypeError(`sample: ids must be u32 [${seqs}] or [rows, ${seqs}], got ${ids}`);
  }
  if (logprobs && (logprobs.dtype !== "f32" || logprobs.size !== seqs)) {
    throw new TypeError(`sample: logprobs must be f32 [${seqs}]`);
  }
  params.forEach((p) => check(p, vocab));
  const penaltyWords = params.reduce(
    (n, p) => n + 2 * (p.penalties?.ids.length ?? 0) + 2 * (p.bias?.ids.length ?? 0) + (p.mask?.length ?? 0),
    0,
  );
  const words = new Uint32Array(Math.max(1, seqs * INFO_WORDS + penaltyWords));
  const floats = new Float32Array(words.buffer);
  let at = seqs * INFO_WORDS;
  params.forEach((p, s) => {
    const o = s * INFO_WORDS;
    floats[o] = p.temperature;
    words[o + 1] = u32(p.topK, "top_k");
    floats[o + 2] = p.topP ?? 1;
    floats[o + 3] = p.minP ?? 0;
    floats[o + 4] = p.repetitionPenalty ?? 1;
    floats[o + 5] = p.presencePenalty ?? 0;
    floats[o + 6] = p.frequencyPenalty ?? 0;
    words[o + 7] = u32(p.seed, "seed");
    words[o + 8] = u32(p.counter, "counter");
    // A list of (id, value) pairs: its offset and length at word `slot` of the settings.
    const pairs = (
      slot: number,
      ids: ArrayLike<number> = [],
      values: ArrayLike<number> = [],
      into: Uint32Array | Float32Array = words,
    ) => {
      words[o + slot] = at;
      words[o + slot + 1] = ids.length;
      for (let i = 0; i < ids.length; i++) {
        words[at++] = ids[i];
        into[at++] = values[i];
      }
    };
    pairs(9, p.penalties?.ids, p.penalties?.counts);
    words[o + 11] = p.mask ? at : NO_MASK;
    if (p.mask) {
      words.set(p.mask, at);
      at += p.mask.length;
    }
    pairs(12, p.bias?.ids, p.bias?.values, floats);
  });
  const info = rec.upload("u32", [words.length], words);
  const scratch = rec.scratch("f32", [seqs, vocab]);
  const lp = logprobs ?? rec.scratch("f32", [seqs]);
  const kernel = rec.ctx.kernel({
    file: "sampling.wgsl",
    entry: "sample",
    bindings: ["read", "read", "write", "write", "write"],
  });
  const b = [logits, info, scratch, ids, lp].map((t) => rec.bind(t));
  rec.dispatch(
    kernel,
    b,
    new Params().u32(
      seqs,
      vocab,
      b[0].offset,
      logits.rowStride,
      b[2].offset,
      b[1].offset,
      b[3].offset,
      b[4].offset,
      ids.rows - 1,
      ids.rowStride,
    ),
    seqs,
  );
}

/** The most alternatives logprobRows gives per row (kernels/logprob.wgsl's MAX_TOP). */
const MAX_TOP = 20;

/**
 * Scores rows of logits (f32 [rows, vocab]) on the GPU (kernels/logprob.wgsl): per row, the log-probability of
 * `targets[row]` (host ids, or u32 [rows] on the GPU, e.g. the tokens a decode step drew) and the `top` most likely
 * tokens with their own, as u32 [rows, 1 + 2 top] (f32 bits, then id and f32 bits per rank), into `out` when given.
 * A row scored this way reads back 4 + 8 top bytes instead of a row of logits.
 */
export function logprobRows(
  rec: Recorder,
  logits: Tensor,
  targets: readonly number[] | Tensor,
  { top = 1, out }: { top?: number; out?: Tensor } = {},
): Tensor {
  const rows = logits.rows, vocab = logits.rowLength;
  if (logits.dtype !== "f32") throw new TypeError(`logprobRows: logits must be f32, got ${logits}`);
  if (!Number.isInteger(top) || top < 0 || top > Math.min(MAX_TOP, vocab)) {
    throw new RangeError(`logprobRows: top ${top} is not between 0 and ${Math.min(MAX_TOP, vocab)}`);
  }
  let ids: Tensor;
  if (Array.isArray(targets)) {
    if (targets.length !== rows || targets.some((id) => !Number.isInteger(id) || id < 0 || id >= vocab)) {
      throw new RangeError(`logprobRows: ${rows} rows need as many target ids below ${vocab}`);
    }
    ids = rec.upload("u32", [rows], Uint32Array.from(targets));
  } else {
    ids = targets as Tensor;
    if (ids.dtype !== "u32" || ids.size !== rows || !ids.contiguous) {
      throw new TypeError(`logprobRows: targets must be u32 [${rows}], got ${ids}`);
    }
  }
  const width = 1 + 2 * top;
  out ??= rec.scratch("u32", [rows, width]);
  if (out.dtype !== "u32" || out.size !== rows * width || !out.contiguous) {
    throw new TypeError(`logprobRows: out must be u32 [${rows}, ${width}], got ${out}`);
  }
  const kernel = rec.ctx.kernel({
    file: "logprob.wgsl",
    entry: "logprob_f32",
    bindings: ["read", "read", "write"],
  });
  const b = [logits, ids, out].map((t) => rec.bind(t));
  rec.dispatch(
    kernel,
    b,
    new Params().u32(rows, vocab, b[0].offset, logits.rowStride, b[1].offset, b[2].offset, top),
    rows,
  );
  return out;
}

/** CPU reference of one row of logprobRows, in f64. */
export function logprobRowRef(
  logits: Float32Array,
  target: number,
  top = 1,
): { logprob: number; top: { id: number; logprob: number }[] } {
  let max = -Infinity;
  for (const v of logits) max = Math.max(max, v);
  let sum = 0;
  for (const v of logits) sum += Math.exp(v - max);
  const logZ = max + Math.log(sum);
  const order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b).slice(0, top);
  return { logprob: logits[target] - logZ, top: order.map((id) => ({ id, logprob: logits[id] - logZ })) };
}

/** The 32-bit PCG hash the kernel draws with. */
export function pcg(v: number): number {
  const state = (Math.imul(v, 747796405) + 2891336453) >>> 0;
  const word = Math.imul(((state >>> ((state >>> 28) + 4)) ^ state) >>> 0, 277803737) >>> 0;
  return ((word >>> 22) ^ word) >>> 0;
}

/** The uniform number in [0, 1) of draw (seed, counter). */
export function drawUniform(seed: number, counter: number): number {
  return (pcg((seed ^ pcg(counter)) >>> 0) >>> 8) / 2 ** 24;
}

export interface SampleRef {
  id: number;
  logprob: number;
  /** Tokens the filters keep (1) for this row. */
  allowed: Uint8Array;
  /** The kept distribution, normalised. */
  probs: Float64Array;
}

/** CPU reference of one row, in f32 where the kernel's sets depend on it, the rest in f64. */
export function sampleRef(logits: Float32Array, p: SamplingParams): SampleRef {
  const f = Math.fround;
  const V = logits.length;
  const pen = Float32Array.from(logits);
  const ids = p.penalties?.ids ?? [], counts = p.penalties?.counts ?? [];
  const rep = p.repetitionPenalty ?? 1;
  for (let i = 0; i < ids.length; i++) {
    let v = pen[ids[i]];
    v = v > 0 ? f(v / rep) : f(v * rep);
    pen[ids[i]] = f(
      v - f(f((p.presencePenalty ?? 0) * Math.min(counts[i], 1)) + f((p.frequencyPenalty ?? 0) * counts[i])),
    );
  }
  for (let i = 0; i < (p.bias?.ids.length ?? 0); i++) {
    pen[p.bias!.ids[i]] = f(pen[p.bias!.ids[i]] + p.bias!.values[i]);
  }
  const rawMax = logits.reduce((m, v) => Math.max(m, v), -Infinity);
  const logSum = Math.log(logits.reduce((s, v) => s + Math.exp(v - rawMax), 0)) + rawMax;
  const allowed = new Uint8Array(V);
  const probs = new Float64Array(V);
  const forbidden = (i: number) => p.mask !== undefined && !((p.mask[i >>> 5] >>> (i & 31)) & 1);
  let id: number;
  if (p.temperature === 0 || p.topK === 1) {
    id = -1;
    for (let i = 0; i < V; i++) if (!forbidden(i) && (id < 0 || pen[i] > pen[id])) id = i;
    allowed[id] = 1;
    probs[id] = 1;
  } else {
    const invT = f(1 / p.temperature);
    const z = pen.map((v, i) =>
      p.mask === undefined ? f(v * invT) : forbidden(i) ? FORBIDDEN : Math.max(f(v * invT), ALLOWED_FLOOR)
    );
    const zmax = z.reduce((m, v) => Math.max(m, v), -Infinity);
    let zmin = p.minP ? zmax + Math.log(p.minP) : -Infinity;
    if (p.topK && p.topK < V) zmin = Math.max(zmin, Float32Array.from(z).sort().reverse()[p.topK - 1]);
    const e = new Float64Array(V);
    for (let i = 0; i < V; i++) e[i] = z[i] >= zmin ? Math.exp(z[i] - zmax) : 0;
    const total = e.reduce((a, b) => a + b, 0);
    let emin = Number.MIN_VALUE;
    if ((p.topP ?? 1) < 1) {
      const sorted = Float64Array.from(e).sort().reverse();
      let acc = 0;
      for (const v of sorted) {
        acc += v;
        emin = v;
        if (acc >= p.topP! * total) break;
      }
    }
    let mass = 0;
    for (let i = 0; i < V; i++) {
      if (e[i] >= emin) {
        allowed[i] = 1;
        mass += e[i];
      }
    }
    const goal = drawUniform(p.seed ?? 0, p.counter ?? 0) * mass;
    let acc = 0;
    id = -1;
    for (let i = 0; i < V; i++) {
      if (!allowed[i]) continue;
      probs[i] = e[i] / mass;
      acc += e[i];
      if (id < 0 && acc > goal) id = i;
    }
    if (id < 0) id = allowed.lastIndexOf(1);
  }
  return { id, logprob: logits[id] - logSum, allowed, probs };
}
