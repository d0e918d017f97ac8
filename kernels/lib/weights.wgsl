// Weight decoders shared by the kernels that read weights (matvec, matmul, embedding gather, dequantize).
//
// The including file declares the weights as `w: array<u32>` (any format is bound as 32-bit words) and calls
// `load8(FORMAT, row_byte_offset, k, K)`, which decodes the 8 weights k..k+7 of one row (k a multiple of 8;
// columns >= K read as 0). With FORMAT a constant, inlining removes the other formats' branches.
//
// Formats (runtime/gpu/dtype.ts computes the same row sizes):
//   F32, F16   row-major, K values per row. F16 is IEEE binary16, two per word, little-endian.
//   Q8_0       GGUF: per 32 weights a 34-byte block { f16 d; i8 q[32]; }, w = d * q.
//   Q4_0, Q4_1 GGUF: per 32 weights a block { f16 d; (Q4_1: f16 m;) u8 qs[16]; } of 18 or 20 bytes: weight l < 16
//              is the low nibble q of qs[l], weight l + 16 its high nibble; w = d * (q - 8), or d * q + m.
//   Q5_0, Q5_1 GGUF: Q4_0's and Q4_1's blocks with a u32 qh before qs (22 and 24 bytes): bit l of qh is weight l's
//              fifth bit; w = d * (q - 16), or d * q + m, q in 0..31.
//   Q3_K       GGUF: per 256 weights a 110-byte block { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d; }: 16
//              sub-blocks of 16 with 6-bit scales (less 32, packed as ggml unpacks them); for half n (128 weights),
//              part j (32) and l = 0..31, q = 2 bits (2j) of qs[32n + l] less 4 unless bit 4n + j of hmask[l] is
//              set; w = (d * scale[8n + 2j + l/16]) * q.
//   Q4_K       GGUF: per 256 weights a 144-byte block { f16 d; f16 dmin; u8 scales[12]; u8 qs[128]; }.
//              Sub-block s (32 weights, s = 0..7) has a 6-bit scale sc and min m packed in `scales`
//              (get_scale_min_k4); weights 64j..64j+31 are the low nibbles of qs[32j..32j+31], weights
//              64j+32..64j+63 the high nibbles; w = (d * sc) * q - (dmin * m).
//   Q5_K       GGUF: per 256 weights a 176-byte block { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]; }:
//              Q4_K's layout and scales, each 4-bit code with a fifth bit: bit 2j (weights 64j + l) or 2j + 1
//              (weights 64j + 32 + l) of qh[l]; w = (d * sc) * q - (dmin * m), q in 0..31.
//   Q6_K       GGUF: per 256 weights a 210-byte block { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d; }.
//              For half n (128 weights) and l = 0..31: q = 4 low bits from ql[64n + l (+32)] (low nibble for
//              the first and second 32, high nibble for the third and fourth) | 2 high bits from
//              qh[32n + l] >> (2 * quarter); w = (d * scales[8n + l/16 + 2*quarter]) * (q - 32).
//   IQ4_NL     GGUF: per 32 weights an 18-byte block { f16 d; u8 qs[16]; }: weight l < 16 is the low nibble of
//              qs[l], weight l + 16 its high nibble, each an index into 16 non-uniform levels (IQ4_LEVELS);
//              w = d * level.
//   IQ4_XS     GGUF: per 256 weights a 136-byte block { f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]; }:
//              sub-block s (32 weights) has the 6-bit scale ls = low nibble s of scales_l | 2 bits s of
//              scales_h << 4 and is an IQ4_NL block of codes qs[16s..16s+15] with d * (ls - 32) as its d.
//   Q2_K       GGUF: per 256 weights an 84-byte block { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin; }: for half n
//              (128 weights), part j (32) and l = 0..31, q = 2 bits (2j) of qs[32n + l], sc = scales[8n + 2j + l/16];
//              w = (d * (sc & 15)) * q - dmin * (sc >> 4).
//   IQ*        GGUF i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M; blocks of 256 weights), read only
//              where the kernel is built with IQ: each group of 8 weights is one row of 8 grid values, or two
//              of 4, from ggml's grids (a table the kernel binds as `grid`, runtime/gpu/ops/iq.ts), signed by a
//              sign pattern (IQ2, IQ3) or shifted by ±1/8 (IQ1), times its sub-block's scale. iq_group and
//              iq_scale below give each format's fields as ggml's dequantize_row_iq* reads them.
//   Q4         ours (quantize-on-load): a row of K weights is K/2 bytes of 4-bit codes followed by K/32 f16
//              scales, padded with zeros to a multiple of 16 bytes. Code j of the row sits in byte j/2, low
//              nibble for even j: the 32-bit word i holds codes 8i..8i+7 at bits 4(j-8i), and the 16 bytes of
//              group g (weights 32g..32g+31) are one aligned vec4<u32>. w = (code - 8) * scale[j/32].

