// Matrix-vector products for decoding: y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]) (+ y[m, n] when
// accumulating, which fuses the residual add), for up to 8 activation rows at once, so a batch of decode steps
// reads each weight once. Weights in any format of lib/weights.wgsl, activations X and outputs Y in f32 or f16
// (type aliases), accumulation in f32.
//
// A workgroup of 256 threads computes 256 / tpr output rows; the tpr threads of a row stride over its columns
// (consecutive threads read consecutive weight bytes), then add their partial sums in workgroup memory. The fast
// path (WIDE) takes 32 columns per step: one scale and 16-32 bytes of weights, x as vec4 loads; it needs
// K % 32 == 0 and x aligned to 4 elements, which every quantized layer satisfies. The general path takes 8
// columns per step and any K. A dispatch covers one binding window of weight rows (runtime/gpu/ops/linear.ts).
//
// GLU: the weights are w1|w3 ([2n, k], gate rows then up rows) and y = silu(gate) * up, SwiGLU's input side in
// one dispatch. A workgroup's first half of rows are gate rows, its second half the up rows of the same outputs;
// gate and up are rounded to Y before the activation, as the two kernels it replaces would store them.
//
// LORA: LoRA updates of the product, one adapter (or none) per activation row, are added with the rest
// (runtime/model/lora_modules.ts): y[m, n] += sum_j t[m, c + j] * B_m,i[n - first_i, j] for j < rank_i(m), where
// i is the weight of the product (q, k, v; w1, w3) whose rows hold output n, t = x·Aᵀ was computed before
// (kernels/lora.wgsl, or the RMSNorm) with weight i's columns from c, and B_m,i [rows_i, rank_i(m)] (scale
// applied) is row m's adapter's block for weight i; with GLU, to gate and up before the activation. It saves the
// updates' own dispatches and passes over y.

#include "lib/weights.wgsl"

