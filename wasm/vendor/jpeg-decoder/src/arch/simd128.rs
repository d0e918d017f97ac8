//! WASM SIMD (simd128) versions of the decoder's hot loops, each bit-identical to the scalar code it replaces
//! (which follows libjpeg-turbo): the accurate integer inverse DCT of idct.rs in 32-bit lanes, the fancy
//! upsamplers of upsampler.rs, and the YCbCr conversion of decoder.rs. Written in lanes.rs's types, so the tests
//! below run them natively against the scalar code.
#![cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]

use super::lanes::{I16x8, I32x4};
use crate::decoder::{FIX_0_34414, FIX_0_71414, FIX_1_40200, FIX_1_77200, ONE_HALF, SCALEBITS};
use crate::idct::*;

/// The low 16 bits of each lane, sign-extended (idct.rs's `wrap16`).
#[inline(always)]
fn wrap16(x: I32x4) -> I32x4 {
    x.shl(16).shr(16)
}

/// One 1-D pass over eight vectors (`s[k]` holds input k of four independent transforms): idct.rs's
/// `islow_pass`, outputs rounded and shifted right by `shift` (not yet saturated).
#[inline(always)]
fn islow_pass(s: &[I32x4; 8], shift: u32) -> [I32x4; 8] {
    let f = I32x4::splat;
    let tmp3 = s[2] * f(FIX_0_541196100 + FIX_0_765366865) + s[6] * f(FIX_0_541196100);
    let tmp2 = s[2] * f(FIX_0_541196100) + s[6] * f(FIX_0_541196100 - FIX_1_847759065);
    let tmp0 = wrap16(s[0] + s[4]).shl(CONST_BITS);
    let tmp1 = wrap16(s[0] - s[4]).shl(CONST_BITS);
    let round = f(1 << (shift - 1));
    let (tmp10, tmp13) = (tmp0 + tmp3 + round, tmp0 - tmp3 + round);
    let (tmp11, tmp12) = (tmp1 + tmp2 + round, tmp1 - tmp2 + round);

    let (s3, s4) = (wrap16(s[7] + s[3]), wrap16(s[5] + s[1]));
    let z3 = s3 * f(FIX_1_175875602 - FIX_1_961570560) + s4 * f(FIX_1_175875602);
    let z4 = s3 * f(FIX_1_175875602) + s4 * f(FIX_1_175875602 - FIX_0_390180644);
    let t0 = s[7] * f(FIX_0_298631336 - FIX_0_899976223) + s[1] * f(-FIX_0_899976223) + z3;
    let t1 = s[5] * f(FIX_2_053119869 - FIX_2_562915447) + s[3] * f(-FIX_2_562915447) + z4;
    let t2 = s[5] * f(-FIX_2_562915447) + s[3] * f(FIX_3_072711026 - FIX_2_562915447) + z3;
    let t3 = s[7] * f(-FIX_0_899976223) + s[1] * f(FIX_1_501321110 - FIX_0_899976223) + z4;
    [
        (tmp10 + t3).shr(shift),
        (tmp11 + t2).shr(shift),
        (tmp12 + t1).shr(shift),
        (tmp13 + t0).shr(shift),
        (tmp13 - t0).shr(shift),
        (tmp12 - t1).shr(shift),
        (tmp11 - t2).shr(shift),
        (tmp10 - t3).shr(shift),
    ]
}

