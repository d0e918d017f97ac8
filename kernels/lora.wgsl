// LoRA's shrink for up to 8 activation rows, each with its own adapter (runtime/model/lora_modules.ts):
// t[m, j] = sum_k x[m, k] * A[offset(m) + j, k] for j < rank(m), where A stacks the adapters' A of one product
// [Σ ranks, k] and (offset, rank) of row m come from the parameters (rank 0: the row has no adapter). One
// workgroup per (j, m). The update itself, t · Bᵀ, is added by the product's epilogue (matvec.wgsl, LORA).

struct Params {
  k: u32,
  x_off: u32,
  x_stride: u32,
  a_off: u32,
  t_off: u32,
  t_stride: u32,
  pad0: u32,
  pad1: u32,
  rows: array<vec4<u32>, 8>,  // per activation row: its A offset, rank, (B's first element, unused here)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<X>;
@group(0) @binding(2) var<storage, read> a: array<X>;
@group(0) @binding(3) var<storage, read_write> t: array<X>;

#include "lib/reduce.wgsl"

@compute @workgroup_size(WG)
fn lora_shrink(@builtin(local_invocation_index) i: u32, @builtin(workgroup_id) g: vec3<u32>) {
  let j = g.x;
  let m = g.y;
  let slot = p.rows[m];
  if (j >= slot.y) {
    return;
  }
  let xb = p.x_off + m * p.x_stride;
  let ab = p.a_off + (slot.x + j) * p.k;
  var s = 0.0;
  for (var k = i; k < p.k; k += WG) {
    s += f32(x[xb + k]) * f32(a[ab + k]);
  }
  let total = sum_f(s, i);
  if (i == 0u) {
    t[p.t_off + m * p.t_stride + j] = X(total);
  }
}
