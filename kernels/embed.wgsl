// Row movement: embedding lookup from a table in any weight format, scattering image embeddings into the token
// sequence, and cutting an image into patch rows.
//   embed_<format>: y[t, :] = table[ids[t], :], decoded (lib/weights.wgsl). A table larger than one binding is
//                   processed in windows of rows: each dispatch writes the tokens whose id falls in its window.
//   scatter_rows:   y[rows[i], :] = x[i, :], e.g. the adapter's image embeddings into the [IMG] positions.
//   patches:        y[r * cols + c, ch * P² + dy * P + dx] = x[ch, r * P + dy, c * P + dx] for an image [C, H, W]:
//                   the patch convolution (stride = kernel = P, no bias) becomes a matmul with its weight viewed
//                   as [out, C·P·P], whose flattening order (channel, y, x) this matches (spec §2.2).

#include "lib/weights.wgsl"

struct Params {
  tokens: u32,
  dim: u32,
  ids_off: u32,
  y_off: u32,
  y_stride: u32,
  w_off: u32,     // byte offset of the window's first row
  w_row: u32,     // bytes per table row
  first: u32,     // first table row of the window
  count: u32,     // table rows in the window
  x_off: u32,     // scatter_rows, patches: source offset (and row stride)
  x_stride: u32,
  height: u32,    // patches: image height and width in pixels, patch size
  width: u32,
  patch_size: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<Y>;
@group(0) @binding(1) var<storage, read> x: array<X>;
#ifdef IQ
// The i-quants' grids (lib/weights.wgsl).
@group(0) @binding(4) var<storage, read> grid: array<u32>;
#endif

const WG: u32 = 256u;

fn embed(format: u32, c: u32) {
  let chunks = (p.dim + 7u) / 8u;
  let t = c / chunks;
  if (t >= p.tokens) {
    return;
  }
  let id = ids[p.ids_off + t];
  if (id < p.first || id - p.first >= p.count) {
    return;
  }
  let k = (c % chunks) * 8u;
  let v = load8(format, p.w_off + (id - p.first) * p.w_row, k, p.dim);
  let o = p.y_off + t * p.y_stride + k;
  for (var j = 0u; j < 4u; j++) {
    if (k + j < p.dim) {
      y[o + j] = Y(v.lo[j]);
    }
    if (k + 4u + j < p.dim) {
      y[o + 4u + j] = Y(v.hi[j]);
    }
  }
}

@compute @workgroup_size(WG)
fn embed_f32(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(F32, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_f16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(F16, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q8_0(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q8_0, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q3_k(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q3_K, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q4_k(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q4_K, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q5_k(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q5_K, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q6_k(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q6_K, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q4, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_iq4_nl(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ4_NL, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_iq4_xs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ4_XS, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q2_k(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q2_K, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q4_0(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q4_0, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q4_1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q4_1, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q5_0(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q5_0, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_q5_1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(Q5_1, gid.x + gid.y * ng.x * WG);
}

#ifdef IQ
@compute @workgroup_size(WG)
fn embed_iq2_xxs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ2_XXS, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_iq2_xs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ2_XS, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_iq2_s(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ2_S, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_iq3_xxs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ3_XXS, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_iq3_s(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ3_S, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_iq1_s(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ1_S, gid.x + gid.y * ng.x * WG);
}

@compute @workgroup_size(WG)
fn embed_iq1_m(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  embed(IQ1_M, gid.x + gid.y * ng.x * WG);
}
#endif

@compute @workgroup_size(WG)
fn scatter_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  let t = i / max(p.dim, 1u);
  if (t >= p.tokens) {
    return;
  }
  let c = i % p.dim;
  y[p.y_off + ids[p.ids_off + t] * p.y_stride + c] = Y(f32(x[p.x_off + t * p.x_stride + c]));
}

@compute @workgroup_size(WG)
fn patches(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) ng: vec3<u32>) {
  let i = gid.x + gid.y * ng.x * WG;
  let P = p.patch_size;
  let per_patch = p.dim;  // channels * P * P
  let cols = p.width / P;
  let t = i / per_patch;
  if (t >= p.tokens) {
    return;
  }
  let e = i % per_patch;
  let ch = e / (P * P);
  let dy = (e / P) % P;
  let dx = e % P;
  let yy = (t / cols) * P + dy;
  let xx = (t % cols) * P + dx;
  y[p.y_off + t * p.y_stride + e] = Y(f32(x[p.x_off + (ch * p.height + yy) * p.width + xx]));
}
