/**
 * Kernel throughput: matrix-vector products in GB/s of weight bytes read, compared with a plain buffer copy in
 * the same run; matrix-matrix products in GFLOP/s; attention, sampling and quantization. Runs on whatever adapter
 * WebGPU offers (PIXTRAL_GPU_ADAPTER picks one), with only the Deno binary and this repository:
 *
 *   deno bench --allow-read --allow-env bench/kernels_bench.ts
 *
 * deno bench prints the time of each submit (a batch of calls) and each group's ratio to its baseline; at the
 * end a table gives the time per call, GB/s and GFLOP/s (medians; the warm-up submit included, which compiles). Each call records many dispatches into one submit and times submit-to-completion, so launch overhead
 * is amortised as in a real forward step, and matrix-vector weights rotate over enough copies (512 MiB) to defeat
 * the GPU's last-level cache (60 MB on an H200). On a CPU adapter (lavapipe) the batches shrink and the
 * matrix-matrix and attention shapes are smaller, so the run takes a couple of minutes.
 */
import { GpuContext } from "../runtime/gpu/context.ts";
import { type DType, rowBytes } from "../runtime/gpu/dtype.ts";
import { attention, kvWrite, pagedAttentionPlan } from "../runtime/gpu/ops/attention.ts";
import { matmul, matvec, type WeightType } from "../runtime/gpu/ops/linear.ts";
import { quantize } from "../runtime/gpu/ops/quantize.ts";
import { sample } from "../runtime/gpu/ops/sampling.ts";
import type { Recorder } from "../runtime/gpu/recorder.ts";
import type { Tensor } from "../runtime/gpu/tensor.ts";

const ctx = await GpuContext.create();
const cpu = ctx.gpu.adapter.info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(ctx.gpu.name);
const ROTATION_BYTES = cpu ? 0 : 512 * 2 ** 20;
const ITERATIONS = { n: cpu ? 2 : 10, warmup: 1 };

/** Random bits, with every 16-bit half a small finite f16 (0x3xxx) so that float formats hold no NaN. */
function fill(dtype: DType, shape: number[], seed: number): Tensor {
  const t = ctx.tensor(dtype, shape, { pooled: false });
  const chunk = 16 * 2 ** 20;
  let s = seed >>> 0;
  for (let at = 0; at < t.byteLength; at += chunk) {
    const words = new Uint32Array(Math.ceil(Math.min(chunk, t.byteLength - at) / 4));
    for (let i = 0; i < words.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      words[i] = dtype === "f32" ? 0x3c000000 | (s >>> 9) : (s & 0x0fff0fff) | 0x30003000;
    }
    ctx.write(t, new Uint8Array(words.buffer, 0, Math.min(chunk, t.byteLength - at)), at);
  }
  return t;
}

interface Case {
  tensors: Tensor[];
  /** Calls per submit. */
  batch: number;
  record(rec: Recorder, call: number): void;
}

interface Result {
  name: string;
  ms: number[];
  unit: "GB/s" | "GFLOP/s" | "";
  /** Bytes or FLOPs of one call. */
  work: number;
}
const results: Result[] = [];
let live: Case | undefined;

/** Registers a bench whose case is built on first use and freed when the next bench starts. */
function gpuBench(
  name: string,
  group: string,
  work: { unit: Result["unit"]; amount: number },
  make: () => Case,
  baseline = false,
): void {
  const result: Result = { name, ms: [], unit: work.unit, work: work.amount };
  results.push(result);
  let current: Case | undefined;
  Deno.bench({
    name,
    group,
    baseline,
    ...ITERATIONS,
    async fn(b) {
      if (!current) {
        live?.tensors.forEach((t) => ctx.release(t));
        live = current = make();
      }
      const rec = ctx.record(name);
      for (let i = 0; i < current.batch; i++) current.record(rec, i);
      b.start();
      const start = performance.now();
      await rec.submit();
      await ctx.device.queue.onSubmittedWorkDone();
      result.ms.push((performance.now() - start) / current.batch);
      b.end();
    },
  });
}

