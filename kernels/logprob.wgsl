// Log-probabilities of given tokens, one workgroup per row of logits (a prompt scored position by position, or
// the tokens a decode step drew): for row r, the log-probability of token targets[r] under the row's softmax, and
// the `top` most likely tokens (by logit, then the lower index) with their own. Only [rows, 1 + 2 top] words come
// back to the host, not [rows, vocab] logits.
// out[w r] = target log-probability (f32 bits), then per rank k: out[w r + 1 + 2k] = token,
// out[w r + 2 + 2k] = its log-probability (f32 bits); w = 1 + 2 top.

struct Params {
  rows: u32,
  vocab: u32,
  l_off: u32,       // logits [rows, vocab] view
  l_stride: u32,
  t_off: u32,       // targets [rows] u32
  o_off: u32,       // out [rows, 1 + 2 top] u32
  top: u32,         // at most MAX_TOP
}

#include "lib/reduce.wgsl"

const MAX_TOP: u32 = 20u;
const NONE: u32 = 0xffffffffu;

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
  // Each thread's `top` best over its strided indices, best first: visited in ascending order, a value equal to
  // one kept goes after it, so equal values keep the lower index first.
  var vals: array<f32, MAX_TOP>;
  var idxs: array<u32, MAX_TOP>;
  var kept = 0u;
  var m = -3.4e38;
  for (var i = t; i < p.vocab; i += WG) {
    let v = logits[base + i];
    m = max(m, v);
    if (p.top > 0u && (kept < p.top || v > vals[kept - 1u])) {
      var at = min(kept, p.top - 1u);
      while (at > 0u && vals[at - 1u] < v) {
        vals[at] = vals[at - 1u];
        idxs[at] = idxs[at - 1u];
        at--;
      }
      vals[at] = v;
      idxs[at] = i;
      kept = min(kept + 1u, p.top);
    }
  }
  let row_max = max_f(m, t);
  var z = 0.0;
  for (var i = t; i < p.vocab; i += WG) {
    z += exp(logits[base + i] - row_max);
  }
  let log_sum = log(sum_f(z, t)) + row_max;
  let o = p.o_off + (1u + 2u * p.top) * row;
  if (t == 0u) {
    out[o] = bitcast<u32>(logits[base + targets[p.t_off + row]] - log_sum);
  }
  // Rank by rank, the best of the threads' next candidates: the largest value, then the lowest index.
  var next = 0u;
  for (var k = 0u; k < p.top; k++) {
    let v = select(-3.4e38, vals[min(next, MAX_TOP - 1u)], next < kept);
    let best = max_f(v, t);
    let id = min_u(select(NONE, idxs[min(next, MAX_TOP - 1u)], next < kept && v == best), t);
    if (next < kept && idxs[next] == id) {
      next++;
    }
    if (t == 0u) {
      out[o + 1u + 2u * k] = id;
      out[o + 2u + 2u * k] = bitcast<u32>(best - log_sum);
    }
  }
}
