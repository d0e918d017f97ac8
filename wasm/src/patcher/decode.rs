//! From encoded bytes to 8-bit RGB, with the size checked from the header before any pixel is decoded.
//!
//! PNG and JPEG go through their codec crates directly, because matching Pillow needs what `image` hides:
//! the PNG's original colour type and bit depth (Pillow keeps the high byte of 16-bit colour, clamps 16-bit
//! gray, ignores tRNS on RGB images) and a JPEG's CMYK samples (`image` converts them to RGB its own way).
//! BMP goes through `image` and bmp.rs, WebP through webp.rs, GIF (the first frame) through gif.rs. The pixels are as stored: EXIF orientation is orientation.rs's.

use super::bmp::pillow_levels;
use super::error::ImageError;
use super::gif::{decode_gif, gif_dimensions};
use super::rgb::{to_rgb, RgbImage, Samples};
use super::png_repair::repaired_png;
use super::webp::{decode_webp, webp_dimensions};
use image::ImageFormat;
use std::io::Cursor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    WebP,
    Gif,
    Bmp,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::WebP => "webp",
            Format::Gif => "gif",
            Format::Bmp => "bmp",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Format::Png => ImageFormat::Png,
            Format::Jpeg => ImageFormat::Jpeg,
            Format::WebP => ImageFormat::WebP,
            Format::Gif => ImageFormat::Gif,
            Format::Bmp => ImageFormat::Bmp,
        }
    }
}

/// The format, from the magic bytes (the file name and declared MIME type are not trusted).
pub fn sniff(bytes: &[u8]) -> Result<Format, ImageError> {
    match image::guess_format(bytes) {
        Ok(ImageFormat::Png) => Ok(Format::Png),
        Ok(ImageFormat::Jpeg) => Ok(Format::Jpeg),
        Ok(ImageFormat::WebP) => Ok(Format::WebP),
        Ok(ImageFormat::Gif) => Ok(Format::Gif),
        Ok(ImageFormat::Bmp) => Ok(Format::Bmp),
        Ok(other) => Err(ImageError::Unsupported(format!("{other:?} images are not supported"))),
        Err(_) => Err(ImageError::UnknownFormat),
    }
}

/// Width and height as the header declares them, without decoding pixels.
pub fn dimensions(bytes: &[u8], format: Format) -> Result<(u32, u32), ImageError> {
    match format {
        Format::Png => {
            let mut decoder = png::Decoder::new(Cursor::new(bytes));
            let info = decoder.read_header_info().map_err(png_error)?;
            Ok((info.width, info.height))
        }
        Format::Jpeg => {
            // jpeg-decoder refuses a zero side as a format error; report it as the size problem it is.
            if let Some((width, height)) = jpeg_frame_size(bytes).filter(|&(w, h)| w == 0 || h == 0) {
                return Err(ImageError::ZeroSize { width, height });
            }
            let mut decoder = jpeg_decoder::Decoder::new(bytes);
            decoder.read_info().map_err(jpeg_error)?;
            let info = decoder.info().ok_or_else(|| ImageError::Corrupt("JPEG has no frame header".into()))?;
            Ok((info.width as u32, info.height as u32))
        }
        Format::Gif => gif_dimensions(bytes),
        Format::WebP => webp_dimensions(bytes),
        Format::Bmp => image::io::Reader::with_format(Cursor::new(bytes), format.image_format())
            .into_dimensions()
            .map_err(image_error),
    }
}

/// Refuses zero-size images and images over `max_pixels` from their header alone.
pub fn check_size(width: u32, height: u32, max_pixels: u64) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::ZeroSize { width, height });
    }
    if width as u64 * height as u64 > max_pixels {
        return Err(ImageError::TooManyPixels { width, height, limit: max_pixels });
    }
    Ok(())
}

/// How the two references differ in converting to RGB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transparency {
    /// mistral_common (and transformers 4): an RGB image is used as is, even with a tRNS colour.
    IgnoreOnRgb,
    /// transformers 5: an RGB image with a tRNS colour is composited like any image with alpha.
    Composite,
}

