// Token selection on the GPU, one workgroup per sequence, so a decode step reads back one id per sequence
// instead of the whole vocabulary of logits.
//
// For each sequence (settings in `info`, written by runtime/gpu/ops/sampling.ts):
//  1. penalties on its listed tokens (unique ids with their counts): repetition r divides a positive logit and
//     multiplies a negative one (every listed token), then presence and frequency subtract
//     presence * (count > 0) + frequency * count; the tokens drawn earlier in a decode run (rows of `ids` above
//     this step's, which the host has not read yet) count too, added to the list's counts or listed anew with
//     theirs; then a bias is added to its listed tokens (OpenAI's
//     logit_bias); tokens an output format forbids (a bitmask, bit id % 32 of word id / 32) are left out of
//     everything below;
//  2. temperature 0: argmax (lowest index among equal maxima). Otherwise z = logit / T and the allowed set is
//     cut by top-k (z >= the k-th largest z, ties kept), top-p (the most probable tokens whose probability mass,
//     renormalised over the top-k set, reaches p; ties at the threshold kept) and min-p (p >= min_p * p_max);
//  3. a seeded draw: u = pcg(seed ^ pcg(counter)) / 2^32 (24 bits), the token where the cumulative mass of the
//     allowed set, in index order, first exceeds u * mass;
//  4. its log-probability under the model's raw distribution (log-softmax of the unpenalised logits).
// Thresholds are found by bisection on the bits of the f32 values (an order-preserving key), 32 counting passes
// each, so no sort is needed.

struct Params {
  seqs: u32,
  vocab: u32,
  l_off: u32,       // logits [seqs, vocab] view
  l_stride: u32,
  s_off: u32,       // scratch [seqs, vocab] f32
  info_base: u32,   // word offset of the per-sequence settings (14 words each), then lists and masks
  ids_off: u32,     // ids[ids_off + j * ids_stride + seq]: the run's draws j < hist_rows, then this step's
  lp_off: u32,
  hist_rows: u32,
  ids_stride: u32,
}

#include "lib/reduce.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> info: array<u32>;
@group(0) @binding(3) var<storage, read_write> scratch: array<f32>;
@group(0) @binding(4) var<storage, read_write> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> logprobs: array<f32>;

const NO_MASK: u32 = 0xffffffffu;
const NONE: u32 = 0xffffffffu;
// Below every logit the model can give, and finite: a forbidden token's value, and the least an allowed one has.
const FORBIDDEN: f32 = -3.4e38;
const ALLOWED_FLOOR: f32 = -3.0e38;

var<workgroup> kept_mass: f32;
var<workgroup> listed: u32;  // where an earlier draw stands in the penalty list (NONE: not in it)
var<workgroup> pick: atomic<u32>;
var<workgroup> last_kept: atomic<u32>;

