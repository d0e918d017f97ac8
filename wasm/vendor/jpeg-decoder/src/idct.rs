// Malicious JPEG files can cause operations in the idct to overflow.
// One example is tests/crashtest/images/imagetestsuite/b0b8914cc5f7a6eff409f16d8cc236c5.jpg
// That's why wrapping operators are needed.

// Note: we have many values that are straight from a reference.
// Do not warn on them or try to automatically change them.
#![allow(clippy::excessive_precision)]
// Note: consistency for unrolled, scaled offset loops
#![allow(clippy::erasing_op)]
#![allow(clippy::identity_op)]
use crate::parser::Dimensions;
use core::{convert::TryFrom, num::Wrapping};

pub(crate) fn choose_idct_size(full_size: Dimensions, requested_size: Dimensions) -> usize {
    fn scaled(len: u16, scale: usize) -> u16 {
        ((len as u32 * scale as u32 - 1) / 8 + 1) as u16
    }

    for &scale in &[1, 2, 4] {
        if scaled(full_size.width, scale) >= requested_size.width
            || scaled(full_size.height, scale) >= requested_size.height
        {
            return scale;
        }
    }

    8
}

#[test]
fn test_choose_idct_size() {
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 200,
                height: 200
            }
        ),
        1
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 500,
                height: 500
            }
        ),
        1
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 684,
                height: 456
            }
        ),
        1
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 999,
                height: 456
            }
        ),
        1
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 684,
                height: 999
            }
        ),
        1
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 500,
                height: 333
            },
            Dimensions {
                width: 63,
                height: 42
            }
        ),
        1
    );

    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 685,
                height: 999
            }
        ),
        2
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 1000,
                height: 1000
            }
        ),
        2
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 1400,
                height: 1400
            }
        ),
        4
    );

    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 5472,
                height: 3648
            }
        ),
        8
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 16384,
                height: 16384
            }
        ),
        8
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 1,
                height: 1
            },
            Dimensions {
                width: 65535,
                height: 65535
            }
        ),
        8
    );
    assert_eq!(
        choose_idct_size(
            Dimensions {
                width: 5472,
                height: 3648
            },
            Dimensions {
                width: 16384,
                height: 16384
            }
        ),
        8
    );
}

pub(crate) fn dequantize_and_idct_block(
    scale: usize,
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    output_linestride: usize,
    output: &mut [u8],
) {
    match scale {
        8 => dequantize_and_idct_block_8x8(
            coefficients,
            quantization_table,
            output_linestride,
            output,
        ),
        4 => dequantize_and_idct_block_4x4(
            coefficients,
            quantization_table,
            output_linestride,
            output,
        ),
        2 => dequantize_and_idct_block_2x2(
            coefficients,
            quantization_table,
            output_linestride,
            output,
        ),
        1 => dequantize_and_idct_block_1x1(
            coefficients,
            quantization_table,
            output_linestride,
            output,
        ),
        _ => panic!("Unsupported IDCT scale {}/8", scale),
    }
}

pub fn dequantize_and_idct_block_8x8(
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    output_linestride: usize,
    output: &mut [u8],
) {
    #[cfg(not(feature = "platform_independent"))]
    if let Some(idct) = crate::arch::get_dequantize_and_idct_block_8x8() {
        #[allow(unsafe_code)]
        unsafe {
            return idct(coefficients, quantization_table, output_linestride, output);
        }
    }

    let output = output.chunks_mut(output_linestride);
    dequantize_and_idct_block_8x8_inner(coefficients, quantization_table, output)
}

