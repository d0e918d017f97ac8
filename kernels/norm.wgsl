// RMSNorm over each row: y = (x / sqrt(mean(x²) + eps)) * weight, with the normalisation in f32, the result
// rounded to the activation type X, then multiplied by the f32 weight (as the reference: `_norm(x.float())
// .type_as(x) * weight`). One workgroup per row.
//
// rms_norm_shrink also computes LoRA's shrink of the rows it normalizes (a decode step's rows with adapters,
// runtime/model/lora_modules.ts): t[row, j] = y[row] · A[offset(row) + j] for j < rank(row), from y as stored,
// as kernels/lora.wgsl would from y, a dispatch fewer. Workgroup (0, row) writes the row of y, workgroup
// (1 + j, row) normalizes it again (the same sums) for t[row, j]: the ranks are spread over workgroups.

struct Params {
  rows: u32,
  dim: u32,
  eps: f32,
  x_off: u32,
  x_stride: u32,
  y_off: u32,
  y_stride: u32,
  w_off: u32,
  a_off: u32,      // rms_norm_shrink: A's and t's element offsets, t's row stride
  t_off: u32,
  t_stride: u32,
  pad0: u32,
  lora_rows: array<vec4<u32>, 8>,  // per row: its A offset, rank (then B's start and ranks, unused here)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<Y>;
// rms_norm_shrink: the adapters' A [Σ ranks, dim] and t, in Y.
@group(0) @binding(4) var<storage, read> lora_a: array<Y>;
@group(0) @binding(5) var<storage, read_write> lora_t: array<Y>;

#include "lib/reduce.wgsl"

// The sum of squares of the row at xb in f32, every thread of the workgroup taking part.
fn row_squares(xb: u32, t: u32) -> f32 {
  var s = 0.0;
  for (var i = t; i < p.dim; i += WG) {
    let v = f32(x[xb + i]);
    s += v * v;
  }
  return sum_f(s, t);
}

// Element i of the row at xb normalized with scale r, as stored in Y.
fn normed(xb: u32, i: u32, r: f32) -> Y {
  return Y(f32(X(f32(x[xb + i]) * r)) * weight[p.w_off + i]);
}

// Normalizes the row into y (every thread of the workgroup taking part); returns its scale.
fn rms_norm_row(row: u32, t: u32) -> f32 {
  let xb = p.x_off + row * p.x_stride;
  let r = 1.0 / sqrt(row_squares(xb, t) / f32(p.dim) + p.eps);
  let yb = p.y_off + row * p.y_stride;
  for (var i = t; i < p.dim; i += WG) {
    y[yb + i] = normed(xb, i, r);
  }
  return r;
}

@compute @workgroup_size(WG)
fn rms_norm(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
            @builtin(num_workgroups) ng: vec3<u32>) {
  let row = g.x + g.y * ng.x;
  if (row < p.rows) {
    rms_norm_row(row, t);
  }
}

@compute @workgroup_size(WG)
fn rms_norm_shrink(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>) {
  let row = g.y;
  if (g.x == 0u) {
    rms_norm_row(row, t);
    return;
  }
  let j = g.x - 1u;
  let slot = p.lora_rows[row];
  if (j >= slot.y) {
    return;
  }
  let xb = p.x_off + row * p.x_stride;
  let r = 1.0 / sqrt(row_squares(xb, t) / f32(p.dim) + p.eps);
  let ab = p.a_off + (slot.x + j) * p.dim;
  var s = 0.0;
  for (var i = t; i < p.dim; i += WG) {
    s += f32(normed(xb, i, r)) * f32(lora_a[ab + i]);
  }
  let total = sum_f(s, t);
  if (t == 0u) {
    lora_t[p.t_off + row * p.t_stride + j] = Y(total);
  }
}

// DoRA's merge at load (f32): each row rescaled to the length norm[row], y = x · (norm[row] / ‖x‖).
@compute @workgroup_size(WG)
fn row_norm_scale(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                  @builtin(num_workgroups) ng: vec3<u32>) {
  let row = g.x + g.y * ng.x;
  if (row >= p.rows) {
    return;
  }
  let xb = p.x_off + row * p.x_stride;
  let r = weight[p.w_off + row] / sqrt(row_squares(xb, t));
  let yb = p.y_off + row * p.y_stride;
  for (var i = t; i < p.dim; i += WG) {
    y[yb + i] = Y(f32(x[xb + i]) * r);
  }
}
