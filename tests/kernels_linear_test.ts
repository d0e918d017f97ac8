/**
 * Linear kernels (matrix-vector and tiled matrix-matrix) in every weight format, against the f64 CPU reference
 * over the exactly decoded weights; and the decoders, quantizers and converters against the CPU codecs.
 *
 * Tolerance of a product y = Σ x·w: the GPU multiplies and accumulates in f32, so each output carries rounding
 * errors of at most a few ulps per addition; they add up like a random walk over the K terms (Higham, "Accuracy
 * and Stability of Numerical Algorithms", §4.2), so we allow 4·sqrt(K)·ε32·Σ|x·w| (a wrong weight, scale or index
 * moves y by a sizeable part of Σ|x·w|/sqrt(K), far beyond this), plus ε16·|y| when y is stored as f16.
 */
import assert from "node:assert/strict";
import type { GpuContext } from "../runtime/gpu/context.ts";
import { type BlockFormat, f16Bits, roundTo, rowBytes } from "../runtime/gpu/dtype.ts";
import {
  linear,
  linearRef,
  linearStacked,
  linearSwiglu,
  matmul,
  matvec,
  type WeightType,
} from "../runtime/gpu/ops/linear.ts";
import { loraShrink, loraShrinkRef } from "../runtime/gpu/ops/lora.ts";
import { convert, dequantize, dequantizeRef, quantize, quantizeRef } from "../runtime/gpu/ops/quantize.ts";
import { joinRows, type Tensor } from "../runtime/gpu/tensor.ts";
import {
  assertClose,
  assertKQuantClose,
  context,
  EPS16,
  EPS32,
  quantizeK,
  randomBlocks,
  randomFloats,
  SUB16,
  windowedContext,
} from "./gpu_helpers.ts";

interface Weights {
  tensor: Tensor;
  /** Decoded values of the given rows (all rows by default). */
  decode(rows?: [number, number]): Float32Array;
}

function makeWeights(ctx: GpuContext, dtype: WeightType, n: number, k: number, seed: number): Weights {
  let bytes: Uint8Array;
  if (dtype === "f32") bytes = new Uint8Array(randomFloats(n * k, seed).buffer);
  else if (dtype === "f16") bytes = new Uint8Array(f16Bits(randomFloats(n * k, seed)).buffer);
  else bytes = randomBlocks(dtype, n, k, seed);
  const stride = rowBytes(dtype, k);
  return {
    tensor: ctx.fromBytes(dtype, [n, k], bytes, { pooled: false }),
    decode: ([r0, r1] = [0, n]) => dequantizeRef(dtype, bytes.subarray(r0 * stride, r1 * stride), r1 - r0, k),
  };
}

/**
 * The f64 reference y = x·Wᵀ (+ bias + y0) and each output's tolerance (see the file comment); Σ|x·w| is the
 * reference product of |x| and |W|.
 */
function reference(
  x: Float32Array,
  w: Float32Array,
  [m, n, k]: [number, number, number],
  f16: boolean,
  bias?: Float32Array,
  y0?: Float32Array,
): { ref: Float64Array; tol: Float64Array } {
  const ref = linearRef(x, w, m, n, k, bias, y0);
  const abs = linearRef(x.map(Math.abs), w.map(Math.abs), m, n, k);
  const tol = abs.map((a, i) =>
    4 * Math.sqrt(k) * EPS32 * a + (f16 ? EPS16 * Math.abs(ref[i]) + SUB16 : 0) +
    // A bias or a previous y adds one rounding of the sum at most.
    (bias || y0 ? 2 * EPS32 * (Math.abs(ref[i]) + a) : 0) + 1e-30
  );
  return { ref, tol };
}

interface Case {
  w: WeightType;
  m: number;
  n: number;
  k: number;
  act?: "f32" | "f16";
  bias?: boolean;
  accumulate?: boolean;
}

async function runCase(ctx: GpuContext, c: Case, seed: number, op = linear): Promise<void> {
  const { m, n, k } = c;
  const act = c.act ?? "f32";
  const weights = makeWeights(ctx, c.w, n, k, seed);
  const x = roundTo(act, randomFloats(m * k, seed + 1));
  const bias = c.bias ? randomFloats(n, seed + 2) : undefined;
  const y0 = c.accumulate ? roundTo(act, randomFloats(m * n, seed + 3)) : undefined;
  const xt = ctx.fromFloats(act, [m, k], x);
  const yt = y0 ? ctx.fromFloats(act, [m, n], y0) : ctx.tensor(act, [m, n]);
  const bt = bias ? ctx.fromFloats("f32", [n], bias) : undefined;
  const rec = ctx.record();
  op(rec, { y: yt, x: xt, w: weights.tensor, bias: bt, accumulate: c.accumulate });
  await rec.submit();
  const y = await ctx.readFloats(yt);
  const { ref, tol } = reference(x, weights.decode(), [m, n, k], act === "f16", bias, y0);
  assertClose(y, ref, (i) => tol[i], `${c.w} ${act} [${m}x${k}]·[${n}x${k}]ᵀ`);
  for (const t of [xt, yt, ...(bt ? [bt] : [])]) ctx.release(t);
  ctx.release(weights.tensor);
}

