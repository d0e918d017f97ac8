/** Elementwise kernels (kernels/activation.wgsl): SwiGLU, exact GELU, residual add; and their CPU references. */
import { Params, type Recorder } from "../recorder.ts";
import type { Tensor } from "../tensor.ts";
import { floatType, sameShape, WG } from "./common.ts";

function elementwise(rec: Recorder, entry: string, y: Tensor, a: Tensor, b: Tensor): void {
  const X = floatType(a, `${entry}: input`), Y = floatType(y, `${entry}: output`);
  if (b.dtype !== a.dtype) throw new TypeError(`${entry}: inputs ${a} and ${b} differ in type`);
  sameShape(y, a, entry);
  sameShape(y, b, entry);
  const kernel = rec.ctx.kernel({
    file: "activation.wgsl",
    entry,
    aliases: { X, Y },
    bindings: ["read", "read", "write"],
  });
  const [ab, bb, yb] = [rec.bind(a), rec.bind(b), rec.bind(y)];
  rec.dispatch(
    kernel,
    [ab, bb, yb],
    new Params().u32(
      y.rows,
      y.rowLength,
      ab.offset,
      a.rowStride,
      bb.offset,
      b.rowStride,
      yb.offset,
      y.rowStride,
    ),
    Math.ceil(y.size / WG),
  );
}

/** y = silu(gate) * up, the SwiGLU of the FFN (gate = w1·x, up = w3·x; views of one fused output work). */
export function swiglu(rec: Recorder, args: { y: Tensor; gate: Tensor; up: Tensor }): void {
  elementwise(rec, "swiglu", args.y, args.gate, args.up);
}

/** y = GELU(x) with erf (not the tanh approximation), the adapter's activation. */
export function geluErf(rec: Recorder, args: { y: Tensor; x: Tensor }): void {
  elementwise(rec, "gelu_erf", args.y, args.x, args.x);
}

/** y = a + b. */
export function add(rec: Recorder, args: { y: Tensor; a: Tensor; b: Tensor }): void {
  elementwise(rec, "add", args.y, args.a, args.b);
}

export function swigluRef(gate: Float32Array, up: Float32Array): Float64Array {
  return Float64Array.from(gate, (g, i) => g / (1 + Math.exp(-g)) * up[i]);
}

export function addRef(a: Float32Array, b: Float32Array): Float64Array {
  const y = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) y[i] = a[i] + b[i];
  return y;
}

export function geluRef(x: Float32Array): Float64Array {
  return Float64Array.from(x, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
}

/** erf in f64: its Maclaurin series for |x| < 3, the continued fraction of erfc beyond. */
export function erf(x: number): number {
  const z = Math.abs(x);
  if (z < 3) {
    let term = z, sum = z;
    for (let n = 1; n < 100 && Math.abs(term) > 1e-17 * Math.abs(sum); n++) {
      term *= -z * z / n;
      sum += term / (2 * n + 1);
    }
    return Math.sign(x) * sum * 2 / Math.sqrt(Math.PI);
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = (n / 2) / (z + f);
  return Math.sign(x) * (1 - Math.exp(-z * z) / Math.sqrt(Math.PI) / (z + f));
}
