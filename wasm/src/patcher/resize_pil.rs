//! Pillow's `Image.resize(size, Image.BICUBIC)` on an 8-bit RGB image, as the Hugging Face slow Pixtral
//! processor calls it (spec section 6.4): Keys' cubic with a = −0.5, the kernel widened by the scale when
//! shrinking (antialiasing), weights normalized to sum 1 and rounded to 22-bit fixed point, a horizontal pass
//! to 8 bits (rounded and clamped) over the rows the vertical pass needs, then the vertical pass, or the
//! vertical pass first where Pillow 13 runs it first (`vertical_first`). Integer arithmetic throughout after
//! the double-precision weights, so the result is bit-exact.

use super::simd::{I16x8, I32x4};

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per destination index: the first source index, and the fixed-point weights of the source run from there.
pub struct Filter {
    pub first: Vec<u32>,
    pub weights: Vec<Vec<i32>>,
}

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for the whole-image box.
pub fn filter(src: u32, dst: u32) -> Filter {
    let scale = src as f64 / dst as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let mut out = Filter { first: Vec::with_capacity(dst as usize), weights: Vec::with_capacity(dst as usize) };
    for d in 0..dst {
        let center = (d as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero, as `as i64` does.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(src as i64);
        let w: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) * ss)).collect();
        let total: f64 = w.iter().sum();
        let fixed = w
            .iter()
            .map(|&v| {
                let v = if total != 0.0 { v / total } else { v };
                let scaled = v * (1u32 << PRECISION_BITS) as f64;
                (if v < 0.0 { -0.5 + scaled } else { 0.5 + scaled }) as i32
            })
            .collect();
        out.first.push(xmin as u32);
        out.weights.push(fixed);
    }
    out
}

/// Two taps' weights (`k1` is 0 after an odd last tap) as the high and low 11 bits of each, both of which fit
/// 16-bit lanes, laid out over `lanes` lane pairs `[k0, k1, k0, k1, ..]` and zero in the rest.
fn split_pair(pair: &[i32], lanes: usize) -> [I16x8; 2] {
    let (k0, k1) = (pair[0], pair.get(1).copied().unwrap_or(0));
    let layout = |a: i32, b: i32| {
        I16x8::new(std::array::from_fn(|i| if i >= 2 * lanes { 0 } else if i % 2 == 0 { a as i16 } else { b as i16 }))
    };
    [layout(k0 >> 11, k1 >> 11), layout(k0 & 2047, k1 & 2047)]
}

