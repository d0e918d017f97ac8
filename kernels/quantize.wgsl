// Weight conversion at load time: quantization of f32/f16/bf16 weights into GGUF Q8_0, our Q4 format, GGUF Q4_K,
// Q5_K and Q6_K (layouts in lib/weights.wgsl), float conversion (bf16 -> f16 ...), and dequantization of any weight format to
// floats (for tests and for tools that need plain weights).
//
// Quantization follows ggml's reference quantizers (quantize_row_q8_0_ref, quantize_row_q4_0_ref) so the CPU
// reference in runtime/gpu/ops/quantize.ts reproduces it: Q8_0 d = amax / 127, q = round(x / d) (half away from
// zero); Q4 d = v / -8 where v is the first value of largest magnitude, code = min(15, trunc(x / d + 8.5)).
// Scales are stored as f16 rounded to nearest even (done here in integer arithmetic, since WGSL leaves the
// rounding of f32 -> f16 conversions to the implementation).

#include "lib/weights.wgsl"

struct Params {
  rows: u32,
  k: u32,         // row length
  src_off: u32,   // source offset: in elements, except dequantize: in bytes
  dst_off: u32,   // destination offset: in bytes, except dequantize: in elements
  w_row: u32,     // bytes per row of the quantized destination (quantize_q4) or source (dequantize)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;        // source words (weights.wgsl decoders use `w`)
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst_float: array<Y>;
#ifdef IQ
// The i-quants' grids (lib/weights.wgsl), for dequantize.
@group(0) @binding(3) var<storage, read> grid: array<u32>;
#endif

override SRC: u32 = 0u;  // F32, F16 or BF16 below
const BF16: u32 = 100u;
const WG: u32 = 256u;
// The k-quants' threads each hold a few hundred bytes of arrays while they search scales: fewer a workgroup.
const K_WG: u32 = 64u;

fn unit(g: vec3<u32>, ng: vec3<u32>, t: u32, size: u32) -> u32 {
  return (g.x + g.y * ng.x) * size + t;
}

// Source element i (relative to src_off) as f32.
fn src(i: u32) -> f32 {
  let e = p.src_off + i;
  switch (SRC) {
    case F32: {
      return bitcast<f32>(w[e]);
    }
    case F16: {
      return unpack2x16float(w[e >> 1u] >> ((e & 1u) * 16u)).x;
    }
    default: {
      return bitcast<f32>(((w[e >> 1u] >> ((e & 1u) * 16u)) & 0xffffu) << 16u);
    }
  }
}

// f32 -> f16 bits, round to nearest even; overflow to infinity.
fn f16_bits(x: f32) -> u32 {
  let u = bitcast<u32>(x);
  let sign = (u >> 16u) & 0x8000u;
  let a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {
    return sign | 0x7e00u;
  }
  if (a >= 0x477ff000u) {
    return sign | 0x7c00u;
  }
  if (a < 0x38800000u) {
    return sign | u32(round(bitcast<f32>(a) * 16777216.0));  // subnormal: multiple of 2^-24, ties to even
  }
  return sign | ((a + 0xfffu + ((a >> 13u) & 1u) - 0x38000000u) >> 13u);
}

fn round_away(v: f32) -> f32 {
  return sign(v) * floor(abs(v) + 0.5);
}

// Writes 16 bits at an even byte offset, keeping the other half of the word (only this thread touches it).
fn store_half(b: u32, bits: u32) {
  let i = b >> 2u;
  let shift = (b & 2u) * 8u;
  dst[i] = (dst[i] & ~(0xffffu << shift)) | (bits << shift);
}

// Q8_0 block `b` (elements 32b..32b+31) into bytes: returns (f16 d, then 32 codes) as 17 halves in `out`.
fn q8_0_block(b: u32) -> array<u32, 17> {
  var amax = 0.0;
  for (var j = 0u; j < 32u; j++) {
    amax = max(amax, abs(src(32u * b + j)));
  }
  let d = amax / 127.0;
  var id = 0.0;
  if (d != 0.0) {
    id = 1.0 / d;
  }
  var halves = array<u32, 17>();
  halves[0] = f16_bits(d);
  for (var j = 0u; j < 16u; j++) {
    let q0 = u32(i32(round_away(src(32u * b + 2u * j) * id))) & 0xffu;
    let q1 = u32(i32(round_away(src(32u * b + 2u * j + 1u) * id))) & 0xffu;
    halves[j + 1u] = q0 | (q1 << 8u);
  }
  return halves;
}

// One thread per pair of blocks (68 bytes = 17 whole words); the last block of an odd count writes 34 bytes.
@compute @workgroup_size(WG)
fn quantize_q8_0(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  let pair = unit(g, ng, t, WG);
  let blocks = p.rows * p.k / 32u;
  if (2u * pair >= blocks) {
    return;
  }
  let base = p.dst_off + 68u * pair;
  let a = q8_0_block(2u * pair);
  for (var j = 0u; j < 8u; j++) {
    dst[(base >> 2u) + j] = a[2u * j] | (a[2u * j + 1u] << 16u);
  }
  if (2u * pair + 1u < blocks) {
    let b = q8_0_block(2u * pair + 1u);
    dst[(base >> 2u) + 8u] = a[16] | (b[0] << 16u);
    for (var j = 0u; j < 8u; j++) {
      dst[(base >> 2u) + 9u + j] = b[2u * j + 1u] | (b[2u * j + 2u] << 16u);
    }
  } else {
    store_half(base + 32u, a[16]);
  }
}

// One thread per pair of groups of a row: 8 code words and one scale word.
@compute @workgroup_size(WG)
fn quantize_q4(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  let pairs_per_row = (p.k / 32u + 1u) / 2u;
  let pair = unit(g, ng, t, WG);
  if (pair >= p.rows * pairs_per_row) {
    return;
  }
  let row = pair / pairs_per_row;
  let first = 2u * (pair % pairs_per_row);
  let rb = p.dst_off + row * p.w_row;
  var scales = 0u;
  for (var h = 0u; h < 2u; h++) {
    let group = first + h;
    if (group * 32u >= p.k) {
      break;
    }
    let e = row * p.k + group * 32u;
    var amax = 0.0;
    var vmax = 0.0;
    for (var j = 0u; j < 32u; j++) {
      let v = src(e + j);
      if (abs(v) > amax) {
        amax = abs(v);
        vmax = v;
      }
    }
    let d = vmax / -8.0;
    var id = 0.0;
    if (d != 0.0) {
      id = 1.0 / d;
    }
    for (var word = 0u; word < 4u; word++) {
      var codes = 0u;
      for (var j = 0u; j < 8u; j++) {
        let c = min(15u, u32(trunc(src(e + 8u * word + j) * id + 8.5)));
        codes |= c << (4u * j);
      }
      dst[((rb + group * 16u) >> 2u) + word] = codes;
    }
    scales |= f16_bits(d) << (16u * h);
  }
  dst[(rb + p.k / 2u + first * 2u) >> 2u] = scales;
}

// Q4_K and Q5_K as llama.cpp quantizes them (quantize_row_q4_K_ref, quantize_row_q5_K_ref): per sub-block of 32
// a scale and a min fitted by make_qkx2_quants (weights av_x + |x|, trial scales, least squares), both quantized
// to 6 bits against the block's largest (d, dmin as f16), then each weight's 4- or 5-bit code against the
// quantized pair. The same operations in the same order, but a GPU may fuse a multiply and an add, which
// llama.cpp built without FMA contraction does not, or divide less exactly (WGSL allows 2.5 ulp): a few codes or
// a near choice of the search can then differ.

// make_qkx2_quants(32, nmax, x, weights, L, &min, Laux, rmin, rdelta 0.1, nstep, squared errors) for the 32
// weights at source element e: its scale, its min (returned as -min, the_min) and its codes, a byte each.
struct Fit {
  scale: f32,
  min: f32,
  codes: array<u32, 8>,
}

fn fit_k(e: u32, nmax: f32, rmin: f32, nstep: i32) -> Fit {
  var x: array<f32, 32>;
  var wt: array<f32, 32>;
  var sum_x2 = 0.0;
  for (var l = 0u; l < 32u; l++) {
    x[l] = src(e + l);
    sum_x2 += x[l] * x[l];
  }
  let av_x = sqrt(sum_x2 / 32.0);
  for (var l = 0u; l < 32u; l++) {
    wt[l] = av_x + abs(x[l]);
  }
  var fit: Fit;
  var lo = x[0];
  var hi = x[0];
  var sum_w = wt[0];
  var sum_x = sum_w * x[0];
  for (var i = 1u; i < 32u; i++) {
    lo = min(lo, x[i]);
    hi = max(hi, x[i]);
    sum_w += wt[i];
    sum_x += wt[i] * x[i];
  }
  lo = min(lo, 0.0);
  if (hi == lo) {
    fit.min = -lo;
    return fit;
  }
  var iscale = nmax / (hi - lo);
  var scale = 1.0 / iscale;
  var best = 0.0;
  for (var i = 0u; i < 32u; i++) {
    let l = clamp(round(iscale * (x[i] - lo)), 0.0, nmax);
    fit.codes[i >> 2u] |= u32(l) << (8u * (i & 3u));
    let diff = scale * l + lo - x[i];
    best += wt[i] * (diff * diff);
  }
  for (var step = 0; step <= nstep; step++) {
    iscale = (rmin + 0.1 * f32(step) + nmax) / (hi - lo);
    var trial = array<u32, 8>();
    var sum_l = 0.0;
    var sum_l2 = 0.0;
    var sum_xl = 0.0;
    for (var i = 0u; i < 32u; i++) {
      let l = clamp(round(iscale * (x[i] - lo)), 0.0, nmax);
      trial[i >> 2u] |= u32(l) << (8u * (i & 3u));
      sum_l += wt[i] * l;
      sum_l2 += wt[i] * l * l;
      sum_xl += wt[i] * l * x[i];
    }
    let det = sum_w * sum_l2 - sum_l * sum_l;
    if (det > 0.0) {
      var this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
      var this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
      if (this_min > 0.0) {
        this_min = 0.0;
        this_scale = sum_xl / sum_l2;
      }
      var err = 0.0;
      for (var i = 0u; i < 32u; i++) {
        let diff = this_scale * f32((trial[i >> 2u] >> (8u * (i & 3u))) & 0xffu) + this_min - x[i];
        err += wt[i] * (diff * diff);
      }
      if (err < best) {
        fit.codes = trial;
        best = err;
        scale = this_scale;
        lo = this_min;
      }
    }
  }
  fit.scale = scale;
  fit.min = -lo;
  return fit;
}

// A Q4_K or Q5_K block of the 256 weights from source element e: d and dmin, the 12 bytes of 6-bit scales and
// mins (three words), and the 256 codes (0..nmax), a byte each.
struct KBlock {
  d_bits: u32,
  dmin_bits: u32,
  scales: array<u32, 3>,
  codes: array<u32, 64>,
}

fn k_block(e: u32, nmax: f32, rmin: f32, nstep: i32) -> KBlock {
  var out: KBlock;
  var scales: array<f32, 8>;
  var mins: array<f32, 8>;
  var max_scale = 0.0;
  var max_min = 0.0;
  for (var j = 0u; j < 8u; j++) {
    let fit = fit_k(e + 32u * j, nmax, rmin, nstep);
    scales[j] = fit.scale;
    mins[j] = fit.min;
    for (var i = 0u; i < 8u; i++) {
      out.codes[8u * j + i] = fit.codes[i];
    }
    if (fit.scale > max_scale) {
      max_scale = fit.scale;
    }
    if (fit.min > max_min) {
      max_min = fit.min;
    }
  }
  var inv_scale = 0.0;
  var inv_min = 0.0;
  if (max_scale > 0.0) {
    inv_scale = 63.0 / max_scale;
  }
  if (max_min > 0.0) {
    inv_min = 63.0 / max_min;
  }
  var ls: array<u32, 8>;
  var lm: array<u32, 8>;
  var packed: array<u32, 12>;
  for (var j = 0u; j < 8u; j++) {
    ls[j] = min(63u, u32(round(inv_scale * scales[j])));
    lm[j] = min(63u, u32(round(inv_min * mins[j])));
    if (j < 4u) {
      packed[j] = ls[j];
      packed[j + 4u] = lm[j];
    } else {
      packed[j + 4u] = (ls[j] & 15u) | ((lm[j] & 15u) << 4u);
      packed[j - 4u] |= (ls[j] >> 4u) << 6u;
      packed[j] |= (lm[j] >> 4u) << 6u;
    }
  }
  for (var i = 0u; i < 3u; i++) {
    out.scales[i] = packed[4u * i] | (packed[4u * i + 1u] << 8u) | (packed[4u * i + 2u] << 16u) |
      (packed[4u * i + 3u] << 24u);
  }
  // Both are +0 or more, as in llama.cpp, where a min of -0 never replaces +0; a compiler may have made the
  // comparisons a max(), which can keep -0: the sign bit is cleared.
  out.d_bits = f16_bits(max_scale / 63.0) & 0x7fffu;
  out.dmin_bits = f16_bits(max_min / 63.0) & 0x7fffu;
  let d = unpack2x16float(out.d_bits).x;
  let dmin = unpack2x16float(out.dmin_bits).x;
  // Codes against the quantized scale and min; a sub-block whose scale quantized to 0 keeps the fit's, as
  // llama.cpp does.
  for (var j = 0u; j < 8u; j++) {
    let dl = d * f32(ls[j]);
    if (dl == 0.0) {
      continue;
    }
    let dm = dmin * f32(lm[j]);
    for (var w = 0u; w < 8u; w++) {
      var v = 0u;
      for (var i = 0u; i < 4u; i++) {
        let l = clamp(round((src(e + 32u * j + 4u * w + i) + dm) / dl), 0.0, nmax);
        v |= u32(l) << (8u * i);
      }
      out.codes[8u * j + w] = v;
    }
  }
  return out;
}

// Code i of a block's codes.
fn k_code(b: ptr<function, KBlock>, i: u32) -> u32 {
  return ((*b).codes[i >> 2u] >> (8u * (i & 3u))) & 0xffu;
}

// Four codes of sub-block pair h (64 weights) from weight l on, the low sub-block's in the low nibbles and the
// high's in the high nibbles: the word of qs that Q4_K and Q5_K store (their low 4 bits only).
fn k_nibbles(b: ptr<function, KBlock>, h: u32, l: u32) -> u32 {
  var v = 0u;
  for (var i = 0u; i < 4u; i++) {
    v |= ((k_code(b, 64u * h + l + i) & 15u) | ((k_code(b, 64u * h + 32u + l + i) & 15u) << 4u)) << (8u * i);
  }
  return v;
}

// Writes a Q4_K or Q5_K block's first 16 bytes (d, dmin, scales and mins) at word `base`, and its 128 bytes of
// low nibbles at word `codes`: sub-blocks 2h (low nibbles) and 2h + 1 (high) share 32 bytes, byte l code l of each.
fn store_k(b: ptr<function, KBlock>, base: u32, codes: u32) {
  dst[base] = (*b).d_bits | ((*b).dmin_bits << 16u);
  for (var i = 0u; i < 3u; i++) {
    dst[base + 1u + i] = (*b).scales[i];
  }
  for (var h = 0u; h < 4u; h++) {
    for (var word = 0u; word < 8u; word++) {
      dst[codes + 8u * h + word] = k_nibbles(b, h, 4u * word);
    }
  }
}

// One thread per block of 256 weights (144 bytes: d, dmin, 12 bytes of 6-bit scales and mins, 128 of codes).
@compute @workgroup_size(K_WG)
fn quantize_q4_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  let block = unit(g, ng, t, K_WG);
  if (block >= p.rows * (p.k / 256u)) {
    return;
  }
  var b = k_block(block * 256u, 15.0, -1.0, 20);
  let base = (p.dst_off >> 2u) + block * 36u;
  store_k(&b, base, base + 4u);
}

