/** LoRA's shrink for a decode step's rows, each against its own adapter (kernels/lora.wgsl), and its CPU reference. */
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";
import { floatType } from "./common.ts";
import { type LoraSlot, loraTable, MATVEC_MAX_ROWS } from "./linear.ts";

/**
 * t[m, j] = x[m] · A[slots[m].offset + j] for j < slots[m].rank: x [M, k] (M <= 8), A [Σ ranks, k] and t
 * [M, ≥ rank] in one float type; rows without a slot are left as they are.
 */
export function loraShrink(
  rec: Recorder,
  { t, x, a, slots }: { t: Tensor; x: Tensor; a: Tensor; slots: readonly (LoraSlot | undefined)[] },
): void {
  const X = floatType(x, "loraShrink: x");
  if (a.dtype !== X || t.dtype !== X) {
    throw new TypeError(`loraShrink: x, A and t must share a type: ${x}, ${a}, ${t}`);
  }
  if (x.rows > MATVEC_MAX_ROWS || slots.length !== x.rows || t.rows !== x.rows) {
    throw new RangeError(
      `loraShrink: ${slots.length} slots, x ${x} and t ${t} need the same rows, at most 8`,
    );
  }
  if (a.rowLength !== x.rowLength) {
    throw new RangeError(`loraShrink: A ${a} does not have x's ${x.rowLength} columns`);
  }
  const rank = Math.max(0, ...slots.map((s) => s?.rank ?? 0));
  if (rank > t.rowLength || slots.some((s) => s && s.offset + s.rank > a.rows)) {
    throw new RangeError(`loraShrink: a slot lies outside A ${a} or t ${t}`);
  }
  const kernel = rec.ctx.kernel({
    file: "lora.wgsl",
    entry: "lora_shrink",
    aliases: { X },
    bindings: ["read", "read", "write"],
  });
  const [xb, ab, tb] = [rec.bind(x), rec.bind(a), rec.bind(t)];
  rec.dispatch(
    kernel,
    [xb, ab, tb],
    new Params().u32(
      x.rowLength,
      xb.offset,
      x.rowStride,
      ab.offset,
      tb.offset,
      t.rowStride,
      0,
      0,
      ...loraTable(slots),
    ),
    [rank, x.rows, 1],
  );
}

/** CPU reference of loraShrink, in f64: [M, rank] (0 past a row's own rank). */
export function loraShrinkRef(
  x: Float32Array,
  a: Float32Array,
  k: number,
  slots: readonly (LoraSlot | undefined)[],
  rank: number,
): Float64Array {
  const t = new Float64Array(slots.length * rank);
  slots.forEach((slot, m) => {
    for (let j = 0; j < (slot?.rank ?? 0); j++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += x[m * k + c] * a[(slot!.offset + j) * k + c];
      t[m * rank + j] = s;
    }
  });
  return t;
}