Deno.test("linear kernels match the CPU reference in every weight format", async (t) => {
  const ctx = await context();
  // 1, odd and prime sizes, sizes not divisible by the tiles (64, 128) nor the 8-column step; M from 1 to 8
  // takes the matrix-vector kernel, from 9 the tiled one.
  const cases: Case[] = [
    { w: "f32", m: 1, n: 1, k: 1 },
    { w: "f32", m: 3, n: 13, k: 31 },
    { w: "f32", m: 8, n: 257, k: 1021, act: "f16" },
    { w: "f32", m: 17, n: 67, k: 129 },
    { w: "f32", m: 33, n: 100, k: 257, act: "f16", bias: true },
    { w: "f16", m: 1, n: 7, k: 5 },
    { w: "f16", m: 5, n: 61, k: 127, act: "f16", accumulate: true },
    { w: "f16", m: 19, n: 131, k: 97 },
    { w: "q8_0", m: 1, n: 5, k: 32 },
    { w: "q8_0", m: 7, n: 31, k: 96, bias: true },
    { w: "q8_0", m: 23, n: 37, k: 160, act: "f16" },
    { w: "q4_k", m: 1, n: 3, k: 256 },
    { w: "q4_k", m: 6, n: 33, k: 512, act: "f16", accumulate: true },
    { w: "q4_k", m: 19, n: 45, k: 768 },
    { w: "q3_k", m: 1, n: 9, k: 256 },
    { w: "q3_k", m: 6, n: 35, k: 768, act: "f16", accumulate: true },
    { w: "q3_k", m: 18, n: 47, k: 512, bias: true },
    { w: "q5_k", m: 1, n: 5, k: 256 },
    { w: "q5_k", m: 7, n: 37, k: 512, act: "f16", bias: true },
    { w: "q5_k", m: 21, n: 43, k: 768, accumulate: true },
    { w: "q6_k", m: 2, n: 29, k: 768 },
    { w: "q6_k", m: 8, n: 3, k: 256, act: "f16" },
    { w: "q6_k", m: 16, n: 71, k: 512, accumulate: true },
    { w: "iq4_nl", m: 1, n: 7, k: 32 },
    { w: "iq4_nl", m: 5, n: 33, k: 160, act: "f16", accumulate: true },
    { w: "iq4_nl", m: 18, n: 41, k: 96, bias: true },
    { w: "iq4_xs", m: 1, n: 3, k: 256 },
    { w: "iq4_xs", m: 8, n: 29, k: 512, act: "f16" },
    { w: "iq4_xs", m: 17, n: 45, k: 768, accumulate: true },
    // The legacy blocks of 32 (22- and 18-byte ones leave odd blocks 2 bytes past a word).
    ...(["q4_0", "q4_1", "q5_0", "q5_1"] as const).flatMap((w, i) => [
      { w, m: 1, n: 3 + 2 * i, k: 32 * (1 + 2 * i) },
      { w, m: 7, n: 29 + i, k: 96, act: "f16" as const, accumulate: i % 2 === 0, bias: i % 2 === 1 },
      { w, m: 16 + i, n: 37 + 2 * i, k: 160, act: (i % 2 ? "f32" : "f16") as "f16" | "f32" },
    ]),
    { w: "q2_k", m: 1, n: 11, k: 256 },
    { w: "q2_k", m: 5, n: 37, k: 512, act: "f16", accumulate: true },
    { w: "q2_k", m: 17, n: 41, k: 768, bias: true },
    // The i-quants: matrix-vector (M = 1, 6), tiled (M >= 16), each with a different activation and epilogue.
    ...(["iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m"] as const).flatMap((w, i) => [
      { w, m: 1, n: 5 + 2 * i, k: 256 * (1 + (i % 2)) },
      { w, m: 6, n: 33 + i, k: 512, act: "f16" as const, accumulate: i % 2 === 0, bias: i % 2 === 1 },
      { w, m: 16 + i, n: 39 + 2 * i, k: 768, act: (i % 2 ? "f16" : "f32") as "f16" | "f32" },
    ]),
    { w: "q4", m: 1, n: 3, k: 32 },
    { w: "q4", m: 8, n: 17, k: 96, act: "f16" },
    { w: "q4", m: 20, n: 64, k: 160, bias: true },
  ];
  for (const [i, c] of cases.entries()) {
    const name = `${c.w} M=${c.m} N=${c.n} K=${c.k} ${c.act ?? "f32"}${c.bias ? " +bias" : ""}` +
      (c.accumulate ? " +=" : "");
    await t.step(name, () => runCase(ctx, c, 100 + i));
  }
  await t.step("matvec and matmul agree at M = 8", async () => {
    await runCase(ctx, { w: "q4_k", m: 8, n: 40, k: 256 }, 7, matmul);
    await runCase(ctx, { w: "q4_k", m: 8, n: 40, k: 256 }, 7, matvec);
  });
});

/** One K per weight format, a whole number of its blocks. */
const WEIGHT_CASES = [
  ["f32", 40],
  ["f16", 96],
  ["q8_0", 64],
  ["q5_0", 64],
  ["q2_k", 256],
  ["q3_k", 256],
  ["q4_k", 256],
  ["q5_k", 256],
  ["q6_k", 256],
  ["iq4_nl", 64],
  ["iq4_xs", 256],
  ["iq2_s", 256],
  ["iq1_m", 256],
  ["q4", 96],
] as const;

