// Attention, flash style: each workgroup streams key tiles through workgroup memory with an online softmax
// (running max and sum per query row), so the score matrix is never materialised, whatever the sequence length.
//
//   attention_paged:   the decoder. Keys and values come from the paged KV cache (layout in kvcache.wgsl) through
//                      a block table, with a causal mask by absolute position and grouped-query heads. Serves
//                      prefill chunks, decode steps and batches mixing both.
//   attention_dense:   the vision encoder. Keys and values are contiguous [tokens, heads, D] rows; each tile
//                      attends within its own segment (one image), which is block-diagonal masking; no causal mask.
//   attention_combine: flash-decoding's second pass. A decode query over a long context is split into key ranges
//                      processed by separate workgroups that write partial (max, sum, unnormalised output); this
//                      merges them.
//
// A tile is R = 16 query rows: R / G query positions times the G query heads that share one KV head, so a K/V
// tile loaded once serves all of them. The host (runtime/gpu/ops/attention.ts) writes the tile list into `info`:
// per tile 8 words: first q row, query count, position of the first query, first key, end key, key base (paged:
// word offset of the sequence's block table in info; dense: first key row of the segment), partial slot
// (0xffffffff: write the output directly), unused.
// Scores are scaled by p.scale (1/sqrt(D)), softmax in f32, accumulation in f32.
//
// Workgroup memory holds vec4s along the head dimension (D % 4 == 0), so each thread reads four dimensions per
// load in both products: q·k (a thread's row against its keys lane and lane + 16) and p·v (its row's output
// dimensions 4·lane.. and 64 + 4·lane..): a few loads per 16 FMAs rather than one or two per FMA.

