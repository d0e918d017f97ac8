/**
 * The Mistral-Nemo decoder over the paged KV cache (spec section 3), top to bottom:
 *
 *   embed (image embeddings at the [IMG] rows) -> 40 x [attention_norm, q|k|v, RoPE + cache write, causal
 *   attention over the cache, wo; ffn_norm, w1|w3, SwiGLU, w2] -> norm -> output head
 *
 * One call runs one engine step: any mix of prefill chunks and single decode tokens of several sequences,
 * stacked as the rows of one batch. The residual stream stays in f32; the rest in the activation type.
 */
import { attention, pagedAttentionPlan, ropeKvWrite } from "../gpu/ops/attention.ts";
import { embed, scatterRows } from "../gpu/ops/embed.ts";
import { linear, linearStacked, linearSwiglu, type LoraUpdate, MATVEC_MAX_ROWS } from "../gpu/ops/linear.ts";
import { rmsNorm, rmsNormShrink } from "../gpu/ops/norm.ts";
import type { FloatType } from "../gpu/dtype.ts";
import type { Recorder } from "../gpu/recorder.ts";
import { Tensor } from "../gpu/tensor.ts";
import type { ModelConfig } from "./config.ts";
import type { KvPool } from "./kv_pool.ts";
import { type LoraBank, type LoraModule, LoraRows, productKey, type Shrink } from "./lora_modules.ts";
import type { WeightLookup } from "./vision.ts";

export interface SequenceStep {
  /**
   * Token ids fed this step (a prefill chunk, or the one token a decode step adds): on the host, or on the GPU as
   * a u32 tensor, e.g. the id the previous step sampled, so that decode steps can run back to back without
   * reading tokens back in between. All steps of a call take one kind.
   */
  ids: readonly number[] | Tensor;
  /** Tokens of this sequence already in the cache: the position of ids[0]. */
  past: number;
  /** The sequence's block table, covering past + ids.length positions. */
  blocks: readonly number[];
  /**
   * Embeddings for the [IMG] tokens among `ids` (host ids), in order ([count, dim] rows of encodeImages' output).
   * Without them, [IMG] ids (a generated one, say) are embedded as text.
   */
  images?: Tensor;
  /**
   * Logits wanted: for the last position (to sample the next token), every position, every position of a prompt
   * whose next token is then sampled ("scored": the last row computed as "last" computes it, so that scoring a
   * prompt changes no sampled token), or none.
   */
  logits: "last" | "all" | "scored" | "none";
  /** The LoRA adapter the sequence's request named (lora_modules.ts), added to every product of its rows. */
  lora?: LoraModule;
}

export interface StepOutput {
  /** f32 [rows, vocab], or undefined when no step wanted logits. */
  logits?: Tensor;
  /** For each step, the first row of its logits and how many rows it has. */
  rows: { start: number; count: number }[];
}

/**
 * One u32 vector over ids tensors that follow each other in one buffer (one embed dispatch), else undefined.
 * (joinRows joins matrices by rows; these are [1, n] column slices of a row of sampled ids.)
 */
function joinIds(parts: readonly Tensor[]): Tensor | undefined {
  let end = parts[0].offset;
  for (const t of parts) {
    if (t.buffer !== parts[0].buffer || t.offset !== end || !t.contiguous) return undefined;
    end += t.byteLength;
  }
  return new Tensor(parts[0].buffer, "u32", [(end - parts[0].offset) / 4], parts[0].offset);
}