struct Params {
  n: u32,          // weight rows (outputs) in this window; with GLU outputs, half the weight rows
  k: u32,          // columns
  m: u32,          // activation rows, <= M
  tpr: u32,        // threads per output row, a power of two <= 256
  x_off: u32,      // element offset and row stride of x
  x_stride: u32,
  y_off: u32,      // element offset of y[0, first row of the window] and row stride of y
  y_stride: u32,
  w_off: u32,      // byte offset of the window's first row in the weight binding
  w_row: u32,      // bytes per weight row
  bias_off: u32,   // element offset of bias[first row of the window]
  has_bias: u32,
  accumulate: u32,
  lora_t_off: u32,     // LORA: t's element offset and row stride, the B binding's element offset, and the row
  lora_t_stride: u32,  // of the product that the window's first output is
  lora_b_off: u32,
  lora_row0: u32,
  lora_bound1: u32,   // where the product's second and third weights (k, v; w3) begin among its rows
  lora_bound2: u32,
  pad0: u32,
  // Per activation row: its A offset (unused here), rank, B's first element, and the ranks of the product's first
  // two weights (16 bits each; the third's is the rest).
  lora_rows: array<vec4<u32>, 8>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<X>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<Y>;
// The same weights and x bound a second time as vec4s (one entry point may not view a binding two ways); the
// i-quants' kernels, which never read w4, bind their grids there instead (lib/weights.wgsl), to stay within
// WebGPU's default of 8 storage buffers.
#ifdef IQ
@group(0) @binding(5) var<storage, read> grid: array<u32>;
#else
@group(0) @binding(5) var<storage, read> w4: array<vec4<u32>>;
#endif
@group(0) @binding(6) var<storage, read> xv: array<vec4<X>>;
// LORA: t and every adapter's B, in the activations' type (else x again, unread).
@group(0) @binding(7) var<storage, read> lora_t: array<X>;
@group(0) @binding(8) var<storage, read> lora_b: array<X>;

override M: u32 = 1u;         // activation rows compiled for: 1, 2, 4 or 8
override WIDE: bool = true;   // the 32-column fast path
override GLU: bool = false;   // y = silu(x·w1) * (x·w3), see above
override LORA: bool = false;  // LoRA updates added in the epilogue, see above

const WG: u32 = 256u;

var<workgroup> partial: array<f32, 2048>;  // WG x 8

const NIBBLES_LO = vec4<u32>(0u, 4u, 8u, 12u);
const NIBBLES_HI = vec4<u32>(16u, 20u, 24u, 28u);

// 32 weights k..k+31 of the row at byte rb (k % 32 == 0) in factored form: weight j = scale * code[j] - offset,
// with (scale, offset) = (s.x, o.x) for j < 16 and (s.y, o.y) beyond. Keeping codes small and applying scale and
// offset once per group (sum(w·x) = scale·sum(code·x) - offset·sum(x)) costs about one conversion and one FMA per
// weight, so that a decode step stays bound by memory rather than by arithmetic.
struct Unit {
  c: array<vec4<f32>, 8>,
  s: vec2<f32>,
  o: vec2<f32>,
}

const LOW_NIBBLES: u32 = 0x0f0f0f0fu;

#ifdef IQ
// Sub-block ib (32 weights) of the i-quant block at bb, each field read once (iq_group, for 8 weights at a
// time, reads a word per group): grid rows signed (IQ1: shifted), scales per 16 weights.
fn load32_iq(format: u32, bb: u32, ib: u32) -> Unit {
  var u: Unit;
  let d = w_f16(bb);
  switch (format) {
    case IQ2_XXS, IQ3_XXS: {
      // IQ2_XXS: rows (bytes) then four 7-bit sign patterns and the scale, per 32 weights; IQ3_XXS: 64 bytes of
      // rows of 4, then those words.
      let xxs2 = format == IQ2_XXS;
      let q = bb + 2u + 8u * ib;
      let aux = w_u32(select(bb + 66u + 4u * ib, q + 4u, xxs2));
      let rows = array<u32, 2>(w_u32(q), w_u32(q + 4u));
      for (var l = 0u; l < 4u; l++) {
        let s = ksigns((aux >> (7u * l)) & 127u);
        if (xxs2) {
          let g = IQ2_XXS_GRID + 2u * ((rows[0] >> (8u * l)) & 255u);
          u.c[2u * l] = grid4(g) * signs4(s);
          u.c[2u * l + 1u] = grid4(g + 1u) * signs4(s >> 4u);
        } else {
          let r = rows[l >> 1u] >> (16u * (l & 1u));
          u.c[2u * l] = grid4(IQ3_XXS_GRID + (r & 255u)) * signs4(s);
          u.c[2u * l + 1u] = grid4(IQ3_XXS_GRID + ((r >> 8u) & 255u)) * signs4(s >> 4u);
        }
      }
      u.s = vec2<f32>(d * (0.5 + f32(aux >> 28u)) * select(0.5, 0.25, xxs2));
    }
    case IQ2_XS: {
      // Per 8 weights a u16: a 9-bit row and a 7-bit sign pattern; a 4-bit scale per 16.
      let q = array<u32, 2>(w_u32(bb + 2u + 8u * ib), w_u32(bb + 6u + 8u * ib));
      for (var l = 0u; l < 4u; l++) {
        let v = (q[l >> 1u] >> (16u * (l & 1u))) & 0xffffu;
        let s = ksigns(v >> 9u);
        let g = IQ2_XS_GRID + 2u * (v & 511u);
        u.c[2u * l] = grid4(g) * signs4(s);
        u.c[2u * l + 1u] = grid4(g + 1u) * signs4(s >> 4u);
      }
      let sc = w_byte(bb + 66u + ib);
      u.s = d * (vec2<f32>(0.5) + vec2<f32>(f32(sc & 15u), f32(sc >> 4u))) * 0.25;
    }
    case IQ2_S: {
      // Per 8 weights a 10-bit row (a byte of qs, 2 bits of qh) and a sign byte; a 4-bit scale per 16.
      let qs = w_u32(bb + 2u + 4u * ib);
      let signs = w_u32(bb + 34u + 4u * ib);
      let qh = w_byte(bb + 66u + ib);
      for (var l = 0u; l < 4u; l++) {
        let g = IQ2_S_GRID + 2u * (((qs >> (8u * l)) & 255u) | (((qh >> (2u * l)) & 3u) << 8u));
        let s = signs >> (8u * l);
        u.c[2u * l] = grid4(g) * signs4(s);
        u.c[2u * l + 1u] = grid4(g + 1u) * signs4(s >> 4u);
      }
      let sc = w_byte(bb + 74u + ib);
      u.s = d * (vec2<f32>(0.5) + vec2<f32>(f32(sc & 15u), f32(sc >> 4u))) * 0.25;
    }
    case IQ3_S: {
      // Rows of 4 (a byte of qs, a bit of qh), a sign byte per 8 weights, a 4-bit scale per 32.
      let qs = array<u32, 2>(w_u32(bb + 2u + 8u * ib), w_u32(bb + 6u + 8u * ib));
      let qh = w_byte(bb + 66u + ib);
      let signs = w_u32(bb + 74u + 4u * ib);
      for (var j = 0u; j < 8u; j++) {
        let row = ((qs[j >> 2u] >> (8u * (j & 3u))) & 255u) | (((qh >> j) & 1u) << 8u);
        u.c[j] = grid4(IQ3_S_GRID + row) * signs4(signs >> (4u * j));
      }
      u.s = vec2<f32>(d * f32(1u + 2u * ((w_byte(bb + 106u + (ib >> 1u)) >> (4u * (ib & 1u))) & 15u)));
    }
    case IQ1_S: {
      // 11-bit rows of {-1, 0, 1} (a byte of qs, 3 bits of qh), qh's shift sign and 3-bit scale, per 32.
      let qs = w_u32(bb + 2u + 4u * ib);
      let qh = w_u16(bb + 34u + 2u * ib);
      let delta = select(0.125, -0.125, (qh & 0x8000u) != 0u);
      for (var l = 0u; l < 4u; l++) {
        let g = IQ1_S_GRID + 2u * (((qs >> (8u * l)) & 255u) | (((qh >> (3u * l)) & 7u) << 8u));
        u.c[2u * l] = grid4(g) + delta;
        u.c[2u * l + 1u] = grid4(g + 1u) + delta;
      }
      u.s = vec2<f32>(d * f32(2u * ((qh >> 12u) & 7u) + 1u));
    }
    default: {  // IQ1_M: a nibble of qh per 8 weights (3 row bits, the shift's sign); scales per 16, d among them
      let qs = w_u32(bb + 4u * ib);
      let qh = w_u16(bb + 32u + 2u * ib);
      for (var l = 0u; l < 4u; l++) {
        let hi = qh >> (4u * l);
        let g = IQ1_S_GRID + 2u * (((qs >> (8u * l)) & 255u) | ((hi & 7u) << 8u));
        let delta = select(0.125, -0.125, (hi & 8u) != 0u);
        u.c[2u * l] = grid4(g) + delta;
        u.c[2u * l + 1u] = grid4(g + 1u) + delta;
      }
      u.s = vec2<f32>(iq_scale(format, bb, 4u * ib), iq_scale(format, bb, 4u * ib + 2u));
    }
  }
  return u;
}
#endif

fn load32(format: u32, rb: u32, k: u32) -> Unit {
  var u: Unit;
  u.s = vec2<f32>(1.0);
  switch (format) {
    case Q8_0: {
      let bb = rb + (k >> 5u) * 34u;
      u.s = vec2<f32>(w_f16(bb));
      for (var j = 0u; j < 8u; j++) {
        u.c[j] = vec4<f32>(unpack4xI8(w_u32(bb + 2u + 4u * j)));
      }
    }
    case Q4_K, Q5_K: {
      // Q5_K is Q4_K's block with the codes' fifth bits (qh[32]) before the nibbles.
      let q5 = format == Q5_K;
      let bb = rb + (k >> 8u) * select(144u, 176u, q5);
      let kk = k & 255u;
      let j = kk >> 6u;
      let hi = (kk >> 5u) & 1u;
      let sm = scale_min_k4(bb + 4u, 2u * j + hi);
      u.s = vec2<f32>(w_f16(bb) * sm.x);
      u.o = vec2<f32>(w_f16(bb + 2u) * sm.y);
      let q = (bb + select(16u, 48u, q5) + 32u * j) >> 2u;
      let h = (bb + 16u) >> 2u;
      for (var i = 0u; i < 8u; i++) {
        var code = (w[q + i] >> (4u * hi)) & LOW_NIBBLES;
        if (q5) {
          code |= ((w[h + i] >> (2u * j + hi)) & 0x01010101u) << 4u;
        }
        u.c[i] = vec4<f32>(unpack4xU8(code));
      }
    }
    case Q3_K: {
      // Codes 0..7 (2 bits, plus 4 where the hmask bit is set) with an offset of 4 scales.
      let bb = rb + (k >> 8u) * 110u;
      let kk = k & 255u;
      let n = kk >> 7u;
      let j = (kk >> 5u) & 3u;
      let sub = 8u * n + 2u * j;
      u.s = w_f16(bb + 108u) * vec2<f32>(scale_q3_k(bb + 96u, sub), scale_q3_k(bb + 96u, sub + 1u));
      u.o = 4.0 * u.s;
      for (var i = 0u; i < 8u; i++) {
        let q = (w_u32(bb + 32u + 32u * n + 4u * i) >> (2u * j)) & 0x03030303u;
        let h = ((w_u32(bb + 4u * i) >> (4u * n + j)) & 0x01010101u) << 2u;
        u.c[i] = vec4<f32>(unpack4xU8(q | h));
      }
    }
    case Q4_0, Q4_1, Q5_0, Q5_1: {
      // One block: codes 0..15 the low nibbles, 16..31 the high ones (and qh's fifth bits); w = d * q + m.
      let f = legacy(format);
      let bb = rb + (k >> 5u) * f.bytes;
      let d = w_f16(bb);
      u.s = vec2<f32>(d);
      switch (format) {
        case Q4_0: {
          u.o = vec2<f32>(8.0 * d);
        }
        case Q5_0: {
          u.o = vec2<f32>(16.0 * d);
        }
        default: {
          u.o = vec2<f32>(-w_f16(bb + 2u));
        }
      }
      let qh = select(0u, w_u32(bb + f.qh), f.qh != 0u);
      for (var i = 0u; i < 4u; i++) {
        let q = w_u32(bb + f.qs + 4u * i);
        let h = (vec4<u32>(qh) >> (vec4<u32>(0u, 1u, 2u, 3u) + vec4<u32>(4u * i))) & vec4<u32>(1u);
        let g = (vec4<u32>(qh) >> (vec4<u32>(16u, 17u, 18u, 19u) + vec4<u32>(4u * i))) & vec4<u32>(1u);
        u.c[i] = vec4<f32>(unpack4xU8(q & LOW_NIBBLES) | (h << vec4<u32>(4u)));
        u.c[4u + i] = vec4<f32>(unpack4xU8((q >> 4u) & LOW_NIBBLES) | (g << vec4<u32>(4u)));
      }
    }
    case Q2_K: {
      let bb = rb + (k >> 8u) * 84u;
      let kk = k & 255u;
      let n = kk >> 7u;
      let j = (kk >> 5u) & 3u;
      let sc = vec2<u32>(w_byte(bb + 8u * n + 2u * j), w_byte(bb + 8u * n + 2u * j + 1u));
      u.s = w_f16(bb + 80u) * vec2<f32>(sc & vec2<u32>(15u));
      u.o = w_f16(bb + 82u) * vec2<f32>(sc >> vec2<u32>(4u));
      for (var i = 0u; i < 8u; i++) {
        u.c[i] = vec4<f32>(unpack4xU8((w_u32(bb + 16u + 32u * n + 4u * i) >> (2u * j)) & 0x03030303u));
      }
    }
    case Q6_K: {
      let bb = rb + (k >> 8u) * 210u;
      let kk = k & 255u;
      let n = kk >> 7u;
      let quarter = (kk >> 5u) & 3u;
      let ql = bb + 64u * n + 32u * (quarter & 1u);
      let qh = bb + 128u + 32u * n;
      let sc = bb + 192u + 8u * n + 2u * quarter;
      let d = w_f16(bb + 208u);
      u.s = d * vec2<f32>(f32(bitcast<i32>(w_byte(sc) << 24u) >> 24u), f32(bitcast<i32>(w_byte(sc + 1u) << 24u) >> 24u));
      u.o = 32.0 * u.s;
      for (var i = 0u; i < 8u; i++) {
        let lo = (w_u32(ql + 4u * i) >> (4u * (quarter >> 1u))) & LOW_NIBBLES;
        let hi = ((w_u32(qh + 4u * i) >> (2u * quarter)) & 0x03030303u) << 4u;
        u.c[i] = vec4<f32>(unpack4xU8(lo | hi));
      }
    }
    case IQ4_NL, IQ4_XS: {
      var bb = rb + (k >> 5u) * 18u + 2u;
      var d = 0.0;
      if (format == IQ4_NL) {
        d = w_f16(bb - 2u);
      } else {
        let block = rb + (k >> 8u) * 136u;
        let s = (k & 255u) >> 5u;
        d = iq4_xs_scale(block, s);
        bb = block + 8u + 16u * s;
      }
      u.s = vec2<f32>(d);
      for (var i = 0u; i < 4u; i++) {
        let q = vec4<u32>(w_u32(bb + 4u * i)) >> BYTE_SHIFTS;
        u.c[i] = iq4_levels(q & vec4<u32>(15u));
        u.c[4u + i] = iq4_levels((q >> vec4<u32>(4u)) & vec4<u32>(15u));
      }
    }
#ifdef IQ
    default: {  // the i-quants
      u = load32_iq(format, rb + (k >> 8u) * iq_block_bytes(format), (k & 255u) >> 5u);
    }
#else
    case F32: {
      let i = (rb >> 4u) + (k >> 2u);
      for (var j = 0u; j < 8u; j++) {
        u.c[j] = bitcast<vec4<f32>>(w4[i + j]);
      }
    }
    case F16: {
      let i = (rb >> 4u) + (k >> 3u);
      for (var j = 0u; j < 4u; j++) {
        let q = w4[i + j];
        u.c[2u * j] = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
        u.c[2u * j + 1u] = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
      }
    }
    default: {  // Q4: byte b of a word holds codes 2b (low nibble) and 2b + 1
      let codes = w4[(rb + (k >> 1u)) >> 4u];
      let d = w_f16(rb + (p.k >> 1u) + (k >> 4u));
      u.s = vec2<f32>(d);
      u.o = vec2<f32>(8.0 * d);
      for (var j = 0u; j < 4u; j++) {
        let even = vec4<f32>(unpack4xU8(codes[j] & LOW_NIBBLES));
        let odd = vec4<f32>(unpack4xU8((codes[j] >> 4u) & LOW_NIBBLES));
        u.c[2u * j] = vec4<f32>(even.x, odd.x, even.y, odd.y);
        u.c[2u * j + 1u] = vec4<f32>(even.z, odd.z, even.w, odd.w);
      }
    }
#endif
  }
  return u;
}

fn x4(m: u32, k: u32) -> vec4<f32> {
  let i = p.x_off + m * p.x_stride + k;
  if (k + 4u <= p.k) {
    return vec4<f32>(f32(x[i]), f32(x[i + 1u]), f32(x[i + 2u]), f32(x[i + 3u]));
  }
  var v = vec4<f32>();
  for (var j = 0u; j < 4u; j++) {
    if (k + j < p.k) {
      v[j] = f32(x[i + j]);
    }
  }
  return v;
}

// The LoRA update of output `n` (a row of the window) for activation row m (0 without an adapter): from the
// columns of t and the block of B of the weight of the product whose rows hold the output.
fn lora(m: u32, n: u32) -> f32 {
  var s = 0.0;
  if (LORA) {
    let slot = p.lora_rows[m];
    let row = p.lora_row0 + n;
    let r0 = slot.w & 0xffffu;
    let r1 = slot.w >> 16u;
    var col = 0u;
    var rank = r0;
    var first = 0u;
    var base = 0u;
    if (row >= p.lora_bound2) {
      col = r0 + r1;
      rank = slot.y - r0 - r1;
      first = p.lora_bound2;
      base = p.lora_bound1 * r0 + (p.lora_bound2 - p.lora_bound1) * r1;
    } else if (row >= p.lora_bound1) {
      col = r0;
      rank = r1;
      first = p.lora_bound1;
      base = p.lora_bound1 * r0;
    }
    let ti = p.lora_t_off + m * p.lora_t_stride + col;
    let bi = p.lora_b_off + slot.z + base + (row - first) * rank;
    for (var j = 0u; j < rank; j++) {
      s += f32(lora_t[ti + j]) * f32(lora_b[bi + j]);
    }
  }
  return s;
}

fn matvec(format: u32, t: u32, group: u32) {
  let lane = t % p.tpr;
  var rows = WG / p.tpr;
  if (GLU) {
    rows /= 2u;
  }
  let out_row = group * rows + (t / p.tpr) % rows;
  // With GLU the threads past the first `rows` rows read the up row of the same output.
  let row = out_row + select(0u, p.n, t / p.tpr >= rows);
  var acc = array<f32, 8>();
  if (out_row < p.n) {
    let rb = p.w_off + row * p.w_row;
    if (WIDE) {
      for (var k = lane * 32u; k < p.k; k += p.tpr * 32u) {
        let u = load32(format, rb, k);
        for (var m = 0u; m < M; m++) {
          if (m < p.m) {
            let xb = (p.x_off + m * p.x_stride + k) >> 2u;
            var cx = vec2<f32>();
            var sx = vec4<f32>();
            for (var j = 0u; j < 4u; j++) {
              let a = vec4<f32>(xv[xb + j]);
              let b = vec4<f32>(xv[xb + 4u + j]);
              cx += vec2<f32>(dot(u.c[j], a), dot(u.c[4u + j], b));
              sx += vec4<f32>(a.x + a.y + a.z + a.w, b.x + b.y + b.z + b.w, 0.0, 0.0);
            }
            acc[m] += dot(u.s, cx) - dot(u.o, sx.xy);
          }
        }
      }
    } else {
      for (var k = lane * 8u; k < p.k; k += p.tpr * 8u) {
        let wv = load8(format, rb, k, p.k);
        for (var m = 0u; m < M; m++) {
          if (m < p.m) {
            acc[m] += dot(wv.lo, x4(m, k)) + dot(wv.hi, x4(m, k + 4u));
          }
        }
      }
    }
  }
  for (var m = 0u; m < M; m++) {
    partial[t * 8u + m] = acc[m];
  }
  for (var s = p.tpr / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lane < s) {
      for (var m = 0u; m < M; m++) {
        partial[t * 8u + m] += partial[(t + s) * 8u + m];
      }
    }
  }
  if (GLU) {
    workgroupBarrier();
    if (lane == 0u && t / p.tpr < rows && out_row < p.n) {
      for (var m = 0u; m < M; m++) {
        if (m < p.m) {
          let gate = f32(Y(partial[t * 8u + m] + lora(m, out_row)));
          let up = f32(Y(partial[(t + rows * p.tpr) * 8u + m] + lora(m, out_row + p.n)));
          y[p.y_off + m * p.y_stride + out_row] = Y(gate / (1.0 + exp(-gate)) * up);
        }
      }
    }
    return;
  }
  if (lane == 0u && row < p.n) {
    var b = 0.0;
    if (p.has_bias != 0u) {
      b = bias[p.bias_off + row];
    }
    for (var m = 0u; m < M; m++) {
      if (m < p.m) {
        let i = p.y_off + m * p.y_stride + row;
        var v = partial[t * 8u + m] + b + lora(m, row);
        if (p.accumulate != 0u) {
          v += f32(y[i]);
        }
        y[i] = Y(v);
      }
    }
  }
}

@compute @workgroup_size(WG)
fn matvec_f32(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
              @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(F32, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_f16(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
              @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(F16, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q8_0(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q8_0, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q3_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q3_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q4_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q4_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q5_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q5_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q6_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q6_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q4(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
             @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q4, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_iq4_nl(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ4_NL, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_iq4_xs(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ4_XS, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q2_k(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q2_K, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q4_0(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q4_0, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q4_1(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q4_1, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q5_0(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q5_0, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_q5_1(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
               @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(Q5_1, t, g.x + g.y * ng.x);
}

#ifdef IQ
@compute @workgroup_size(WG)
fn matvec_iq2_xxs(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                  @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ2_XXS, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_iq2_xs(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                 @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ2_XS, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_iq2_s(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ2_S, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_iq3_xxs(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                  @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ3_XXS, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_iq3_s(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ3_S, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_iq1_s(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ1_S, t, g.x + g.y * ng.x);
}

@compute @workgroup_size(WG)
fn matvec_iq1_m(@builtin(local_invocation_index) t: u32, @builtin(workgroup_id) g: vec3<u32>,
                @builtin(num_workgroups) ng: vec3<u32>) {
  matvec(IQ1_M, t, g.x + g.y * ng.x);
}
#endif
