//! Size rule and token layout of an image (spec sections 6.3 and 6.6).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub cols: u32,
    pub rows: u32,
}

#[derive(Clone, Copy, Debug)]
pub struct TokenIds {
    pub img: u32,
    pub img_break: u32,
    pub img_end: u32,
}

/// Python's `round()`: to nearest, ties to even (mistral_common rounds the downscaled size this way).
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        2.0 * (x / 2.0).round()
    } else {
        r
    }
}

/// How a downscaled side is rounded to whole pixels before counting patches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeRounding {
    /// mistral_common (and vLLM): Python's `round()`, half to even.
    HalfEven,
    /// The Hugging Face Pixtral processor: `floor`, so the long side never exceeds the maximum.
    Floor,
}

/// mistral_common's grid: scale down (never up) so both sides fit `max_image_size`, rounding half to even,
/// then count patches with ceiling division.
pub fn image_grid(width: u32, height: u32, max_image_size: u32, patch_size: u32) -> Result<Grid, String> {
    image_grid_rounded(width, height, max_image_size, patch_size, SizeRounding::HalfEven)
}

pub fn image_grid_rounded(
    width: u32,
    height: u32,
    max_image_size: u32,
    patch_size: u32,
    rounding: SizeRounding,
) -> Result<Grid, String> {
    if width == 0 || height == 0 {
        return Err(format!("image has zero size ({width}x{height})"));
    }
    if max_image_size == 0 || patch_size == 0 {
        return Err(format!("max image size ({max_image_size}) and patch size ({patch_size}) must be positive"));
    }
    let (mut w, mut h) = (width as f64, height as f64);
    let ratio = (w / max_image_size as f64).max(h / max_image_size as f64);
    if ratio > 1.0 {
        let round = match rounding {
            SizeRounding::HalfEven => round_half_even,
            SizeRounding::Floor => f64::floor,
        };
        w = round(w / ratio);
        h = round(h / ratio);
    }
    // A side can round to 0 for extreme aspect ratios (where the references fail); it still gets one patch.
    let patches = |side: f64| ((side.max(1.0) as u32) - 1) / patch_size + 1;
    Ok(Grid { cols: patches(w), rows: patches(h) })
}

pub fn token_layout(grid: Grid, ids: TokenIds) -> Result<Vec<u32>, String> {
    if grid.cols == 0 || grid.rows == 0 {
        return Err(format!("empty patch grid ({}x{})", grid.cols, grid.rows));
    }
    let mut out = Vec::with_capacity(((grid.cols + 1) * grid.rows) as usize);
    for _ in 0..grid.rows {
        out.extend(std::iter::repeat(ids.img).take(grid.cols as usize));
        out.push(ids.img_break);
    }
    *out.last_mut().unwrap() = ids.img_end;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_matches_spec_examples() {
        assert_eq!(image_grid(32, 48, 1024, 16).unwrap(), Grid { cols: 2, rows: 3 });
        assert_eq!(image_grid(1500, 1000, 1024, 16).unwrap(), Grid { cols: 64, rows: 43 });
        assert_eq!(image_grid(4, 4, 1024, 16).unwrap(), Grid { cols: 1, rows: 1 });
        assert!(image_grid(0, 4, 1024, 16).is_err());
    }

    #[test]
    fn floor_rounding_differs_where_the_downscaled_side_rounds_up() {
        // 2000x1033: ratio 1.953125 -> height 528.9 -> round 529 (34 rows) but floor 528 (33 rows).
        assert_eq!(image_grid(2000, 1033, 1024, 16).unwrap(), Grid { cols: 64, rows: 34 });
        assert_eq!(image_grid_rounded(2000, 1033, 1024, 16, SizeRounding::Floor).unwrap(), Grid { cols: 64, rows: 33 });
    }

    #[test]
    fn layout_ends_rows_with_break_and_image_with_end() {
        let ids = TokenIds { img: 10, img_break: 12, img_end: 13 };
        assert_eq!(token_layout(Grid { cols: 2, rows: 3 }, ids).unwrap(), vec![10, 10, 12, 10, 10, 12, 10, 10, 13]);
        assert_eq!(token_layout(Grid { cols: 1, rows: 1 }, ids).unwrap(), vec![10, 13]);
    }
}
