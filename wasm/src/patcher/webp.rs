//! WebP as Pillow decodes it through libwebp. Still lossy images and lossy frames: image-webp's VP8 decoder
//! (vendored: `image` 0.24.3's misdecodes some macroblocks) for the Y'CbCr planes, then libwebp's conversion to
//! RGB. Lossless bitstreams and compressed alpha planes: `image`, each handed to it alone in a minimal container,
//! since `image` 0.24.3 mislabels the samples of lossless images in an extended container and traps composing
//! lossy animations. Uncompressed alpha planes (which libwebp writes when compressing does not pay, as for noisy
//! alpha): here, since `image` reads a chunk's padding byte into them.

use super::error::ImageError;
use super::rgb::Samples;
use image_webp_vp8::vp8::{Frame, Vp8Decoder};

type Chunk<'a> = ([u8; 4], &'a [u8]);

const ALPHA_FLAG: u8 = 0x10;
const ANIMATION_FLAG: u8 = 0x02;

pub fn decode_webp(bytes: &[u8]) -> Result<Samples, ImageError> {
    let chunks = container(bytes)?;
    match extended_header(&chunks)? {
        Some(vp8x) if vp8x[0] & ANIMATION_FLAG != 0 => first_frame(vp8x, &chunks),
        // As libwebp (under Pillow) reads it: an ALPH chunk counts only where the VP8X header declares alpha; a
        // VP8L bitstream's own alpha bit counts either way.
        Some(vp8x) => decode_frame(&chunks, vp8x[0] & ALPHA_FLAG != 0),
        None => decode_frame(&chunks, true),
    }
}

/// Width and height from the headers alone, before anything is decoded (image 0.24.3's WebP reader decodes
/// every frame of an animation just to say its size). The canvas's, for an extended file; a still image's
/// bitstream must be that size, as libwebp requires, so that a 1x1 canvas cannot hide a 16383x16383 image.
pub fn webp_dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    let chunks = container(bytes)?;
    match extended_header(&chunks)? {
        Some(vp8x) => {
            let canvas = (u24(&vp8x[4..7]) + 1, u24(&vp8x[7..10]) + 1);
            if vp8x[0] & ANIMATION_FLAG == 0 {
                let size = bitstream_size(&chunks)?;
                if size != canvas {
                    return Err(corrupt(&format!(
                        "the image is {}x{} but its canvas {}x{}",
                        size.0, size.1, canvas.0, canvas.1
                    )));
                }
            }
            Ok(canvas)
        }
        None => bitstream_size(&chunks),
    }
}

/// The EXIF chunk's data, if the file has one.
pub fn webp_exif(bytes: &[u8]) -> Option<&[u8]> {
    container(bytes).ok()?.into_iter().find_map(|(id, data)| (&id == b"EXIF").then(|| data))
}

fn container(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, ImageError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return Err(ImageError::Corrupt("not a RIFF WebP container".into()));
    }
    chunks(&bytes[12..])
}

/// The VP8X header's first 10 bytes (flags, canvas size) when the file is in the extended format.
fn extended_header<'a>(chunks: &[Chunk<'a>]) -> Result<Option<&'a [u8]>, ImageError> {
    match chunks.first() {
        Some((id, header)) if id == b"VP8X" => {
            Ok(Some(header.get(..10).ok_or_else(|| corrupt("VP8X header too short"))?))
        }
        _ => Ok(None),
    }
}

/// The image's bitstream: the first VP8 or VP8L chunk, as libwebp takes it.
fn bitstream<'a>(chunks: &[Chunk<'a>]) -> Result<Chunk<'a>, ImageError> {
    chunks
        .iter()
        .copied()
        .find(|chunk| &chunk.0 == b"VP8 " || &chunk.0 == b"VP8L")
        .ok_or_else(|| corrupt("no image data"))
}

/// The size a VP8 key frame header or a VP8L header declares.
fn bitstream_size(chunks: &[Chunk]) -> Result<(u32, u32), ImageError> {
    let (id, data) = bitstream(chunks)?;
    if &id == b"VP8 " {
        // A 3-byte frame tag, the start code 9d 01 2a, then 14-bit width and height (2 bits of scaling each).
        let header = data.get(..10).ok_or_else(|| corrupt("VP8 header too short"))?;
        if header[3..6] != [0x9d, 0x01, 0x2a] {
            return Err(corrupt("VP8 data without a key frame"));
        }
        let side = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]) as u32 & 0x3fff;
        return Ok((side(6), side(8)));
    }
    let header = data.get(..5).ok_or_else(|| corrupt("VP8L header too short"))?;
    if header[0] != 0x2f {
        return Err(corrupt("VP8L data without its signature"));
    }
    let bits = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    Ok(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
}

