/**
 * RMSNorm, DoRA's row rescaling, RoPE (1D and 2D), SwiGLU, exact GELU, residual add, embedding lookup and row
 * scatter against their CPU references, at odd sizes and Pixtral's (5120, 1024, 14336, 131072-row tables).
 */
import assert from "node:assert/strict";
import { IQ_FORMATS } from "../runtime/gpu/ops/iq.ts";
import type { GpuContext } from "../runtime/gpu/context.ts";
import { f16Bits, type FloatType, roundTo, rowBytes } from "../runtime/gpu/dtype.ts";
import { add, addRef, geluErf, geluRef, swiglu, swigluRef } from "../runtime/gpu/ops/activation.ts";
import {
  embed,
  embedRef,
  patches,
  patchesRef,
  scatterRows,
  scatterRowsRef,
} from "../runtime/gpu/ops/embed.ts";
import type { WeightType } from "../runtime/gpu/ops/linear.ts";
import {
  rmsNorm,
  rmsNormRef,
  rmsNormShrink,
  rowNormScale,
  rowNormScaleRef,
} from "../runtime/gpu/ops/norm.ts";
import { loraShrink, loraShrinkRef } from "../runtime/gpu/ops/lora.ts";
import { dequantizeRef } from "../runtime/gpu/ops/quantize.ts";
import { rope, rope2d, ropeRef } from "../runtime/gpu/ops/rope.ts";
import {
  assertClose,
  context,
  EPS16,
  EPS32,
  randomBlocks,
  randomFloats,
  SUB16,
  windowedContext,
} from "./gpu_helpers.ts";

async function run(ctx: GpuContext, record: (rec: ReturnType<GpuContext["record"]>) => void): Promise<void> {
  const rec = ctx.record();
  record(rec);
  await rec.submit();
}

Deno.test("RMSNorm matches the reference", async (t) => {
  const ctx = await context();
  // Normalisation in f32 against f64: a few ulps of the scale; an f16 activation rounds the normalised value
  // (one f16 rounding, possibly in the other direction when f32 and f64 straddle a rounding boundary: 2 ε16,
  // or half the f16 subnormal spacing for tiny values).
  const cases: [number, number, FloatType, FloatType][] = [
    [1, 1, "f32", "f32"],
    [3, 7, "f16", "f32"],
    [5, 1024, "f32", "f16"],
    [2, 5120, "f16", "f16"],
    [17, 4099, "f32", "f32"],
  ];
  for (const [i, [rows, dim, X, Y]] of cases.entries()) {
    await t.step(`${rows}x${dim} ${X} -> ${Y}`, async () => {
      const x = roundTo(X, randomFloats(rows * dim, 10 + i, 3));
      const w = randomFloats(dim, 20 + i, 1);
      const xt = ctx.fromFloats(X, [rows, dim], x), wt = ctx.fromFloats("f32", [dim], w);
      const yt = ctx.tensor(Y, [rows, dim]);
      await run(ctx, (rec) => rmsNorm(rec, { y: yt, x: xt, weight: wt, eps: 1e-5 }));
      const ref = rmsNormRef(x, w, rows, dim, 1e-5, X);
      const xr = rmsNormRef(x, w.map(Math.abs), rows, dim, 1e-5, "f32"); // |x · r · w|
      const tol = (j: number) =>
        (X === "f16"
          ? 2 * EPS16 * Math.abs(xr[j]) + SUB16 * Math.abs(w[j % dim])
          : 8 * EPS32 * Math.abs(xr[j])) +
        (Y === "f16" ? EPS16 * Math.abs(ref[j]) + SUB16 : 0);
      assertClose(await ctx.readFloats(yt), ref, tol, "rms_norm");
    });
  }
  await t.step("a strided input view (the rows of a wider matrix)", async () => {
    const wide = randomFloats(4 * 96, 30), w = randomFloats(64, 31);
    const xt = ctx.fromFloats("f32", [4, 96], wide).sliceCols(16, 64);
    const yt = ctx.tensor("f32", [4, 64]);
    await run(
      ctx,
      (rec) => rmsNorm(rec, { y: yt, x: xt, weight: ctx.fromFloats("f32", [64], w), eps: 1e-5 }),
    );
    const x = Float32Array.from({ length: 4 * 64 }, (_, j) => wide[Math.floor(j / 64) * 96 + 16 + (j % 64)]);
    assertClose(await ctx.readFloats(yt), rmsNormRef(x, w, 4, 64, 1e-5), 1e-5, "strided rms_norm");
  });
});