/// idct.rs's `dequantize_and_idct_block_8x8_inner`: columns, then rows, four at a time.
pub fn dequantize_and_idct_block_8x8(
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    output_linestride: usize,
    output: &mut [u8],
) {
    const ROW_SHIFT: u32 = CONST_BITS + PASS1_BITS + 3;
    let last = output_linestride * 7;
    let (min16, max16, center) = (I32x4::splat(-32768), I32x4::splat(32767), I32x4::splat(128));

    // s[half][row]: coefficients[8 * row + 4 * half..][..4] dequantized (pmullw's low 16 bits).
    let mut s = [[I32x4::splat(0); 8]; 2];
    let mut ac = I32x4::splat(0);
    for row in 0..8 {
        let coefs = I32x4::load_i16(coefficients, 8 * row);
        let q = I32x4::load_u16(quantization_table, 8 * row);
        for half in 0..2 {
            s[half][row] = wrap16(coefs[half] * q[half]);
            if row > 0 {
                ac = ac.or(coefs[half]);
            }
        }
    }

    // Columns. Without AC coefficients in the block, each column is its first row shifted left in 16 bits;
    // with a DC coefficient alone (common on smooth areas) every sample is the same.
    let mut temp = [[I32x4::splat(0); 8]; 2];
    if !ac.any_nonzero() {
        if coefficients[1..8].iter().all(|&c| c == 0) {
            let dc = i32::from(coefficients[0]).wrapping_mul(i32::from(quantization_table[0]));
            let dc = wrap16(I32x4::splat(dc)).shl(PASS1_BITS);
            let value = (wrap16(dc).shl(CONST_BITS) + I32x4::splat(1 << (ROW_SHIFT - 1))).shr(ROW_SHIFT);
            for row in 0..8 {
                I32x4::store_u8x8(value + center, value + center, &mut output[..last + 8], row * output_linestride);
            }
            return;
        }
        for half in 0..2 {
            temp[half] = [wrap16(s[half][0].shl(PASS1_BITS)); 8];
        }
    } else {
        for half in 0..2 {
            temp[half] = islow_pass(&s[half], CONST_BITS - PASS1_BITS).map(|v| v.max(min16).min(max16));
        }
    }

    // Rows: transpose so that vector k holds input k of four rows, transform, transpose back. The output
    // saturates to -128..127 before it is centred on 128, which is store_u8x8's clamp to 0..255 after it.
    for group in 0..2 {
        let mut columns = [I32x4::splat(0); 8];
        for half in 0..2 {
            let rows = [0, 1, 2, 3].map(|r| temp[half][4 * group + r]);
            let cols = I32x4::transpose(rows);
            columns[4 * half..4 * half + 4].copy_from_slice(&cols);
        }
        let out = islow_pass(&columns, ROW_SHIFT).map(|v| v.max(min16).min(max16) + center);
        let lo = I32x4::transpose([out[0], out[1], out[2], out[3]]);
        let hi = I32x4::transpose([out[4], out[5], out[6], out[7]]);
        for r in 0..4 {
            let at = (4 * group + r) * output_linestride;
            I32x4::store_u8x8(lo[r], hi[r], &mut output[..last + 8], at);
        }
    }
}

/// decoder.rs's `color_convert_line_ycbcr` on whole groups of 16 pixels; returns how many pixels it converted.
pub fn color_convert_line_ycbcr(y: &[u8], cb: &[u8], cr: &[u8], output: &mut [u8]) -> usize {
    let count = (output.len() / 3).min(y.len()).min(cb.len()).min(cr.len()) / 16 * 16;
    let [cr_r, cb_g, cr_g, cb_b] = [FIX_1_40200, -FIX_0_34414, -FIX_0_71414, FIX_1_77200].map(I32x4::splat);
    let (half, c128) = (I32x4::splat(ONE_HALF), I32x4::splat(128));
    let shift = SCALEBITS as u32;
    for at in (0..count).step_by(16) {
        let ys = I32x4::load_u8(y, at);
        let cbs = I32x4::load_u8(cb, at);
        let crs = I32x4::load_u8(cr, at);
        let mut r = [I32x4::splat(0); 4];
        let mut g = r;
        let mut b = r;
        for i in 0..4 {
            let (cb, cr) = (cbs[i] - c128, crs[i] - c128);
            r[i] = ys[i] + (cr_r * cr + half).shr(shift);
            g[i] = ys[i] + (cb_g * cb + half + cr_g * cr).shr(shift);
            b[i] = ys[i] + (cb_b * cb + half).shr(shift);
        }
        I32x4::store_rgb16(r, g, b, output, 3 * at);
    }
    count
}

/// upsampler.rs's `UpsamplerH2V1` for input samples `1..` in groups of 8 (each needs its right neighbour);
/// returns the first sample it did not do.
pub fn upsample_row_h2v1(input: &[u8], input_width: usize, output: &mut [u8]) -> usize {
    let (three, one, two) = (I16x8::splat(3), I16x8::splat(1), I16x8::splat(2));
    let mut i = 1;
    while i + 9 <= input_width {
        let sample = I16x8::load_u8(input, i) * three;
        let left = (sample + I16x8::load_u8(input, i - 1) + one).shr(2);
        let right = (sample + I16x8::load_u8(input, i + 1) + two).shr(2);
        I16x8::store_interleaved_u8(left, right, output, 2 * i);
        i += 8;
    }
    i
}