Deno.test("stacked weights: one product over consecutive rows equals one product per weight", async (t) => {
  const ctx = await context();
  // q|k|v-like parts of 16, 8 and 8 rows: stored as one matrix (the loader's layout) they take one dispatch,
  // stored apart one each; every output row is computed the same way, so the results are bit-identical.
  const parts = [16, 8, 8];
  for (
    const [i, [dtype, k]] of WEIGHT_CASES
      .entries()
  ) {
    for (const m of [1, 5, 20]) {
      await t.step(`${dtype} M=${m} K=${k}`, async () => {
        const n = parts.reduce((a, b) => a + b, 0);
        const whole = makeWeights(ctx, dtype, n, k, 300 + i);
        const bytes = await ctx.readBytes(whole.tensor);
        const rowB = rowBytes(dtype, k);
        let at = 0;
        const views: Tensor[] = [], apart: Tensor[] = [];
        for (const rows of parts) {
          views.push(whole.tensor.sliceRows(at, rows));
          apart.push(
            ctx.fromBytes(dtype, [rows, k], bytes.subarray(at * rowB, (at + rows) * rowB), { pooled: false }),
          );
          at += rows;
        }
        assert.ok(joinRows(views), "consecutive views join");
        assert.equal(joinRows(apart), undefined, "separate buffers do not join");
        assert.equal(joinRows([views[1], views[0], views[2]]), undefined, "out-of-order views do not join");
        const x = randomFloats(m * k, 400 + i);
        const xt = ctx.fromFloats("f32", [m, k], x);
        const [y1, y2, y3] = [
          ctx.tensor("f32", [m, n]),
          ctx.tensor("f32", [m, n]),
          ctx.tensor("f32", [m, n]),
        ];
        const rec = ctx.record();
        linearStacked(rec, { y: y1, x: xt, w: views });
        linearStacked(rec, { y: y2, x: xt, w: apart });
        // q|k joined, v apart (as the loader stores them when a recipe gives v another type): two products.
        linearStacked(rec, { y: y3, x: xt, w: [views[0], views[1], apart[2]] });
        assert.equal(rec.dispatches, 1 + parts.length + 2);
        await rec.submit();
        const [joined, separate] = [await ctx.readFloats(y1), await ctx.readFloats(y2)];
        assert.deepEqual(joined, separate);
        assert.deepEqual(await ctx.readFloats(y3), separate);
        const { ref, tol } = reference(x, whole.decode(), [m, n, k], false);
        assertClose(joined, ref, (j) => tol[j], `${dtype} stacked`);
        for (const tensor of [xt, y1, y2, y3, whole.tensor, ...apart]) ctx.release(tensor);
      });
    }
  }
});

Deno.test("SwiGLU applied in the w1|w3 product equals the two products then the swiglu kernel, bit for bit", async (t) => {
  const ctx = await context();
  // 300 outputs: not a multiple of any workgroup's rows. Stored as one matrix (the loader's layout) and with at
  // most 8 rows, the activation runs in the product's epilogue; stored apart (or above 8 rows) it takes two
  // products and the swiglu kernel. Gate and up are rounded to the output type first either way.
  const n = 300;
  for (
    const [i, [dtype, k]] of WEIGHT_CASES
      .entries()
  ) {
    for (const act of ["f32", "f16"] as const) {
      for (const m of [1, 3, 8, 20]) {
        await t.step(`${dtype} ${act} M=${m} K=${k}`, async () => {
          const whole = makeWeights(ctx, dtype, 2 * n, k, 500 + i);
          const bytes = await ctx.readBytes(whole.tensor);
          const half = rowBytes(dtype, k) * n;
          const views = [whole.tensor.sliceRows(0, n), whole.tensor.sliceRows(n, n)] as const;
          const apart = [0, 1].map((h) =>
            ctx.fromBytes(dtype, [n, k], bytes.subarray(h * half, (h + 1) * half), { pooled: false })
          ) as [Tensor, Tensor];
          const xs = roundTo(act, randomFloats(m * k, 600 + i, 0.05)); // small enough for f16 outputs
          const x = ctx.fromFloats(act, [m, k], xs);
          const [y1, y2] = [ctx.tensor(act, [m, n]), ctx.tensor(act, [m, n])];
          const gateUp = ctx.tensor(act, [m, 2 * n]);
          const rec = ctx.record();
          linearSwiglu(rec, { y: y1, x, w: views, gateUp: () => gateUp });
          const fusedDispatches = rec.dispatches;
          linearSwiglu(rec, { y: y2, x, w: apart, gateUp: () => gateUp });
          assert.equal(fusedDispatches, m <= 8 ? 1 : 2);
          assert.equal(rec.dispatches - fusedDispatches, 3);
          await rec.submit();
          const [fused, separate] = [await ctx.readFloats(y1), await ctx.readFloats(y2)];
          assert.deepEqual(fused, separate);
          // And the values are SwiGLU's: against the f64 reference of both products.
          const [gate, up] = [0, 1].map((h) =>
            reference(xs, whole.decode().subarray(h * n * k, (h + 1) * n * k), [m, n, k], false).ref
          );
          const want = Float64Array.from(gate, (g, j) => g / (1 + Math.exp(-g)) * up[j]);
          const scale = Math.max(...want.map(Math.abs));
          assertClose(fused, want, () => (act === "f16" ? 4e-3 : 1e-4) * scale, `${dtype} swiglu`);
          for (const tensor of [x, y1, y2, gateUp, whole.tensor, ...apart]) ctx.release(tensor);
        });
      }
    }
  }
});

interface LoraCase {
  w: WeightType;
  m: number;
  n: number;
  k: number;
  /** The adapters' ranks, and each activation row's adapter (-1: none). */
  ranks: number[];
  rows: number[];
  act?: "f32" | "f16";
  /** t and B in f32 under f16 activations: not fusable, products of their own follow. */
  apart?: boolean;
  accumulate?: boolean;
  /** W and B are w1|w3 (each adapter's up rank one more than its gate rank), and y = silu(gate) · up. */
  glu?: boolean;
  /** The product is of weights of these rows (q|k|v), each adapter's ranks r, r + 1, r + 2: joined, or apart. */
  stacked?: { rows: number[]; apart: boolean };
}