// ---- matrix-vector products, against the copy ----
const COPY_BYTES = (cpu ? 64 : 1024) * 2 ** 20;
gpuBench("buffer copy (read + write)", "matvec", { unit: "GB/s", amount: 2 * COPY_BYTES }, () => {
  const src = fill("u32", [COPY_BYTES / 4], 1), dst = ctx.tensor("u32", [COPY_BYTES / 4], { pooled: false });
  return { tensors: [src, dst], batch: cpu ? 1 : 8, record: (rec) => rec.copy(src, dst) };
}, true);

function matvecCase(w: WeightType, n: number, k: number, m: number): () => Case {
  return () => {
    const copies = Math.max(1, Math.ceil(ROTATION_BYTES / (n * rowBytes(w, k))));
    const weights = Array.from({ length: copies }, (_, i) => fill(w, [n, k], 10 + i));
    const x = fill("f16", [m, k], 2), y = ctx.tensor("f16", [m, n], { pooled: false });
    return {
      tensors: [...weights, x, y],
      batch: cpu ? 1 : Math.max(16, 2 * copies),
      record: (rec, i) => matvec(rec, { y, x, w: weights[i % copies] }),
    };
  };
}

const matvecs: [WeightType, number, number, number, string][] = [
  ["q4", 14336, 5120, 1, "ours, w1/w3"],
  ["q4_k", 14336, 5120, 1, "Q4_K_M"],
  ["q6_k", 14336, 5120, 1, "Q4_K_M"],
  ["q5_k", 14336, 5120, 1, "Q5_K_M"],
  ["q3_k", 14336, 5120, 1, "Q3_K_M"],
  ["iq4_xs", 14336, 5120, 1, "IQ4_XS"],
  ["q4_0", 14336, 5120, 1, "Q4_0"],
  ["iq3_s", 14336, 5120, 1, "IQ3_M"],
  ["iq3_xxs", 14336, 5120, 1, "IQ3_XXS"],
  ["q2_k", 14336, 5120, 1, "Q2_K"],
  ["iq2_s", 14336, 5120, 1, "IQ2_M"],
  ["iq2_xxs", 14336, 5120, 1, "IQ2_XXS"],
  ["iq1_m", 14336, 5120, 1, "IQ1_M"],
  ["q8_0", 14336, 5120, 1, ""],
  ["f16", 14336, 5120, 1, ""],
  ["q4", 14336, 5120, 8, "ours, batch of 8"],
  ["q4", 5120, 14336, 1, "ours, w2"],
  ["q6_k", 131072, 5120, 1, "output head"],
];
for (const [w, n, k, m, note] of matvecs) {
  if (cpu && n === 131072) continue;
  gpuBench(
    `matvec ${w} M=${m} ${n}x${k}${note ? ` (${note})` : ""}`,
    "matvec",
    { unit: "GB/s", amount: n * rowBytes(w, k) },
    matvecCase(w, n, k, m),
  );
}

// ---- matrix-matrix products ----
const MM = cpu ? 64 : 4096;
for (const [w, n, k] of [["f16", 5120, 5120], ["q4", 14336, 5120], ["q4_k", 14336, 5120]] as const) {
  const nn = cpu ? 1024 : n;
  gpuBench(`matmul ${w} ${MM}x${nn}x${k}`, "matmul", { unit: "GFLOP/s", amount: 2 * MM * nn * k }, () => {
    const weight = fill(w, [nn, k], 3), x = fill("f16", [MM, k], 4), y = ctx.tensor("f16", [MM, nn]);
    return { tensors: [weight, x, y], batch: cpu ? 1 : 4, record: (rec) => matmul(rec, { y, x, w: weight }) };
  });
}