// libjpeg-turbo's accurate integer inverse DCT (jidctint.c's jpeg_idct_islow, JDCT_ISLOW: CONST_BITS 13,
// PASS1_BITS 2) with the arithmetic of its x86-64 SIMD version (simd/x86_64/jidctint-avx2.asm, whose SSE2 twin
// computes the same), which is what Pillow's wheels run. On valid data the C code gives the same bytes; where the
// coefficients overflow 16 bits the SIMD code differs from the C code's 64-bit arithmetic and RANGE_MASK
// wraparound, so it is followed exactly:
// - dequantization is a 16-bit multiply keeping the low 16 bits (pmullw; the table entry as a 16-bit value),
// - the sums in0 + in4, in0 - in4, in7 + in3 and in5 + in1 wrap at 16 bits (paddw), every other sum and
//   product is 32-bit (pmaddwd, paddd), wrapping,
// - each pass rounds, shifts right arithmetically and saturates to 16 bits (packssdw); the result saturates
//   to -128..127 (packsswb) and is centred on 128,
// - when every AC coefficient of the block (rows 1-7) is zero the column pass gives the dequantized first row
//   shifted left by PASS1_BITS in 16 bits (psllw) instead; the row pass has no shortcut.
pub(crate) fn dequantize_and_idct_block_8x8_inner<'a, I>(
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    output: I,
) where
    I: IntoIterator<Item = &'a mut [u8]>,
    I::IntoIter: ExactSizeIterator<Item = &'a mut [u8]>,
{
    let output = output.into_iter();
    debug_assert!(
        output.len() >= 8,
        "Output iterator has the wrong length: {}",
        output.len()
    );

    // Columns: workspace[8 * row + column].
    let mut workspace = [0i32; 64];
    if coefficients[8..].iter().all(|&c| c == 0) {
        for column in 0..8 {
            let dc = wrap16(dequantize(coefficients[column], quantization_table[column]) << PASS1_BITS);
            for row in 0..8 {
                workspace[8 * row + column] = dc;
            }
        }
    } else {
        for column in 0..8 {
            let input = [0, 1, 2, 3, 4, 5, 6, 7]
                .map(|row| dequantize(coefficients[8 * row + column], quantization_table[8 * row + column]));
            let result = islow_pass(input, CONST_BITS - PASS1_BITS);
            for row in 0..8 {
                workspace[8 * row + column] = result[row];
            }
        }
    }

    // Rows.
    for (row, output_row) in workspace.chunks_exact(8).zip(output) {
        let input = <[i32; 8]>::try_from(row).unwrap();
        let result = islow_pass(input, CONST_BITS + PASS1_BITS + 3);
        for (out, value) in output_row[..8].iter_mut().zip(result) {
            *out = (value.max(-128).min(127) + 128) as u8;
        }
    }
}

pub(crate) const CONST_BITS: u32 = 13;
pub(crate) const PASS1_BITS: u32 = 2;

// FIX(x) = x * (1 << CONST_BITS) rounded, as jidctint.c spells them out.
pub(crate) const FIX_0_298631336: i32 = 2446;
pub(crate) const FIX_0_390180644: i32 = 3196;
pub(crate) const FIX_0_541196100: i32 = 4433;
pub(crate) const FIX_0_765366865: i32 = 6270;
pub(crate) const FIX_0_899976223: i32 = 7373;
pub(crate) const FIX_1_175875602: i32 = 9633;
pub(crate) const FIX_1_501321110: i32 = 12299;
pub(crate) const FIX_1_847759065: i32 = 15137;
pub(crate) const FIX_1_961570560: i32 = 16069;
pub(crate) const FIX_2_053119869: i32 = 16819;
pub(crate) const FIX_2_562915447: i32 = 20995;
pub(crate) const FIX_3_072711026: i32 = 25172;

