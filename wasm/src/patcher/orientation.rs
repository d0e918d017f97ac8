//! EXIF orientation: the tag a camera writes instead of turning the pixels (a phone held upright stores a
//! landscape frame tagged "rotate 90° clockwise"). Viewers and browsers show the image turned; mistral_common
//! does not turn it (Pillow's `open` leaves the pixels as stored), so a model served as it is sees a phone's
//! portrait photo on its side. Turned here as Pillow's `ImageOps.exif_transpose` turns it, from the tag in a
//! JPEG's APP1 segment, a PNG's eXIf chunk or a WebP's EXIF chunk.

use super::decode::{jpeg_segments, Format};
use super::rgb::RgbImage;
use super::webp::webp_exif;

/// The orientation tag (1 to 8, 1 when there is none or it is unreadable: the image as stored).
pub fn exif_orientation(bytes: &[u8], format: Format) -> u8 {
    let tiff = match format {
        // Pillow takes the first APP1 segment that holds EXIF.
        Format::Jpeg => jpeg_segments(bytes)
            .into_iter()
            .find_map(|(marker, payload)| (marker == 0xE1).then(|| payload.strip_prefix(b"Exif\0\0")).flatten()),
        Format::Png => png_exif(bytes),
        Format::WebP => webp_exif(bytes),
        Format::Gif | Format::Bmp => None,
    };
    tiff.map(|t| t.strip_prefix(b"Exif\0\0").unwrap_or(t)).and_then(tiff_orientation).unwrap_or(1)
}

/// Whether the orientation swaps width and height (the turns by a quarter, and the two transposes).
pub fn swaps_sides(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

/// The image as the orientation says it is seen.
pub fn orient(image: RgbImage, orientation: u8) -> RgbImage {
    if !(2..=8).contains(&orientation) {
        return image;
    }
    let (w, h) = (image.width as usize, image.height as usize);
    let (out_w, out_h) = if swaps_sides(orientation) { (h, w) } else { (w, h) };
    // The stored pixel that lands at (x, y) of the turned image.
    let source = |x: usize, y: usize| -> (usize, usize) {
        match orientation {
            2 => (w - 1 - x, y),         // mirrored left to right
            3 => (w - 1 - x, h - 1 - y), // turned 180°
            4 => (x, h - 1 - y),         // mirrored top to bottom
            5 => (y, x),                 // transposed
            6 => (y, h - 1 - x),         // turned 90° clockwise
            7 => (w - 1 - y, h - 1 - x), // transposed across the other diagonal
            _ => (w - 1 - y, x),         // 8: turned 90° counter-clockwise
        }
    };
    let mut pixels = Vec::with_capacity(image.pixels.len());
    for y in 0..out_h {
        for x in 0..out_w {
            let (sx, sy) = source(x, y);
            let at = 3 * (sy * w + sx);
            pixels.extend_from_slice(&image.pixels[at..at + 3]);
        }
    }
    RgbImage { width: out_w as u32, height: out_h as u32, pixels }
}

/// The last eXIf chunk's data (Pillow keeps the last), wherever it is.
fn png_exif(bytes: &[u8]) -> Option<&[u8]> {
    let mut at = 8; // after the signature
    let mut found = None;
    while at + 8 <= bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        let kind = &bytes[at + 4..at + 8];
        let data = bytes.get(at + 8..(at + 8).checked_add(len)?)?;
        if kind == b"eXIf" {
            found = Some(data);
        } else if kind == b"IEND" {
            break;
        }
        at += 12 + len;
    }
    found
}