// ---- attention over the paged cache (Pixtral's decoder: 32 query heads, 8 KV heads, D = 128) ----
function attentionCase(context: number, qLen: number, seqs: number): () => Case {
  return () => {
    const blockSize = 16, per = Math.ceil(context / blockSize), tokens = qLen * seqs;
    const kCache = fill("f16", [per * seqs, 8, blockSize, 128], 5),
      vCache = fill("f16", [per * seqs, 8, blockSize, 128], 6);
    const q = fill("f16", [tokens, 4096], 7),
      kv = fill("f16", [tokens, 1024], 8),
      out = ctx.tensor("f16", [tokens, 4096]);
    const list = Array.from({ length: seqs }, (_, s) => ({
      qStart: s * qLen,
      qLen,
      ctxLen: context,
      blocks: Array.from({ length: per }, (_, b) => s * per + b),
    }));
    return {
      tensors: [kCache, vCache, q, kv, out],
      batch: cpu ? 1 : 8,
      record: (rec) => {
        const plan = pagedAttentionPlan(rec, { headsQ: 32, headsKv: 8, headDim: 128, seqs: list, blockSize });
        const cache = { k: kCache, v: vCache };
        kvWrite(rec, plan, { k: kv, v: kv, cache });
        attention(rec, plan, { q, out, cache });
      },
    };
  };
}
{
  const [ctxLen, seqs] = cpu ? [1024, 1] : [8192, 8];
  gpuBench(`attention decode ${seqs} x ctx ${ctxLen}`, "attention", {
    unit: "GB/s",
    amount: 2 * seqs * ctxLen * 1024 * 2,
  }, attentionCase(ctxLen, 1, seqs));
  const [chunk, past] = cpu ? [32, 256] : [512, 2048];
  gpuBench(`attention prefill ${chunk} tokens, ctx ${past}`, "attention", {
    unit: "GFLOP/s",
    amount: 4 * chunk * past * 4096,
  }, attentionCase(past, chunk, 1));
}

// ---- sampling over the 131072-token vocabulary, and quantization on load ----
for (
  const [label, params] of [["greedy", { temperature: 0 }], ["T 0.7, top-p 0.9", {
    temperature: 0.7,
    topP: 0.9,
  }]] as const
) {
  const seqs = cpu ? 1 : 8;
  gpuBench(`sample ${label}, ${seqs} x 131072`, "sampling", { unit: "", amount: 0 }, () => {
    const logits = fill("f32", [seqs, 131072], 9), ids = ctx.tensor("u32", [seqs]);
    return {
      tensors: [logits, ids],
      batch: cpu ? 1 : 16,
      record: (rec, i) =>
        sample(rec, {
          logits,
          ids,
          params: Array.from({ length: seqs }, () => ({ ...params, seed: 1, counter: i })),
        }),
    };
  });
}
{
  const [n, k] = cpu ? [1024, 5120] : [14336, 5120];
  for (const format of ["q4", "q4_k", "q5_k", "q6_k"] as const) {
    gpuBench(`quantize f16 -> ${format} ${n}x${k}`, "quantize", { unit: "GB/s", amount: n * k * 2 }, () => {
      const weight = fill("f16", [n, k], 10), out = ctx.tensor(format, [n, k]);
      return { tensors: [weight, out], batch: 1, record: (rec) => quantize(rec, out, weight) };
    });
  }
}

globalThis.addEventListener("unload", () => {
  const lines = [
    `\nadapter: ${ctx.gpu.name}`,
    "",
    "| kernel | per call | throughput | vs copy |",
    "| --- | --- | --- | --- |",
  ];
  const rate = (r: Result) => r.work / median(r) / 1e6;
  const copy = results[0];
  for (const r of results) {
    if (!r.ms.length) continue;
    const ms = median(r);
    const time = ms < 1 ? `${(ms * 1000).toFixed(1)} µs` : `${ms.toFixed(2)} ms`;
    const throughput = r.unit ? `${Number(rate(r).toPrecision(3))} ${r.unit}` : "";
    const ratio = r.unit === "GB/s" && r.name.startsWith("matvec") && copy.ms.length
      ? `${(100 * rate(r) / rate(copy)).toPrecision(2)}%`
      : "";
    lines.push(`| ${r.name} | ${time} | ${throughput} | ${ratio} |`);
  }
  console.log(lines.join("\n"));
});

function median(r: Result): number {
  return [...r.ms].sort((a, b) => a - b)[Math.floor(r.ms.length / 2)];
}
