//! 16-bit BMP levels as Pillow gives them. Pillow expands a 5- or 6-bit sample v to `v·255 / max` rounded
//! down (its BGR;15 and BGR;16 unpackers); `image` rounds to nearest. Both maps are one-to-one, so the
//! samples `image` decodes are mapped back to v and forward again Pillow's way. Pillow picks the unpacker by
//! the red, green and blue masks alone, so a 16-bit alpha mask (ARGB1555) is ignored, as `image` does not.

use super::rgb::Samples;

/// The bits of red, green and blue in a 16-bit BMP whose layout Pillow reads as BGR;15 or BGR;16.
fn rgb_bits(bytes: &[u8]) -> Option<[u32; 3]> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32);
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    // BITMAPINFOHEADER or later (40 bytes and up): bit count at 28, compression at 30, masks from 54 (the
    // alpha mask after them, which Pillow does not look at for 16 bits).
    if u32_at(14)? < 40 || u16_at(28)? != 16 {
        return None;
    }
    match (u32_at(30)?, u32_at(54), u32_at(58), u32_at(62)) {
        (0, ..) | (3, Some(0x7C00), Some(0x03E0), Some(0x001F)) => Some([5, 5, 5]),
        (3, Some(0xF800), Some(0x07E0), Some(0x001F)) => Some([5, 6, 5]),
        _ => None,
    }
}

pub fn pillow_levels(bytes: &[u8], samples: Samples) -> Samples {
    let (bits, mut rgb) = match (rgb_bits(bytes), samples) {
        (Some(bits), Samples::Rgb(rgb)) => (bits, rgb),
        (Some(bits), Samples::Rgba(rgba)) => (bits, rgba.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect()),
        (_, samples) => return samples,
    };
    let tables = bits.map(|n| {
        let max = (1 << n) - 1;
        let mut table = [0; 256];
        for (rounded, floored) in table.iter_mut().enumerate() {
            let v = (rounded as u32 * max + 127) / 255;
            *floored = (v * 255 / max) as u8;
        }
        table
    });
    for (i, sample) in rgb.iter_mut().enumerate() {
        *sample = tables[i % 3][*sample as usize];
    }
    Samples::Rgb(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_bit_levels_round_down() {
        // A 1x1 5-5-5 BMP: `image` expands 1 to 8 and 30 to 247; Pillow to 8 and 246.
        let mut bmp = vec![0; 58];
        bmp[14] = 40;
        bmp[28] = 16;
        let rounded = |v: u32| ((v * 255 + 15) / 31) as u8;
        let out = match pillow_levels(&bmp, Samples::Rgb(vec![rounded(1), rounded(30), rounded(31)])) {
            Samples::Rgb(rgb) => rgb,
            _ => unreachable!(),
        };
        assert_eq!(out, vec![8, 246, 255]);
    }

    #[test]
    fn a_sixteen_bit_alpha_mask_is_ignored() {
        // A V4 header with masks 7C00/03E0/001F/8000 and the alpha bit clear: Pillow reads BGR;15, no alpha.
        let mut bmp = vec![0; 70];
        bmp[14] = 108;
        bmp[28] = 16;
        bmp[30] = 3;
        bmp[54..58].copy_from_slice(&0x7C00u32.to_le_bytes());
        bmp[58..62].copy_from_slice(&0x03E0u32.to_le_bytes());
        bmp[62..66].copy_from_slice(&0x001Fu32.to_le_bytes());
        bmp[66..70].copy_from_slice(&0x8000u32.to_le_bytes());
        let rounded = |v: u32| ((v * 255 + 15) / 31) as u8;
        let out = match pillow_levels(&bmp, Samples::Rgba(vec![rounded(1), rounded(30), rounded(31), 0])) {
            Samples::Rgb(rgb) => rgb,
            _ => unreachable!(),
        };
        assert_eq!(out, vec![8, 246, 255]);
    }
}