Deno.test("RMSNorm with LoRA's shrink of its output equals RMSNorm then the shrink, bit for bit", async (t) => {
  const ctx = await context();
  // The same sums in the same order (256 threads striding the row, then one workgroup reduction), from y as stored.
  for (const [X, Y] of [["f32", "f32"], ["f32", "f16"]] as const) {
    await t.step(`${X} -> ${Y}`, async () => {
      const rows = 5, dim = 1000, ranks = [3, 8];
      const x = roundTo(X, randomFloats(rows * dim, 60, 3)), w = randomFloats(dim, 61);
      const a = roundTo(Y, randomFloats(11 * dim, 62, 0.1));
      const slots = [1, -1, 0, 1, 0].map((i) =>
        i < 0 ? undefined : { offset: i ? ranks[0] : 0, rank: ranks[i], b: 0, ranks: [ranks[i]] }
      );
      const [xt, wt, at] = [
        ctx.fromFloats(X, [rows, dim], x),
        ctx.fromFloats("f32", [dim], w),
        ctx.fromFloats(Y, [11, dim], a),
      ];
      const zeros = new Float32Array(rows * 8);
      const [y1, y2] = [ctx.tensor(Y, [rows, dim]), ctx.tensor(Y, [rows, dim])];
      const [t1, t2] = [ctx.fromFloats(Y, [rows, 8], zeros), ctx.fromFloats(Y, [rows, 8], zeros)];
      await run(ctx, (rec) => {
        rmsNormShrink(rec, { y: y1, x: xt, weight: wt, eps: 1e-5, a: at, t: t1, slots });
        rmsNorm(rec, { y: y2, x: xt, weight: wt, eps: 1e-5 });
        loraShrink(rec, { t: t2, x: y2, a: at, slots });
      });
      const [fusedY, fusedT] = [await ctx.readFloats(y1), await ctx.readFloats(t1)];
      assert.deepEqual(fusedY, await ctx.readFloats(y2));
      assert.deepEqual(fusedT, await ctx.readFloats(t2));
      // And they are the shrink of the normalized rows (rows without an adapter left alone).
      const want = loraShrinkRef(fusedY, a, dim, slots, 8);
      assertClose(fusedT, want, (j) => 1e-5 + (Y === "f16" ? EPS16 : 4 * EPS32) * 4 * Math.abs(want[j]), "t");
      assert.ok(fusedT.subarray(8, 16).every((v) => v === 0));
    });
  }
});

Deno.test("row rescaling to given lengths (DoRA's merge) matches the reference", async () => {
  const ctx = await context();
  // The sum of squares in f32 against f64 over up to 14336 terms, then one product: a few ulps a term.
  for (const [i, [rows, dim]] of [[1, 1], [3, 7], [9, 257], [4, 14336]].entries()) {
    const x = randomFloats(rows * dim, 40 + i, 0.5), norms = randomFloats(rows, 50 + i, 2);
    const yt = ctx.tensor("f32", [rows, dim]);
    await run(ctx, (rec) =>
      rowNormScale(rec, {
        y: yt,
        x: ctx.fromFloats("f32", [rows, dim], x),
        norms: ctx.fromFloats("f32", [rows], norms),
      }));
    const ref = rowNormScaleRef(x, norms, rows, dim);
    assertClose(await ctx.readFloats(yt), ref, (j) => 64 * EPS32 * Math.abs(ref[j]), `${rows}x${dim}`);
  }
});

