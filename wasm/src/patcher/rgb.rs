//! Conversion of decoded samples to 8-bit RGB the way the reference does it (spec section 6.2).
//!
//! mistral_common opens images with Pillow and, unless the mode is already RGB, converts to RGBA and pastes
//! the result onto an opaque white canvas with its own alpha as the mask. The Hugging Face processor uses
//! `Image.alpha_composite` over opaque white instead; over an opaque background both reduce to the same
//! integer blend (checked exhaustively against Pillow by scripts/images_goldens.py), so one function serves both.
//! The sample layouts below are Pillow's modes, each converted with Pillow's integer formula.

/// An 8-bit RGB image, rows top to bottom, pixels interleaved.
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Decoded samples, named after the Pillow mode whose conversion to RGB they follow.
pub enum Samples {
    L(Vec<u8>),
    La(Vec<u8>),
    Rgb(Vec<u8>),
    Rgba(Vec<u8>),
    /// Ink values (0 = no ink), as Pillow holds a CMYK JPEG after undoing Adobe's inversion.
    Cmyk(Vec<u8>),
}

/// Pillow's `paste` with an 8-bit mask over white: `(255·(255−a) + c·a) / 255`, divided with rounding as
/// Pillow's DIV255 does (exact for every c, a).
#[inline]
fn over_white(c: u8, a: u8) -> u8 {
    let t = 255 * (255 - a as u32) + c as u32 * a as u32 + 128;
    (((t >> 8) + t) >> 8) as u8
}

/// Pillow's `cmyk2rgb`: `255 − k − c·(255 − k)/255` per channel, with its rounded division.
#[inline]
fn cmyk_channel(c: u8, k: u8) -> u8 {
    let nk = 255 - k as u32;
    let t = c as u32 * nk + 128;
    (nk - (((t >> 8) + t) >> 8)) as u8
}

impl Samples {
    fn channels(&self) -> usize {
        match self {
            Samples::L(_) => 1,
            Samples::La(_) => 2,
            Samples::Rgb(_) => 3,
            Samples::Rgba(_) | Samples::Cmyk(_) => 4,
        }
    }

    fn len(&self) -> usize {
        match self {
            Samples::L(v) | Samples::La(v) | Samples::Rgb(v) | Samples::Rgba(v) | Samples::Cmyk(v) => v.len(),
        }
    }

    /// Whether the decoder produced exactly one sample per pixel and channel.
    pub fn fits(&self, width: u32, height: u32) -> bool {
        self.len() == width as usize * height as usize * self.channels()
    }
}

/// Pixels of `from` samples made gray RGB in place, back to front: a pixel's samples are read before any write
/// reaches them.
fn widen_to_gray(mut v: Vec<u8>, from: usize, gray: impl Fn(&[u8]) -> u8) -> Vec<u8> {
    let n = v.len() / from;
    v.resize(3 * n, 0);
    for p in (0..n).rev() {
        let g = gray(&v[from * p..from * p + from]);
        v[3 * p..3 * p + 3].copy_from_slice(&[g, g, g]);
    }
    v
}

/// Pixels of four samples made RGB in place, front to back.
fn narrow4(mut v: Vec<u8>, rgb: impl Fn(&[u8]) -> [u8; 3]) -> Vec<u8> {
    let n = v.len() / 4;
    for p in 0..n {
        let out = rgb(&v[4 * p..4 * p + 4]);
        v[3 * p..3 * p + 3].copy_from_slice(&out);
    }
    v.truncate(3 * n);
    v
}

pub fn to_rgb(width: u32, height: u32, samples: Samples) -> RgbImage {
    // Converted in the decoder's own buffer: narrowing holds no second copy, widening grows the buffer.
    let mut pixels = match samples {
        Samples::Rgb(rgb) => rgb,
        Samples::L(l) => widen_to_gray(l, 1, |p| p[0]),
        Samples::La(la) => widen_to_gray(la, 2, |p| over_white(p[0], p[1])),
        Samples::Rgba(rgba) => narrow4(rgba, |p| {
            [over_white(p[0], p[3]), over_white(p[1], p[3]), over_white(p[2], p[3])]
        }),
        Samples::Cmyk(cmyk) => narrow4(cmyk, |p| {
            [
                cmyk_channel(p[0], p[3]),
                cmyk_channel(p[1], p[3]),
                cmyk_channel(p[2], p[3]),
            ]
        }),
    };
    pixels.shrink_to_fit();
    debug_assert_eq!(pixels.len(), width as usize * height as usize * 3);
    RgbImage { width, height, pixels }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_blend_matches_pillow_div255() {
        // Reference values computed with Pillow's paste onto white.
        assert_eq!(over_white(0, 0), 255);
        assert_eq!(over_white(0, 255), 0);
        assert_eq!(over_white(200, 255), 200);
        assert_eq!(over_white(0, 128), 127);
        assert_eq!(over_white(100, 1), 254);
        for c in 0..=255u8 {
            for a in 0..=255u8 {
                let exact = (255.0 * (255.0 - a as f64) + c as f64 * a as f64) / 255.0;
                assert!((over_white(c, a) as f64 - exact).abs() <= 0.5 + 1e-9, "c={c} a={a}");
            }
        }
    }

    #[test]
    fn cmyk_follows_pillow() {
        assert_eq!(cmyk_channel(0, 0), 255);
        assert_eq!(cmyk_channel(255, 0), 0);
        assert_eq!(cmyk_channel(0, 255), 0);
        assert_eq!(cmyk_channel(128, 128), 63);
    }

    #[test]
    fn modes_expand_to_rgb() {
        let img = to_rgb(2, 1, Samples::La(vec![10, 255, 10, 0]));
        assert_eq!(img.pixels, vec![10, 10, 10, 255, 255, 255]);
        let img = to_rgb(1, 1, Samples::Rgba(vec![0, 100, 200, 128]));
        assert_eq!(img.pixels, vec![127, 177, 227]);
    }
}
