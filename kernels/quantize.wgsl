// Weight conversion at load time: quantization of f32/f16/bf16 weights into GGUF Q8_0 and our Q4 format
// (layouts in lib/weights.wgsl), float conversion (bf16 -> f16 ...), and dequantization of any weight format to
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

fn unit(g: vec3<u32>, ng: vec3<u32>, t: u32) -> u32 {
  return (g.x + g.y * ng.x) * WG + t;
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
  let pair = unit(g, ng, t);
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
  let pair = unit(g, ng, t);
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

// Float conversion to f16: two elements per thread, one packed word.
@compute @workgroup_size(WG)
fn convert_to_f16(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                  @builtin(num_workgroups) ng: vec3<u32>) {
  let i = unit(g, ng, t);
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
  let i = unit(g, ng, t);
  if (i < p.rows * p.k) {
    dst[(p.dst_off >> 2u) + i] = bitcast<u32>(src(i));
  }
}

// Dequantization of any weight format (SRC, a lib/weights.wgsl format) to Y: one thread per 8 weights.
@compute @workgroup_size(WG)
fn dequantize(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
              @builtin(num_workgroups) ng: vec3<u32>) {
  let chunks = (p.k + 7u) / 8u;
  let c = unit(g, ng, t);
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