// Order-preserving u32 key of an f32.
fn key(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// Sequence seq's draw at row j of the run (j == p.hist_rows: this step's).
fn drawn(seq: u32, j: u32) -> u32 {
  return p.ids_off + j * p.ids_stride + seq;
}

fn pcg(v: u32) -> u32 {
  let state = v * 747796405u + 2891336453u;
  let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
  return (word >> 22u) ^ word;
}

@compute @workgroup_size(WG)
fn sample(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
          @builtin(num_workgroups) ng: vec3<u32>) {
  let seq = g.x + g.y * ng.x;
  if (seq >= p.seqs) {
    return;
  }
  let cfg = p.info_base + 14u * seq;
  let temperature = bitcast<f32>(info[cfg]);
  let top_k = info[cfg + 1u];
  let top_p = bitcast<f32>(info[cfg + 2u]);
  let min_p = bitcast<f32>(info[cfg + 3u]);
  let repetition = bitcast<f32>(info[cfg + 4u]);
  let presence = bitcast<f32>(info[cfg + 5u]);
  let frequency = bitcast<f32>(info[cfg + 6u]);
  let seed = info[cfg + 7u];
  let counter = info[cfg + 8u];
  let pen_off = info[cfg + 9u];
  let pen_count = info[cfg + 10u];
  let mask_off = info[cfg + 11u];  // NO_MASK: every token allowed
  let bias_off = info[cfg + 12u];   // (id, f32 bias) pairs
  let bias_count = info[cfg + 13u];

  let V = p.vocab;
  let chunk = (V + WG - 1u) / WG;  // this thread's contiguous range [lo, hi)
  let lo = min(t * chunk, V);
  let hi = min(lo + chunk, V);
  let lb = p.l_off + seq * p.l_stride;
  let sb = p.s_off + seq * V;

  // Raw log-softmax normaliser, for the log-probability of the chosen token.
  var m = -3.4e38;
  for (var i = lo; i < hi; i++) {
    m = max(m, logits[lb + i]);
  }
  let raw_max = max_f(m, t);
  var z = 0.0;
  for (var i = lo; i < hi; i++) {
    z += exp(logits[lb + i] - raw_max);
  }
  let raw_log_sum = log(sum_f(z, t)) + raw_max;

  // 1. penalised logits, scaled by the temperature.
  let inv_t = select(1.0 / temperature, 1.0, temperature == 0.0);
  for (var i = lo; i < hi; i++) {
    scratch[sb + i] = logits[lb + i];
  }
  storageBarrier();
  for (var j = t; j < pen_count; j += WG) {
    let id = info[pen_off + 2u * j];
    let count = info[pen_off + 2u * j + 1u];
    if (id < V) {
      var v = scratch[sb + id];
      v = select(v * repetition, v / repetition, v > 0.0);
      v -= presence * f32(min(count, 1u)) + frequency * f32(count);
      scratch[sb + id] = v;
    }
  }
  storageBarrier();
  // The run's earlier draws: each token's penalty once (at its first draw), from the raw logit, with its count in
  // the list plus its draws.
  if (repetition != 1.0 || presence != 0.0 || frequency != 0.0) {
    for (var j = 0u; j < p.hist_rows; j++) {
      let id = ids[drawn(seq, j)];
      if (t == 0u) {
        listed = NONE;
      }
      workgroupBarrier();
      for (var i = t; i < pen_count; i += WG) {
        if (info[pen_off + 2u * i] == id) {
          listed = i;  // ids are unique in the list: one thread at most
        }
      }
      workgroupBarrier();
      if (t == 0u && id < V) {
        var count = 0u;
        var first = true;
        for (var i = 0u; i < p.hist_rows; i++) {
          let same = ids[drawn(seq, i)] == id;
          count += u32(same);
          first = first && !(same && i < j);
        }
        if (first) {
          if (listed != NONE) {
            count += info[pen_off + 2u * listed + 1u];
          }
          var v = logits[lb + id];
          v = select(v * repetition, v / repetition, v > 0.0);
          v -= presence * f32(min(count, 1u)) + frequency * f32(count);
          scratch[sb + id] = v;
        }
      }
      storageBarrier();
    }
  }
  for (var j = t; j < bias_count; j += WG) {
    let id = info[bias_off + 2u * j];
    if (id < V) {
      scratch[sb + id] += bitcast<f32>(info[bias_off + 2u * j + 1u]);
    }
  }
  storageBarrier();
  m = -3.4e38;
  var arg = 0xffffffffu;
  for (var i = lo; i < hi; i++) {
    var v = scratch[sb + i] * inv_t;
    if (mask_off != NO_MASK) {
      // An allowed value that overflowed to -inf (a tiny temperature) must still beat a forbidden one.
      let allowed = ((info[mask_off + (i >> 5u)] >> (i & 31u)) & 1u) != 0u;
      v = select(FORBIDDEN, max(v, ALLOWED_FLOOR), allowed);
    }
    scratch[sb + i] = v;
    if (v > m || arg == 0xffffffffu) {
      m = v;
      arg = i;
    }
  }
  let zmax = max_f(m, t);

  var chosen = 0u;
  if (temperature == 0.0 || top_k == 1u) {
    // 2. greedy: the lowest index holding the maximum.
    chosen = min_u(select(0xffffffffu, arg, m == zmax), t);
  } else {
    // 2. top-k: the largest key threshold keeping at least k tokens.
    var kmin = 0u;
    if (top_k > 0u && top_k < V) {
      for (var bit = 31i; bit >= 0i; bit--) {
        let cand = kmin | (1u << u32(bit));
        var n = 0u;
        for (var i = lo; i < hi; i++) {
          n += u32(key(scratch[sb + i]) >= cand);
        }
        if (sum_u(n, t) >= top_k) {
          kmin = cand;
        }
      }
    }
    // Unnormalised probabilities of the tokens top-k and min-p keep (min-p: z >= zmax + ln(min_p)).
    var zmin = -3.4e38;
    if (min_p > 0.0) {
      zmin = zmax + log(min_p);
    }
    var mass = 0.0;
    for (var i = lo; i < hi; i++) {
      let v = scratch[sb + i];
      var e = 0.0;
      if (key(v) >= kmin && v >= zmin) {
        e = exp(v - zmax);
      }
      scratch[sb + i] = e;
      mass += e;
    }
    let total = sum_f(mass, t);
    // top-p: the largest threshold on the bits of e (which order like the values, e >= 0) whose kept mass
    // reaches top_p of the total.
    var pmin = 0u;
    if (top_p < 1.0) {
      for (var bit = 31i; bit >= 0i; bit--) {
        let cand = pmin | (1u << u32(bit));
        var part = 0.0;
        for (var i = lo; i < hi; i++) {
          let e = scratch[sb + i];
          part += select(0.0, e, bitcast<u32>(e) >= cand);
        }
        if (sum_f(part, t) >= top_p * total) {
          pmin = cand;
        }
      }
    }
    pmin = max(pmin, 1u);  // never keep a token with e = 0
    // 3. the draw: each thread's kept mass, an exclusive prefix over threads, then a walk by the thread whose
    // range holds u * mass (or, if rounding leaves it at the very end, the last kept token).
    var own = 0.0;
    for (var i = lo; i < hi; i++) {
      let e = scratch[sb + i];
      own += select(0.0, e, bitcast<u32>(e) >= pmin);
    }
    workgroupBarrier();
    red_f[t] = own;
    if (t == 0u) {
      atomicStore(&pick, 0xffffffffu);
      atomicStore(&last_kept, 0u);
    }
    workgroupBarrier();
    if (t == 0u) {
      var acc = 0.0;
      for (var j = 0u; j < WG; j++) {
        let v = red_f[j];
        red_f[j] = acc;
        acc += v;
      }
      kept_mass = acc;
    }
    workgroupBarrier();
    let u = f32(pcg(seed ^ pcg(counter)) >> 8u) * (1.0 / 16777216.0);
    let goal = u * kept_mass;
    let first = red_f[t];
    if (own > 0.0) {
      var acc = first;
      var found = 0xffffffffu;
      for (var i = lo; i < hi; i++) {
        let e = scratch[sb + i];
        if (bitcast<u32>(e) >= pmin) {
          acc += e;
          if (acc > goal && found == 0xffffffffu && goal >= first) {
            found = i;
          }
          atomicMax(&last_kept, i);
        }
      }
      if (found != 0xffffffffu) {
        atomicMin(&pick, found);
      }
    }
    workgroupBarrier();
    chosen = atomicLoad(&pick);
    if (chosen == 0xffffffffu) {
      chosen = atomicLoad(&last_kept);
    }
  }

  if (t == 0u) {
    ids[drawn(seq, p.hist_rows)] = chosen;
    logprobs[p.lp_off + seq] = logits[lb + chosen] - raw_log_sum;
  }
}