Deno.test("RoPE: decoder (interleaved, θ = 1e9) and vision 2D (θ = 1e4)", async (t) => {
  const ctx = await context();
  // Angles are the same f32 products on both sides; the GPU's cos/sin of the reduced angle are accurate to
  // about 1e-6, so each output is within 4e-6 · (|a| + |b|) (plus the f16 rounding of the result).
  const tolerance = (x: Float32Array, ref: Float64Array, X: FloatType) => (j: number) => {
    const pair = j - (j % 2);
    return 4e-6 * (Math.abs(x[pair]) + Math.abs(x[pair + 1])) + (X === "f16" ? EPS16 * Math.abs(ref[j]) : 0);
  };
  const cases: [number, number, number, FloatType][] = [[1, 1, 128, "f32"], [7, 3, 128, "f16"], [
    5,
    32,
    128,
    "f32",
  ]];
  for (const [i, [tokens, heads, dim, X]] of cases.entries()) {
    await t.step(`decoder: ${tokens} tokens x ${heads} heads x ${dim}, ${X}`, async () => {
      const x = roundTo(X, randomFloats(tokens * heads * dim, 40 + i));
      // Positions up to the 128k context, where an unreduced GPU cos/sin would go wrong.
      const positions = Array.from({ length: tokens }, (_, j) => [0, 1, 131071, 77777, 4096, 12345, 9][j]);
      const xt = ctx.fromFloats(X, [tokens, heads * dim], x);
      await run(ctx, (rec) => rope(rec, { x: xt, headDim: dim, theta: 1e9, positions }));
      const ref = ropeRef(x, tokens, dim, 1e9, positions);
      assertClose(await ctx.readFloats(xt), ref, tolerance(x, ref, X), "rope");
    });
  }
  await t.step("decoder: the q and k columns of a fused q|k|v row, positions from a GPU tensor", async () => {
    const [tokens, dim] = [3, 64];
    const row = 6 * dim; // 3 q heads, 1 k head, 2 v-like heads that must stay untouched
    const x = randomFloats(tokens * row, 50);
    const xt = ctx.fromFloats("f32", [tokens, row], x);
    const positions = ctx.fromBytes("u32", [tokens], Uint32Array.of(5, 6, 100000));
    await run(ctx, (rec) => rope(rec, { x: xt.sliceCols(0, 4 * dim), headDim: dim, theta: 1e9, positions }));
    const out = await ctx.readFloats(xt);
    const qk = Float32Array.from(
      { length: tokens * 4 * dim },
      (_, j) => x[Math.floor(j / (4 * dim)) * row + (j % (4 * dim))],
    );
    const ref = ropeRef(qk, tokens, dim, 1e9, [5, 6, 100000]);
    for (let tk = 0; tk < tokens; tk++) {
      const got = out.subarray(tk * row, tk * row + 4 * dim),
        want = ref.subarray(tk * 4 * dim, (tk + 1) * 4 * dim);
      assertClose(got, want, 1e-5, `token ${tk} q|k`);
      assert.deepEqual(
        out.subarray(tk * row + 4 * dim, (tk + 1) * row),
        x.subarray(tk * row + 4 * dim, (tk + 1) * row),
      );
    }
  });
  const grids: [number, number, number, FloatType][] = [[1, 1, 4, "f32"], [3, 5, 16, "f16"], [
    64,
    64,
    16,
    "f32",
  ]];
  for (const [i, [rowsP, colsP, heads, X]] of grids.entries()) {
    await t.step(`vision 2D: ${rowsP}x${colsP} patches x ${heads} heads x 64, ${X}`, async () => {
      const tokens = rowsP * colsP;
      const x = roundTo(X, randomFloats(tokens * heads * 64, 60 + i));
      const positions = Array.from({ length: tokens }, (_, j) => [Math.floor(j / colsP), j % colsP]).flat();
      const xt = ctx.fromFloats(X, [tokens, heads * 64], x);
      await run(ctx, (rec) => rope2d(rec, { x: xt, headDim: 64, theta: 1e4, positions }));
      const ref = ropeRef(x, tokens, 64, 1e4, positions, true);
      assertClose(await ctx.readFloats(xt), ref, tolerance(x, ref, X), "rope_2d");
    });
  }
  await t.step("the 2D angles follow the spec: rows take f_0, f_2, ..., columns f_1, f_3, ...", () => {
    // A unit vector in pair k rotated at (row 1, col 0) turns by f_{2k} for k < 16 and not at all beyond.
    const x = new Float32Array(64).fill(0).map((_, j) => (j % 2 === 0 ? 1 : 0));
    const ref = ropeRef(x, 1, 64, 1e4, [1, 0], true);
    for (let k = 0; k < 32; k++) {
      const angle = Math.atan2(ref[2 * k + 1], ref[2 * k]);
      const want = k < 16 ? Math.fround(1 / Math.fround(1e4 ** Math.fround((2 * (2 * k)) / 64))) : 0;
      assert.ok(Math.abs(angle - want) < 1e-6, `pair ${k}: ${angle} vs ${want}`);
    }
  });
});