// One thread per block of 256 weights (176 bytes: d, dmin, 12 bytes of scales and mins, then qh[32], whose byte
// l has bit s set where code l of sub-block s is 16 or more, then the low nibbles as Q4_K's).
@compute @workgroup_size(K_WG)
fn quantize_q5_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  let block = unit(g, ng, t, K_WG);
  if (block >= p.rows * (p.k / 256u)) {
    return;
  }
  var b = k_block(block * 256u, 31.0, -0.5, 15);
  let base = (p.dst_off >> 2u) + block * 44u;
  store_k(&b, base, base + 12u);
  for (var word = 0u; word < 8u; word++) {
    var v = 0u;
    for (var i = 0u; i < 4u; i++) {
      var bits = 0u;
      for (var s = 0u; s < 8u; s++) {
        bits |= (k_code(&b, 32u * s + 4u * word + i) >> 4u) << s;
      }
      v |= bits << (8u * i);
    }
    dst[base + 4u + word] = v;
  }
}

// Q6_K as llama.cpp quantizes it (quantize_row_q6_K_ref): per sub-block of 16 a scale fitted by make_qx_quants
// (codes -32..31, weights x², 19 trial scales), the sixteen scales quantized to int8 against the largest (d =
// -largest / 128 as f16), then each weight's code against its quantized scale. As for Q4_K, a GPU that fuses a
// multiply and an add, or divides less exactly, may move a code or a near choice of the search.