const F32: u32 = 0u;
const F16: u32 = 1u;
const Q8_0: u32 = 2u;
const Q4_K: u32 = 3u;
const Q6_K: u32 = 4u;
const Q4: u32 = 5u;
const IQ4_NL: u32 = 6u;
const IQ4_XS: u32 = 7u;
const Q5_K: u32 = 8u;
const Q3_K: u32 = 9u;
const Q2_K: u32 = 10u;
const IQ2_XXS: u32 = 11u;
const IQ2_XS: u32 = 12u;
const IQ2_S: u32 = 13u;
const IQ3_XXS: u32 = 14u;
const IQ3_S: u32 = 15u;
const IQ1_S: u32 = 16u;
const IQ1_M: u32 = 17u;
const Q4_0: u32 = 18u;
const Q4_1: u32 = 19u;
const Q5_0: u32 = 20u;
const Q5_1: u32 = 21u;

// IQ4's 16 levels (ggml's kvalues_iq4nl: -127, -104, ... 113) as signed bytes, four to a word.
const IQ4_LEVELS = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);

struct W8 {
  lo: vec4<f32>,
  hi: vec4<f32>,
}

const BYTE_SHIFTS = vec4<u32>(0u, 8u, 16u, 24u);

fn w_byte(b: u32) -> u32 {
  return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

// Four bytes at any byte offset.
fn w_u32(b: u32) -> u32 {
  let s = (b & 3u) * 8u;
  let lo = w[b >> 2u];
  if (s == 0u) {
    return lo;
  }
  return (lo >> s) | (w[(b >> 2u) + 1u] << (32u - s));
}

// The f16 at an even byte offset.
fn w_f16(b: u32) -> f32 {
  return unpack2x16float(w[b >> 2u] >> ((b & 2u) * 8u)).x;
}

// Four signed bytes.
fn i8x4(u: u32) -> vec4<f32> {
  return vec4<f32>(bitcast<vec4<i32>>(vec4<u32>(u) << (vec4<u32>(24u) - BYTE_SHIFTS)) >> vec4<u32>(24u));
}

// 6-bit scale and min of Q4_K sub-block j from the 12 bytes at `b` (ggml's get_scale_min_k4).
fn scale_min_k4(b: u32, j: u32) -> vec2<f32> {
  if (j < 4u) {
    return vec2<f32>(f32(w_byte(b + j) & 63u), f32(w_byte(b + j + 4u) & 63u));
  }
  let sc = (w_byte(b + j + 4u) & 15u) | ((w_byte(b + j - 4u) >> 6u) << 4u);
  let m = (w_byte(b + j + 4u) >> 4u) | ((w_byte(b + j) >> 6u) << 4u);
  return vec2<f32>(f32(sc), f32(m));
}

fn load8_f32(rb: u32, k: u32, K: u32) -> W8 {
  let i = (rb >> 2u) + k;
  if (k + 8u <= K) {
    return W8(
      bitcast<vec4<f32>>(vec4<u32>(w[i], w[i + 1u], w[i + 2u], w[i + 3u])),
      bitcast<vec4<f32>>(vec4<u32>(w[i + 4u], w[i + 5u], w[i + 6u], w[i + 7u])),
    );
  }
  var v = array<f32, 8>();
  for (var j = 0u; j < 8u; j++) {
    if (k + j < K) {
      v[j] = bitcast<f32>(w[i + j]);
    }
  }
  return W8(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}

fn load8_f16(rb: u32, k: u32, K: u32) -> W8 {
  let b = rb + 2u * k;
  if (k + 8u <= K && (b & 3u) == 0u) {
    let i = b >> 2u;
    return W8(
      vec4<f32>(unpack2x16float(w[i]), unpack2x16float(w[i + 1u])),
      vec4<f32>(unpack2x16float(w[i + 2u]), unpack2x16float(w[i + 3u])),
    );
  }
  var v = array<f32, 8>();
  for (var j = 0u; j < 8u; j++) {
    if (k + j < K) {
      v[j] = w_f16(b + 2u * j);
    }
  }
  return W8(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}

fn load8_q8_0(rb: u32, k: u32) -> W8 {
  let bb = rb + (k >> 5u) * 34u;
  let q = bb + 2u + (k & 31u);
  let d = w_f16(bb);
  return W8(i8x4(w_u32(q)) * d, i8x4(w_u32(q + 4u)) * d);
}

// Q4_K, or with q5 Q5_K: the same block with the codes' fifth bits (qh[32]) before the nibbles.
fn load8_q4_k(rb: u32, k: u32, q5: bool) -> W8 {
  let bb = rb + (k >> 8u) * select(144u, 176u, q5);
  let kk = k & 255u;
  let j = kk >> 6u;
  let hi = (kk >> 5u) & 1u;
  let l = kk & 31u;
  let sm = scale_min_k4(bb + 4u, 2u * j + hi);
  let d = w_f16(bb) * sm.x;
  let m = w_f16(bb + 2u) * sm.y;
  let q = (bb + select(16u, 48u, q5) + 32u * j + l) >> 2u;
  let shifts = BYTE_SHIFTS + vec4<u32>(4u * hi);
  var q0 = (vec4<u32>(w[q]) >> shifts) & vec4<u32>(15u);
  var q1 = (vec4<u32>(w[q + 1u]) >> shifts) & vec4<u32>(15u);
  if (q5) {
    let h = (bb + 16u + l) >> 2u;
    let bits = BYTE_SHIFTS + vec4<u32>(2u * j + hi);
    q0 |= ((vec4<u32>(w[h]) >> bits) & vec4<u32>(1u)) << vec4<u32>(4u);
    q1 |= ((vec4<u32>(w[h + 1u]) >> bits) & vec4<u32>(1u)) << vec4<u32>(4u);
  }
  return W8(d * vec4<f32>(q0) - m, d * vec4<f32>(q1) - m);
}

// The scale of Q3_K sub-block i (16 weights) from the 12 bytes at b, less 32.
fn scale_q3_k(b: u32, i: u32) -> f32 {
  var low: u32;
  if (i < 8u) {
    low = w_byte(b + i) & 15u;
  } else {
    low = w_byte(b + i - 8u) >> 4u;
  }
  let high = (w_byte(b + 8u + (i & 3u)) >> (2u * (i >> 2u))) & 3u;
  return f32(low | (high << 4u)) - 32.0;
}

fn load8_q3_k(rb: u32, k: u32) -> W8 {
  let bb = rb + (k >> 8u) * 110u;
  let kk = k & 255u;
  let n = kk >> 7u;
  let j = (kk >> 5u) & 3u;
  let l = kk & 31u;
  let d = w_f16(bb + 108u) * scale_q3_k(bb + 96u, 8u * n + 2u * j + (l >> 4u));
  let shifts = BYTE_SHIFTS + vec4<u32>(2u * j);
  let bits = BYTE_SHIFTS + vec4<u32>(4u * n + j);
  let q = bb + 32u + 32u * n + l;
  let q0 = ((vec4<u32>(w_u32(q)) >> shifts) & vec4<u32>(3u)) |
    (((vec4<u32>(w_u32(bb + l)) >> bits) & vec4<u32>(1u)) << vec4<u32>(2u));
  let q1 = ((vec4<u32>(w_u32(q + 4u)) >> shifts) & vec4<u32>(3u)) |
    (((vec4<u32>(w_u32(bb + l + 4u)) >> bits) & vec4<u32>(1u)) << vec4<u32>(2u));
  return W8(d * (vec4<f32>(q0) - 4.0), d * (vec4<f32>(q1) - 4.0));
}

// The legacy blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1): the byte offset of their nibbles, of qh, their size.
struct Legacy {
  qs: u32,
  qh: u32,
  bytes: u32,
}

fn legacy(format: u32) -> Legacy {
  switch (format) {
    case Q4_0: {
      return Legacy(2u, 0u, 18u);
    }
    case Q4_1: {
      return Legacy(4u, 0u, 20u);
    }
    case Q5_0: {
      return Legacy(6u, 2u, 22u);
    }
    default: {  // Q5_1
      return Legacy(8u, 4u, 24u);
    }
  }
}

// Weights k..k+7 of a legacy block at bb, each as d * q + m.
fn load8_legacy(format: u32, rb: u32, k: u32) -> W8 {
  let f = legacy(format);
  let bb = rb + (k >> 5u) * f.bytes;
  let j = k & 31u;
  let high = j >> 4u;
  let shifts = BYTE_SHIFTS + vec4<u32>(4u * high);
  let q = bb + f.qs + (j & 15u);
  var q0 = (vec4<u32>(w_u32(q)) >> shifts) & vec4<u32>(15u);
  var q1 = (vec4<u32>(w_u32(q + 4u)) >> shifts) & vec4<u32>(15u);
  if (f.qh != 0u) {
    let qh = w_u32(bb + f.qh) >> j;
    q0 |= ((vec4<u32>(qh) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    q1 |= ((vec4<u32>(qh) >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(1u)) << vec4<u32>(4u);
  }
  let d = w_f16(bb);
  var m = 0.0;
  switch (format) {
    case Q4_0: {
      m = -8.0 * d;
    }
    case Q5_0: {
      m = -16.0 * d;
    }
    default: {
      m = w_f16(bb + 2u);
    }
  }
  return W8(d * vec4<f32>(q0) + m, d * vec4<f32>(q1) + m);
}

fn load8_q2_k(rb: u32, k: u32) -> W8 {
  let bb = rb + (k >> 8u) * 84u;
  let kk = k & 255u;
  let n = kk >> 7u;
  let j = (kk >> 5u) & 3u;
  let l = kk & 31u;
  let sc = w_byte(bb + 8u * n + 2u * j + (l >> 4u));
  let d = w_f16(bb + 80u) * f32(sc & 15u);
  let m = w_f16(bb + 82u) * f32(sc >> 4u);
  let q = bb + 16u + 32u * n + l;
  let shifts = BYTE_SHIFTS + vec4<u32>(2u * j);
  let q0 = (vec4<u32>(w_u32(q)) >> shifts) & vec4<u32>(3u);
  let q1 = (vec4<u32>(w_u32(q + 4u)) >> shifts) & vec4<u32>(3u);
  return W8(d * vec4<f32>(q0) - m, d * vec4<f32>(q1) - m);
}

fn load8_q6_k(rb: u32, k: u32) -> W8 {
  let bb = rb + (k >> 8u) * 210u;
  let kk = k & 255u;
  let n = kk >> 7u;
  let quarter = (kk >> 5u) & 3u;
  let l = kk & 31u;
  let ql = bb + 64u * n + l + 32u * (quarter & 1u);
  let qh = bb + 128u + 32u * n + l;
  let sc = f32(bitcast<i32>(w_byte(bb + 192u + 8u * n + (l >> 4u) + 2u * quarter) << 24u) >> 24u);
  let d = w_f16(bb + 208u) * sc;
  let lshift = BYTE_SHIFTS + vec4<u32>(4u * (quarter >> 1u));
  let hshift = BYTE_SHIFTS + vec4<u32>(2u * quarter);
  let q0 = ((vec4<u32>(w_u32(ql)) >> lshift) & vec4<u32>(15u)) |
    (((vec4<u32>(w_u32(qh)) >> hshift) & vec4<u32>(3u)) << vec4<u32>(4u));
  let q1 = ((vec4<u32>(w_u32(ql + 4u)) >> lshift) & vec4<u32>(15u)) |
    (((vec4<u32>(w_u32(qh + 4u)) >> hshift) & vec4<u32>(3u)) << vec4<u32>(4u));
  return W8(d * (vec4<f32>(q0) - 32.0), d * (vec4<f32>(q1) - 32.0));
}

// The levels of four 4-bit codes.
fn iq4_levels(codes: vec4<u32>) -> vec4<f32> {
  let table = IQ4_LEVELS;
  let words = vec4<u32>(table[codes.x >> 2u], table[codes.y >> 2u], table[codes.z >> 2u], table[codes.w >> 2u]);
  let bytes = (words >> ((codes & vec4<u32>(3u)) * 8u)) << vec4<u32>(24u);
  return vec4<f32>(bitcast<vec4<i32>>(bytes) >> vec4<u32>(24u));
}

// The eight codes from byte q on, low nibbles (weights l < 16 of a block) or high ones (l >= 16).
fn iq4_codes8(q: u32, high: u32) -> array<vec4<u32>, 2> {
  let shifts = BYTE_SHIFTS + vec4<u32>(4u * high);
  return array<vec4<u32>, 2>(
    (vec4<u32>(w_u32(q)) >> shifts) & vec4<u32>(15u),
    (vec4<u32>(w_u32(q + 4u)) >> shifts) & vec4<u32>(15u),
  );
}

// The d of IQ4_XS sub-block s of the block at bb.
fn iq4_xs_scale(bb: u32, s: u32) -> f32 {
  let low = (w_byte(bb + 4u + (s >> 1u)) >> (4u * (s & 1u))) & 15u;
  let high = ((w_byte(bb + 2u) | (w_byte(bb + 3u) << 8u)) >> (2u * s)) & 3u;
  return w_f16(bb) * (f32(low | (high << 4u)) - 32.0);
}

fn load8_iq4_nl(rb: u32, k: u32) -> W8 {
  let bb = rb + (k >> 5u) * 18u;
  let j = k & 31u;
  let codes = iq4_codes8(bb + 2u + (j & 15u), j >> 4u);
  let d = w_f16(bb);
  return W8(d * iq4_levels(codes[0]), d * iq4_levels(codes[1]));
}

fn load8_iq4_xs(rb: u32, k: u32) -> W8 {
  let bb = rb + (k >> 8u) * 136u;
  let s = (k & 255u) >> 5u;
  let j = k & 31u;
  let codes = iq4_codes8(bb + 8u + 16u * s + (j & 15u), j >> 4u);
  let d = iq4_xs_scale(bb, s);
  return W8(d * iq4_levels(codes[0]), d * iq4_levels(codes[1]));
}

#ifdef IQ
// Word offsets of the grids in the table (runtime/gpu/ops/iq.ts GRID_ORDER): rows of 8 values take 2 words.
const IQ2_XXS_GRID: u32 = 0u;
const IQ2_XS_GRID: u32 = 512u;
const IQ2_S_GRID: u32 = 1536u;
const IQ3_XXS_GRID: u32 = 3584u;
const IQ3_S_GRID: u32 = 3840u;
const IQ1_S_GRID: u32 = 4352u;

fn w_u16(b: u32) -> u32 {
  return (w[b >> 2u] >> ((b & 2u) * 8u)) & 0xffffu;
}

// ggml's ksigns_iq2xs: a 7-bit sign pattern and the eighth bit that makes its count of set bits even.
fn ksigns(s: u32) -> u32 {
  return s | ((countOneBits(s) & 1u) << 7u);
}

// +1 or -1 for four weights: -1 where bit j of s is set.
fn signs4(s: u32) -> vec4<f32> {
  return vec4<f32>(1.0) - 2.0 * vec4<f32>((vec4<u32>(s) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u));
}

// Four grid values from table word `i`.
fn grid4(i: u32) -> vec4<f32> {
  return vec4<f32>(unpack4xI8(grid[i]));
}

fn iq_block_bytes(format: u32) -> u32 {
  switch (format) {
    case IQ2_XXS: {
      return 66u;
    }
    case IQ2_XS: {
      return 74u;
    }
    case IQ2_S: {
      return 82u;
    }
    case IQ3_XXS: {
      return 98u;
    }
    case IQ3_S: {
      return 110u;
    }
    case IQ1_S: {
      return 50u;
    }
    default: {  // IQ1_M
      return 56u;
    }
  }
}

// Group i (weights 8i..8i+7) of the block at bb, before its scale: signed grid values (IQ1: shifted).
fn iq_group(format: u32, bb: u32, i: u32) -> W8 {
  let ib = i >> 2u;
  let l = i & 3u;
  switch (format) {
    case IQ2_XXS: {
      // Per 32 weights two words: four grid rows (bytes), then four 7-bit sign patterns and the scale.
      let row = (w_u32(bb + 2u + 8u * ib) >> (8u * l)) & 255u;
      let s = ksigns((w_u32(bb + 6u + 8u * ib) >> (7u * l)) & 127u);
      let g = IQ2_XXS_GRID + 2u * row;
      return W8(grid4(g) * signs4(s), grid4(g + 1u) * signs4(s >> 4u));
    }
    case IQ2_XS: {
      // Per 8 weights a u16: a 9-bit grid row and a 7-bit sign pattern.
      let q = w_u16(bb + 2u + 2u * i);
      let s = ksigns(q >> 9u);
      let g = IQ2_XS_GRID + 2u * (q & 511u);
      return W8(grid4(g) * signs4(s), grid4(g + 1u) * signs4(s >> 4u));
    }
    case IQ2_S: {
      // Per 8 weights a 10-bit grid row (a byte of qs, 2 bits of qh) and a sign byte.
      let row = w_byte(bb + 2u + i) | (((w_byte(bb + 66u + ib) >> (2u * l)) & 3u) << 8u);
      let s = w_byte(bb + 34u + i);
      let g = IQ2_S_GRID + 2u * row;
      return W8(grid4(g) * signs4(s), grid4(g + 1u) * signs4(s >> 4u));
    }
    case IQ3_XXS: {
      // Two grid rows of 4 (bytes); per 32 weights a word of four 7-bit sign patterns and the scale.
      let q = bb + 2u + 2u * i;
      let s = ksigns((w_u32(bb + 66u + 4u * ib) >> (7u * l)) & 127u);
      return W8(
        grid4(IQ3_XXS_GRID + w_byte(q)) * signs4(s),
        grid4(IQ3_XXS_GRID + w_byte(q + 1u)) * signs4(s >> 4u),
      );
    }
    case IQ3_S: {
      // Two 9-bit grid rows of 4 (bytes of qs, a bit of qh each) and a sign byte.
      let j = 2u * i;
      let qh = w_byte(bb + 66u + (j >> 3u));
      let r0 = w_byte(bb + 2u + j) | (((qh >> (j & 7u)) & 1u) << 8u);
      let r1 = w_byte(bb + 3u + j) | (((qh >> ((j + 1u) & 7u)) & 1u) << 8u);
      let s = w_byte(bb + 74u + i);
      return W8(grid4(IQ3_S_GRID + r0) * signs4(s), grid4(IQ3_S_GRID + r1) * signs4(s >> 4u));
    }
    case IQ1_S: {
      // An 11-bit row of {-1, 0, 1} (a byte of qs, 3 bits of the sub-block's u16 qh) and qh's shift sign.
      let qh = w_u16(bb + 34u + 2u * ib);
      let g = IQ1_S_GRID + 2u * (w_byte(bb + 2u + i) | (((qh >> (3u * l)) & 7u) << 8u));
      let delta = select(0.125, -0.125, (qh & 0x8000u) != 0u);
      return W8(grid4(g) + delta, grid4(g + 1u) + delta);
    }
    default: {  // IQ1_M: the row's 3 high bits and the shift's sign in a nibble of qh
      let hi = w_byte(bb + 32u + 2u * ib + (l >> 1u)) >> (4u * (l & 1u));
      let g = IQ1_S_GRID + 2u * (w_byte(bb + i) | ((hi & 7u) << 8u));
      let delta = select(0.125, -0.125, (hi & 8u) != 0u);
      return W8(grid4(g) + delta, grid4(g + 1u) + delta);
    }
  }
}

// The scale of group i of the block at bb.
fn iq_scale(format: u32, bb: u32, i: u32) -> f32 {
  let ib = i >> 2u;
  switch (format) {
    case IQ2_XXS: {
      return w_f16(bb) * (0.5 + f32(w_u32(bb + 6u + 8u * ib) >> 28u)) * 0.25;
    }
    case IQ2_XS, IQ2_S: {
      // A 4-bit scale per 16 weights.
      let at = bb + select(74u, 66u, format == IQ2_XS) + ib;
      return w_f16(bb) * (0.5 + f32((w_byte(at) >> (4u * ((i >> 1u) & 1u))) & 15u)) * 0.25;
    }
    case IQ3_XXS: {
      return w_f16(bb) * (0.5 + f32(w_u32(bb + 66u + 4u * ib) >> 28u)) * 0.5;
    }
    case IQ3_S: {
      return w_f16(bb) * f32(1u + 2u * ((w_byte(bb + 106u + (ib >> 1u)) >> (4u * (ib & 1u))) & 15u));
    }
    case IQ1_S: {
      return w_f16(bb) * f32(2u * ((w_u16(bb + 34u + 2u * ib) >> 12u) & 7u) + 1u);
    }
    default: {  // IQ1_M: d's 16 bits in the top nibbles of the four u16 scales; a 3-bit scale per 16 weights
      let d = unpack2x16float((w_u16(bb + 48u) >> 12u) | ((w_u16(bb + 50u) >> 8u) & 0xf0u) |
        ((w_u16(bb + 52u) >> 4u) & 0xf00u) | (w_u16(bb + 54u) & 0xf000u)).x;
      let sc = w_u16(bb + 48u + 2u * (ib >> 1u)) >> (6u * (ib & 1u));
      return d * f32(2u * ((sc >> (3u * ((i >> 1u) & 1u))) & 7u) + 1u);
    }
  }
}

fn load8_iq(format: u32, rb: u32, k: u32) -> W8 {
  let bb = rb + (k >> 8u) * iq_block_bytes(format);
  let i = (k & 255u) >> 3u;
  let g = iq_group(format, bb, i);
  let d = iq_scale(format, bb, i);
  return W8(d * g.lo, d * g.hi);
}
#endif

fn load8_q4(rb: u32, k: u32, K: u32) -> W8 {
  let u = vec4<u32>(w[(rb + (k >> 1u)) >> 2u]);
  let d = w_f16(rb + (K >> 1u) + 2u * (k >> 5u));
  let lo = vec4<f32>((u >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u));
  let hi = vec4<f32>((u >> vec4<u32>(16u, 20u, 24u, 28u)) & vec4<u32>(15u));
  return W8((lo - 8.0) * d, (hi - 8.0) * d);
}

fn load8(format: u32, rb: u32, k: u32, K: u32) -> W8 {
  switch (format) {
    case F32: {
      return load8_f32(rb, k, K);
    }
    case F16: {
      return load8_f16(rb, k, K);
    }
    case Q8_0: {
      return load8_q8_0(rb, k);
    }
    case Q4_K: {
      return load8_q4_k(rb, k, false);
    }
    case Q3_K: {
      return load8_q3_k(rb, k);
    }
    case Q5_K: {
      return load8_q4_k(rb, k, true);
    }
    case Q6_K: {
      return load8_q6_k(rb, k);
    }
    case Q2_K: {
      return load8_q2_k(rb, k);
    }
    case Q4_0, Q4_1, Q5_0, Q5_1: {
      return load8_legacy(format, rb, k);
    }
#ifdef IQ
    case IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M: {
      return load8_iq(format, rb, k);
    }
#endif
    case IQ4_NL: {
      return load8_iq4_nl(rb, k);
    }
    case IQ4_XS: {
      return load8_iq4_xs(rb, k);
    }
    default: {
      return load8_q4(rb, k, K);
    }
  }
}