Deno.test("SwiGLU, exact GELU and residual add match the reference", async (t) => {
  const ctx = await context();
  // SwiGLU: exp within a few ulps, so 4e-6 relative. GELU: the kernel's erf is within 1.2e-7 absolute, so
  // 2e-7 · |x| + 4ε32 · |y|. Add: exact in f32 (the sum of two f32 rounded once) up to one rounding.
  await t.step("SwiGLU over the gate and up halves of a fused [T, 2·14336] output", async () => {
    const [rows, hidden] = [3, 14336];
    const fused = randomFloats(rows * 2 * hidden, 70, 8);
    const ft = ctx.fromFloats("f32", [rows, 2 * hidden], fused);
    const yt = ctx.tensor("f16", [rows, hidden]);
    await run(
      ctx,
      (rec) => swiglu(rec, { y: yt, gate: ft.sliceCols(0, hidden), up: ft.sliceCols(hidden, hidden) }),
    );
    const gate = Float32Array.from(
      { length: rows * hidden },
      (_, j) => fused[Math.floor(j / hidden) * 2 * hidden + (j % hidden)],
    );
    const up = Float32Array.from(
      { length: rows * hidden },
      (_, j) => fused[Math.floor(j / hidden) * 2 * hidden + hidden + (j % hidden)],
    );
    const ref = swigluRef(gate, up);
    assertClose(await ctx.readFloats(yt), ref, (j) => (4e-6 + EPS16) * Math.abs(ref[j]) + SUB16, "swiglu");
  });
  for (const [rows, cols, X] of [[1, 1, "f32"], [7, 5120, "f16"], [13, 1021, "f32"]] as const) {
    await t.step(`GELU and SwiGLU ${rows}x${cols} ${X}`, async () => {
      const a = roundTo(X, randomFloats(rows * cols, rows + cols, 12)),
        b = roundTo(X, randomFloats(rows * cols, 3));
      const at = ctx.fromFloats(X, [rows, cols], a), bt = ctx.fromFloats(X, [rows, cols], b);
      const gt = ctx.tensor("f32", [rows, cols]), st = ctx.tensor("f32", [rows, cols]);
      await run(ctx, (rec) => {
        geluErf(rec, { y: gt, x: at });
        swiglu(rec, { y: st, gate: at, up: bt });
      });
      const gelu = geluRef(a), sw = swigluRef(a, b);
      assertClose(
        await ctx.readFloats(gt),
        gelu,
        (j) => 2e-7 * Math.abs(a[j]) + 4 * EPS32 * Math.abs(gelu[j]),
        "gelu",
      );
      assertClose(await ctx.readFloats(st), sw, (j) => 4e-6 * Math.abs(sw[j]) + 1e-30, "swiglu");
    });
  }
  await t.step("add over more elements than one dispatch dimension holds (65535 x 256 + 3)", async () => {
    const n = 65535 * 256 + 3;
    const a = new Float32Array(n), b = new Float32Array(n);
    for (let i = 0; i < n; i++) [a[i], b[i]] = [i % 1021, (i % 4099) / 8];
    const [at, bt, yt] = [
      ctx.fromBytes("f32", [1, n], a),
      ctx.fromBytes("f32", [1, n], b),
      ctx.tensor("f32", [1, n]),
    ];
    await run(ctx, (rec) => add(rec, { y: yt, a: at, b: bt }));
    const y = await ctx.readFloats(yt);
    const ref = addRef(a, b);
    for (let i = 0; i < n; i++) if (y[i] !== Math.fround(ref[i])) assert.fail(`add: element ${i} is ${y[i]}`);
    for (const x of [at, bt, yt]) ctx.release(x);
  });
});

