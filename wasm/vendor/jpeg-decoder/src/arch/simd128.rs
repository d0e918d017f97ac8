//! WASM SIMD (simd128) versions of the decoder's hot loops, each bit-identical to the scalar code it replaces
//! (the x86 and Arm paths in this folder round differently, so they were not ported): the stb_image integer
//! inverse DCT of idct.rs in 32-bit lanes, the fancy upsamplers of upsampler.rs, and the fixed-point YCbCr
//! conversion of decoder.rs. Written in lanes.rs's types, so the tests below run them natively against the
//! scalar code.
#![cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]

use super::lanes::{I16x8, I32x4};
use crate::decoder::ycbcr_fixed_point;
use crate::idct::stbi_f2f;

/// The even half of idct.rs's `kernel_x` (the constant `x_scale` already added).
#[inline(always)]
fn kernel_x(s0: I32x4, s2: I32x4, s4: I32x4, s6: I32x4, x_scale: I32x4) -> [I32x4; 4] {
    let f = |x: f32| I32x4::splat(stbi_f2f(x).0);
    let p1 = (s2 + s6) * f(0.5411961);
    let t2 = p1 + s6 * f(-1.847759065);
    let t3 = p1 + s2 * f(0.765366865);
    let t0 = (s0 + s4).shl(12);
    let t1 = (s0 - s4).shl(12);
    [t0 + t3 + x_scale, t1 + t2 + x_scale, t1 - t2 + x_scale, t0 - t3 + x_scale]
}

/// The odd half, idct.rs's `kernel_t`.
#[inline(always)]
fn kernel_t(s1: I32x4, s3: I32x4, s5: I32x4, s7: I32x4) -> [I32x4; 4] {
    let f = |x: f32| I32x4::splat(stbi_f2f(x).0);
    let p3 = s7 + s3;
    let p4 = s5 + s1;
    let p1 = s7 + s1;
    let p2 = s5 + s3;
    let p5 = (p3 + p4) * f(1.175875602);
    let t0 = s7 * f(0.298631336);
    let t1 = s5 * f(2.053119869);
    let t2 = s3 * f(3.072711026);
    let t3 = s1 * f(1.501321110);
    let p1 = p5 + p1 * f(-0.899976223);
    let p2 = p5 + p2 * f(-2.562915447);
    let p3 = p3 * f(-1.961570560);
    let p4 = p4 * f(-0.390180644);
    [t0 + p1 + p3, t1 + p2 + p4, t2 + p2 + p3, t3 + p1 + p4]
}

/// One 1-D pass over eight vectors (`s[k]` holds input k of four independent transforms), returning the eight
/// outputs shifted right by `shift`.
#[inline(always)]
fn idct8(s: &[I32x4; 8], x_scale: i32, shift: u32) -> [I32x4; 8] {
    let [x0, x1, x2, x3] = kernel_x(s[0], s[2], s[4], s[6], I32x4::splat(x_scale));
    let [t0, t1, t2, t3] = kernel_t(s[1], s[3], s[5], s[7]);
    [
        (x0 + t3).shr(shift),
        (x1 + t2).shr(shift),
        (x2 + t1).shr(shift),
        (x3 + t0).shr(shift),
        (x3 - t0).shr(shift),
        (x2 - t1).shr(shift),
        (x1 - t2).shr(shift),
        (x0 - t3).shr(shift),
    ]
}

