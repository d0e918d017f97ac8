/**
 * Kernel throughput, printed as a table: matrix-vector products in GB/s of weight bytes read (against a plain
 * buffer copy measured in the same run), matrix-matrix products in GFLOP/s, and attention, sampling and
 * quantization timings. Runs on whatever adapter WebGPU offers (PIXTRAL_GPU_ADAPTER picks one), with only the
 * Deno binary and this repository:
 *
 *   deno run --allow-read --allow-env bench/kernels_bench.ts [--quick]
 *
 * Each measurement records many dispatches into one submit and times submit-to-completion, so launch overhead is
 * amortised as in a real forward step. Weights are rotated over enough copies to exceed the GPU's last-level
 * cache, so matrix-vector numbers are memory bandwidth, not cache bandwidth. On a CPU adapter (lavapipe) sizes
 * and repetitions shrink so the run takes a minute or two.
 */
import { GpuContext } from "../runtime/gpu/context.ts";
import { type DType, rowBytes } from "../runtime/gpu/dtype.ts";
import { attention, kvWrite, pagedAttentionPlan } from "../runtime/gpu/ops/attention.ts";
import { linear, matmul, matvec, type WeightType } from "../runtime/gpu/ops/linear.ts";
import { quantize } from "../runtime/gpu/ops/quantize.ts";
import { sample } from "../runtime/gpu/ops/sampling.ts";
import type { Recorder } from "../runtime/gpu/recorder.ts";
import type { Tensor } from "../runtime/gpu/tensor.ts";

const ctx = await GpuContext.create();
const cpu = ctx.gpu.adapter.info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(ctx.gpu.name);
const quick = cpu || Deno.args.includes("--quick");
/** Distinct weight bytes a matrix-vector measurement cycles through: several times an H200's 60 MB L2. */
const ROTATION_BYTES = quick ? 0 : 512 * 2 ** 20;

interface Row {
  kernel: string;
  shape: string;
  ms: number;
  rate: string;
  note?: string;
}
const rows: Row[] = [];

function fill(ctx: GpuContext, dtype: DType, shape: number[], seed: number): Tensor {
  const t = ctx.tensor(dtype, shape, { pooled: false });
  const chunk = 16 * 2 ** 20;
  for (let at = 0; at < t.byteLength; at += chunk) {
    const n = Math.min(chunk, t.byteLength - at);
    const words = new Uint32Array(Math.ceil(n / 4));
    let s = (seed + at) >>> 0;
    // Random bits, with every 16-bit half kept a finite small f16 (0x3xxx) so float formats hold no NaNs.
    for (let i = 0; i < words.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      words[i] = dtype === "f32" ? 0x3c000000 | (s >>> 9) : (s & 0x0fff0fff) | 0x30003000;
    }
    ctx.write(t, new Uint8Array(words.buffer, 0, n), at);
  }
  return t;
}

/** Median milliseconds of one batch of `batch` calls of `record`, over `reps` submits after a warm-up. */
async function time(
  batch: number,
  reps: number,
  record: (rec: Recorder, i: number) => void,
): Promise<number> {
  const once = async () => {
    const rec = ctx.record("bench");
    for (let i = 0; i < batch; i++) record(rec, i);
    const start = performance.now();
    await rec.submit();
    await ctx.device.queue.onSubmittedWorkDone();
    return performance.now() - start;
  };
  await once();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) times.push(await once());
  return times.sort((a, b) => a - b)[Math.floor(reps / 2)] / batch;
}

const gbs = (bytes: number, ms: number) => bytes / ms / 1e6;

// ---- the peer: a plain buffer copy ----
const copyBytes = (quick ? 64 : 1024) * 2 ** 20;
const src = ctx.tensor("u32", [copyBytes / 4], { pooled: false });
const dst = ctx.tensor("u32", [copyBytes / 4], { pooled: false });
const copyMs = await time(quick ? 2 : 10, quick ? 3 : 7, (rec) => rec.copy(src, dst));
const copyGBs = gbs(2 * copyBytes, copyMs);
rows.push({
  kernel: "buffer copy (peer)",
  shape: `${copyBytes / 2 ** 20} MiB`,
  ms: copyMs,
  rate: `${copyGBs.toFixed(1)} GB/s read+write`,
});
ctx.release(src);
ctx.release(dst);

// ---- matrix-vector: weight bytes per second ----
async function benchMatvec(w: WeightType, n: number, k: number, m = 1, label = "") {
  const bytes = n * rowBytes(w, k);
  const copies = Math.max(1, Math.ceil(ROTATION_BYTES / bytes));
  const weights = Array.from({ length: copies }, (_, i) => fill(ctx, w, [n, k], 1 + i));
  const x = fill(ctx, "f16", [m, k], 99), y = ctx.tensor("f16", [m, n]);
  const ms = await time(
    quick ? 2 : 4 * copies,
    quick ? 3 : 7,
    (rec, i) => matvec(rec, { y, x, w: weights[i % copies] }),
  );
  const rate = gbs(bytes, ms);
  rows.push({
    kernel: `matvec ${w}${label}`,
    shape: `M=${m} ${n}x${k}`,
    ms,
    rate: `${rate.toFixed(1)} GB/s`,
    note: `${(100 * rate / copyGBs).toFixed(0)}% of copy`,
  });
  for (const t of [...weights, x, y]) ctx.release(t);
}