/// Decodes the image (the first frame of an animation) to RGB over white, refusing it first if its header
/// declares more than `max_pixels`.
pub fn decode_rgb(bytes: &[u8], max_pixels: u64, transparency: Transparency) -> Result<RgbImage, ImageError> {
    let format = sniff(bytes)?;
    let (width, height) = dimensions(bytes, format)?;
    check_size(width, height, max_pixels)?;
    let samples = match format {
        // Pillow reads some PNGs the crate refuses (png_repair.rs): those are decoded again, repaired.
        Format::Png => decode_png(bytes, width, height, transparency).or_else(|err| match repaired_png(bytes) {
            Some(repaired) => decode_png(&repaired, width, height, transparency),
            None => Err(err),
        })?,
        Format::Jpeg => decode_jpeg(bytes)?,
        Format::WebP => decode_webp(bytes)?,
        Format::Gif => decode_gif(bytes, max_pixels)?,
        Format::Bmp => pillow_levels(bytes, decode_with_image(bytes, format)?),
    };
    if !samples.fits(width, height) {
        return Err(ImageError::Corrupt(format!("decoded pixels do not match the {width}x{height} header")));
    }
    Ok(to_rgb(width, height, samples))
}

fn decode_png(bytes: &[u8], width: u32, height: u32, transparency: Transparency) -> Result<Samples, ImageError> {
    use png::{BitDepth, ColorType};
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    // The pixel limit bounds the image already; png's own default limit (64 MiB) would refuse 16-bit RGBA
    // images well under it.
    decoder.set_limits(png::Limits { bytes: width as usize * height as usize * 8 + (1 << 20) });
    // Palette to RGB(A), gray below 8 bits scaled to 8 (as Pillow's L;1/L;2/L;4 unpacking does), tRNS to alpha.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(png_error)?;
    let source_color = reader.info().color_type;
    let source_depth = reader.info().bit_depth;
    // The tRNS colour at the source's bit depth (png keeps the low byte of each sample below 16 bits).
    let trns: Option<Vec<u16>> = reader.info().trns.as_ref().map(|t| match source_depth {
        BitDepth::Sixteen => t.chunks_exact(2).map(|s| u16::from_be_bytes([s[0], s[1]])).collect(),
        _ => t.iter().map(|&s| s as u16).collect(),
    });
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).map_err(png_error)?;
    let (color, depth) = reader.output_color_type();
    if depth == BitDepth::Sixteen {
        // Big-endian samples. Pillow opens 16-bit gray as I;16 and clamps it to 255 when converting; every
        // other 16-bit mode keeps the high byte of each sample. Narrowed in place (sample i is written at or
        // before byte 2i, which is read first): a 50-megapixel RGBA image does not hold a second copy.
        let clamped_gray =
            matches!(color, ColorType::Grayscale | ColorType::GrayscaleAlpha) && source_color == ColorType::Grayscale;
        for i in 0..buf.len() / 2 {
            // Gray's alpha (the second sample of a pixel) keeps its high byte too.
            buf[i] = if clamped_gray && i % color.samples() == 0 {
                u16::from_be_bytes([buf[2 * i], buf[2 * i + 1]]).min(255) as u8
            } else {
                buf[2 * i]
            };
        }
        buf.truncate(buf.len() / 2);
    }
    // Pillow compares the stored tRNS value with samples after they became 8-bit: gray below 8 bits scaled up,
    // 16-bit colour cut to its high byte. Only pixels equal in that comparison are transparent.
    let pillow_trns =
        |pixel: &[u8], trns: &[u16]| pixel.len() == trns.len() && pixel.iter().zip(trns).all(|(&s, &t)| s as u16 == t);
    match (&trns, color) {
        (Some(t), ColorType::GrayscaleAlpha) if source_color == ColorType::Grayscale && (source_depth as u8) < 8 => {
            for p in buf.chunks_exact_mut(2) {
                p[1] = if pillow_trns(&p[..1], t) { 0 } else { 255 };
            }
        }
        // 16-bit gray: Pillow clamps each sample to 255 and compares it with the tRNS value's low byte (tRNS 300
        // makes the 44s transparent, 255 every sample from 255 up).
        (Some(t), ColorType::GrayscaleAlpha) if source_color == ColorType::Grayscale && depth == BitDepth::Sixteen => {
            for p in buf.chunks_exact_mut(2) {
                p[1] = if p[0] as u16 == t[0] & 0xFF { 0 } else { 255 };
            }
        }
        (Some(t), ColorType::Rgba) if source_color == ColorType::Rgb && depth == BitDepth::Sixteen => {
            for p in buf.chunks_exact_mut(4) {
                p[3] = if pillow_trns(&p[..3], t) { 0 } else { 255 };
            }
        }
        _ => {}
    }
    Ok(match color {
        ColorType::Grayscale => Samples::L(buf),
        ColorType::GrayscaleAlpha => Samples::La(buf),
        ColorType::Rgb => Samples::Rgb(buf),
        // An RGB image with a tRNS colour stays mode RGB in Pillow, which mistral_common never composites.
        ColorType::Rgba if source_color == ColorType::Rgb && transparency == Transparency::IgnoreOnRgb => {
            Samples::Rgb(buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect())
        }
        ColorType::Rgba => Samples::Rgba(buf),
        ColorType::Indexed => return Err(ImageError::Corrupt("PNG palette was not expanded".into())),
    })
}

