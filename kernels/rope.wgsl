// Rotary position embeddings, in place, in the native interleaved layout: each head vector of D values is D/2
// complex numbers z_i = x[2i] + i·x[2i+1], rotated by angle φ_i = pos · freq[i] (f32 product, as the reference
// computes `outer(t, freqs)` in f32), computed in f32 and rounded back to X.
//
// rope:    the decoder; one position per token, freq[i] = 1 / θ^(2i/D) (spec §3.2).
// rope_2d: the vision encoder; a (row, column) position per patch, angles φ_i = row · freq[i] for i < D/4 and
//          col · freq[i] for i >= D/4, where the wrapper passes freq = [f_0, f_2, ..., f_{D/2-2}, f_1, f_3, ...]
//          (spec §2.5).
// The frequency table comes from the host (runtime/gpu/ops/rope.ts), computed exactly as the reference does.

struct Params {
  tokens: u32,
  heads: u32,      // heads rotated per token (a fused q|k|v row rotates q and k heads only)
  head_dim: u32,
  x_off: u32,
  x_stride: u32,   // elements between tokens
  pos_off: u32,
}

#include "lib/rope.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> freq: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<X>;

const WG: u32 = 256u;

fn rotate(t: u32, two_d: bool) {
  let pairs = p.head_dim / 2u;
  if (t >= p.tokens * p.heads * pairs) {
    return;
  }
  let i = t % pairs;
  let head = (t / pairs) % p.heads;
  let token = t / (pairs * p.heads);
  var position: u32;
  if (two_d) {
    position = pos[p.pos_off + 2u * token + select(1u, 0u, i < pairs / 2u)];
  } else {
    position = pos[p.pos_off + token];
  }
  let c = cis(f32(position) * freq[i]);
  let e = p.x_off + token * p.x_stride + head * p.head_dim + 2u * i;
  let a = f32(x[e]);
  let b = f32(x[e + 1u]);
  x[e] = X(a * c.x - b * c.y);
  x[e + 1u] = X(a * c.y + b * c.x);
}

@compute @workgroup_size(WG)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  rotate(gid.x + gid.y * ng.x * WG, false);
}

@compute @workgroup_size(WG)
fn rope_2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  rotate(gid.x + gid.y * ng.x * WG, true);
}