/**
 * y = x·Wᵀ (+ y0) + t[m]·B_mᵀ for each row m's adapter, t given, B of each of the product's weights compact
 * ([its rows, its rank]); with `glu`, y = silu(gate) · up of the updated products. Returns the dispatches.
 */
async function runLoraCase(ctx: GpuContext, c: LoraCase, seed: number): Promise<number> {
  const { m, n, k, rows } = c;
  const act = c.act ?? "f32", loraType = c.apart ? "f32" : act;
  const members = c.stacked?.rows ?? (c.glu ? [n, n] : [n]);
  const outs = members.reduce((a, b) => a + b, 0);
  const ranksOf = (a: number) => members.map((_, j) => c.ranks[a] + j);
  const maxRank = Math.max(...c.ranks.map((_, a) => ranksOf(a).reduce((s, r) => s + r, 0)));
  const weights = makeWeights(ctx, c.w, outs, k, seed);
  const x = roundTo(act, randomFloats(m * k, seed + 1, 0.05));
  // Each adapter's B: for each weight of the product [its rows, its rank], one after the other.
  const sizes = c.ranks.map((_, a) => ranksOf(a).reduce((s, r, j) => s + r * members[j], 0));
  const slots = rows.map((a) => {
    if (a < 0) return undefined;
    const offset = c.ranks.slice(0, a).reduce((s, _, i) => s + ranksOf(i).reduce((t, r) => t + r, 0), 0);
    const ranks = ranksOf(a);
    return {
      offset,
      rank: ranks.reduce((s, r) => s + r, 0),
      b: sizes.slice(0, a).reduce((s, z) => s + z, 0),
      ranks,
    };
  });
  const b = roundTo(loraType, randomFloats(sizes.reduce((s, z) => s + z, 0), seed + 3, 0.01));
  const t = roundTo(loraType, randomFloats(m * maxRank, seed + 2));
  const y0 = c.accumulate ? roundTo(act, randomFloats(m * n, seed + 4)) : undefined;
  const xt = ctx.fromFloats(act, [m, k], x);
  const yt = y0 ? ctx.fromFloats(act, [m, c.glu ? n : outs], y0) : ctx.tensor(act, [m, c.glu ? n : outs]);
  const tt = ctx.fromFloats(loraType, [m, maxRank], t), bt = ctx.fromFloats(loraType, [b.length], b);
  const gateUp = ctx.tensor(act, [m, 2 * n]);
  const lora = { t: tt, b: bt, slots, members };
  const parts: Tensor[] = [];
  const rec = ctx.record();
  if (c.glu) {
    const w = [weights.tensor.sliceRows(0, n), weights.tensor.sliceRows(n, n)] as const;
    linearSwiglu(rec, { y: yt, x: xt, w, gateUp: () => gateUp, lora });
  } else if (c.stacked) {
    let at = 0;
    const bytes = await ctx.readBytes(weights.tensor), row = rowBytes(c.w, k);
    for (const r of members) {
      parts.push(
        c.stacked.apart
          ? ctx.fromBytes(c.w, [r, k], bytes.subarray(at * row, (at + r) * row), { pooled: false })
          : weights.tensor.sliceRows(at, r),
      );
      at += r;
    }
    linearStacked(rec, { y: yt, x: xt, w: parts, lora });
  } else linear(rec, { y: yt, x: xt, w: weights.tensor, accumulate: c.accumulate, lora });
  const dispatches = rec.dispatches;
  await rec.submit();
  const y = await ctx.readFloats(yt);
  // The updates as y0 of the reference, plus the previous y.
  const update = new Float32Array(m * outs);
  slots.forEach((slot, row) => {
    if (!slot) return;
    let first = 0, col = 0, base = slot.b;
    members.forEach((count, j) => {
      const r = slot.ranks[j];
      for (let o = 0; o < count; o++) {
        let s = 0;
        for (let i = 0; i < r; i++) s += t[row * maxRank + col + i] * b[base + o * r + i];
        update[row * outs + first + o] = s;
      }
      first += count;
      col += r;
      base += count * r;
    });
  });
  const { ref, tol } = reference(
    x,
    weights.decode(),
    [m, outs, k],
    false,
    undefined,
    update.map((u, i) => u + (y0?.[i] ?? 0)),
  );
  if (c.glu) {
    const want = Float64Array.from({ length: m * n }, (_, j) => {
      const [row, col] = [Math.floor(j / n), j % n];
      const g = ref[row * outs + col], u = ref[row * outs + n + col];
      return g / (1 + Math.exp(-g)) * u;
    });
    const scale = Math.max(...want.map(Math.abs));
    assertClose(y, want, () => (act === "f16" ? 4e-3 : 1e-4) * scale, `${c.w} LoRA swiglu`);
  } else {
    // In f16, y is rounded once, or twice where the update is added by a product of its own.
    const f16 = (i: number) =>
      act === "f16" ? EPS16 * (Math.abs(ref[i]) + Math.abs(ref[i] - update[i])) + SUB16 : 0;
    assertClose(y, ref, (i) => tol[i] + f16(i), `${c.w} LoRA`);
  }
  for (const tensor of [xt, yt, tt, bt, gateUp, weights.tensor]) ctx.release(tensor);
  if (c.stacked?.apart) parts.forEach((p) => ctx.release(p));
  return dispatches;
}