/// One 1-D pass of jidctint-avx2.asm's `dodct` over eight 16-bit inputs (in i32s): the outputs rounded, shifted
/// right by `shift` and saturated to 16 bits. The products are regrouped as the SIMD code does (each output a
/// sum of two products per pair of inputs), which equals jidctint.c's grouping in 32-bit arithmetic.
#[inline(always)]
fn islow_pass(i: [i32; 8], shift: u32) -> [i32; 8] {
    // Even part.
    let tmp3 = (i[2] * (FIX_0_541196100 + FIX_0_765366865)).wrapping_add(i[6] * FIX_0_541196100);
    let tmp2 = (i[2] * FIX_0_541196100).wrapping_add(i[6] * (FIX_0_541196100 - FIX_1_847759065));
    let tmp0 = wrap16(i[0] + i[4]) << CONST_BITS;
    let tmp1 = wrap16(i[0] - i[4]) << CONST_BITS;
    let tmp10 = tmp0.wrapping_add(tmp3);
    let tmp13 = tmp0.wrapping_sub(tmp3);
    let tmp11 = tmp1.wrapping_add(tmp2);
    let tmp12 = tmp1.wrapping_sub(tmp2);

    // Odd part.
    let (s3, s4) = (wrap16(i[7] + i[3]), wrap16(i[5] + i[1]));
    let z3 = (s3 * (FIX_1_175875602 - FIX_1_961570560)).wrapping_add(s4 * FIX_1_175875602);
    let z4 = (s3 * FIX_1_175875602).wrapping_add(s4 * (FIX_1_175875602 - FIX_0_390180644));
    let t0 = (i[7] * (FIX_0_298631336 - FIX_0_899976223)).wrapping_add(i[1] * -FIX_0_899976223).wrapping_add(z3);
    let t1 = (i[5] * (FIX_2_053119869 - FIX_2_562915447)).wrapping_add(i[3] * -FIX_2_562915447).wrapping_add(z4);
    let t2 = (i[5] * -FIX_2_562915447).wrapping_add(i[3] * (FIX_3_072711026 - FIX_2_562915447)).wrapping_add(z3);
    let t3 = (i[7] * -FIX_0_899976223).wrapping_add(i[1] * (FIX_1_501321110 - FIX_0_899976223)).wrapping_add(z4);

    let round = 1 << (shift - 1);
    let out = |x: i32| saturate16(x.wrapping_add(round) >> shift);
    [
        out(tmp10.wrapping_add(t3)),
        out(tmp11.wrapping_add(t2)),
        out(tmp12.wrapping_add(t1)),
        out(tmp13.wrapping_add(t0)),
        out(tmp13.wrapping_sub(t0)),
        out(tmp12.wrapping_sub(t1)),
        out(tmp11.wrapping_sub(t2)),
        out(tmp10.wrapping_sub(t3)),
    ]
}

/// The low 16 bits, sign-extended.
#[inline(always)]
pub(crate) fn wrap16(x: i32) -> i32 {
    x as i16 as i32
}

#[inline(always)]
fn saturate16(x: i32) -> i32 {
    x.max(i16::MIN as i32).min(i16::MAX as i32)
}

/// pmullw: the low 16 bits of the product.
#[inline(always)]
fn dequantize(c: i16, q: u16) -> i32 {
    wrap16(i32::from(c).wrapping_mul(i32::from(q)))
}