// make_qx_quants(16, 32, x, L, rmse_type 1, no weights) for the 16 weights at source element e: the scale, and the
// codes l + 32 (0..63; all 0 for a sub-block of zeros), a byte each.
struct Fit6 {
  scale: f32,
  codes: array<u32, 4>,
}

fn fit_q6_k(e: u32) -> Fit6 {
  var x: array<f32, 16>;
  var max_x = 0.0;
  var amax = 0.0;
  for (var i = 0u; i < 16u; i++) {
    x[i] = src(e + i);
    if (abs(x[i]) > amax) {
      amax = abs(x[i]);
      max_x = x[i];
    }
  }
  var fit: Fit6;
  if (amax < 1e-15) {
    return fit;
  }
  // The plain scale -32 / max first (step 0), then 32 moved by tenths (steps -9..9): a later trial is kept only
  // where it fits better (sum_lx² / sum_l2, the weighted least-squares gain).
  var best = 0.0;
  for (var t = 0; t < 20; t++) {
    let step = select(t - 10, 0, t == 0);
    if (t == 10) {
      continue;
    }
    let iscale = -(32.0 + 0.1 * f32(step)) / max_x;
    var sum_lx = 0.0;
    var sum_l2 = 0.0;
    for (var i = 0u; i < 16u; i++) {
      let l = clamp(round(iscale * x[i]), -32.0, 31.0);
      let w = x[i] * x[i];
      sum_lx += w * x[i] * l;
      sum_l2 += w * l * l;
    }
    if (t == 0 || (sum_l2 > 0.0 && sum_lx * sum_lx > best * sum_l2)) {
      fit.scale = 0.0;
      if (sum_l2 != 0.0) {
        fit.scale = sum_lx / sum_l2;
      }
      best = fit.scale * sum_lx;
      fit.codes = array<u32, 4>();
      for (var i = 0u; i < 16u; i++) {
        let l = clamp(round(iscale * x[i]), -32.0, 31.0);
        fit.codes[i >> 2u] |= u32(l + 32.0) << (8u * (i & 3u));
      }
    }
  }
  return fit;
}