/// idct.rs's `dequantize_and_idct_block_8x8_inner`: columns, then rows, four at a time.
pub fn dequantize_and_idct_block_8x8(
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    output_linestride: usize,
    output: &mut [u8],
) {
    // The row pass adds 0.5 << 17 to round and 128 << 17 to centre on 128.
    const X_SCALE: i32 = 65536 + (128 << 17);
    let last = output_linestride * 7;

    // coefficient[8 * row + 4 * half..][..4] and its dequantized value.
    let mut coefs = [[I32x4::splat(0); 2]; 8];
    let mut s = [[I32x4::splat(0); 8]; 2];
    let mut ac = I32x4::splat(0);
    for row in 0..8 {
        coefs[row] = I32x4::load_i16(coefficients, 8 * row);
        let q = I32x4::load_u16(quantization_table, 8 * row);
        for half in 0..2 {
            s[half][row] = coefs[row][half] * q[half];
            if row > 0 {
                ac = ac.or(coefs[row][half]);
            }
        }
    }
    // Only a DC coefficient (common on smooth areas): every sample is the same, as the scalar code's shortcuts
    // for zero columns and rows give.
    if !ac.any_nonzero() && coefficients[1..8].iter().all(|&c| c == 0) {
        let dc = i32::from(coefficients[0]) * i32::from(quantization_table[0]);
        let value = (dc.wrapping_shl(14).wrapping_add(X_SCALE) >> 17).max(0).min(255) as u8;
        for row in 0..8 {
            output[row * output_linestride..][..8].fill(value);
        }
        return;
    }

    // Columns: a column whose AC coefficients are all zero is its DC term << 2 (which differs from the full
    // kernel's result when the product overflows, so the scalar code's shortcut is kept lane by lane).
    let mut temp = [[I32x4::splat(0); 8]; 2];
    for half in 0..2 {
        let mut column_ac = coefs[1][half];
        for row in 2..8 {
            column_ac = column_ac.or(coefs[row][half]);
        }
        let full = idct8(&s[half], 512, 10);
        let dc = s[half][0].shl(2);
        for row in 0..8 {
            temp[half][row] = column_ac.select_zero(dc, full[row]);
        }
    }

    // Rows (the scalar code's shortcut for rows with only a DC term gives the full kernel's result exactly):
    // transpose so that vector k holds input k of four rows, transform, transpose back.
    for group in 0..2 {
        let mut columns = [I32x4::splat(0); 8];
        for half in 0..2 {
            let rows = [0, 1, 2, 3].map(|r| temp[half][4 * group + r]);
            let cols = I32x4::transpose(rows);
            columns[4 * half..4 * half + 4].copy_from_slice(&cols);
        }
        let out = idct8(&columns, X_SCALE, 17);
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
    let [cr_r, cb_g, cr_g, cb_b] = ycbcr_fixed_point().map(I32x4::splat);
    let (half, c128) = (I32x4::splat(1 << 19), I32x4::splat(128));
    for at in (0..count).step_by(16) {
        let ys = I32x4::load_u8(y, at);
        let cbs = I32x4::load_u8(cb, at);
        let crs = I32x4::load_u8(cr, at);
        let mut r = [I32x4::splat(0); 4];
        let mut g = r;
        let mut b = r;
        for i in 0..4 {
            let y = ys[i].shl(20) + half;
            let (cb, cr) = (cbs[i] - c128, crs[i] - c128);
            r[i] = (y + cr_r * cr).shr(20);
            g[i] = (y - cb_g * cb - cr_g * cr).shr(20);
            b[i] = (y + cb_b * cb).shr(20);
        }
        I32x4::store_rgb16(r, g, b, output, 3 * at);
    }
    count
}

/// upsampler.rs's `UpsamplerH2V1` for input samples `1..` in groups of 8 (each needs its right neighbour);
/// returns the first sample it did not do.
pub fn upsample_row_h2v1(input: &[u8], input_width: usize, output: &mut [u8]) -> usize {
    let (three, two) = (I16x8::splat(3), I16x8::splat(2));
    let mut i = 1;
    while i + 9 <= input_width {
        let sample = I16x8::load_u8(input, i) * three + two;
        let left = (sample + I16x8::load_u8(input, i - 1)).shr(2);
        let right = (sample + I16x8::load_u8(input, i + 1)).shr(2);
        I16x8::store_interleaved_u8(left, right, output, 2 * i);
        i += 8;
    }
    i
}

/// upsampler.rs's `UpsamplerH2V2` for input samples `1..` in groups of 8; returns the first sample it did not do.
pub fn upsample_row_h2v2(near: &[u8], far: &[u8], input_width: usize, output: &mut [u8]) -> usize {
    let (three, eight) = (I16x8::splat(3), I16x8::splat(8));
    let mut i = 1;
    while i + 8 <= input_width {
        let t0 = I16x8::load_u8(near, i - 1) * three + I16x8::load_u8(far, i - 1);
        let t1 = I16x8::load_u8(near, i) * three + I16x8::load_u8(far, i);
        let odd = (t0 * three + t1 + eight).shr(4);
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
