//! The whole path from encoded bytes to the normalized channel-first tensor (spec section 6).

use super::decode::{decode_rgb, Transparency};
use super::error::ImageError;
use super::layout::{image_grid_rounded, Grid, SizeRounding};
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
}

pub enum Pixels {
    F32(Vec<f32>),
    /// IEEE half-precision bit patterns.
    F16(Vec<u16>),
}

pub struct Preprocessed {
    /// The decoded image's size.
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
    let image = decode_rgb(bytes, options.max_pixels, transparency)?;
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
                out.write_row(y, row.chunks_exact(3).map(|p| [lut[0][p[0] as usize], lut[1][p[1] as usize], lut[2][p[2] as usize], 0.0]))
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

/// The output tensor, filled one interleaved RGB row at a time.
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
                let planes = r[start..start + width].iter_mut().zip(&mut g[start..start + width]).zip(&mut b[start..start + width]);
                for (((r, g), b), p) in planes.zip(pixels) {
                    (*r, *g, *b) = (p[0], p[1], p[2]);
                }
            }
            Pixels::F16(out) => {
                let (r, rest) = out.split_at_mut(plane);
                let (g, b) = rest.split_at_mut(plane);
                let planes = r[start..start + width].iter_mut().zip(&mut g[start..start + width]).zip(&mut b[start..start + width]);
                let half = |v: f32| half::f16::from_f32(v).to_bits();
                for (((r, g), b), p) in planes.zip(pixels) {
                    (*r, *g, *b) = (half(p[0]), half(p[1]), half(p[2]));
                }
            }
        }
    }
}