Deno.test("LoRA: the shrink takes each row's own adapter's rows of A", async (t) => {
  const ctx = await context();
  for (const act of ["f32", "f16"] as const) {
    await t.step(act, async () => {
      const k = 333, ranks = [4, 16, 1], rows = [1, -1, 0, 2, 1, 1, 0];
      const a = roundTo(act, randomFloats(21 * k, 11));
      const x = roundTo(act, randomFloats(rows.length * k, 12));
      const slots = rows.map((i) =>
        i < 0 ? undefined : {
          offset: ranks.slice(0, i).reduce((s, r) => s + r, 0),
          rank: ranks[i],
          b: 0,
          ranks: [ranks[i]],
        }
      );
      const [at, xt] = [ctx.fromFloats(act, [21, k], a), ctx.fromFloats(act, [rows.length, k], x)];
      const tt = ctx.fromFloats(act, [rows.length, 16], new Float32Array(rows.length * 16));
      const rec = ctx.record();
      loraShrink(rec, { t: tt, x: xt, a: at, slots });
      await rec.submit();
      const got = await ctx.readFloats(tt);
      const want = loraShrinkRef(x, a, k, slots, 16);
      const abs = loraShrinkRef(x.map(Math.abs), a.map(Math.abs), k, slots, 16);
      assertClose(
        got,
        want,
        (i) => 4 * Math.sqrt(k) * EPS32 * abs[i] + (act === "f16" ? EPS16 * Math.abs(want[i]) : 0),
        act,
      );
      for (const tensor of [at, xt, tt]) ctx.release(tensor);
    });
  }
});

Deno.test("LoRA updates: added in the matrix-vector kernel's epilogue, or by products of their own", async (t) => {
  const ctx = await context();
  // Rows of several adapters, of one, or none; ranks 1 to 48.
  const cases: LoraCase[] = [
    { w: "f32", m: 1, n: 13, k: 40, ranks: [1], rows: [0] },
    { w: "q4", m: 5, n: 61, k: 96, ranks: [8, 4], rows: [-1, 1, 0, 0, -1], act: "f16" },
    { w: "q4_k", m: 8, n: 33, k: 256, ranks: [16, 2, 5], rows: [2, 2, 1, 0, -1, 0, 1, 2], accumulate: true },
    { w: "q6_k", m: 3, n: 29, k: 256, ranks: [48], rows: [0, 0, 0], act: "f16", accumulate: true },
    { w: "q8_0", m: 4, n: 300, k: 64, ranks: [4, 6], rows: [1, -1, 0, 1], glu: true },
    { w: "f16", m: 2, n: 45, k: 96, ranks: [12], rows: [-1, 0], act: "f16", glu: true },
    { w: "q4", m: 6, n: 37, k: 160, ranks: [8, 3], rows: [0, 1, 1, -1, 0, 0], act: "f16", apart: true },
    {
      w: "q4_k",
      m: 6,
      n: 50,
      k: 256,
      ranks: [8],
      rows: [0, 0, 0, 0, 0, 0],
      act: "f16",
      apart: true,
      glu: true,
    },
    {
      w: "q8_0",
      m: 20,
      n: 41,
      k: 96,
      ranks: [8, 2],
      rows: [...Array(10).fill(0), ...Array(10).fill(1)],
      accumulate: true,
    },
    { w: "q4", m: 20, n: 64, k: 160, ranks: [16], rows: Array(20).fill(0), act: "f16", glu: true },
    // q|k|v-like: each output takes its own weight's columns of t and block of B.
    {
      w: "q4_k",
      m: 3,
      n: 64,
      k: 256,
      ranks: [2, 5],
      rows: [1, 0, -1],
      stacked: { rows: [32, 16, 16], apart: false },
    },
    {
      w: "q8_0",
      m: 4,
      n: 64,
      k: 64,
      ranks: [3],
      rows: [0, 0, -1, 0],
      stacked: { rows: [32, 16, 16], apart: true },
    },
    {
      w: "f16",
      m: 12,
      n: 24,
      k: 96,
      ranks: [1, 4],
      rows: [...Array(6).fill(0), ...Array(6).fill(1)],
      stacked: { rows: [8, 8, 8], apart: false },
    },
  ];
  for (const [i, c] of cases.entries()) {
    const name = `${c.w} M=${c.m} N=${c.n} K=${c.k} ranks ${c.ranks.join("/")} rows ${c.rows.join(",")} ` +
      `${c.act ?? "f32"}${c.apart ? " (t, B in f32)" : ""}${c.glu ? " SwiGLU" : ""}${
        c.accumulate ? " +=" : ""
      }`;
    await t.step(name, async () => {
      const dispatches = await runLoraCase(ctx, c, 700 + 10 * i);
      // In the epilogue: no dispatch of its own; otherwise one per run of rows of one adapter and weight of the
      // product (and SwiGLU's own kernel); weights stored apart take a product each.
      const runs = c.rows.filter((r, j) => r >= 0 && r !== c.rows[j - 1]).length;
      const products = c.stacked?.apart ? c.stacked.rows.length : 1;
      const weightsPer = c.stacked?.rows.length ?? (c.glu ? 2 : 1);
      const fused = c.m <= 8 && !c.apart;
      assert.equal(dispatches, fused ? products : (c.glu ? 2 : 1) + runs * weightsPer);
    });
  }
  // Weights larger than a binding: each window adds the updates of its own rows.
  const windowed = await windowedContext();
  const windowedCases: LoraCase[] = [
    { w: "q8_0", m: 2, n: 1003, k: 96, ranks: [2, 1], rows: [1, 0] },
    { w: "iq2_xs", m: 3, n: 1200, k: 256, ranks: [3, 2], rows: [0, -1, 1] },
  ];
  for (const [i, c] of windowedCases.entries()) {
    await t.step(`${c.w} M=${c.m} N=${c.n} K=${c.k} in binding windows`, async () => {
      assert.ok(await runLoraCase(windowed, c, 900 + i) > 1);
    });
  }
});