// A thread's output, written a byte at a time in block order: whole words as they fill (Q6_K blocks are 210 bytes,
// so a pair of them is the smallest run of whole words).
var<private> out_word: u32;
var<private> out_at: u32;    // bytes written so far
var<private> out_base: u32;  // byte offset of the first

fn put_byte(b: u32) {
  out_word |= (b & 0xffu) << (8u * (out_at & 3u));
  out_at += 1u;
  if ((out_at & 3u) == 0u) {
    dst[((out_base + out_at) >> 2u) - 1u] = out_word;
    out_word = 0u;
  }
}

fn q6_k_block(block: u32) {
  let e = block * 256u;
  var codes: array<u32, 64>;  // code i in byte i & 3 of word i >> 2
  var scales: array<f32, 16>;
  var max_scale = 0.0;
  var max_abs = 0.0;
  for (var j = 0u; j < 16u; j++) {
    let fit = fit_q6_k(e + 16u * j);
    scales[j] = fit.scale;
    for (var i = 0u; i < 4u; i++) {
      codes[4u * j + i] = fit.codes[i];
    }
    if (abs(fit.scale) > max_abs) {
      max_abs = abs(fit.scale);
      max_scale = fit.scale;
    }
  }
  if (max_abs < 1e-15) {
    for (var b = 0u; b < 210u; b++) {
      put_byte(0u);
    }
    return;
  }
  let iscale = -128.0 / max_scale;
  let d_bits = f16_bits(1.0 / iscale);
  let d = unpack2x16float(d_bits).x;
  var sc: array<i32, 16>;
  for (var j = 0u; j < 16u; j++) {
    sc[j] = min(127, i32(round(iscale * scales[j])));
    // A sub-block whose scale quantized to 0 keeps the fit's codes, as llama.cpp does.
    let dl = d * f32(sc[j]);
    if (dl == 0.0) {
      continue;
    }
    for (var w = 0u; w < 4u; w++) {
      var v = 0u;
      for (var i = 0u; i < 4u; i++) {
        let l = clamp(round(src(e + 16u * j + 4u * w + i) / dl), -32.0, 31.0);
        v |= u32(l + 32.0) << (8u * i);
      }
      codes[4u * j + w] = v;
    }
  }
  // ql[128]: per half n of 128 weights, 64 bytes of low nibbles (l, l + 64 | l + 32, l + 96); qh[64]: per half,
  // 32 bytes of the four codes' high two bits; then the int8 scales and d.
  for (var n = 0u; n < 2u; n++) {
    for (var half = 0u; half < 2u; half++) {
      for (var l = 0u; l < 32u; l++) {
        let i = 128u * n + 32u * half + l;
        put_byte((q6_code(&codes, i) & 15u) | ((q6_code(&codes, i + 64u) & 15u) << 4u));
      }
    }
  }
  for (var n = 0u; n < 2u; n++) {
    for (var l = 0u; l < 32u; l++) {
      let i = 128u * n + l;
      put_byte((q6_code(&codes, i) >> 4u) | ((q6_code(&codes, i + 32u) >> 4u) << 2u) |
        ((q6_code(&codes, i + 64u) >> 4u) << 4u) | ((q6_code(&codes, i + 96u) >> 4u) << 6u));
    }
  }
  for (var j = 0u; j < 16u; j++) {
    put_byte(u32(sc[j]));
  }
  put_byte(d_bits);
  put_byte(d_bits >> 8u);
}

