/** Seeded uniform random fills (kernels/random.wgsl), and their CPU reference. */
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";
import { WG } from "./common.ts";
import { drawUniform } from "./sampling.ts";

export interface RandomArgs {
  /** A contiguous f32 tensor. */
  y: Tensor;
  seed: number;
  /** Index of y's first element in the whole random stream (for filling a large tensor in pieces). */
  start?: number;
  /** Values lie in [offset - scale/2, offset + scale/2). */
  scale: number;
  offset?: number;
}

export function randomUniform(rec: Recorder, { y, seed, start = 0, scale, offset = 0 }: RandomArgs): void {
  if (y.dtype !== "f32" || !y.contiguous) {
    throw new TypeError(`randomUniform: y must be a contiguous f32 tensor`);
  }
  const kernel = rec.ctx.kernel({ file: "random.wgsl", entry: "random_uniform_f32", bindings: ["write"] });
  const yb = rec.bind(y);
  rec.dispatch(
    kernel,
    [yb],
    new Params().u32(y.size, start >>> 0, seed >>> 0, yb.offset).f32(scale, offset),
    Math.ceil(y.size / WG),
  );
}

export function randomUniformRef(
  count: number,
  seed: number,
  scale: number,
  offset = 0,
  start = 0,
): Float32Array {
  return Float32Array.from(
    { length: count },
    (_, i) => offset + scale * (drawUniform(seed, (start + i) >>> 0) - 0.5),
  );
}