Deno.test("weights larger than a binding are processed in windows of rows", async (t) => {
  // A 64 KiB binding limit splits these weights into several windows, as a GPU binding 128 MiB splits the
  // 131072-row output head.
  const ctx = await windowedContext();
  const cases: Case[] = [
    { w: "q8_0", m: 1, n: 1003, k: 96 }, // 102-byte rows: windows start 2-byte aligned
    { w: "q6_k", m: 3, n: 461, k: 256, bias: true }, // 210-byte rows
    { w: "q4", m: 8, n: 1100, k: 160 },
    { w: "f16", m: 2, n: 197, k: 333 }, // 666-byte rows
    { w: "q4_k", m: 17, n: 800, k: 256, accumulate: true },
    { w: "f32", m: 40, n: 177, k: 100 },
    { w: "q4_1", m: 3, n: 3400, k: 32 }, // 20-byte rows
    { w: "iq3_s", m: 1, n: 700, k: 256 }, // 110-byte rows, the grid bound beside each window
    { w: "iq1_m", m: 20, n: 1500, k: 256, act: "f16" },
  ];
  for (const [i, c] of cases.entries()) {
    await t.step(`${c.w} M=${c.m} N=${c.n} K=${c.k}`, () => runCase(ctx, c, 200 + i));
  }
});

Deno.test("linear kernels at Pixtral's sizes", async (t) => {
  const ctx = await context();
  const cases: Case[] = [
    { w: "q4", m: 1, n: 14336, k: 5120 }, // w1 / w3, decode
    { w: "q4_k", m: 1, n: 5120, k: 14336 }, // w2
    { w: "q6_k", m: 8, n: 1024, k: 5120 }, // wk / wv, a batch of 8 decode steps
    { w: "q8_0", m: 3, n: 4096, k: 5120, act: "f16" }, // wq
    { w: "f16", m: 16, n: 1024, k: 4096 }, // vision FFN w2 (4096 -> 1024), a prefill tile
    { w: "iq3_s", m: 2, n: 1024, k: 5120 }, // wk / wv of an IQ3_M file
  ];
  for (const [i, c] of cases.entries()) {
    await t.step(`${c.w} M=${c.m} N=${c.n} K=${c.k}`, () => runCase(ctx, c, 300 + i));
  }
  await t.step("the 131072-row output head (q4, as quantized on load), in binding windows here", async () => {
    const [n, k] = [131072, 5120];
    const weights = makeWeights(ctx, "q4", n, k, 400);
    const limits = ctx.device.limits;
    console.log(
      `head: ${weights.tensor.byteLength} bytes, binding limit ${limits.maxStorageBufferBindingSize}`,
    );
    const x = randomFloats(k, 401);
    const xt = ctx.fromFloats("f32", [1, k], x);
    const yt = ctx.tensor("f32", [1, n]);
    const rec = ctx.record();
    matvec(rec, { y: yt, x: xt, w: weights.tensor });
    await rec.submit();
    const y = await ctx.readFloats(yt);
    // Rows spread over the whole head (every window, both ends), checked against the reference.
    const rows = [0, 1, n - 2, n - 1, ...Array.from({ length: 160 }, (_, i) => Math.floor(i * 819.2 + 13))];
    for (const r of rows) {
      const { ref, tol } = reference(x, weights.decode([r, r + 1]), [1, 1, k], false);
      assertClose([y[r]], ref, tol[0], `head row ${r}`);
    }
    ctx.release(weights.tensor);
  });
});

Deno.test("dequantization of synthetic blocks of every GGUF format the kernels read and of Q4 equals the CPU decoder exactly", async (t) => {
  const ctx = await context();
  // Q6_K blocks are 210 bytes and Q8_0 blocks 34: odd block counts leave rows 2-byte aligned.
  const cases: [BlockFormat, number, number][] = [
    ["q8_0", 1, 32],
    ["q8_0", 7, 96],
    ["q4_k", 3, 256],
    ["q4_k", 5, 1024],
    ["q3_k", 1, 256],
    ["q3_k", 3, 768],
    ["q5_k", 3, 256],
    ["q5_k", 2, 1280],
    ["q6_k", 1, 256],
    ["q6_k", 7, 768],
    ["iq4_nl", 1, 32],
    ["iq4_nl", 5, 96],
    ["iq4_xs", 3, 256],
    ["iq4_xs", 2, 1280],
    // Odd rows of 50-, 66- or 98-byte blocks start 2 bytes past a word.
    ...(["q4_0", "q4_1", "q5_0", "q5_1"] as const).map((f): [BlockFormat, number, number] => [f, 5, 96]),
    ...(["q2_k", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s", "iq1_s", "iq1_m"] as const).map((
      f,
    ): [BlockFormat, number, number] => [f, 3, 768]),
    ["q4", 3, 32],
    ["q4", 9, 160],
  ];
  for (const [i, [format, rows, k]] of cases.entries()) {
    await t.step(`${format} ${rows}x${k}`, async () => {
      const bytes = randomBlocks(format, rows, k, 500 + i);
      const src = ctx.fromBytes(format, [rows, k], bytes);
      const dst = ctx.tensor("f32", [rows, k]);
      const rec = ctx.record();
      dequantize(rec, dst, src);
      await rec.submit();
      assert.deepEqual(await ctx.readFloats(dst), dequantizeRef(format, bytes, rows, k));
      ctx.release(src);
      ctx.release(dst);
    });
  }
});