/// upsampler.rs's `UpsamplerH2V2` for input samples `1..` in groups of 8; returns the first sample it did not do.
pub fn upsample_row_h2v2(near: &[u8], far: &[u8], input_width: usize, output: &mut [u8]) -> usize {
    let (three, seven, eight) = (I16x8::splat(3), I16x8::splat(7), I16x8::splat(8));
    let mut i = 1;
    while i + 8 <= input_width {
        let t0 = I16x8::load_u8(near, i - 1) * three + I16x8::load_u8(far, i - 1);
        let t1 = I16x8::load_u8(near, i) * three + I16x8::load_u8(far, i);
        let odd = (t0 * three + t1 + seven).shr(4);
        let even = (t1 * three + t0 + eight).shr(4);
        I16x8::store_interleaved_u8(odd, even, output, 2 * i - 1);
        i += 8;
    }
    i
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::decoder::ycbcr_to_rgb;
    use crate::idct::dequantize_and_idct_block_8x8_inner;

    /// xorshift64: reproducible inputs without a dependency.
    pub(crate) struct Rng(pub u64);

    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn check_idct(coefficients: &[i16; 64], table: &[u16; 64]) {
        let stride = 11;
        let mut expected = vec![0xA5u8; stride * 7 + 8];
        let mut actual = expected.clone();
        dequantize_and_idct_block_8x8_inner(coefficients, table, expected.chunks_mut(stride));
        dequantize_and_idct_block_8x8(coefficients, table, stride, &mut actual);
        assert_eq!(actual, expected, "coefficients {:?} table {:?}", coefficients, table);
    }

    #[test]
    fn idct_matches_scalar() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..50_000 {
            let mut coefficients = [0i16; 64];
            let mut table = [0u16; 64];
            // Sparse blocks like real ones (zero columns and rows, DC only), dense ones, and extremes that
            // overflow the 32-bit arithmetic (16-bit tables, full-range coefficients).
            let density = [0u64, 1, 4, 16, 64][case % 5];
            let (coef_range, q_range) = match case % 3 {
                0 => (1024u64, 256u64),
                1 => (65536, 256),
                _ => (65536, 65536),
            };
            for i in 0..64 {
                if density == 64 || rng.next() % 64 < density || i == 0 {
                    coefficients[i] = ((rng.next() % coef_range) as i64 - (coef_range / 2) as i64) as i16;
                }
                table[i] = (rng.next() % q_range) as u16;
            }
            check_idct(&coefficients, &table);
        }
        for &(c, q) in &[(i16::MAX, u16::MAX), (i16::MIN, u16::MAX), (1, 0), (-1, 1)] {
            check_idct(&[c; 64], &[q; 64]);
            let mut dc_only = [0i16; 64];
            dc_only[0] = c;
            check_idct(&dc_only, &[q; 64]);
        }
    }

    #[test]
    fn ycbcr_matches_scalar() {
        let mut rng = Rng(7);
        for width in [0, 1, 15, 16, 17, 31, 32, 100, 257] {
            let (y, cb, cr) = (rng.bytes(width + 5), rng.bytes(width + 5), rng.bytes(width + 5));
            let mut output = vec![0u8; 3 * width];
            let done = color_convert_line_ycbcr(&y, &cb, &cr, &mut output);
            assert_eq!(done, width / 16 * 16);
            for i in 0..done {
                let (r, g, b) = ycbcr_to_rgb(y[i], cb[i], cr[i]);
                assert_eq!(&output[3 * i..3 * i + 3], &[r, g, b], "pixel {i} of {width}");
            }
        }
        // Every Cb, Cr pair, at Y values where the clamping matters.
        let all: Vec<u32> = (0..1 << 16).flat_map(|c| [0, 1, 2, 127, 128, 253, 254, 255].map(|y| c << 8 | y)).collect();
        for chunk in all.chunks(4096) {
            let y: Vec<u8> = chunk.iter().map(|&v| v as u8).collect();
            let cb: Vec<u8> = chunk.iter().map(|&v| (v >> 8) as u8).collect();
            let cr: Vec<u8> = chunk.iter().map(|&v| (v >> 16) as u8).collect();
            let mut output = vec![0u8; 3 * chunk.len()];
            assert_eq!(color_convert_line_ycbcr(&y, &cb, &cr, &mut output), chunk.len());
            for i in 0..chunk.len() {
                let (r, g, b) = ycbcr_to_rgb(y[i], cb[i], cr[i]);
                assert_eq!(&output[3 * i..3 * i + 3], &[r, g, b]);
            }
        }
    }
}