/// A pixel's weights two by two, repeated for R, G and B: `[k0, k1, k0, k1, k0, k1, 0, 0]` (the zeros drop the
/// lanes a pixel pair fills with the next pixel).
fn weight_pairs(weights: &[i32], out: &mut Vec<[I16x8; 2]>) {
    out.extend(weights.chunks(2).map(|pair| split_pair(pair, 3)));
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rows resized horizontally together: they share each pixel's weights, loaded once per block.
const BLOCK: usize = 4;

/// The horizontal pass over source rows `rows`, to 8-bit RGB rows `dst_w` wide, one after another.
///
/// Two taps per step: Σ p·k = 2^11·Σ p·(k >> 11) + Σ p·(k & 2047), each half a 16-bit dot product over a
/// pixel pair; integer addition is associative, so the sums are exactly the reference's.
fn horizontal(src: &[u8], src_w: u32, rows: std::ops::Range<usize>, dst_w: u32) -> Vec<u8> {
    let (row_len, dw) = (src_w as usize * 3, dst_w as usize);
    let filter = filter(src_w, dst_w);
    let mut pairs = Vec::new();
    let mut offsets = vec![0];
    for w in &filter.weights {
        weight_pairs(w, &mut pairs);
        offsets.push(pairs.len());
    }
    // A pair's load reads up to two bytes past its second pixel, and so up to five past the row: rows from
    // `padded_from` on, which eight more bytes of the image do not follow, are read from a zero-padded copy.
    let padded_from = (src.len().saturating_sub(8) / row_len).min(rows.end).max(rows.start);
    let mut padded = src[padded_from * row_len..rows.end * row_len].to_vec();
    padded.extend_from_slice(&[0; 8]);
    let line = |y: usize| if y < padded_from { &src[y * row_len..] } else { &padded[(y - padded_from) * row_len..] };

    let mut out = vec![0u8; rows.len() * dw * 3];
    let rounding = I32x4::splat(1 << (PRECISION_BITS - 1));
    for block in (rows.start..rows.end).step_by(BLOCK) {
        let n = BLOCK.min(rows.end - block);
        // A short last block repeats its last row and drops the copies.
        let lines: [&[u8]; BLOCK] = std::array::from_fn(|i| line(block + i.min(n - 1)));
        let out = &mut out[(block - rows.start) * dw * 3..];
        for x in 0..dw {
            let taps = &pairs[offsets[x]..offsets[x + 1]];
            let at = filter.first[x] as usize * 3;
            let windows = lines.map(|l| &l[at..at + taps.len() * 6 + 2]);
            let (mut high, mut low) = ([I32x4::splat(0); BLOCK], [I32x4::splat(0); BLOCK]);
            for (i, [h, l]) in taps.iter().enumerate() {
                for r in 0..BLOCK {
                    let pixels = I16x8::pixel_pair(windows[r], i * 6);
                    high[r] = high[r].add(pixels.dot(*h));
                    low[r] = low[r].add(pixels.dot(*l));
                }
            }
            for r in 0..n {
                let acc = high[r].shl(11).add(low[r]).add(rounding);
                let [red, green, blue, _] = acc.shr_clamp_u8(PRECISION_BITS).lanes();
                out[(r * dw + x) * 3..(r * dw + x) * 3 + 3].copy_from_slice(&[red as u8, green as u8, blue as u8]);
            }
        }
    }
    out
}

/// Pillow 13's order (Resample.c, `ImagingResampleInner`): the vertical pass first when the height shrinks by
/// more than twice as many pixels as the width does, to make the horizontal pass cheaper. The two orders
/// round the intermediate image differently.
pub fn vertical_first(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> bool {
    let (shrink_w, shrink_h) = (src_w as i64 - dst_w as i64, src_h as i64 - dst_h as i64);
    shrink_h > 0 && shrink_h > shrink_w * 2
}

/// Resizes an interleaved RGB8 image, handing each finished row (interleaved RGB8) to `emit`.
///
/// Integer arithmetic in vector lanes (a pixel's R, G and B in the horizontal pass, bytes of a row in the
/// vertical pass), exactly the reference's sums: integer addition is associative.
pub fn resize_rgb8(src: &[u8], src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, mut emit: impl FnMut(usize, &[u8])) {
    let (sw, dw) = (src_w as usize, dst_w as usize);
    assert_eq!(src.len(), sw * src_h as usize * 3);
    let vertical = filter(src_h, dst_h);
    if vertical_first(src_w, src_h, dst_w, dst_h) {
        let mut temp = vec![0u8; dst_h as usize * sw * 3];
        vertical_pass(src, sw * 3, 0, &vertical, |y, row| temp[y * sw * 3..(y + 1) * sw * 3].copy_from_slice(row));
        let rows = if dst_w != src_w { horizontal(&temp, src_w, 0..dst_h as usize, dst_w) } else { temp };
        for (y, row) in rows.chunks_exact(dw * 3).enumerate() {
            emit(y, row);
        }
        return;
    }
    // Rows the vertical pass reads, and the horizontal pass (skipped when the width is unchanged) before it.
    let first_row = vertical.first[0] as usize;
    let last_row = *vertical.first.last().unwrap() as usize + vertical.weights.last().unwrap().len();
    let temp: Vec<u8>;
    let (rows, row_len) = if dst_w != src_w {
        temp = horizontal(src, src_w, first_row..last_row, dst_w);
        (&temp[..], dw * 3)
    } else {
        (&src[first_row * sw * 3..last_row * sw * 3], sw * 3)
    };
    if dst_h == src_h {
        for (y, row) in rows.chunks_exact(row_len).enumerate() {
            emit(y, row);
        }
        return;
    }
    vertical_pass(rows, row_len, first_row, &vertical, emit);
}

/// The vertical pass: each destination row from its source rows in `rows` (`row_len` bytes each, the first
/// being source row `first_row`), handed to `emit`.
///
/// Eight bytes and two taps per step: two rows' bytes interleaved make 16-bit lane pairs for the same split
/// dot products as the horizontal pass, and the sums stay in registers across all taps.
fn vertical_pass(rows: &[u8], row_len: usize, first_row: usize, filter: &Filter, mut emit: impl FnMut(usize, &[u8])) {
    let rounding = I32x4::splat(1 << (PRECISION_BITS - 1));
    let finish = |high: I32x4, low: I32x4| high.shl(11).add(low).add(rounding).shr(PRECISION_BITS);
    let chunks = row_len / 8;
    let mut out = vec![0u8; row_len];
    for (dy, (&first, weights)) in filter.first.iter().zip(&filter.weights).enumerate() {
        let base = first as usize - first_row;
        // Each tap pair's two row offsets and weights; an odd last tap is paired with itself at weight 0.
        let pairs: Vec<([usize; 2], [I16x8; 2])> = weights
            .chunks(2)
            .enumerate()
            .map(|(i, pair)| {
                let at = (base + 2 * i) * row_len;
                ([at, if pair.len() == 2 { at + row_len } else { at }], split_pair(pair, 4))
            })
            .collect();
        for x in (0..chunks).map(|c| c * 8) {
            // High and low sums of bytes x..x + 4, then of x + 4..x + 8.
            let mut sums = [I32x4::splat(0); 4];
            for ([a, b], [high, low]) in &pairs {
                let [left, right] = I16x8::row_pair(rows, a + x, b + x);
                sums[0] = sums[0].add(left.dot(*high));
                sums[1] = sums[1].add(left.dot(*low));
                sums[2] = sums[2].add(right.dot(*high));
                sums[3] = sums[3].add(right.dot(*low));
            }
            out[x..x + 8].copy_from_slice(&I32x4::pack_u8(finish(sums[0], sums[1]), finish(sums[2], sums[3])));
        }
        for x in chunks * 8..row_len {
            let acc = weights
                .iter()
                .enumerate()
                .fold(1 << (PRECISION_BITS - 1), |acc, (k, &w)| acc + rows[(base + k) * row_len + x] as i32 * w);
            out[x] = clip8(acc);
        }
        emit(dy, &out);
    }
}

/// The straightforward per-channel version of `resize_rgb8`, which the tests compare it with.
pub fn resize_rgb8_reference(src: &[u8], src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Vec<u8> {
    if vertical_first(src_w, src_h, dst_w, dst_h) {
        let temp = reference_vertical(src, src_w, src_h, dst_h);
        reference_horizontal(&temp, src_w, dst_h, dst_w)
    } else {
        let temp = reference_horizontal(src, src_w, src_h, dst_w);
        reference_vertical(&temp, dst_w, src_h, dst_h)
    }
}

fn reference_horizontal(src: &[u8], src_w: u32, src_h: u32, dst_w: u32) -> Vec<u8> {
    let (sw, dw) = (src_w as usize, dst_w as usize);
    let horizontal = filter(src_w, dst_w);
    let mut out = vec![0u8; src_h as usize * dw * 3];
    for (y, out) in out.chunks_exact_mut(dw * 3).enumerate() {
        let line = &src[y * sw * 3..(y + 1) * sw * 3];
        for ((o, &first), weights) in out.chunks_exact_mut(3).zip(&horizontal.first).zip(&horizontal.weights) {
            for c in 0..3 {
                let mut acc = 1i32 << (PRECISION_BITS - 1);
                for (k, &w) in weights.iter().enumerate() {
                    acc += line[(first as usize + k) * 3 + c] as i32 * w;
                }
                o[c] = clip8(acc);
            }
        }
    }
    out
}

fn reference_vertical(src: &[u8], width: u32, src_h: u32, dst_h: u32) -> Vec<u8> {
    let row_len = width as usize * 3;
    let vertical = filter(src_h, dst_h);
    let mut out = vec![0u8; dst_h as usize * row_len];
    for ((o, &first), weights) in out.chunks_exact_mut(row_len).zip(&vertical.first).zip(&vertical.weights) {
        for (x, o) in o.iter_mut().enumerate() {
            let mut acc = 1i32 << (PRECISION_BITS - 1);
            for (k, &w) in weights.iter().enumerate() {
                acc += src[(first as usize + k) * row_len + x] as i32 * w;
            }
            *o = clip8(acc);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (src, dst) in [(4000, 1024), (17, 32), (1, 16), (1500, 1024)] {
            let f = filter(src, dst);
            for w in &f.weights {
                let sum: i64 = w.iter().map(|&v| v as i64).sum();
                assert!((sum - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{src}->{dst}");
            }
        }
        // Shrinking by 4 widens the kernel to 4·2 = 8 source pixels each side.
        assert_eq!(filter(4000, 1000).weights[500].len(), 16);
    }

    #[test]
    fn fast_path_equals_the_reference() {
        let mut state = 7u32;
        for &(sw, sh, dw, dh) in &[
            (37, 21, 48, 32),
            (300, 5, 128, 16),
            (3, 70, 16, 80),
            (250, 190, 64, 48),
            (64, 48, 64, 16),
            (17, 9, 17, 32),
            (401, 301, 103, 77),
            // Rows too short for a pair's load, and blocks of fewer than four rows.
            (1, 3, 5, 2),
            (2, 5, 1, 7),
            (5, 1, 2, 1),
            (2, 2, 3, 3),
            // The vertical pass first, with and without a horizontal one.
            (50, 400, 16, 96),
            (60, 500, 96, 320),
            (33, 90, 33, 20),
        ] {
            let src: Vec<u8> = (0..sw * sh * 3)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 24) as u8
                })
                .collect();
            let mut fast = Vec::new();
            resize_rgb8(&src, sw, sh, dw, dh, |_, row| fast.extend_from_slice(row));
            assert_eq!(fast, resize_rgb8_reference(&src, sw, sh, dw, dh), "{sw}x{sh} -> {dw}x{dh}");
        }
    }

    #[test]
    fn pass_order_follows_pillow_13() {
        // Height shrinks by more than twice the width's shrink: vertical first (also when the width grows).
        assert!(vertical_first(50, 4000, 16, 1024));
        assert!(vertical_first(60, 500, 96, 320));
        assert!(vertical_first(100, 1000, 96, 512));
        // Exactly twice, a growing height, or a wider shrink: horizontal first.
        assert!(!vertical_first(300, 200, 250, 100));
        assert!(!vertical_first(60, 60, 64, 64));
        assert!(!vertical_first(4000, 50, 1024, 16));
        assert!(!vertical_first(2047, 1031, 1024, 528));
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 13 * 7 * 3];
        let mut rows = Vec::new();
        resize_rgb8(&src, 13, 7, 32, 16, |_, row| rows.extend_from_slice(row));
        assert!(rows.iter().all(|&v| v == 77));
    }
}
