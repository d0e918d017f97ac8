//! The whole path from encoded bytes to the normalized channel-first tensor (spec section 6).

use super::decode::{decode_rgb, sniff, Transparency};
use super::error::ImageError;
use super::layout::{image_grid_rounded, Grid, SizeRounding};
use super::orientation::{exif_orientation, orient};
use super::simd::F32x4;
use super::{resize_cv, resize_pil};

/// CLIP's per-channel mean and standard deviation (RGB), as mistral_common and the HF processor use them.
pub const MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// mistral_common / vLLM: round-half-even grid, OpenCV INTER_CUBIC on float32.
    Mistral,
    /// The Hugging Face slow processor: floor grid, Pillow BICUBIC on uint8.
    Hf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub mode: Mode,
    pub max_image_size: u32,
    pub patch_size: u32,
    /// Images whose header declares more pixels are refused before decoding.
    pub max_pixels: u64,
    pub dtype: DType,
    /// Whether the image is turned as its EXIF orientation says (mistral_common leaves it as stored).
    pub exif_orientation: bool,
}

pub enum Pixels {
    F32(Vec<f32>),
    /// IEEE half-precision bit patterns.
    F16(Vec<u16>),
}

pub struct Preprocessed {
    /// The decoded image's size (turned, with exif_orientation).
    pub width: u32,
    pub height: u32,
    pub grid: Grid,
    /// `[3, rows·patch, cols·patch]`, RGB planes.
    pub pixels: Pixels,
}

pub fn preprocess(bytes: &[u8], options: &Options) -> Result<Preprocessed, ImageError> {
    if options.max_image_size == 0 || options.patch_size == 0 {
        return Err(ImageError::InvalidOptions("max image size and patch size must be positive".into()));
    }
    let (rounding, transparency) = match options.mode {
        Mode::Mistral => (SizeRounding::HalfEven, Transparency::IgnoreOnRgb),
        Mode::Hf => (SizeRounding::Floor, Transparency::Composite),
    };
    let mut image = decode_rgb(bytes, options.max_pixels, transparency)?;
    if options.exif_orientation {
        image = orient(image, exif_orientation(bytes, sniff(bytes)?));
    }
    let grid = image_grid_rounded(image.width, image.height, options.max_image_size, options.patch_size, rounding)
        .map_err(ImageError::InvalidOptions)?;
    let (dst_w, dst_h) = (grid.cols * options.patch_size, grid.rows * options.patch_size);
    let mut out = Planes::new(options.dtype, dst_w as usize, dst_h as usize);
    match options.mode {
        Mode::Mistral => {
            // mistral_common's normalize, in float32 as it computes it: x / 255, then − mean, then / std.
            let (mean, std) = (MEAN.map(|m| m as f32), STD.map(|s| s as f32));
            let (mean, std) = (F32x4::new(mean[0], mean[1], mean[2], 0.0), F32x4::new(std[0], std[1], std[2], 1.0));
            let max = F32x4::splat(255.0);
            resize_cv::resize_rgb8(&image.pixels, image.width, image.height, dst_w, dst_h, |y, row| {
                out.write_row(y, row.iter().map(|p| p.div(max).sub(mean).div(std).lanes()))
            });
        }
        Mode::Hf => {
            let lut = hf_lut();
            resize_pil::resize_rgb8(&image.pixels, image.width, image.height, dst_w, dst_h, |y, row| {
                out.write_row(
                    y,
                    row.chunks_exact(3)
                        .map(|p| [lut[0][p[0] as usize], lut[1][p[1] as usize], lut[2][p[2] as usize], 0.0]),
                )
            });
        }
    }
    Ok(Preprocessed { width: image.width, height: image.height, grid, pixels: out.pixels })
}

/// The HF processor's rescale (`x · (1/255)` in double, stored as float32) then normalize (in float32), for
/// every 8-bit value: bit-exact.
fn hf_lut() -> [[f32; 256]; 3] {
    let mut lut = [[0.0; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, out) in table.iter_mut().enumerate() {
            let x = (v as f64 * (1.0 / 255.0)) as f32;
            *out = (x - MEAN[c] as f32) / STD[c] as f32;
        }
    }
    lut
}