fn q6_code(codes: ptr<function, array<u32, 64>>, i: u32) -> u32 {
  return ((*codes)[i >> 2u] >> (8u * (i & 3u))) & 0xffu;
}

// One thread per pair of blocks (420 bytes = 105 whole words); the last block of an odd count ends mid-word.
@compute @workgroup_size(K_WG)
fn quantize_q6_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  let pair = unit(g, ng, t, K_WG);
  let blocks = p.rows * (p.k / 256u);
  if (2u * pair >= blocks) {
    return;
  }
  out_base = p.dst_off + 420u * pair;
  q6_k_block(2u * pair);
  if (2u * pair + 1u < blocks) {
    q6_k_block(2u * pair + 1u);
  } else {
    store_half(out_base + 208u, out_word);
  }
}

// Float conversion to f16: two elements per thread, one packed word.
@compute @workgroup_size(WG)
fn convert_to_f16(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                  @builtin(num_workgroups) ng: vec3<u32>) {
  let i = unit(g, ng, t, WG);
  let n = p.rows * p.k;
  if (2u * i >= n) {
    return;
  }
  let lo = f16_bits(src(2u * i));
  if (2u * i + 1u < n) {
    dst[(p.dst_off >> 2u) + i] = lo | (f16_bits(src(2u * i + 1u)) << 16u);
  } else {
    store_half(p.dst_off + 4u * i, lo);
  }
}

// Float conversion to f32.
@compute @workgroup_size(WG)
fn convert_to_f32(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                  @builtin(num_workgroups) ng: vec3<u32>) {
  let i = unit(g, ng, t, WG);
  if (i < p.rows * p.k) {
    dst[(p.dst_off >> 2u) + i] = bitcast<u32>(src(i));
  }
}

// Dequantization of any weight format (SRC, a lib/weights.wgsl format) to Y: one thread per 8 weights.
@compute @workgroup_size(WG)
fn dequantize(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
              @builtin(num_workgroups) ng: vec3<u32>) {
  let chunks = (p.k + 7u) / 8u;
  let c = unit(g, ng, t, WG);
  if (c >= p.rows * chunks) {
    return;
  }
  let row = c / chunks;
  let k = (c % chunks) * 8u;
  let v = load8(SRC, p.src_off + row * p.w_row, k, p.k);
  let o = p.dst_off + row * p.k + k;
  for (var j = 0u; j < 4u; j++) {
    if (k + j < p.k) {
      dst_float[o + j] = Y(v.lo[j]);
    }
    if (k + 4u + j < p.k) {
      dst_float[o + 4u + j] = Y(v.hi[j]);
    }
  }
}