struct Params {
  tiles: u32,      // tile (or combine) entries
  tile_base: u32,  // word offset of the entries in info
  heads_kv: u32,
  group: u32,      // query heads per KV head, dividing 16
  head_dim: u32,   // at most 128, a multiple of 4
  scale: f32,
  q_off: u32,      // q and out: [tokens, heads_q * D] views
  q_stride: u32,
  o_off: u32,
  o_stride: u32,
  k_off: u32,
  v_off: u32,
  kv_stride: u32,  // dense: elements between consecutive tokens of k and v
  block_size: u32, // paged: tokens per cache block
  causal: u32,
  ks_off: u32,     // 8-bit cache: element offsets of the scales
  vs_off: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> info: array<u32>;
@group(0) @binding(2) var<storage, read> q: array<Q>;
@group(0) @binding(3) var<storage, read> kcache: array<KV>;
@group(0) @binding(4) var<storage, read> vcache: array<KV>;
@group(0) @binding(5) var<storage, read_write> out: array<Q>;
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
@group(0) @binding(7) var<storage, read> kscale: array<f32>;
@group(0) @binding(8) var<storage, read> vscale: array<f32>;

// The 8-bit cache (kvcache.wgsl): KV = u32 words of four int8 codes, and a scale per token and head.
override Q8: bool = false;

const R: u32 = 16u;
const BK: u32 = 32u;
const WG: u32 = 256u;
const NONE: u32 = 0xffffffffu;
const MASKED: f32 = -3.0e38;

var<workgroup> qs: array<vec4<f32>, 512>;    // R x D/4, pre-scaled
var<workgroup> kv: array<vec4<f32>, 1056>;   // BK x (D/4 + 1): the padding vec4 spreads rows over banks
var<workgroup> probs: array<vec4<f32>, 128>; // R x BK/4
var<workgroup> red_max: array<f32, WG>;
var<workgroup> red_sum: array<f32, WG>;

// Element index (before k_off / v_off) of key kp's head-h vector.
fn key_index(paged: bool, key_base: u32, h: u32, kp: u32) -> u32 {
  if (paged) {
    let block = info[key_base + kp / p.block_size];
    return ((block * p.heads_kv + h) * p.block_size + kp % p.block_size) * p.head_dim;
  }
  return (key_base + kp) * p.kv_stride + h * p.head_dim;
}

// Four consecutive values of the K (or V) cache at element i (i % 4 == 0 for the 8-bit cache).
fn cache4(values: bool, i: u32) -> vec4<f32> {
  if (Q8) {
    if (values) {
      return vec4<f32>(unpack4xI8(u32(vcache[p.v_off + (i >> 2u)]))) * vscale[p.vs_off + i / p.head_dim];
    }
    return vec4<f32>(unpack4xI8(u32(kcache[p.k_off + (i >> 2u)]))) * kscale[p.ks_off + i / p.head_dim];
  }
  if (values) {
    let b = p.v_off + i;
    return vec4<f32>(f32(vcache[b]), f32(vcache[b + 1u]), f32(vcache[b + 2u]), f32(vcache[b + 3u]));
  }
  let b = p.k_off + i;
  return vec4<f32>(f32(kcache[b]), f32(kcache[b + 1u]), f32(kcache[b + 2u]), f32(kcache[b + 3u]));
}

fn load_tile(paged: bool, values: bool, t: u32, key_base: u32, h: u32, k0: u32, k_end: u32) {
  let D4 = p.head_dim / 4u;
  for (var idx = t; idx < BK * D4; idx += WG) {
    let c = idx / D4;
    let dv = idx % D4;
    let kp = k0 + c;
    var v = vec4<f32>();
    if (kp < k_end) {
      v = cache4(values, key_index(paged, key_base, h, kp) + 4u * dv);
    }
    kv[c * (D4 + 1u) + dv] = v;
  }
}

fn attend(paged: bool, t: u32, wg: u32) {
  let tile = wg / p.heads_kv;
  if (tile >= p.tiles) {
    return;  // uniform per workgroup
  }
  let h = wg % p.heads_kv;
  let e = p.tile_base + tile * 8u;
  let q_row0 = info[e];
  let q_count = info[e + 1u];
  let qpos0 = info[e + 2u];
  let k_begin = info[e + 3u];
  var k_end = info[e + 4u];
  let key_base = info[e + 5u];
  let slot = info[e + 6u];
  let D = p.head_dim;
  let D4 = D / 4u;
  let KS = D4 + 1u;  // kv row stride in vec4s
  let G = p.group;
  if (p.causal != 0u) {
    k_end = min(k_end, qpos0 + q_count);
  }

  for (var idx = t; idx < R * D4; idx += WG) {
    let r = idx / D4;
    let i = r / G;
    var v = vec4<f32>();
    if (i < q_count) {
      let b = p.q_off + (q_row0 + i) * p.q_stride + (h * G + r % G) * D + 4u * (idx % D4);
      v = vec4<f32>(f32(q[b]), f32(q[b + 1u]), f32(q[b + 2u]), f32(q[b + 3u])) * p.scale;
    }
    qs[idx] = v;
  }
  // Thread t works on query row r = t / 16: within a key tile on keys lane and lane + 16, and on output
  // dimensions 4·(lane + 16j). The row's running max and sum live in registers, the same in its 16 threads.
  let r = t / 16u;
  let lane = t % 16u;
  let qpos = qpos0 + r / G;
  let row_valid = r / G < q_count;
  var m_run = MASKED;
  var l_run = 0.0;
  var o = array<vec4<f32>, 2>();

  for (var k0 = k_begin; k0 < k_end; k0 += BK) {
    workgroupBarrier();
    load_tile(paged, false, t, key_base, h, k0, k_end);
    workgroupBarrier();
    // A row past the tile's queries (a decode step's tile holds G of its 16) only loads: its threads skip the
    // rest, which a CPU adapter, running 8 threads as one, then does not compute at all.
    var s0 = MASKED;
    var s1 = MASKED;
    if (row_valid) {
      var d0 = 0.0;
      var d1 = 0.0;
      for (var dv = 0u; dv < D4; dv++) {
        let qv = qs[r * D4 + dv];
        d0 += dot(qv, kv[lane * KS + dv]);
        d1 += dot(qv, kv[(lane + 16u) * KS + dv]);
      }
      let causal = p.causal != 0u;
      if (k0 + lane < k_end && !(causal && k0 + lane > qpos)) {
        s0 = d0;
      }
      if (k0 + lane + 16u < k_end && !(causal && k0 + lane + 16u > qpos)) {
        s1 = d1;
      }
    }
    red_max[t] = max(s0, s1);
    workgroupBarrier();
    // K is consumed: the V tile may replace it while the row statistics are formed.
    load_tile(paged, true, t, key_base, h, k0, k_end);
    var m_new = m_run;
    var p0 = 0.0;
    var p1 = 0.0;
    if (row_valid) {
      for (var i = 0u; i < 16u; i++) {
        m_new = max(m_new, red_max[r * 16u + i]);
      }
      if (s0 > MASKED) {
        p0 = exp(s0 - m_new);
      }
      if (s1 > MASKED) {
        p1 = exp(s1 - m_new);
      }
      // probs[r][c] for c = lane and lane + 16, as components of the row's vec4s.
      probs[r * 8u + lane / 4u][lane % 4u] = p0;
      probs[r * 8u + 4u + lane / 4u][lane % 4u] = p1;
    }
    red_sum[t] = p0 + p1;
    workgroupBarrier();
    if (row_valid) {
      var l_tile = 0.0;
      for (var i = 0u; i < 16u; i++) {
        l_tile += red_sum[r * 16u + i];
      }
      let alpha = exp(m_run - m_new);
      l_run = l_run * alpha + l_tile;
      m_run = m_new;
      for (var j = 0u; j < 2u; j++) {
        let dv = lane + 16u * j;
        if (dv < D4) {
          var acc = o[j] * alpha;
          for (var c4 = 0u; c4 < BK / 4u; c4++) {
            let pv = probs[r * 8u + c4];
            acc += pv.x * kv[(4u * c4) * KS + dv] + pv.y * kv[(4u * c4 + 1u) * KS + dv] +
              pv.z * kv[(4u * c4 + 2u) * KS + dv] + pv.w * kv[(4u * c4 + 3u) * KS + dv];
          }
          o[j] = acc;
        }
      }
    }
  }

  if (!row_valid) {
    return;
  }
  let head = h * G + r % G;
  if (slot == NONE) {
    let inv = select(0.0, 1.0 / l_run, l_run > 0.0);
    let ob = p.o_off + (q_row0 + r / G) * p.o_stride + head * D;
    for (var j = 0u; j < 2u; j++) {
      let dv = lane + 16u * j;
      if (dv < D4) {
        for (var i = 0u; i < 4u; i++) {
          out[ob + 4u * dv + i] = Q(o[j][i] * inv);
        }
      }
    }
  } else {
    let pb = ((slot * p.heads_kv + h) * R + r) * (D + 2u);
    for (var j = 0u; j < 2u; j++) {
      let dv = lane + 16u * j;
      if (dv < D4) {
        for (var i = 0u; i < 4u; i++) {
          partials[pb + 4u * dv + i] = o[j][i];
        }
      }
    }
    if (lane == 0u) {
      partials[pb + D] = m_run;
      partials[pb + D + 1u] = l_run;
    }
  }
}

@compute @workgroup_size(WG)
fn attention_paged(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                   @builtin(num_workgroups) ng: vec3<u32>) {
  attend(true, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn attention_dense(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                   @builtin(num_workgroups) ng: vec3<u32>) {
  attend(false, t, g.x + g.y * ng.x);
}

// Combine entries (4 words): first q row, query count, first partial slot, number of slots.
@compute @workgroup_size(WG)
fn attention_combine(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                     @builtin(num_workgroups) ng: vec3<u32>) {
  let wg = g.x + g.y * ng.x;
  let entry = wg / p.heads_kv;
  if (entry >= p.tiles) {
    return;
  }
  let h = wg % p.heads_kv;
  let e = p.tile_base + entry * 4u;
  let r = t / 16u;
  let lane = t % 16u;
  let G = p.group;
  let D = p.head_dim;
  if (r / G >= info[e + 1u]) {
    return;
  }
  let first = info[e + 2u];
  let n = info[e + 3u];
  var m = MASKED;
  for (var c = 0u; c < n; c++) {
    m = max(m, partials[(((first + c) * p.heads_kv + h) * R + r) * (D + 2u) + D]);
  }
  var l = 0.0;
  var o = array<f32, 8>();
  for (var c = 0u; c < n; c++) {
    let pb = (((first + c) * p.heads_kv + h) * R + r) * (D + 2u);
    let w = exp(partials[pb + D] - m);
    l += w * partials[pb + D + 1u];
    for (var j = 0u; j < 8u; j++) {
      let d = lane + 16u * j;
      if (d < D) {
        o[j] += w * partials[pb + d];
      }
    }
  }
  let inv = select(0.0, 1.0 / l, l > 0.0);
  let ob = p.o_off + (info[e] + r / G) * p.o_stride + (h * G + r % G) * D;
  for (var j = 0u; j < 8u; j++) {
    let d = lane + 16u * j;
    if (d < D) {
      out[ob + d] = Q(o[j] * inv);
    }
  }
}
