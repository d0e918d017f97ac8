//! WebP: lossless images and animations through `image`; still lossy images through image-webp's VP8 decoder
//! (vendored: `image` 0.24.3's misdecodes some macroblocks) for the Y'CbCr planes, then the conversion to RGB
//! that Pillow gets from libwebp.
//!
//! `image` 0.24 upsamples the half-resolution chroma by repeating samples, while libwebp (under Pillow and
//! every browser) uses its "fancy" upsampler, a 9-3-3-1 weighting of the four nearest chroma samples, and its
//! own fixed-point Y'CbCr conversion. On edges between saturated colours the two differ by up to half the
//! range, so this module reproduces libwebp's rule (src/dsp/upsampling.c, src/dsp/yuv.h).

use super::error::ImageError;
use super::rgb::Samples;
use image_webp_vp8::vp8::{Frame, Vp8Decoder};
use std::io::Cursor;

pub fn decode_webp(bytes: &[u8]) -> Result<Samples, ImageError> {
    let (vp8, has_alpha) = match container(bytes)? {
        Container::StillLossy { vp8, has_alpha } => (vp8, has_alpha),
        Container::Animated => return first_frame(bytes),
        Container::Other => return decode_with_image(bytes),
    };
    let frame = Vp8Decoder::decode_frame(vp8).map_err(|e| ImageError::Corrupt(format!("WebP: {e}")))?;
    let rgb = fancy_rgb(&frame);
    if !has_alpha {
        return Ok(Samples::Rgb(rgb));
    }
    // The alpha plane is coded losslessly (ALPH chunk); `image` decodes it exactly.
    let rgba = match decode_with_image(bytes)? {
        Samples::Rgba(rgba) if rgba.len() / 4 == rgb.len() / 3 => rgba,
        _ => return Err(ImageError::Corrupt("WebP alpha plane does not match the image".into())),
    };
    Ok(Samples::Rgba(
        rgb.chunks_exact(3).zip(rgba.chunks_exact(4)).flat_map(|(c, a)| [c[0], c[1], c[2], a[3]]).collect(),
    ))
}

fn decode_with_image(bytes: &[u8]) -> Result<Samples, ImageError> {
    let image = image::load_from_memory_with_format(bytes, image::ImageFormat::WebP)
        .map_err(|e| ImageError::Corrupt(format!("WebP: {e}")))?;
    Ok(match image {
        image::DynamicImage::ImageRgb8(b) => Samples::Rgb(b.into_raw()),
        other => Samples::Rgba(other.into_rgba8().into_raw()),
    })
}

/// The first frame of an animation, as `image`'s animation decoder composes it (RGBA). Decoding it as a
/// still image instead mislabels its RGBA samples as RGB in `image` 0.24.
fn first_frame(bytes: &[u8]) -> Result<Samples, ImageError> {
    use image::AnimationDecoder;
    let corrupt = |e: image::ImageError| ImageError::Corrupt(format!("WebP: {e}"));
    let decoder = image::codecs::webp::WebPDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
    let frame =
        decoder.into_frames().next().ok_or_else(|| ImageError::Corrupt("WebP animation has no frame".into()))?;
    Ok(Samples::Rgba(frame.map_err(corrupt)?.into_buffer().into_raw()))
}

enum Container<'a> {
    /// The VP8 bitstream of a still lossy image, and whether an ALPH chunk goes with it.
    StillLossy {
        vp8: &'a [u8],
        has_alpha: bool,
    },
    Animated,
    /// Lossless.
    Other,
}

fn container(bytes: &[u8]) -> Result<Container<'_>, ImageError> {
    const ANIMATION: u8 = 0x02;
    let chunks = chunks(bytes)?;
    let find = |id: &[u8; 4]| chunks.iter().find(|chunk| &chunk.0 == id).map(|chunk| chunk.1);
    Ok(match chunks.first() {
        Some((id, vp8)) if id == b"VP8 " => Container::StillLossy { vp8, has_alpha: false },
        Some((id, header)) if id == b"VP8X" => match find(b"VP8 ") {
            _ if header.first().map_or(false, |flags| flags & ANIMATION != 0) => Container::Animated,
            Some(vp8) => Container::StillLossy { vp8, has_alpha: find(b"ALPH").is_some() },
            None => Container::Other,
        },
        _ => Container::Other,
    })
}

/// The RIFF chunks (four-character id, payload). A chunk running past the end means the file was cut short:
/// `image`'s VP8 decoder would fill the missing part with zeros where libwebp (and Pillow) refuse.
fn chunks(bytes: &[u8]) -> Result<Vec<([u8; 4], &[u8])>, ImageError> {
    let truncated = || ImageError::Corrupt("WebP data ends inside a chunk (truncated)".into());
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Err(ImageError::Corrupt("not a RIFF WebP container".into()));
    }
    let mut chunks = Vec::new();
    let mut at = 12;
    while at < bytes.len() {
        let header = bytes.get(at..at + 8).ok_or_else(truncated)?;
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let payload = bytes.get(at + 8..at + 8 + size).ok_or_else(truncated)?;
        chunks.push(([header[0], header[1], header[2], header[3]], payload));
        at += 8 + size + (size & 1);
    }
    Ok(chunks)
}

