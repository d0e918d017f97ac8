/** Argument checks and small helpers shared by the op wrappers. */
import type { FloatType } from "../dtype.ts";
import type { Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";

/** Workgroup size of the elementwise kernels. */
export const WG = 256;

export function floatType(t: Tensor, what: string): FloatType {
  if (t.dtype !== "f32" && t.dtype !== "f16") throw new TypeError(`${what} must be f32 or f16, got ${t}`);
  return t.dtype;
}

export function sameShape(a: Tensor, b: Tensor, what: string): void {
  if (a.rows !== b.rows || a.rowLength !== b.rowLength) {
    throw new RangeError(`${what}: ${a} and ${b} must both be [${a.rows}, ${a.rowLength}]`);
  }
}

/** u32 indices given either as a GPU tensor (e.g. sampled ids) or host numbers (uploaded for this step). */
export type Indices = Tensor | ArrayLike<number>;

export function indexTensor(rec: Recorder, indices: Indices, what: string, bound?: number): Tensor {
  if ("buffer" in indices) {
    if (indices.dtype !== "u32") throw new TypeError(`${what} must be a u32 tensor, got ${indices}`);
    return indices;
  }
  const data = Uint32Array.from(indices);
  for (let i = 0; i < indices.length; i++) {
    if (!Number.isInteger(indices[i]) || indices[i] < 0 || (bound !== undefined && indices[i] >= bound)) {
      throw new RangeError(`${what}[${i}] = ${indices[i]} is not an index below ${bound}`);
    }
  }
  return rec.upload("u32", [Math.max(1, data.length)], data.length ? data : new Uint32Array(1));
}

export function count(indices: Indices): number {
  return "buffer" in indices ? indices.size : indices.length;
}
