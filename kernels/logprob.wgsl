// Log-probabilities of given tokens, one workgroup per row of logits (a prompt scored position by position): for
// row r, the log-probability of token targets[r] under the row's softmax, and the most likely token (the lowest
// index among equal maxima) with its own. Only [rows] results come back to the host, not [rows, vocab] logits.
// out[3r] = target log-probability (f32 bits), out[3r + 1] = the most likely token, out[3r + 2] = its (f32 bits).

struct Params {
  rows: u32,
  vocab: u32,
  l_off: u32,       // logits [rows, vocab] view
  l_stride: u32,
  t_off: u32,       // targets [rows] u32
  o_off: u32,       // out [rows, 3] u32
}

#include "lib/reduce.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn logprob_f32(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  let row = g.x + g.y * ng.x;
  if (row >= p.rows) {
    return;
  }
  let base = p.l_off + row * p.l_stride;
  // Each thread's maximum over its strided indices (ascending, so the first of equal values), then the
  // workgroup's, ties to the lowest index holding it.
  var m = -3.4e38;
  var arg = 0xffffffffu;
  for (var i = t; i < p.vocab; i += WG) {
    let v = logits[base + i];
    if (v > m || arg == 0xffffffffu) {
      m = v;
      arg = i;
    }
  }
  let top = max_f(m, t);
  let best = min_u(select(0xffffffffu, arg, m == top), t);
  var z = 0.0;
  for (var i = t; i < p.vocab; i += WG) {
    z += exp(logits[base + i] - top);
  }
  let log_sum = log(sum_f(z, t)) + top;
  if (t == 0u) {
    let o = p.o_off + 3u * row;
    out[o] = bitcast<u32>(logits[base + targets[p.t_off + row]] - log_sum);
    out[o + 1u] = best;
    out[o + 2u] = bitcast<u32>(top - log_sum);
  }
}