/// The output tensor, channel-first, filled one row of pixels at a time.
struct Planes {
    width: usize,
    plane: usize,
    pixels: Pixels,
}

impl Planes {
    fn new(dtype: DType, width: usize, height: usize) -> Planes {
        let len = 3 * width * height;
        let pixels = match dtype {
            DType::F32 => Pixels::F32(vec![0.0; len]),
            DType::F16 => Pixels::F16(vec![0; len]),
        };
        Planes { width, plane: width * height, pixels }
    }

    /// Row `y` from its normalized pixels (R, G, B and a lane to ignore).
    fn write_row(&mut self, y: usize, pixels: impl Iterator<Item = [f32; 4]>) {
        let (width, plane) = (self.width, self.plane);
        let start = y * width;
        match &mut self.pixels {
            Pixels::F32(out) => {
                let (r, rest) = out.split_at_mut(plane);
                let (g, b) = rest.split_at_mut(plane);
                let planes = r[start..start + width]
                    .iter_mut()
                    .zip(&mut g[start..start + width])
                    .zip(&mut b[start..start + width]);
                for (((r, g), b), p) in planes.zip(pixels) {
                    (*r, *g, *b) = (p[0], p[1], p[2]);
                }
            }
            Pixels::F16(out) => {
                let (r, rest) = out.split_at_mut(plane);
                let (g, b) = rest.split_at_mut(plane);
                let planes = r[start..start + width]
                    .iter_mut()
                    .zip(&mut g[start..start + width])
                    .zip(&mut b[start..start + width]);
                for (((r, g), b), p) in planes.zip(pixels) {
                    (*r, *g, *b) = (f32_to_f16(p[0]), f32_to_f16(p[1]), f32_to_f16(p[2]));
                }
            }
        }
    }
}

/// IEEE binary32 to binary16 bits, rounding to nearest even (F. Giesen's float_to_half_fast3_rtne): several
/// times faster than `half`'s general conversion, which the tests check it against.
#[inline]
pub fn f32_to_f16(value: f32) -> u16 {
    const F16_MAX: u32 = (127 + 16) << 23; // 65536.0: from here on the half is infinite
    const SUBNORMAL_MAGIC: u32 = ((127 - 15) + (23 - 10) + 1) << 23; // 0.5
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let magnitude = bits & 0x7FFF_FFFF;
    let half = if magnitude >= F16_MAX {
        if magnitude > 0x7F80_0000 {
            0x7E00 // NaN
        } else {
            0x7C00 // infinity
        }
    } else if magnitude < 113 << 23 {
        // Subnormal or zero: adding 0.5 aligns the ten mantissa bits at the bottom, rounding to nearest even.
        (f32::from_bits(magnitude) + f32::from_bits(SUBNORMAL_MAGIC)).to_bits().wrapping_sub(SUBNORMAL_MAGIC)
    } else {
        let odd = (magnitude >> 13) & 1;
        // Rebias the exponent and round to nearest even in one addition.
        magnitude.wrapping_add(((15u32.wrapping_sub(127)) << 23).wrapping_add(0xFFF) + odd) >> 13
    };
    sign | half as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_half_everywhere_but_nan_payloads() {
        let mut state = 1u32;
        let samples = (0..2_000_000u32).map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            state
        });
        // Every bit pattern of the pixel range (|x| < 4) near the rounding points, and random ones.
        let near_ties =
            (0x3000_0000u32..0x4080_0000).step_by(4093).flat_map(|b| [b, b | 0x1000, b | 0x0FFF, b | 0x1FFF]);
        for bits in samples.chain(near_ties).chain([0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x477F_F000]) {
            let value = f32::from_bits(bits);
            if value.is_nan() {
                assert_eq!(f32_to_f16(value) & 0x7E00, 0x7E00);
            } else {
                assert_eq!(f32_to_f16(value), half::f16::from_f32(value).to_bits(), "{value:e} ({bits:#x})");
            }
        }
    }
}
