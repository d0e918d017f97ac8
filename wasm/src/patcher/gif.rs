//! GIF: the first frame, placed on its canvas the way Pillow does for frame 0 (what mistral_common sees).
//!
//! Pillow sizes the canvas to the logical screen, grown to hold the first frame if it lies partly outside, and
//! fills what the frame does not cover with the frame's transparent index if it has one (white after
//! compositing) and with palette index 0 otherwise. `image` fills it with transparent black instead, so the
//! frame is read with the `gif` crate here.
//!
//! A GIF with no colour table at all is an "L" image for Pillow, its indices read as gray levels; the crate
//! refuses it, so it gets a gray global table here.

use super::error::ImageError;
use super::rgb::Samples;

fn corrupt(err: gif::DecodingError) -> ImageError {
    ImageError::Corrupt(format!("GIF: {err}"))
}

struct FirstFrame<'a> {
    decoder: gif::Decoder<&'a [u8]>,
    frame: gif::Frame<'static>,
    width: u32,
    height: u32,
}

fn first_frame(bytes: &[u8], max_pixels: u64) -> Result<FirstFrame<'_>, ImageError> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    // The caller bounds the canvas, and the frame within it, by its pixel limit.
    options.set_memory_limit(gif::MemoryLimit(max_pixels.min(u32::MAX as u64) as u32));
    let mut decoder = options.read_info(bytes).map_err(corrupt)?;
    let (screen_w, screen_h) = (decoder.width() as u32, decoder.height() as u32);
    let frame =
        decoder.next_frame_info().map_err(corrupt)?.ok_or_else(|| ImageError::Corrupt("GIF has no frame".into()))?;
    let frame = frame.clone();
    let width = screen_w.max(frame.left as u32 + frame.width as u32);
    let height = screen_h.max(frame.top as u32 + frame.height as u32);
    Ok(FirstFrame { decoder, frame, width, height })
}

/// The canvas size Pillow reports, from the headers alone: the logical screen grown to the first frame's
/// extent, or just the screen when no frame header follows (decoding then reports the missing data).
pub fn gif_dimensions(bytes: &[u8]) -> Result<(u32, u32), ImageError> {
    let gray = with_gray_table(bytes);
    let bytes = gray.as_deref().unwrap_or(bytes);
    match first_frame(bytes, u64::MAX) {
        Ok(frame) => Ok((frame.width, frame.height)),
        Err(err) => {
            let decoder = gif::DecodeOptions::new().read_info(bytes).map_err(|_| err)?;
            Ok((decoder.width() as u32, decoder.height() as u32))
        }
    }
}

/// The first frame as RGBA on its canvas; the caller has checked the canvas size against `max_pixels`.
pub fn decode_gif(bytes: &[u8], max_pixels: u64) -> Result<Samples, ImageError> {
    let gray = with_gray_table(bytes);
    let bytes = gray.as_deref().unwrap_or(bytes);
    let FirstFrame { mut decoder, frame, width, height } = first_frame(bytes, max_pixels)?;
    let mut indices = vec![0u8; decoder.buffer_size()];
    decoder.read_into_buffer(&mut indices).map_err(corrupt)?;
    let palette = frame.palette.as_deref().or_else(|| decoder.global_palette()).unwrap_or(&[]);
    let colour = |index: u8| -> [u8; 4] {
        let i = index as usize * 3;
        let alpha = if frame.transparent == Some(index) { 0 } else { 255 };
        match palette.get(i..i + 3) {
            Some(rgb) => [rgb[0], rgb[1], rgb[2], alpha],
            None => [0, 0, 0, alpha],
        }
    };
    let (w, h) = (width as usize, height as usize);
    let background = colour(frame.transparent.unwrap_or(0));
    let mut rgba: Vec<u8> = std::iter::repeat(background).take(w * h).flatten().collect();
    let (left, top, fw) = (frame.left as usize, frame.top as usize, frame.width as usize);
    for (y, row) in indices.chunks_exact(fw.max(1)).enumerate() {
        let start = ((top + y) * w + left) * 4;
        for (out, &index) in rgba[start..start + fw * 4].chunks_exact_mut(4).zip(row) {
            out.copy_from_slice(&colour(index));
        }
    }
    Ok(Samples::Rgba(rgba))
}

/// Header (6 bytes) and logical screen descriptor (7): the descriptor's flags byte says whether a global table
/// follows, and its size.
const SCREEN_FLAGS: usize = 10;
const TABLE_AT: usize = 13;

/// The file with a global table mapping each index to its gray level, when it has none; None when it has one.
/// A frame's own table still takes precedence, as in Pillow.
fn with_gray_table(bytes: &[u8]) -> Option<Vec<u8>> {
    let flags = *bytes.get(SCREEN_FLAGS)?;
    if flags & 0x80 != 0 || bytes.len() < TABLE_AT {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() + 768);
    out.extend_from_slice(&bytes[..SCREEN_FLAGS]);
    out.push(flags | 0x87); // a global table of 2^(7+1) = 256 entries
    out.extend_from_slice(&bytes[SCREEN_FLAGS + 1..TABLE_AT]);
    out.extend((0..=255u8).flat_map(|level| [level; 3]));
    out.extend_from_slice(&bytes[TABLE_AT..]);
    Some(out)
}