/// Tag 0x0112 of a TIFF header's first directory.
fn tiff_orientation(tiff: &[u8]) -> Option<u8> {
    let big = match tiff.get(0..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    // Offsets come from the file: every sum is checked (a wrapped one would read elsewhere).
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = u32_at(4)? as usize;
    // Pillow keeps the last entry of a tag written twice.
    let mut found = None;
    for i in 0..u16_at(ifd)? as usize {
        let entry = ifd.checked_add(2 + 12 * i)?;
        if u16_at(entry)? != 0x0112 {
            continue;
        }
        // One value, a SHORT as written, or a LONG or a BYTE (Pillow reads whichever type the entry says; more than
        // one value it reads as a tuple, which turns nothing).
        let at = entry.checked_add(8)?;
        let value = match (u16_at(entry.checked_add(2)?)?, u32_at(entry.checked_add(4)?)?) {
            (3, 1) => u16_at(at)? as u32,
            (4, 1) => u32_at(at)?,
            (1, 1) => *tiff.get(at)? as u32,
            _ => 0,
        };
        found = Some(value);
    }
    found.filter(|v| (1..=8).contains(v)).map(|v| v as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A little- or big-endian TIFF header whose first directory holds the orientation as a SHORT.
    fn tiff(orientation: u16, big: bool) -> Vec<u8> {
        let (u16b, u32b): (fn(u16) -> [u8; 2], fn(u32) -> [u8; 4]) = if big {
            (u16::to_be_bytes, u32::to_be_bytes)
        } else {
            (u16::to_le_bytes, u32::to_le_bytes)
        };
        let mut t = if big { b"MM".to_vec() } else { b"II".to_vec() };
        t.extend(u16b(42));
        t.extend(u32b(8));
        t.extend(u16b(2)); // two entries: a width first, then the orientation
        t.extend(u16b(0x0100));
        t.extend(u16b(3));
        t.extend(u32b(1));
        t.extend(u16b(640));
        t.extend([0, 0]);
        t.extend(u16b(0x0112));
        t.extend(u16b(3));
        t.extend(u32b(1));
        t.extend(u16b(orientation));
        t.extend([0, 0]);
        t.extend(u32b(0));
        t
    }

    #[test]
    fn the_tag_is_read_in_either_byte_order() {
        for big in [false, true] {
            for o in 1..=8 {
                assert_eq!(tiff_orientation(&tiff(o, big)), Some(o as u8));
            }
            assert_eq!(tiff_orientation(&tiff(9, big)), None);
            // Two values: Pillow reads a tuple, which turns nothing.
            let mut two = tiff(6, big);
            two[26..30].copy_from_slice(&if big { 2u32.to_be_bytes() } else { 2u32.to_le_bytes() });
            assert_eq!(tiff_orientation(&two), None);
            // Written twice: the last one.
            let mut twice = tiff(6, big);
            twice[10..12].copy_from_slice(&if big { 0x0112u16.to_be_bytes() } else { 0x0112u16.to_le_bytes() });
            twice[18..20].copy_from_slice(&if big { 3u16.to_be_bytes() } else { 3u16.to_le_bytes() });
            assert_eq!(tiff_orientation(&twice), Some(6));
            assert_eq!(tiff_orientation(&tiff(6, big)[..20]), None);
        }
    }

    #[test]
    fn offsets_past_the_end_read_nothing() {
        let mut t = tiff(6, false);
        t[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(tiff_orientation(&t), None);
        let mut t = tiff(6, false);
        t[4..8].copy_from_slice(&(u32::MAX - 1).to_le_bytes());
        assert_eq!(tiff_orientation(&t), None);
        let mut t = tiff(6, false);
        t[8..10].copy_from_slice(&u16::MAX.to_le_bytes()); // 65535 entries in a 38-byte header,
        t[22..24].copy_from_slice(&0x0113u16.to_le_bytes()); // none of them the orientation
        assert_eq!(tiff_orientation(&t), None);
    }

    #[test]
    fn a_jpeg_app1_segment_gives_it() {
        let payload = [b"Exif\0\0".to_vec(), tiff(6, false)].concat();
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
        jpeg.extend(((payload.len() + 2) as u16).to_be_bytes());
        jpeg.extend(payload);
        jpeg.extend([0xFF, 0xDA, 0, 2]);
        assert_eq!(exif_orientation(&jpeg, Format::Jpeg), 6);
        assert_eq!(exif_orientation(&jpeg[..12], Format::Jpeg), 1);
    }

    #[test]
    fn each_orientation_turns_as_pillow_does() {
        // 3x2 pixels numbered 0..6 (in the red channel), in rows.
        let image = || RgbImage { width: 3, height: 2, pixels: (0..6).flat_map(|v| [v, 0, 0]).collect() };
        let turned = |o| {
            let out = orient(image(), o);
            (out.width, out.height, out.pixels.chunks(3).map(|p| p[0]).collect::<Vec<_>>())
        };
        // Stored:  0 1 2
        //          3 4 5
        assert_eq!(turned(1), (3, 2, vec![0, 1, 2, 3, 4, 5]));
        assert_eq!(turned(2), (3, 2, vec![2, 1, 0, 5, 4, 3]));
        assert_eq!(turned(3), (3, 2, vec![5, 4, 3, 2, 1, 0]));
        assert_eq!(turned(4), (3, 2, vec![3, 4, 5, 0, 1, 2]));
        assert_eq!(turned(5), (2, 3, vec![0, 3, 1, 4, 2, 5]));
        assert_eq!(turned(6), (2, 3, vec![3, 0, 4, 1, 5, 2]));
        assert_eq!(turned(7), (2, 3, vec![5, 2, 4, 1, 3, 0]));
        assert_eq!(turned(8), (2, 3, vec![2, 5, 1, 4, 0, 3]));
    }
}