/// libwebp's `VP8YuvToRgb`: 14-bit fixed point, `MultHi(v, c) = (v·c) >> 8`, clipped after `>> 6`.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let mult_hi = |v: u8, c: i32| (v as i32 * c) >> 8;
    let clip = |v: i32| {
        if v & !((256 << 6) - 1) == 0 {
            (v >> 6) as u8
        } else if v < 0 {
            0
        } else {
            255
        }
    };
    let luma = mult_hi(y, 19077);
    [
        clip(luma + mult_hi(v, 26149) - 14234),
        clip(luma - mult_hi(u, 6419) - mult_hi(v, 13320) + 8708),
        clip(luma + mult_hi(u, 33050) - 17685),
    ]
}

/// Chroma for one output row from its nearer (`near`) and farther (`far`) chroma rows: libwebp's fancy
/// upsampler for a row pair, written per row. Edge pixels blend 3:1 vertically only.
fn upsample_chroma_row(near: &[u8], far: &[u8], width: usize, out: &mut Vec<u8>) {
    out.clear();
    let edge = |n: u8, f: u8| ((3 * n as u32 + f as u32 + 2) >> 2) as u8;
    out.push(edge(near[0], far[0]));
    for x in 1..=(width - 1) / 2 {
        let (nl, n, fl, f) = (near[x - 1] as u32, near[x] as u32, far[x - 1] as u32, far[x] as u32);
        let sum = nl + n + fl + f + 8;
        // Each output pixel weighs its nearest chroma sample 9, the two beside it 3, the opposite one 1.
        let diagonal_left = (sum + 2 * (n + fl)) >> 3;
        let diagonal_right = (sum + 2 * (nl + f)) >> 3;
        out.push(((diagonal_left + nl) >> 1) as u8);
        out.push(((diagonal_right + n) >> 1) as u8);
    }
    if width % 2 == 0 {
        let last = width / 2 - 1;
        out.push(edge(near[last], far[last]));
    }
}

fn fancy_rgb(frame: &Frame) -> Vec<u8> {
    let (width, height) = (frame.width as usize, frame.height as usize);
    let (chroma_width, chroma_height) = ((width + 1) / 2, (height + 1) / 2);
    // The planes' rows are whole macroblocks wide.
    let (stride, chroma_stride) = (frame.buffer_width() as usize, frame.chroma_buffer_width() as usize);
    let chroma_row = |plane: &'_ [u8], row: usize| -> Vec<u8> {
        plane[row * chroma_stride..row * chroma_stride + chroma_width].to_vec()
    };
    let mut rgb = Vec::with_capacity(width * height * 3);
    let (mut u, mut v) = (Vec::with_capacity(width), Vec::with_capacity(width));
    for y in 0..height {
        // Luma rows 2k-1 and 2k sit between chroma rows k-1 and k; the odd one is nearer row k-1.
        let k = (y + 1) / 2;
        let (above, below) = (k.saturating_sub(1), k.min(chroma_height - 1));
        let (near, far) = if y % 2 == 1 { (above, below) } else { (below, above) };
        upsample_chroma_row(&chroma_row(&frame.ubuf, near), &chroma_row(&frame.ubuf, far), width, &mut u);
        upsample_chroma_row(&chroma_row(&frame.vbuf, near), &chroma_row(&frame.vbuf, far), width, &mut v);
        for x in 0..width {
            rgb.extend_from_slice(&yuv_to_rgb(frame.ybuf[y * stride + x], u[x], v[x]));
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuv_conversion_matches_libwebp_reference_points() {
        // Video-range black and white, and BT.601 red, green and blue (libwebp's rounding gives 254 for red).
        assert_eq!(yuv_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(yuv_to_rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(yuv_to_rgb(81, 90, 240), [254, 0, 0]);
        assert_eq!(yuv_to_rgb(145, 54, 34), [0, 255, 1]);
        assert_eq!(yuv_to_rgb(41, 240, 110), [0, 0, 255]);
    }

    #[test]
    fn chroma_upsampling_weights_nine_three_three_one() {
        let mut out = Vec::new();
        upsample_chroma_row(&[0, 160], &[0, 0], 4, &mut out);
        // Pixel 1 lies nearest chroma (0, near) and pixel 2 nearest (1, near): 9/16·160 = 90.
        assert_eq!(out, vec![0, 30, 90, 120]);
        upsample_chroma_row(&[7], &[7], 1, &mut out);
        assert_eq!(out, vec![7]);
    }
}