/** The step's token embeddings, with image embeddings at the [IMG] rows of steps that carry images. */
function embedTokens(
  rec: Recorder,
  config: ModelConfig,
  table: Tensor,
  steps: readonly SequenceStep[],
  x: Tensor,
  starts: readonly number[],
): void {
  const onGpu = steps.map((s) => "buffer" in s.ids);
  if (onGpu.some((g) => g !== onGpu[0])) {
    throw new RangeError("a step's ids must all be on the host or on the GPU");
  }
  if (onGpu[0]) {
    const parts = steps.map((s) => s.ids as Tensor);
    if (steps.some((s) => s.images)) {
      throw new RangeError("image embeddings need their [IMG] ids on the host");
    }
    const joined = joinIds(parts);
    if (joined) return embed(rec, { y: x, table, ids: joined });
    parts.forEach((ids, i) => embed(rec, { y: x.sliceRows(starts[i], ids.size), table, ids }));
    return;
  }
  embed(rec, { y: x, table, ids: steps.flatMap((s) => s.ids as readonly number[]) });
  steps.forEach((s, i) => {
    if (!s.images) return;
    // The first [IMG] ids are the prompt's; any after them were generated and stay text.
    const rows = (s.ids as readonly number[]).flatMap((id, j) =>
      id === config.imageTokens.img ? [starts[i] + j] : []
    ).slice(0, s.images.rows);
    if (s.images.rows !== rows.length) {
      throw new RangeError(`${s.images.rows} image embeddings for a step with ${rows.length} [IMG] tokens`);
    }
    scatterRows(rec, { y: x, x: s.images, rows });
  });
}

/** A decoder layer's tensor names, made once: a step looks up all of them, and a fresh string is hashed anew. */
const layerNames = (() => {
  const made: {
    attentionNorm: string;
    qkv: string[];
    qkvKey: string;
    wo: string;
    ffnNorm: string;
    gateUp: string[];
    gateUpKey: string;
    w2: string;
  }[] = [];
  return (l: number) => {
    const p = `layers.${l}.`;
    const qkv = ["wq", "wk", "wv"].map((n) => `${p}attention.${n}.weight`);
    const gateUp = ["w1", "w3"].map((n) => `${p}feed_forward.${n}.weight`);
    return made[l] ??= {
      attentionNorm: `${p}attention_norm.weight`,
      qkv,
      qkvKey: productKey(qkv),
      wo: `${p}attention.wo.weight`,
      ffnNorm: `${p}ffn_norm.weight`,
      gateUp,
      gateUpKey: productKey(gateUp),
      w2: `${p}feed_forward.w2.weight`,
    };
  };
})();

