import assert from "node:assert/strict";
import { acquireGpu, GpuUnavailableError, listAdapters } from "../runtime/gpu/device.ts";
import { GpuContext } from "../runtime/gpu/context.ts";
import { byteSize, rowBytes } from "../runtime/gpu/dtype.ts";
import { add } from "../runtime/gpu/ops/activation.ts";
import { keyHash, KeyTable } from "../runtime/gpu/key_table.ts";
import { kernelSource, PipelineCache, sections } from "../runtime/gpu/pipeline.ts";
import { BufferPool, sizeClass } from "../runtime/gpu/pool.ts";
import { Tensor } from "../runtime/gpu/tensor.ts";
import { rowWindows } from "../runtime/gpu/windows.ts";

function seededRandom(seed: number): () => number {
  return () => {
    seed = (seed * 1664525 + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };
}

/**
 * A step y = ((a + b) + b) + ... (`steps` adds through pooled scratch tensors), with its expected values; `record`
 * records it and returns the read of y.
 */
function addChain(ctx: GpuContext, n: number, steps: number, seed: number) {
  const random = seededRandom(seed);
  const a = Float32Array.from({ length: n }, random), b = Float32Array.from({ length: n }, random);
  const [at, bt] = [ctx.fromFloats("f32", [1, n], a), ctx.fromFloats("f32", [1, n], b)];
  const expected = Float32Array.from(a);
  for (let i = 0; i < steps; i++) for (let j = 0; j < n; j++) expected[j] = Math.fround(expected[j] + b[j]);
  const record = (rec: ReturnType<GpuContext["record"]>) => {
    let y = at;
    for (let i = 0; i < steps; i++) {
      const next = rec.scratch("f32", [1, n]);
      add(rec, { y: next, a: y, b: bt });
      y = next;
    }
    return rec.read(y);
  };
  return { expected, record };
}

Deno.test("a recorder batches a whole step into one submit, reusing pooled buffers", async () => {
  const ctx = await GpuContext.create();
  try {
    console.log(`adapter: ${ctx.gpu.name}, shader-f16: ${ctx.f16}`);
    const n = 1021; // a prime: not a multiple of the workgroup size
    const { expected, record } = addChain(ctx, n, 50, 7);
    const run = async () => {
      const rec = ctx.record("chain");
      const out = record(rec);
      assert.equal(rec.dispatches, 50);
      await rec.submit();
      return out;
    };
    assert.deepEqual(new Float32Array((await run()).buffer), expected);
    const allocated = ctx.pool.stats.allocatedBytes;
    assert.deepEqual(new Float32Array((await run()).buffer), expected);
    assert.equal(ctx.pool.stats.allocatedBytes, allocated, "the second step allocates nothing new");
    assert.equal(ctx.pool.stats.inUseBytes, 2 * sizeClass(4 * n), "scratch tensors went back to the pool");
  } finally {
    ctx.destroy();
  }
});

Deno.test("where queue.submit blocks, a long step is submitted in parts with the event loop running between them", async () => {
  const ctx = await GpuContext.create({ submitBudgetMs: 1 });
  try {
    const { expected, record } = addChain(ctx, 1 << 18, 40, 11);
    const run = async () => {
      const rec = ctx.record("long step");
      const out = record(rec);
      // Timers fire only when the event loop gets a turn, i.e. between parts.
      let turns = 0;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const tick = () => {
        turns++;
        timer = setTimeout(tick, 0);
      };
      timer = setTimeout(tick, 0);
      await rec.submit();
      clearTimeout(timer);
      return { values: new Float32Array((await out).buffer), turns };
    };
    const first = await run();
    assert.deepEqual(first.values, expected);
    // As lavapipe measures when its submit waits for earlier work: 5 ms a dispatch, against the 1 ms budget.
    ctx.noteSubmit(200, 40);
    ctx.noteSubmit(200, 40);
    assert.equal(ctx.dispatchesPerSubmit(), 1);
    const second = await run();
    assert.deepEqual(second.values, expected, "parts run in order");
    assert.ok(second.turns >= 2, `the event loop ran ${second.turns} times during the submit`);
    // A second recorder waits for the parts to be submitted: its parameters cannot overwrite theirs.
    const [x, y] = await Promise.all([run(), run()]);
    assert.deepEqual([x.values, y.values], [expected, expected]);
  } finally {
    ctx.destroy();
  }
});

Deno.test("the per-dispatch caches tell keys apart anywhere, above 32 bits too, and find what they hold", async () => {
  const table = new KeyTable<string>();
  const keys = [
    [1, 2, 3],
    [1, 2, 3 + 2 ** 32],
    [1, 2 + 2 ** 32, 3],
    [1, 2],
    [1, 2, 3, 0],
    [2, 1, 3],
    [0],
    [],
  ];
  keys.forEach((key, i) => table.add(key, `v${i}`));
  keys.forEach((key, i) => assert.equal(table.get([...key]), `v${i}`));
  assert.equal(table.get([1, 2, 4]), undefined);
  // Keys that share a hash bucket: each is found, and only under itself.
  const byHash = new Map<number, number[]>();
  let pair: number[][] | undefined;
  for (let n = 0; !pair; n++) {
    const key = [7, n, 4096, 256], other = byHash.get(keyHash(key));
    if (other) pair = [other, key];
    else byHash.set(keyHash(key), key);
  }
  table.add(pair[0], "first");
  assert.equal(table.get(pair[1]), undefined);
  table.add(pair[1], "second");
  assert.deepEqual(pair.map((key) => table.get([...key])), ["first", "second"]);
  assert.equal(table.size, keys.length + 2);
  table.clear();
  assert.equal(table.get([1, 2, 3]), undefined);

  const ctx = await GpuContext.create();
  try {
    const spec = (x: "f32" | "f16", bindings: ("read" | "write")[]) => ({
      file: "activation.wgsl",
      entry: "add",
      aliases: { X: x, Y: x },
      bindings,
    });
    const kernel = ctx.kernels.get(spec("f32", ["read", "read", "write"]));
    assert.equal(ctx.kernels.get(spec("f32", ["read", "read", "write"])), kernel);
    assert.notEqual(ctx.kernels.get(spec("f32", ["read", "write", "write"])), kernel);
    assert.notEqual(ctx.kernels.get(spec("f16", ["read", "read", "write"])), kernel);
    // Bind groups: one per buffer range bound, the same one when bound alike again.
    const t = ctx.tensor("f32", [256]), rec = ctx.record();
    const arena = ctx.paramArena(256);
    const group = (start: number) => ctx.bindGroup(kernel, arena, [0, 1, 2].map(() => rec.bind(t, start)));
    assert.equal(group(0), group(0));
    assert.notEqual(group(0), group(256));
    rec.discard();
    ctx.release(t);
  } finally {
    ctx.destroy();
  }
});

Deno.test("the buffer pool reuses size classes and tracks the peak", async () => {
  const gpu = await acquireGpu();
  try {
    const pool = new BufferPool(gpu.device);
    assert.equal(sizeClass(1), 256);
    assert.equal(sizeClass(1000), 1024);
    assert.equal(sizeClass(1025), 1280); // four classes per power of two
    const x = pool.acquire(1000);
    pool.release(x);
    assert.equal(pool.acquire(900), x, "a released buffer of the same class is handed out again");
    const y = pool.acquire(5000);
    assert.equal(pool.stats.inUseBytes, 1024 + 5120);
    pool.release(y);
    assert.equal(pool.stats.peakInUseBytes, 1024 + 5120);
    assert.throws(() => pool.release(y), /did not hand out/);
    pool.trim();
    assert.equal(pool.stats.allocatedBytes, 1024);
  } finally {
    gpu.device.destroy();
  }
});

Deno.test("tensors: block-format sizes, row and column views, windows", async () => {
  const gpu = await acquireGpu();
  try {
    assert.equal(byteSize("q8_0", [3, 64]), 3 * 2 * 34);
    assert.equal(byteSize("q4_k", [2, 512]), 2 * 2 * 144);
    assert.equal(byteSize("q6_k", [1, 256]), 210);
    assert.equal(rowBytes("q4", 5120), 2560 + 320); // codes, then f16 scales padded to 16 bytes
    assert.equal(rowBytes("q4", 96), 48 + 16);
    assert.throws(() => rowBytes("q8_0", 100), /divisible by 32/);
    const buffer = gpu.device.createBuffer({ size: 4096, usage: GPUBufferUsage.STORAGE });
    const m = new Tensor(buffer, "f16", [10, 48]);
    const cols = m.sliceCols(16, 32);
    assert.deepEqual([cols.offset, cols.rowStride, cols.rowLength, cols.contiguous], [32, 48, 32, false]);
    assert.equal(cols.byteLength, (9 * 48 + 32) * 2);
    assert.deepEqual(cols.reshape([10, 2, 16]).shape, [10, 2, 16]);
    const rows = m.sliceRows(3, 2);
    assert.deepEqual([rows.offset, rows.rows], [3 * 96, 2]);
    assert.throws(() => new Tensor(buffer, "f32", [2000]), /does not fit/);
    const limits = { maxStorageBufferBindingSize: 1000, minStorageBufferOffsetAlignment: 256 };
    assert.deepEqual(rowWindows(limits, 10, [100, 50]), [{ start: 0, count: 7 }, { start: 7, count: 3 }]);
    assert.deepEqual(rowWindows(limits, 9, [100], 2).map((w) => w.count), [6, 3]);
    assert.throws(() => rowWindows(limits, 1, [2000]), /does not fit/);
  } finally {
    gpu.device.destroy();
  }
});

Deno.test("GPU errors surface as exceptions naming the kernel or the limit", async () => {
  const ctx = await GpuContext.create({ maxBindingSize: 1 << 16 });
  try {
    const big = ctx.tensor("f32", [1, 1 << 15]);
    const rec = ctx.record();
    assert.throws(() => add(rec, { y: big, a: big, b: big }), /above the 65536 bytes this GPU binds at once/);
    await rec.submit();
    await assert.rejects(rec.submit(), /already submitted/);
    const noF16 = new PipelineCache(ctx.device, false);
    assert.throws(
      () =>
        noF16.get({
          file: "activation.wgsl",
          entry: "add",
          aliases: { X: "f16", Y: "f16" },
          bindings: ["read"],
        }),
      /lacks the shader-f16 feature/,
    );
    const wrong = ctx.kernels.get({
      file: "activation.wgsl",
      entry: "no_such_entry",
      aliases: { X: "f32", Y: "f32" },
      bindings: [],
    });
    await assert.rejects(wrong.ready, /activation.wgsl:no_such_entry<X=f32,Y=f32> does not compile/);
  } finally {
    ctx.destroy();
  }
});

Deno.test("#ifdef sections: lines kept where their names are defined, nested, with #else; malformed ones refused", () => {
  const source = "a\n#ifdef X\nb\n#ifdef Y\nc\n#else\nd\n#endif\n#else\ne\n#endif\nf";
  assert.equal(sections(source, new Set()), "a\ne\nf");
  assert.equal(sections(source, new Set(["X"])), "a\nb\nd\nf");
  assert.equal(sections(source, new Set(["X", "Y"])), "a\nb\nc\nf");
  assert.equal(sections(source, new Set(["Y"])), "a\ne\nf");
  assert.throws(() => sections("#ifdef\na\n#endif", new Set()), /#ifdef needs one name/);
  assert.throws(() => sections("#ifdef X\n#else\n#else\n#endif", new Set()), /a second #else/);
  assert.throws(() => sections("#ifdef X\na", new Set()), /#ifdef without #endif/);
  assert.throws(() => sections("a\n#endif", new Set()), /#endif without #ifdef/);
  assert.throws(() => sections("#ifdef X\n#endif X", new Set()), /#endif takes no name/);
});

Deno.test("a kernel file's i-quant sections: their grid binding and entry points only where IQ is defined", async () => {
  const plain = kernelSource("matvec.wgsl"), iq = kernelSource("matvec.wgsl", ["IQ"]);
  for (const source of [plain, iq]) assert.doesNotMatch(source, /^#(ifdef|else|endif)/m);
  const grid = /var<storage, read> grid/, w4 = /var<storage, read> w4/;
  assert.ok(grid.test(iq) && !w4.test(iq), "the grid in w4's place");
  assert.ok(w4.test(plain) && !grid.test(plain));
  assert.doesNotMatch(plain, /fn matvec_iq2_xxs/);
  assert.match(iq, /fn matvec_iq2_xxs/);
  // One spec with and without the define: two kernels, and only the one with it has the entry point.
  const ctx = await GpuContext.create();
  try {
    const spec = {
      file: "matvec.wgsl",
      entry: "matvec_iq2_xxs",
      aliases: { X: "f32", Y: "f32" },
      bindings: ["read", "read", "read", "write", "read", "read", "read", "read"],
    } as const;
    const [without, withIq] = [ctx.kernels.get(spec), ctx.kernels.get({ ...spec, defines: ["IQ"] })];
    assert.notEqual(without.id, withIq.id);
    assert.match(withIq.name, /\[IQ\]$/);
    await withIq.ready;
    await assert.rejects(without.ready, /does not compile/);
  } finally {
    ctx.destroy();
  }
});

Deno.test("the kernels that read weights stay within WebGPU's default of 8 storage buffers, i-quants included", async () => {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter!.requestDevice(); // the default limits
  try {
    assert.equal(device.limits.maxStorageBuffersPerShaderStage, 8);
    const kernels = new PipelineCache(device, false);
    const f32 = { X: "f32", Y: "f32" } as const;
    const [r, w] = ["read", "write"] as const;
    const specs = [
      { file: "matvec.wgsl", entry: "matvec_iq2_xxs", aliases: f32, bindings: [r, r, r, w, r, r, r, r] },
      { file: "matmul.wgsl", entry: "matmul_iq3_s", aliases: f32, bindings: [r, r, r, w, r] },
      { file: "embed.wgsl", entry: "embed_iq1_m", aliases: f32, bindings: [r, r, w, r] },
      { file: "quantize.wgsl", entry: "dequantize", aliases: { Y: "f32" }, bindings: [r, w, r] },
    ] as const;
    for (const spec of specs) await kernels.get({ ...spec, defines: ["IQ"] }).ready;
  } finally {
    device.destroy();
  }
});

Deno.test("the device gets the adapter's maximum buffer limits and shader-f16 when offered", async () => {
  const gpu = await acquireGpu();
  try {
    const { adapter, device } = gpu;
    assert.equal(device.limits.maxBufferSize, adapter.limits.maxBufferSize);
    assert.equal(device.limits.maxStorageBufferBindingSize, adapter.limits.maxStorageBufferBindingSize);
    assert.equal(device.features.has("shader-f16"), adapter.features.has("shader-f16"));
    assert.equal(gpu.f16, adapter.features.has("shader-f16"));
  } finally {
    gpu.device.destroy();
  }
});

Deno.test("requiring an adapter that does not exist is a clear error listing what exists", async () => {
  const found = await listAdapters();
  await assert.rejects(
    acquireGpu({ adapter: "no-such-gpu-xyz" }),
    (err: Error) => {
      assert.ok(err instanceof GpuUnavailableError);
      assert.match(err.message, /no WebGPU adapter matches "no-such-gpu-xyz"/);
      assert.ok(found.length > 0 && err.message.includes(found[0].info.description));
      return true;
    },
  );
});

Deno.test("an adapter can be required by part of its name", async () => {
  const [first] = await listAdapters();
  const gpu = await acquireGpu({ adapter: first.info.description.slice(0, 6).toUpperCase() });
  try {
    assert.equal(gpu.adapter.info.description, first.info.description);
  } finally {
    gpu.device.destroy();
  }
});