Deno.test("embedding lookup from tables in every weight format, and row scatter", async (t) => {
  const ctx = await context();
  const formats: WeightType[] = [
    "f32",
    "f16",
    "q8_0",
    "q3_k",
    "q4_k",
    "q5_k",
    "q6_k",
    "iq4_nl",
    "iq4_xs",
    "q2_k",
    "q4_0",
    "q4_1",
    "q5_0",
    "q5_1",
    ...IQ_FORMATS,
    "q4",
  ];
  for (const [i, format] of formats.entries()) {
    await t.step(`${format} table, f32 and f16 rows`, async () => {
      const [vocab, dim] = [37, 256];
      const bytes = format === "f32"
        ? new Uint8Array(randomFloats(vocab * dim, 90 + i).buffer)
        : format === "f16"
        ? new Uint8Array(f16Bits(randomFloats(vocab * dim, 90 + i)).buffer)
        : randomBlocks(format, vocab, dim, 90 + i);
      const table = ctx.fromBytes(format, [vocab, dim], bytes.subarray(0, vocab * rowBytes(format, dim)));
      const ids = [0, 36, 5, 5, 17];
      const decoded = dequantizeRef(format, bytes, vocab, dim);
      for (const Y of ["f32", "f16"] as const) {
        const yt = ctx.tensor(Y, [ids.length, dim]);
        await run(ctx, (rec) => embed(rec, { y: yt, table, ids }));
        assert.deepEqual(await ctx.readFloats(yt), roundTo(Y, embedRef(decoded, dim, ids)));
      }
    });
  }
  await t.step("a table split into binding windows, ids from a GPU tensor", async () => {
    const windowed = await windowedContext();
    const [vocab, dim] = [2000, 96]; // 204 KB of Q8_0: four 64 KiB windows
    const bytes = randomBlocks("q8_0", vocab, dim, 99);
    const table = windowed.fromBytes("q8_0", [vocab, dim], bytes);
    const idList = [1999, 0, 321, 322, 1000, 640, 641];
    const ids = windowed.fromBytes("u32", [idList.length], Uint32Array.from(idList));
    const yt = windowed.tensor("f32", [idList.length, dim]);
    await run(windowed, (rec) => embed(rec, { y: yt, table, ids }));
    assert.deepEqual(
      await windowed.readFloats(yt),
      embedRef(dequantizeRef("q8_0", bytes, vocab, dim), dim, idList),
    );
  });
  await t.step("an i-quant table split into binding windows, its grid bound beside each", async () => {
    const windowed = await windowedContext();
    const [vocab, dim] = [1000, 256]; // 82 KB of IQ2_S: two 64 KiB windows
    const bytes = randomBlocks("iq2_s", vocab, dim, 98);
    const table = windowed.fromBytes("iq2_s", [vocab, dim], bytes);
    const idList = [999, 0, 798, 799, 800, 1];
    const yt = windowed.tensor("f32", [idList.length, dim]);
    await run(windowed, (rec) => embed(rec, { y: yt, table, ids: idList }));
    assert.deepEqual(
      await windowed.readFloats(yt),
      embedRef(dequantizeRef("iq2_s", bytes, vocab, dim), dim, idList),
    );
  });
  await t.step("Pixtral's 131072 x 5120 table in q4, rows at both ends", async () => {
    const [vocab, dim] = [131072, 5120];
    const bytes = randomBlocks("q4", vocab, dim, 98);
    const table = ctx.fromBytes("q4", [vocab, dim], bytes, { pooled: false });
    const ids = [131071, 0, 65536, 12, 13];
    const yt = ctx.tensor("f32", [ids.length, dim]);
    await run(ctx, (rec) => embed(rec, { y: yt, table, ids }));
    const stride = rowBytes("q4", dim);
    const want = ids.flatMap((
      id,
    ) => [...dequantizeRef("q4", bytes.subarray(id * stride, (id + 1) * stride), 1, dim)]);
    assert.deepEqual(await ctx.readFloats(yt), Float32Array.from(want));
    ctx.release(table);
  });
  await t.step("image embeddings scattered into the [IMG] rows of a sequence", async () => {
    const [tokens, dim] = [11, 5120];
    const seq = randomFloats(tokens * dim, 97), img = roundTo("f16", randomFloats(4 * dim, 96));
    const yt = ctx.fromFloats("f32", [tokens, dim], seq);
    const rows = [2, 3, 5, 10];
    await run(ctx, (rec) => scatterRows(rec, { y: yt, x: ctx.fromFloats("f16", [4, dim], img), rows }));
    assert.deepEqual(await ctx.readFloats(yt), scatterRowsRef(seq, dim, img, rows));
  });
  await t.step("an image cut into 16 x 16 patch rows, (channel, y, x) order", async () => {
    const [h, w] = [48, 80];
    const image = randomFloats(3 * h * w, 95);
    const yt = ctx.tensor("f32", [(h / 16) * (w / 16), 768]);
    await run(ctx, (rec) => patches(rec, { y: yt, x: ctx.fromFloats("f32", [3, h, w], image), patch: 16 }));
    const got = await ctx.readFloats(yt);
    assert.deepEqual(got, patchesRef(image, 3, h, w, 16));
    // Patch (row 1, col 2), channel 2, pixel (dy 3, dx 4) is image[2][16 + 3][32 + 4].
    assert.equal(got[(1 * 5 + 2) * 768 + 2 * 256 + 3 * 16 + 4], image[(2 * h + 19) * w + 36]);
  });
  await t.step("out-of-range ids and rows are refused", () => {
    const rec = ctx.record();
    const table = ctx.tensor("f16", [10, 8]);
    assert.throws(
      () => embed(rec, { y: ctx.tensor("f32", [1, 8]), table, ids: [10] }),
      /embed ids\[0\] = 10/,
    );
    assert.throws(
      () => scatterRows(rec, { y: ctx.tensor("f32", [3, 8]), x: ctx.tensor("f32", [1, 8]), rows: [3] }),
      /rows\[0\] = 3/,
    );
  });
});