// 4x4 and 2x2 IDCT based on Rakesh Dugad and Narendra Ahuja: "A Fast Scheme for Image Size Change in the Compressed Domain" (2001).
// http://sylvana.net/jpegcrop/jidctred/
fn dequantize_and_idct_block_4x4(
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    output_linestride: usize,
    output: &mut [u8],
) {
    debug_assert_eq!(coefficients.len(), 64);
    let mut temp = [Wrapping(0i32); 4 * 4];

    const CONST_BITS: usize = 12;
    const PASS1_BITS: usize = 2;
    const FINAL_BITS: usize = CONST_BITS + PASS1_BITS + 3;

    // columns
    for i in 0..4 {
        let s0 = Wrapping(coefficients[i + 8 * 0] as i32 * quantization_table[i + 8 * 0] as i32);
        let s1 = Wrapping(coefficients[i + 8 * 1] as i32 * quantization_table[i + 8 * 1] as i32);
        let s2 = Wrapping(coefficients[i + 8 * 2] as i32 * quantization_table[i + 8 * 2] as i32);
        let s3 = Wrapping(coefficients[i + 8 * 3] as i32 * quantization_table[i + 8 * 3] as i32);

        let x0 = (s0 + s2) << PASS1_BITS;
        let x2 = (s0 - s2) << PASS1_BITS;

        let p1 = (s1 + s3) * stbi_f2f(0.541196100);
        let t0 = (p1 + s3 * stbi_f2f(-1.847759065) + Wrapping(512)) >> (CONST_BITS - PASS1_BITS);
        let t2 = (p1 + s1 * stbi_f2f(0.765366865) + Wrapping(512)) >> (CONST_BITS - PASS1_BITS);

        temp[i + 4 * 0] = x0 + t2;
        temp[i + 4 * 3] = x0 - t2;
        temp[i + 4 * 1] = x2 + t0;
        temp[i + 4 * 2] = x2 - t0;
    }

    for i in 0..4 {
        let s0 = temp[i * 4 + 0];
        let s1 = temp[i * 4 + 1];
        let s2 = temp[i * 4 + 2];
        let s3 = temp[i * 4 + 3];

        let x0 = (s0 + s2) << CONST_BITS;
        let x2 = (s0 - s2) << CONST_BITS;

        let p1 = (s1 + s3) * stbi_f2f(0.541196100);
        let t0 = p1 + s3 * stbi_f2f(-1.847759065);
        let t2 = p1 + s1 * stbi_f2f(0.765366865);

        // constants scaled things up by 1<<12, plus we had 1<<2 from first
        // loop, plus horizontal and vertical each scale by sqrt(8) so together
        // we've got an extra 1<<3, so 1<<17 total we need to remove.
        // so we want to round that, which means adding 0.5 * 1<<17,
        // aka 65536. Also, we'll end up with -128 to 127 that we want
        // to encode as 0..255 by adding 128, so we'll add that before the shift
        let x0 = x0 + Wrapping(1 << (FINAL_BITS - 1)) + Wrapping(128 << FINAL_BITS);
        let x2 = x2 + Wrapping(1 << (FINAL_BITS - 1)) + Wrapping(128 << FINAL_BITS);

        let output = &mut output[i * output_linestride..][..4];
        output[0] = stbi_clamp((x0 + t2) >> FINAL_BITS);
        output[3] = stbi_clamp((x0 - t2) >> FINAL_BITS);
        output[1] = stbi_clamp((x2 + t0) >> FINAL_BITS);
        output[2] = stbi_clamp((x2 - t0) >> FINAL_BITS);
    }
}

fn dequantize_and_idct_block_2x2(
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    output_linestride: usize,
    output: &mut [u8],
) {
    debug_assert_eq!(coefficients.len(), 64);

    const SCALE_BITS: usize = 3;

    // Column 0
    let s00 = Wrapping(coefficients[8 * 0] as i32 * quantization_table[8 * 0] as i32);
    let s10 = Wrapping(coefficients[8 * 1] as i32 * quantization_table[8 * 1] as i32);

    let x0 = s00 + s10;
    let x2 = s00 - s10;

    // Column 1
    let s01 = Wrapping(coefficients[8 * 0 + 1] as i32 * quantization_table[8 * 0 + 1] as i32);
    let s11 = Wrapping(coefficients[8 * 1 + 1] as i32 * quantization_table[8 * 1 + 1] as i32);

    let x1 = s01 + s11;
    let x3 = s01 - s11;

    let x0 = x0 + Wrapping(1 << (SCALE_BITS - 1)) + Wrapping(128 << SCALE_BITS);
    let x2 = x2 + Wrapping(1 << (SCALE_BITS - 1)) + Wrapping(128 << SCALE_BITS);

    // Row 0
    output[0] = stbi_clamp((x0 + x1) >> SCALE_BITS);
    output[1] = stbi_clamp((x0 - x1) >> SCALE_BITS);

    // Row 1
    output[output_linestride + 0] = stbi_clamp((x2 + x3) >> SCALE_BITS);
    output[output_linestride + 1] = stbi_clamp((x2 - x3) >> SCALE_BITS);
}

fn dequantize_and_idct_block_1x1(
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    _output_linestride: usize,
    output: &mut [u8],
) {
    debug_assert_eq!(coefficients.len(), 64);

    let s0 = (Wrapping(coefficients[0] as i32 * quantization_table[0] as i32) + Wrapping(128 * 8)) / Wrapping(8);
    output[0] = stbi_clamp(s0);
}