fn decode_jpeg(bytes: &[u8]) -> Result<Samples, ImageError> {
    use jpeg_decoder::PixelFormat;
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let info = decoder.info().ok_or_else(|| ImageError::Corrupt("JPEG has no frame header".into()))?;
    Ok(match info.pixel_format {
        PixelFormat::L8 => Samples::L(pixels),
        PixelFormat::RGB24 => Samples::Rgb(pixels),
        // jpeg-decoder returns 255 minus the stored values, which is how Pillow reads every CMYK JPEG ("CMYK;I",
        // Adobe's inverted ink), with or without an APP14 marker.
        PixelFormat::CMYK32 => Samples::Cmyk(pixels),
        PixelFormat::L16 => return Err(ImageError::Unsupported("16-bit JPEG".into())),
    })
}

/// The marker segments before the first scan, as (marker, payload). Stops at anything malformed: the codec
/// reports that.
pub(super) fn jpeg_segments(bytes: &[u8]) -> Vec<(u8, &[u8])> {
    let mut segments = Vec::new();
    let mut i = 2; // after SOI
    while i + 4 <= bytes.len() && bytes[i] == 0xFF {
        let marker = bytes[i + 1];
        match marker {
            0xFF => i += 1, // fill byte
            0x01 | 0xD0..=0xD7 => i += 2,
            0xD9 | 0xDA => break,
            _ => {
                let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
                match bytes.get(i + 4..i + 2 + len.max(2)) {
                    Some(payload) => segments.push((marker, payload)),
                    None => break,
                }
                i += 2 + len;
            }
        }
    }
    segments
}

/// Width and height from the frame header (SOF0..SOF15 but DHT, JPG and DAC), if there is one.
fn jpeg_frame_size(bytes: &[u8]) -> Option<(u32, u32)> {
    jpeg_segments(bytes).into_iter().find_map(|(marker, p)| match marker {
        0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) && p.len() >= 5 => {
            Some((u16::from_be_bytes([p[3], p[4]]) as u32, u16::from_be_bytes([p[1], p[2]]) as u32))
        }
        _ => None,
    })
}

fn decode_with_image(bytes: &[u8], format: Format) -> Result<Samples, ImageError> {
    use image::DynamicImage;
    let image = image::load_from_memory_with_format(bytes, format.image_format()).map_err(image_error)?;
    Ok(match image {
        DynamicImage::ImageLuma8(b) => Samples::L(b.into_raw()),
        DynamicImage::ImageLumaA8(b) => Samples::La(b.into_raw()),
        DynamicImage::ImageRgb8(b) => Samples::Rgb(b.into_raw()),
        other => Samples::Rgba(other.into_rgba8().into_raw()),
    })
}

fn png_error(err: png::DecodingError) -> ImageError {
    match err {
        png::DecodingError::LimitsExceeded => ImageError::Unsupported("PNG needs more memory than allowed".into()),
        other => ImageError::Corrupt(format!("PNG: {}", worded(&other.to_string()))),
    }
}