/**
 * The GPU quantizer against ggml's reference rule run on the CPU. Both compute x / d as x · (1/d) in f32; a GPU
 * may round 1/d or fuse x·id + 8.5 differently in the last bit, which can only move a value lying within
 * 1e-5 of a rounding boundary to the neighbouring code. So: every scale equal, every code equal except at most a
 * few such ties, each off by one.
 */
function compareQuantized(
  format: "q8_0" | "q4",
  gpu: Uint8Array,
  cpu: Uint8Array,
  x: Float32Array,
  k: number,
) {
  const rows = x.length / k;
  const a = dequantizeRef(format, gpu, rows, k), b = dequantizeRef(format, cpu, rows, k);
  let ties = 0;
  const stride = rowBytes(format, k);
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    const r = Math.floor(i / k), g = Math.floor((i % k) / 32);
    const view = new DataView(cpu.buffer, cpu.byteOffset);
    const d = view.getFloat16(format === "q8_0" ? r * stride + 34 * g : r * stride + k / 2 + 2 * g, true);
    const code = format === "q8_0" ? x[i] / d : x[i] / d + 8.5;
    const nearTie = format === "q8_0"
      ? Math.abs(Math.abs(code) % 1 - 0.5) < 1e-5
      : Math.abs(code - Math.round(code)) < 1e-5;
    assert.ok(
      nearTie && Math.abs(a[i] - b[i]) <= Math.abs(d) * 1.0001,
      `${format}: weight ${i} ${a[i]} vs ${b[i]}`,
    );
    ties++;
  }
  assert.ok(ties <= a.length / 10000 + 1, `${format}: ${ties} codes differ`);
}

Deno.test("quantize on load: Q8_0 and Q4 from f32, f16 and bf16 match the reference quantizers", async (t) => {
  const ctx = await context();
  const cases: ["q8_0" | "q4", "f32" | "f16" | "bf16", number, number][] = [
    ["q8_0", "f32", 1, 32],
    ["q8_0", "bf16", 5, 96], // odd block count per row: pairs of blocks span rows
    ["q8_0", "f16", 3, 64],
    ["q4", "f32", 1, 32],
    ["q4", "bf16", 7, 96],
    ["q4", "f16", 4, 256],
  ];
  for (const [i, [format, source, rows, k]] of cases.entries()) {
    await t.step(`${source} -> ${format} ${rows}x${k}`, async () => {
      const x = roundTo(source, randomFloats(rows * k, 600 + i, 0.1));
      x[3] = 0; // a zero, and a block of zeros (d = 0)
      if (rows > 1) x.fill(0, k, k + 32);
      const src = ctx.fromFloats(source, [rows, k], x);
      const dst = ctx.tensor(format, [rows, k]);
      const rec = ctx.record();
      quantize(rec, dst, src);
      await rec.submit();
      compareQuantized(format, await ctx.readBytes(dst), quantizeRef(format, x, rows, k), x, k);
      ctx.release(src);
      ctx.release(dst);
    });
  }
  const windowed = await windowedContext();
  for (const [format, source, rows, k] of [["q8_0", "bf16", 61, 96], ["q4", "f32", 45, 160]] as const) {
    await t.step(`${source} -> ${format} ${rows}x${k} in binding windows`, async () => {
      const x = roundTo(source, randomFloats(rows * k, 700, 0.05));
      const src = windowed.fromFloats(source, [rows, k], x);
      const dst = windowed.tensor(format, [rows, k]);
      const rec = windowed.record();
      quantize(rec, dst, src);
      await rec.submit();
      compareQuantized(format, await windowed.readBytes(dst), quantizeRef(format, x, rows, k), x, k);
    });
  }
});

Deno.test("quantize on load to Q4_K: edge blocks (zeros, a constant, an outlier, all negative), bf16, binding windows", async () => {
  // llama.cpp's own blocks are the goldens of tests/model_gguf_quant_test.ts (they need the fixture model).
  const [rows, k] = [90, 512];
  const random = randomFloats(rows * k, 710, 0.05);
  random.fill(0, 0, k);
  random.fill(0.01, k, 2 * k);
  random[2 * k + 7] = 100; // its sub-block's scale makes the others' round to 0
  for (let i = 3 * k; i < 4 * k; i++) random[i] = -Math.abs(random[i]) - 1e-3;
  const x = roundTo("bf16", random);
  const windowed = await windowedContext(); // 90 rows of 288 bytes: two windows
  const got = await quantizeK(windowed, "q4_k", x, rows, k, "bf16"), want = quantizeRef("q4_k", x, rows, k);
  assertKQuantClose(windowed, "q4_k", got, want, x, k);
  // The zeros, the constant, the outlier (beside it, sub-blocks whose scales round to 0 keep the fit's codes)
  // exactly, where the adapter does not fuse.
  const edges = 3 * 144 * k / 256;
  if (windowed.gpu.software) assert.deepEqual(got.subarray(0, edges), want.subarray(0, edges));
  // Over the random rows (past the edge ones), against our q4 at the same 4.5 bits a weight: a smaller error.
  const rmse = (d: Float32Array) =>
    Math.sqrt(d.reduce((s, v, i) => i < 4 * k ? s : s + (v - x[i]) ** 2, 0) / (d.length - 4 * k));
  const [q4k, q4] = [
    rmse(dequantizeRef("q4_k", got, rows, k)),
    rmse(dequantizeRef("q4", quantizeRef("q4", x, rows, k), rows, k)),
  ];
  assert.ok(q4k < 0.9 * q4, `q4_k ${q4k}, q4 ${q4}`);
});