fn opaque(samples: Samples) -> Samples {
    match samples {
        Samples::Rgba(rgba) => Samples::Rgb(rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()),
        other => other,
    }
}

fn corrupt(what: &str) -> ImageError {
    ImageError::Corrupt(format!("WebP: {what}"))
}

/// One image: a VP8 bitstream with an ALPH chunk (where `alph` allows it), or a VP8L bitstream (whose header's
/// alpha bit says whether it has alpha).
fn decode_frame(chunks: &[Chunk], alph: bool) -> Result<Samples, ImageError> {
    match bitstream(chunks)? {
        (id, vp8) if &id == b"VP8 " => {
            let alpha = chunks.iter().find(|chunk| &chunk.0 == b"ALPH").filter(|_| alph).map(|chunk| chunk.1);
            decode_lossy(vp8, alpha)
        }
        (_, vp8l) => decode_lossless(vp8l),
    }
}

fn decode_lossy(vp8: &[u8], alph: Option<&[u8]>) -> Result<Samples, ImageError> {
    let frame = Vp8Decoder::decode_frame(vp8).map_err(|e| ImageError::Corrupt(format!("WebP: {e}")))?;
    if frame.width == 0 || frame.height == 0 {
        return Err(corrupt("empty VP8 frame"));
    }
    let rgb = fancy_rgb(&frame);
    let alph = match alph {
        Some(alph) => alph,
        None => return Ok(Samples::Rgb(rgb)),
    };
    let (width, height) = (frame.width as usize, frame.height as usize);
    let alpha = if alph.first().map_or(false, |&header| header & 3 == 0) {
        raw_alpha(alph, width, height)?
    } else {
        // Compressed losslessly: `image` decodes it exactly from a still image of its own.
        let vp8x = vp8x_header(ALPHA_FLAG, width as u32, height as u32);
        let file = riff(&[(*b"VP8X", &vp8x), (*b"ALPH", alph), (*b"VP8 ", vp8)]);
        match decode_with_image(&file)? {
            Samples::Rgba(rgba) if rgba.len() / 4 == width * height => rgba.chunks_exact(4).map(|p| p[3]).collect(),
            _ => return Err(corrupt("alpha plane does not match the image")),
        }
    };
    Ok(Samples::Rgba(rgb.chunks_exact(3).zip(alpha).flat_map(|(c, a)| [c[0], c[1], c[2], a]).collect()))
}

/// An uncompressed ALPH chunk's plane, as libwebp reads it: the header byte (reserved bits zero, at most level
/// pre-processing, whose dithering Pillow leaves off), then at least width·height filtered values, each row
/// predicted by libwebp's unfilters (`dsp/filters.c`): none, horizontal, vertical or gradient; the first row
/// always horizontally, from zero.
fn raw_alpha(alph: &[u8], width: usize, height: usize) -> Result<Vec<u8>, ImageError> {
    let header = alph[0];
    if header >> 6 != 0 || (header >> 4) & 3 > 1 {
        return Err(corrupt("invalid alpha header"));
    }
    let filter = (header >> 2) & 3;
    let data = alph.get(1..1 + width * height).ok_or_else(|| corrupt("alpha plane shorter than the image"))?;
    let mut plane = vec![0u8; width * height];
    for y in 0..height {
        let (above, rest) = plane.split_at_mut(y * width);
        let prev = above.get(above.len().saturating_sub(width)..).filter(|_| y > 0);
        let (row, input) = (&mut rest[..width], &data[y * width..(y + 1) * width]);
        match (filter, prev) {
            (0, _) => row.copy_from_slice(input),
            (2, Some(prev)) => {
                for i in 0..width {
                    row[i] = prev[i].wrapping_add(input[i]);
                }
            }
            (3, Some(prev)) => {
                let (mut left, mut top_left) = (prev[0], prev[0]);
                for i in 0..width {
                    let top = prev[i];
                    let predicted = (left as i16 + top as i16 - top_left as i16).clamp(0, 255) as u8;
                    left = input[i].wrapping_add(predicted);
                    top_left = top;
                    row[i] = left;
                }
            }
            // Horizontal, and the first row of the vertical and gradient filters.
            (_, prev) => {
                let mut predicted = prev.map_or(0, |prev| prev[0]);
                for i in 0..width {
                    row[i] = predicted.wrapping_add(input[i]);
                    predicted = row[i];
                }
            }
        }
    }
    Ok(plane)
}

fn decode_lossless(vp8l: &[u8]) -> Result<Samples, ImageError> {
    // After the signature byte: 14 bits width - 1, 14 bits height - 1, then the alpha bit.
    let has_alpha = vp8l.get(4).ok_or_else(|| corrupt("VP8L header too short"))? & 0x10 != 0;
    let samples = decode_with_image(&riff(&[(*b"VP8L", vp8l)]))?;
    Ok(if has_alpha { samples } else { opaque(samples) })
}