export function decoderStep(
  rec: Recorder,
  config: ModelConfig,
  w: WeightLookup,
  pool: KvPool,
  steps: readonly SequenceStep[],
  act: FloatType,
  bank?: LoraBank,
): StepOutput {
  const d = config.decoder;
  const positions: number[] = [];
  const seqs = steps.map((s) => {
    const qStart = positions.length, qLen = "buffer" in s.ids ? s.ids.size : s.ids.length;
    for (let i = 0; i < qLen; i++) positions.push(s.past + i);
    return { qStart, qLen, ctxLen: s.past + qLen, blocks: s.blocks };
  });
  const T = positions.length;

  const x = rec.scratch("f32", [T, d.dim]);
  embedTokens(rec, config, w("tok_embeddings.weight"), steps, x, seqs.map((s) => s.qStart));

  const plan = pagedAttentionPlan(rec, {
    seqs,
    headsQ: d.nHeads,
    headsKv: d.nKvHeads,
    headDim: d.headDim,
    blockSize: pool.blockSize,
  });
  const pos = rec.upload("u32", [T], Uint32Array.from(positions));
  const h = rec.scratch(act, [T, d.dim]);
  // q|k|v comes from one product (the loader stores their weights as one matrix; q is a column view), and so does
  // SwiGLU's input (gate|up, stored only where the activation cannot be applied in the product: prefill chunks).
  const qDim = d.nHeads * d.headDim, kvDim = d.nKvHeads * d.headDim;
  const qkv = rec.scratch(act, [T, qDim + 2 * kvDim]), o = rec.scratch(act, [T, qDim]);
  const q = qkv.sliceCols(0, qDim);
  const ffn = rec.scratch(act, [T, d.hiddenDim]);
  let gateUp: Tensor | undefined;
  const gateUpScratch = () => gateUp ??= rec.scratch(act, [T, 2 * d.hiddenDim]);
  const lora = LoraRows.of(
    bank,
    steps.map((s, i) => ({ module: s.lora, start: seqs[i].qStart, count: seqs[i].qLen })),
  );

  // A product with the step's LoRA updates of its weights (lora_modules.ts), or without.
  const product = (key: string, x: Tensor, record: (lora?: LoraUpdate) => void, shrunk?: Shrink) =>
    lora ? lora.product(rec, key, x, record, shrunk) : record();
  // h = RMSNorm(x), with the shrink of the product h goes into where a decode step's rows have its updates.
  const norm = (weight: Tensor, key: string): Shrink | undefined => {
    const shrink = lora?.shrinkOf(rec, key, act);
    if (shrink) rmsNormShrink(rec, { y: h, x, weight, eps: d.normEps, ...shrink });
    else rmsNorm(rec, { y: h, x, weight, eps: d.normEps });
    return shrink;
  };

  for (let l = 0; l < d.nLayers; l++) {
    const n = layerNames(l);
    const qkvShrink = norm(w(n.attentionNorm), n.qkvKey);
    product(n.qkvKey, h, (u) => linearStacked(rec, { y: qkv, x: h, w: n.qkv.map(w), lora: u }), qkvShrink);
    ropeKvWrite(rec, plan, { qkv, cache: pool.layers[l], theta: d.ropeTheta, positions: pos });
    attention(rec, plan, { q, out: o, cache: pool.layers[l] });
    product(n.wo, o, (u) => linear(rec, { y: x, x: o, w: w(n.wo), accumulate: true, lora: u }));

    const gateUpShrink = norm(w(n.ffnNorm), n.gateUpKey);
    const gateUpWeights = [w(n.gateUp[0]), w(n.gateUp[1])] as const;
    product(
      n.gateUpKey,
      h,
      (u) => linearSwiglu(rec, { y: ffn, x: h, w: gateUpWeights, gateUp: gateUpScratch, lora: u }),
      gateUpShrink,
    );
    product(n.w2, ffn, (u) => linear(rec, { y: x, x: ffn, w: w(n.w2), accumulate: true, lora: u }));
  }

  // Only the rows whose logits are wanted go through the final norm and the (large) output head.
  const rows: StepOutput["rows"] = [];
  const wanted: number[] = [];
  steps.forEach((s, i) => {
    const { qStart, qLen } = seqs[i];
    const every = s.logits === "all" || s.logits === "scored";
    const first = every ? qStart : qStart + qLen - 1;
    const count = s.logits === "none" || qLen === 0 ? 0 : every ? qLen : 1;
    rows.push({ start: wanted.length, count });
    for (let r = 0; r < count; r++) wanted.push(first + r);
  });
  if (wanted.length === 0) return { rows };
  const last = rec.scratch("f32", [wanted.length, d.dim]);
  embed(rec, { y: last, table: x, ids: wanted });
  const normed = rec.scratch(act, [wanted.length, d.dim]);
  rmsNorm(rec, { y: normed, x: last, weight: w("norm.weight"), eps: d.normEps });
  const logits = rec.scratch("f32", [wanted.length, d.vocabSize]);
  const headLora = LoraRows.of(bank, steps.map((s, i) => ({ module: s.lora, ...rows[i] })));
  const head = (start: number, count: number) => {
    const y = logits.sliceRows(start, count), x = normed.sliceRows(start, count);
    const record = (lora?: LoraUpdate) => linear(rec, { y, x, w: w("output.weight"), lora });
    const part = headLora?.slice(start, count);
    if (part) part.product(rec, "output.weight", x, record);
    else record();
  };
  // A scored prompt (echo) samples its first token from its last row: that row goes through the head alone, by
  // the kernel it takes when the prompt is not scored, so scoring changes no sampled token or log-probability
  // (the tiled kernel rounds otherwise).
  const split = steps.length === 1 && steps[0].logits === "scored" && wanted.length > MATVEC_MAX_ROWS;
  if (split) {
    head(0, wanted.length - 1);
    head(wanted.length - 1, 1);
  } else head(0, wanted.length);
  return { logits, rows };
}
