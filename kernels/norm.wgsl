// RMSNorm over each row: y = (x / sqrt(mean(x²) + eps)) * weight, with the normalisation in f32, the result
// rounded to the activation type X, then multiplied by the f32 weight (as the reference: `_norm(x.float())
// .type_as(x) * weight`). One workgroup per row.

struct Params {
  rows: u32,
  dim: u32,
  eps: f32,
  x_off: u32,
  x_stride: u32,
  y_off: u32,
  y_stride: u32,
  w_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<Y>;

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

@compute @workgroup_size(WG)
fn rms_norm(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
            @builtin(num_workgroups) ng: vec3<u32>) {
  let row = g.x + g.y * ng.x;
  if (row >= p.rows) {
    return;
  }
  let xb = p.x_off + row * p.x_stride;
  let r = 1.0 / sqrt(row_squares(xb, t) / f32(p.dim) + p.eps);
  let yb = p.y_off + row * p.y_stride;
  for (var i = t; i < p.dim; i += WG) {
    y[yb + i] = Y(f32(X(f32(x[xb + i]) * r)) * weight[p.w_off + i]);
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