fn decode_with_image(bytes: &[u8]) -> Result<Samples, ImageError> {
    let image = image::load_from_memory_with_format(bytes, image::ImageFormat::WebP)
        .map_err(|e| ImageError::Corrupt(format!("WebP: {e}")))?;
    Ok(match image {
        image::DynamicImage::ImageRgb8(b) => Samples::Rgb(b.into_raw()),
        other => Samples::Rgba(other.into_rgba8().into_raw()),
    })
}

/// The first frame of an animation as libwebp's animation decoder gives it to Pillow: the frame on a
/// transparent black canvas (a key frame is never blended), RGB (black where the frame does not reach) when
/// the VP8X header does not declare alpha.
fn first_frame(vp8x: &[u8], file: &[Chunk]) -> Result<Samples, ImageError> {
    let (canvas_width, canvas_height) = (u24(&vp8x[4..7]) as usize + 1, u24(&vp8x[7..10]) as usize + 1);
    let anmf = file.iter().find(|chunk| &chunk.0 == b"ANMF").ok_or_else(|| corrupt("animation has no frame"))?.1;
    let header = anmf.get(..16).ok_or_else(|| corrupt("ANMF header too short"))?;
    let (x, y) = (2 * u24(&header[0..3]) as usize, 2 * u24(&header[3..6]) as usize);
    let (width, height) = (u24(&header[6..9]) as usize + 1, u24(&header[9..12]) as usize + 1);
    if x + width > canvas_width || y + height > canvas_height {
        return Err(corrupt("animation frame outside the canvas"));
    }
    let frame_chunks = chunks(&anmf[16..])?;
    if bitstream_size(&frame_chunks)? != (width as u32, height as u32) {
        return Err(corrupt("animation frame does not match its header"));
    }
    let frame = match decode_frame(&frame_chunks, true)? {
        Samples::Rgb(rgb) => rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        Samples::Rgba(rgba) => rgba,
        _ => return Err(corrupt("unexpected frame samples")),
    };
    if frame.len() != width * height * 4 {
        return Err(corrupt("animation frame does not match its header"));
    }
    let mut canvas = vec![0; canvas_width * canvas_height * 4];
    for (row, pixels) in frame.chunks_exact(width * 4).enumerate() {
        let at = ((y + row) * canvas_width + x) * 4;
        canvas[at..at + width * 4].copy_from_slice(pixels);
    }
    Ok(if vp8x[0] & ALPHA_FLAG != 0 {
        Samples::Rgba(canvas)
    } else {
        Samples::Rgb(canvas.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect())
    })
}

fn u24(bytes: &[u8]) -> u32 {
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], 0])
}

fn vp8x_header(flags: u8, width: u32, height: u32) -> Vec<u8> {
    let mut header = vec![flags, 0, 0, 0];
    header.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    header.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    header
}

/// A WebP file of these chunks.
fn riff(chunks: &[Chunk]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (id, payload) in chunks {
        body.extend_from_slice(id);
        body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        body.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut file = b"RIFF".to_vec();
    file.extend_from_slice(&(body.len() as u32).to_le_bytes());
    file.extend_from_slice(&body);
    file
}

/// The RIFF chunks (four-character id, payload). A chunk running past the end means the file
/// was cut short: the VP8 decoder would fill the missing part with zeros where libwebp (and Pillow) refuse.
fn chunks(bytes: &[u8]) -> Result<Vec<Chunk<'_>>, ImageError> {
    let truncated = || ImageError::Corrupt("WebP data ends inside a chunk (truncated)".into());
    let mut chunks = Vec::new();
    let mut at = 0;
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
    fn malformed_animation_frames_are_errors() {
        let animated = |anmf: &[u8]| riff(&[(*b"VP8X", &vp8x_header(ANIMATION_FLAG, 8, 8)), (*b"ANMF", anmf)]);
        // An 8x8 frame at (2, 0) on an 8x8 canvas, then a frame header with no image after it.
        let outside = [1, 0, 0, 0, 0, 0, 7, 0, 0, 7, 0, 0, 0, 0, 0, 0];
        assert!(matches!(decode_webp(&animated(&outside)), Err(ImageError::Corrupt(_))));
        let empty = [0, 0, 0, 0, 0, 0, 7, 0, 0, 7, 0, 0, 0, 0, 0, 0];
        assert!(matches!(decode_webp(&animated(&empty)), Err(ImageError::Corrupt(_))));
        assert!(matches!(decode_webp(&animated(&empty[..9])), Err(ImageError::Corrupt(_))));
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