// take a -128..127 value and stbi__clamp it and convert to 0..255
fn stbi_clamp(x: Wrapping<i32>) -> u8 {
    x.0.max(0).min(255) as u8
}

pub(crate) fn stbi_f2f(x: f32) -> Wrapping<i32> {
    Wrapping((x * 4096.0 + 0.5) as i32)
}

#[test]
fn test_dequantize_and_idct_block_8x8() {
    #[cfg_attr(rustfmt, rustfmt_skip)]
    let coefficients: [i16; 8 * 8] = [
        -14, -39, 58, -2, 3, 3, 0, 1,
        11, 27, 4, -3, 3, 0, 1, 0,
        -6, -13, -9, -1, -2, -1, 0, 0,
        -4, 0, -1, -2, 0, 0, 0, 0,
        3, 0, 0, 0, 0, 0, 0, 0,
        -3, -2, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0
    ];

    #[cfg_attr(rustfmt, rustfmt_skip)]
    let quantization_table: [u16; 8 * 8] = [
        8, 6, 5, 8, 12, 20, 26, 31,
        6, 6, 7, 10, 13, 29, 30, 28,
        7, 7, 8, 12, 20, 29, 35, 28,
        7, 9, 11, 15, 26, 44, 40, 31,
        9, 11, 19, 28, 34, 55, 52, 39,
        12, 18, 28, 32, 41, 52, 57, 46,
        25, 32, 39, 44, 52, 61, 60, 51,
        36, 46, 48, 49, 56, 50, 52, 50
    ];
    let output_linestride: usize = 8;
    let mut output = [0u8; 8 * 8];
    dequantize_and_idct_block_8x8(
        &coefficients,
        &quantization_table,
        output_linestride,
        &mut output,
    );
    #[cfg_attr(rustfmt, rustfmt_skip)]
    let expected_output = [
        118, 92, 110, 83, 77, 93, 144, 198,
        172, 116, 114, 87, 78, 93, 146, 191,
        194, 107, 91, 76, 71, 93, 160, 198,
        196, 100, 80, 74, 67, 92, 174, 209,
        182, 104, 88, 81, 68, 89, 178, 206,
        105, 64, 59, 59, 63, 94, 183, 201,
        35, 27, 28, 37, 72, 121, 203, 204,
        37, 45, 41, 47, 98, 154, 223, 208
    ];
    for i in 0..64 {
        assert!((output[i] as i16 - expected_output[i] as i16).abs() <= 1);
    }
}

#[test]
fn test_dequantize_and_idct_block_8x8_all_zero() {
    let mut output = [0u8; 8 * 8];
    dequantize_and_idct_block_8x8(&[0; 8 * 8], &[666; 8 * 8], 8, &mut output);
    assert_eq!(&output[..], &[128; 8 * 8][..]);
}

#[test]
fn test_dequantize_and_idct_block_8x8_saturated() {
    // libjpeg-turbo's x86-64 SIMD arithmetic: 32767 * 65535 keeps its low 16 bits (-32767), the column pass
    // wraps its 16-bit sums, and every pass saturates.
    let mut output = [0u8; 8 * 8];
    dequantize_and_idct_block_8x8(&[i16::MAX; 8 * 8], &[u16::MAX; 8 * 8], 8, &mut output);
    #[cfg_attr(rustfmt, rustfmt_skip)]
    let expected = [
        0, 255, 255, 255, 255, 0, 0, 0,
        255, 0, 0, 0, 0, 255, 255, 255,
        255, 0, 0, 0, 0, 255, 255, 255,
        255, 0, 0, 0, 0, 255, 255, 255,
        255, 0, 0, 0, 0, 255, 255, 255,
        0, 255, 255, 255, 255, 0, 0, 0,
        0, 255, 255, 255, 255, 0, 0, 0,
        0, 255, 255, 255, 255, 0, 0, 0,
    ];
    assert_eq!(&output[..], &expected[..]);
}
