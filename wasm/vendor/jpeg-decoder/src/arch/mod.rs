#![allow(unsafe_code)]

// Upstream's SSSE3 and Neon kernels (stb_image's arithmetic, rounded differently again) are not vendored: every
// other target runs the scalar code, which follows libjpeg-turbo exactly.
mod lanes;
pub(crate) mod simd128;

/// Arch-specific implementation of YCbCr conversion. Returns the number of pixels that were
/// converted.
pub fn get_color_convert_line_ycbcr() -> Option<unsafe fn(&[u8], &[u8], &[u8], &mut [u8]) -> usize>
{
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        return Some(simd128_color_convert_line_ycbcr);
    }
    #[allow(unreachable_code)]
    None
}

/// Arch-specific implementation of 8x8 IDCT.
pub fn get_dequantize_and_idct_block_8x8(
) -> Option<unsafe fn(&[i16; 64], &[u16; 64], usize, &mut [u8])> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        return Some(simd128_dequantize_and_idct_block_8x8);
    }
    #[allow(unreachable_code)]
    None
}

// The simd128 kernels are safe functions; these match the signatures above.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
unsafe fn simd128_color_convert_line_ycbcr(y: &[u8], cb: &[u8], cr: &[u8], output: &mut [u8]) -> usize {
    simd128::color_convert_line_ycbcr(y, cb, cr, output)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
unsafe fn simd128_dequantize_and_idct_block_8x8(
    coefficients: &[i16; 64],
    quantization_table: &[u16; 64],
    output_linestride: usize,
    output: &mut [u8],
) {
    simd128::dequantize_and_idct_block_8x8(coefficients, quantization_table, output_linestride, output)
}