Deno.test("quantize on load to Q6_K: edge blocks (zeros, tiny values, a constant, an outlier), windows of whole words", async () => {
  // The fixture's Q6_K blocks (llama.cpp's) are the goldens of tests/model_gguf_quant_test.ts.
  const [rows, k] = [91, 768]; // 3 blocks a row, 273 in all: a thread's pair may end mid-word
  const random = randomFloats(rows * k, 711, 0.05);
  random.fill(0, 0, 256); // a block of zeros: all its bytes 0
  random.fill(1e-20, 256, 272); // a sub-block under ggml's 1e-15: codes 0
  random.fill(0.01, 512, 768);
  random[k + 7] = 100; // its sub-block's scale makes the others' round to 0: they keep the fit's codes
  for (let i = 2 * k; i < 3 * k; i++) random[i] = -Math.abs(random[i]) - 1e-3;
  const x = random;
  // 3 KiB f32 rows: 21 fit a window, but 630-byte Q6_K rows start on a word only every other row, so the windows
  // hold 20 rows (the last 11, 33 blocks).
  const windowed = await windowedContext();
  const got = await quantizeK(windowed, "q6_k", x, rows, k, "f32"), want = quantizeRef("q6_k", x, rows, k);
  assertKQuantClose(windowed, "q6_k", got, want, x, k);
  assert.deepEqual(got.subarray(0, 210), new Uint8Array(210));
  const edges = 3 * 210 * k / 256;
  if (windowed.gpu.software) assert.deepEqual(got.subarray(0, edges), want.subarray(0, edges));
  // Against Q4_K and q8 on the random rows: between them, as its 6.56 bits a weight are.
  const rmse = (d: Float32Array) =>
    Math.sqrt(d.reduce((s, v, i) => i < 3 * k ? s : s + (v - x[i]) ** 2, 0) / (d.length - 3 * k));
  const error = (dtype: "q6_k" | "q4_k" | "q8_0", bytes: Uint8Array = quantizeRef(dtype, x, rows, k)) =>
    rmse(dequantizeRef(dtype, bytes, rows, k));
  const [q6k, q4k, q8] = [error("q6_k", got), error("q4_k"), error("q8_0")];
  assert.ok(q8 < q6k && q6k < 0.5 * q4k, `q6_k ${q6k}, q4_k ${q4k}, q8_0 ${q8}`);
  // A piece of the tensor from an odd row starts mid-word: refused, not written two bytes off.
  const [src, dst] = [
    windowed.fromFloats("f32", [2, k], x.subarray(0, 2 * k)),
    windowed.tensor("q6_k", [3, k]),
  ];
  assert.throws(() => quantize(windowed.record(), dst.sliceRows(1, 2), src), /not on a word/);
  windowed.release(src);
  windowed.release(dst);
});

Deno.test("quantize on load to Q4_K, Q5_K and Q6_K: llama.cpp's own blocks for edge cases", async () => {
  // scripts/gen_k_quant_goldens.py: zeros, a sub-block under 1e-15, a constant, outliers, all negative, tiny and
  // large magnitudes, random blocks, through ggml's quantize_row_q4_K_ref, _q5_K_ref and _q6_K_ref.
  const golden = JSON.parse(
    await Deno.readTextFile(new URL("./fixtures/gguf/k_quants.json", import.meta.url)),
  );
  const x = new Float32Array(Uint8Array.fromBase64(golden.values).buffer);
  const rows = x.length / 256;
  const ctx = await context();
  for (const dtype of ["q4_k", "q5_k", "q6_k"] as const) {
    const want = Uint8Array.fromBase64(golden[dtype]);
    assert.deepEqual(quantizeRef(dtype, x, rows, 256), want, `${dtype}: the CPU reference`);
    assertKQuantClose(ctx, dtype, await quantizeK(ctx, dtype, x, rows, 256, "f32"), want, x, 256);
  }
});

Deno.test("float conversion rounds to nearest even, including odd lengths", async (t) => {
  const ctx = await context();
  const x = randomFloats(2 * 333, 800, 100);
  x.set([65504, 65520, 1e-8, -3e-5, 6.1e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11], 0);
  for (const [from, to] of [["f32", "f16"], ["bf16", "f16"], ["f16", "f32"], ["bf16", "f32"]] as const) {
    await t.step(`${from} -> ${to}`, async () => {
      const values = roundTo(from, x);
      const src = ctx.fromFloats(from, [2, 333], values);
      const dst = ctx.tensor(to, [2, 333]);
      const rec = ctx.record();
      convert(rec, dst, src);
      await rec.submit();
      assert.deepEqual(await ctx.readFloats(dst), roundTo(to, values));
      ctx.release(src);
      ctx.release(dst);
    });
  }
});

Deno.test("linear rejects mismatched shapes and types with a message naming them", async () => {
  const ctx = await context();
  const rec = ctx.record();
  const w = ctx.tensor("q4", [64, 64]);
  assert.throws(
    () => linear(rec, { y: ctx.tensor("f32", [1, 64]), x: ctx.tensor("f32", [1, 32]), w }),
    /K = 64/,
  );
  assert.throws(() => linear(rec, { y: ctx.tensor("f32", [2, 64]), x: ctx.tensor("f32", [1, 64]), w }), /y/);
  assert.throws(
    () => linear(rec, { y: ctx.tensor("f32", [1, 64]), x: ctx.tensor("u32", [1, 64]), w }),
    /x must be f32 or f16/,
  );
  assert.throws(() => ctx.tensor("q4_k", [4, 100]), /divisible by 256/);
});