await benchMatvec("q4", 14336, 5120, 1, " (ours)");
for (const w of ["q4_k", "q6_k", "q8_0", "f16"] as const) await benchMatvec(w, 14336, 5120);
await benchMatvec("q4", 14336, 5120, 8, " (ours)");
await benchMatvec("q4_k", 5120, 14336);
if (!quick) await benchMatvec("q6_k", 131072, 5120, 1, " (output head)");

// ---- matrix-matrix: GFLOP/s ----
async function benchMatmul(w: WeightType, m: number, n: number, k: number) {
  const weight = fill(ctx, w, [n, k], 7);
  const x = fill(ctx, "f16", [m, k], 8), y = ctx.tensor("f16", [m, n]);
  const ms = await time(quick ? 1 : 5, quick ? 1 : 5, (rec) => matmul(rec, { y, x, w: weight }));
  rows.push({
    kernel: `matmul ${w}`,
    shape: `${m}x${n}x${k}`,
    ms,
    rate: `${(2 * m * n * k / ms / 1e6).toFixed(1)} GFLOP/s`,
  });
  for (const t of [weight, x, y]) ctx.release(t);
}

const M = quick ? 128 : 4096;
await benchMatmul("f16", M, 5120, 5120);
await benchMatmul("q4", M, 14336, 5120);
await benchMatmul("q4_k", M, 14336, 5120);

// ---- attention ----
async function benchAttention(context: number, qLen: number, batch: number) {
  const shape = { headsQ: 32, headsKv: 8, headDim: 128 };
  const blockSize = 16;
  const blocksPer = Math.ceil(context / blockSize);
  const kCache = fill(ctx, "f16", [blocksPer * batch, 8, blockSize, 128], 3);
  const vCache = fill(ctx, "f16", [blocksPer * batch, 8, blockSize, 128], 4);
  const tokens = qLen * batch;
  const q = fill(ctx, "f16", [tokens, 4096], 5), kv = fill(ctx, "f16", [tokens, 1024], 6);
  const out = ctx.tensor("f16", [tokens, 4096]);
  const seqs = Array.from({ length: batch }, (_, s) => ({
    qStart: s * qLen,
    qLen,
    ctxLen: context,
    blocks: Array.from({ length: blocksPer }, (_, b) => s * blocksPer + b),
  }));
  const ms = await time(quick ? 1 : 10, quick ? 1 : 5, (rec) => {
    const plan = pagedAttentionPlan(rec, { ...shape, seqs, blockSize });
    kvWrite(rec, plan, { k: kv, v: kv, kCache, vCache });
    attention(rec, plan, { q, out, k: kCache, v: vCache });
  });
  const kvBytes = 2 * batch * context * 1024 * 2;
  rows.push({
    kernel: qLen === 1 ? "attention decode" : "attention prefill chunk",
    shape: `${batch} seq x ${qLen} q, ctx ${context}`,
    ms,
    rate: qLen === 1
      ? `${gbs(kvBytes, ms).toFixed(1)} GB/s of KV`
      : `${(4 * tokens * context * 4096 / ms / 1e6).toFixed(1)} GFLOP/s`,
  });
  for (const t of [kCache, vCache, q, kv, out]) ctx.release(t);
}

await benchAttention(quick ? 1024 : 8192, 1, quick ? 1 : 8);
await benchAttention(quick ? 256 : 2048, quick ? 64 : 512, 1);

// ---- sampling over the 131072-token vocabulary ----
{
  const seqs = quick ? 1 : 8;
  const logits = fill(ctx, "f32", [seqs, 131072], 9), ids = ctx.tensor("u32", [seqs]);
  for (
    const [name, p] of [["greedy", { temperature: 0 }], ["top-p 0.9, T 0.7", {
      temperature: 0.7,
      topP: 0.9,
    }]] as const
  ) {
    const ms = await time(
      quick ? 1 : 10,
      3,
      (rec, i) =>
        sample(rec, {
          logits,
          ids,
          params: Array.from({ length: seqs }, () => ({ ...p, seed: 1, counter: i })),
        }),
    );
    rows.push({ kernel: `sample ${name}`, shape: `${seqs} x 131072`, ms, rate: "" });
  }
}

// ---- quantize on load ----
{
  const [n, k] = quick ? [1024, 5120] : [14336, 5120];
  const weight = fill(ctx, "f16", [n, k], 10);
  const out = ctx.tensor("q4", [n, k]);
  const ms = await time(1, quick ? 1 : 5, (rec) => quantize(rec, out, weight));
  rows.push({
    kernel: "quantize f16 -> q4",
    shape: `${n}x${k}`,
    ms,
    rate: `${gbs(weight.byteLength, ms).toFixed(1)} GB/s read`,
  });
}

// A linear() call so the auto-dispatch stays exercised by the bench (M = 8 goes to matvec).
{
  const w = fill(ctx, "q4", [256, 512], 11),
    x = fill(ctx, "f16", [8, 512], 12),
    y = ctx.tensor("f16", [8, 256]);
  const rec = ctx.record();
  linear(rec, { y, x, w });
  await rec.submit();
}

console.log(`\nadapter: ${ctx.gpu.name}${quick ? " (quick sizes)" : ""}\n`);
console.log("| kernel | shape | time per call | throughput | |");
console.log("| --- | --- | --- | --- | --- |");
for (const r of rows) {
  console.log(
    `| ${r.kernel} | ${r.shape} | ${
      r.ms < 1 ? `${(r.ms * 1000).toFixed(1)} µs` : `${r.ms.toFixed(2)} ms`
    } | ${r.rate} | ${r.note ?? ""} |`,
  );
}
ctx.destroy();