/// The png crate's message with its debug forms in words: a chunk's `ChunkType { type: IHDR, critical: true, ..
/// }` as `IHDR`, and a corrupt deflate stream without miniz's status name.
fn worded(message: &str) -> String {
    const CHUNK: &str = "ChunkType { type: ";
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find(CHUNK) {
        out.push_str(&rest[..at]);
        let after = &rest[at + CHUNK.len()..];
        match after.find(" }") {
            Some(end) => {
                out.push_str(after[..end].split(',').next().unwrap_or(""));
                rest = &after[end + 2..];
            }
            None => {
                rest = &rest[at..];
                break;
            }
        }
    }
    out.push_str(rest);
    out.replace(" Error number Failed.", "")
}

fn jpeg_error(err: jpeg_decoder::Error) -> ImageError {
    match err {
        jpeg_decoder::Error::Unsupported(what) => ImageError::Unsupported(format!("JPEG: {what:?}")),
        other => ImageError::Corrupt(format!("JPEG: {other}")),
    }
}

fn image_error(err: image::ImageError) -> ImageError {
    match err {
        image::ImageError::Unsupported(what) => ImageError::Unsupported(what.to_string()),
        image::ImageError::Limits(what) => ImageError::Unsupported(what.to_string()),
        other => ImageError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, an APP14 Adobe segment, SOF0 for 300x200 with one component, then SOS.
    const JPEG_HEADER: &[u8] = &[
        0xFF, 0xD8, 0xFF, 0xEE, 0x00, 0x0E, b'A', b'd', b'o', b'b', b'e', 0, 100, 0, 0, 0, 0, 1, 0xFF, 0xC0, 0x00,
        0x0B, 8, 0x00, 0xC8, 0x01, 0x2C, 1, 1, 0x11, 0, 0xFF, 0xDA,
    ];

    #[test]
    fn png_errors_in_words() {
        let crc = "CRC error: expected 0xfdeb8a5a have 0x2eb8a5a while decoding ChunkType { type: IHDR, critical: \
                   true, private: false, reserved: false, safecopy: false } chunk.";
        assert_eq!(worded(crc), "CRC error: expected 0xfdeb8a5a have 0x2eb8a5a while decoding IHDR chunk.");
        assert_eq!(worded("Corrupt deflate stream. Error number Failed."), "Corrupt deflate stream.");
        assert_eq!(worded("cut ChunkType { type: IDAT"), "cut ChunkType { type: IDAT");
        // A real file: the IHDR's checksum flipped.
        let mut png = Vec::new();
        {
            let mut encoder = png::Encoder::new(&mut png, 3, 2);
            encoder.set_color(png::ColorType::Rgb);
            encoder.set_depth(png::BitDepth::Eight);
            encoder.write_header().unwrap().write_image_data(&[7; 18]).unwrap();
        }
        png[8 + 8 + 13] ^= 0xff;
        let message = match decode_rgb(&png, u64::MAX, Transparency::IgnoreOnRgb) {
            Err(err) => err.to_string(),
            Ok(_) => panic!("a PNG whose header fails its checksum was decoded"),
        };
        assert!(message.contains("while decoding IHDR chunk."), "{message}");
    }

    #[test]
    fn jpeg_header_segments() {
        assert_eq!(jpeg_frame_size(JPEG_HEADER), Some((300, 200)));
    }

    #[test]
    fn sizes_are_checked_before_decoding() {
        assert_eq!(check_size(0, 5, 100), Err(ImageError::ZeroSize { width: 0, height: 5 }));
        assert_eq!(check_size(10, 10, 100), Ok(()));
        assert!(matches!(check_size(10, 11, 100), Err(ImageError::TooManyPixels { .. })));
        // A 65535x65535 frame header with no data is refused from the header, not decoded.
        let mut huge = JPEG_HEADER.to_vec();
        huge[23..27].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            decode_rgb(&huge, 50_000_000, Transparency::IgnoreOnRgb),
            Err(ImageError::TooManyPixels { .. })
        ));
    }
}
