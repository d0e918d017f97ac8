//! OpenCV's `cv2.resize(..., interpolation=INTER_CUBIC)` on float32 RGB, as mistral_common (since 1.4.1)
//! and vLLM call it on the 0..255 values (spec section 6.4): Keys' cubic with a = −0.75, pixel-centre
//! sampling `src = (dst + 0.5)·scale − 0.5`, replicated borders, no antialiasing when shrinking, no clamping.
//!
//! The arithmetic follows OpenCV's `resizeGeneric_` for 32-bit floats step by step: the scale is
//! `1 / (dst / src)` in double, the sampling position is computed in double and rounded to float, the
//! weights are computed in float by `interpolateCubic`, rows are filtered horizontally first, then columns.

use super::simd::F32x4;

/// Four source indices (clamped to the image: replicated border) and their weights, per destination index.
pub struct CubicTaps {
    pub index: Vec<[u32; 4]>,
    pub weight: Vec<[f32; 4]>,
}

/// OpenCV's `interpolateCubic`, in float as OpenCV computes it.
fn cubic_weights(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let w0 = ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A;
    let w1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let w2 = ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0;
    [w0, w1, w2, 1.0 - w0 - w1 - w2]
}

pub fn cubic_taps(src: u32, dst: u32) -> CubicTaps {
    let scale = 1.0 / (dst as f64 / src as f64);
    let last = src as i64 - 1;
    let mut taps = CubicTaps { index: Vec::with_capacity(dst as usize), weight: Vec::with_capacity(dst as usize) };
    for d in 0..dst {
        let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let s = f.floor();
        let frac = f - s;
        let s = s as i64;
        taps.index.push([0, 1, 2, 3].map(|k| (s - 1 + k).clamp(0, last) as u32));
        taps.weight.push(cubic_weights(frac));
    }
    taps
}

/// Resizes an interleaved RGB8 image to `dst_w` x `dst_h`, handing each finished row to `emit` with its index:
/// one vector per pixel holding R, G, B (unclamped, on the 0..255 scale) and a fourth lane to ignore.
///
/// Each lane computes exactly what `resize_rgb8_reference` computes for its channel, in the same order.
/// A pass whose size does not change is skipped: its weights are (0, 1, 0, 0), which reproduce the input
/// exactly (OpenCV copies the image when neither size changes).
pub fn resize_rgb8(src: &[u8], src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, mut emit: impl FnMut(usize, &[F32x4])) {
    let (sw, dw) = (src_w as usize, dst_w as usize);
    assert_eq!(src.len(), sw * src_h as usize * 3);
    // Per output pixel: the byte offset of its first source pixel within a row, whether the four are adjacent
    // (all but a few pixels at the borders, where indices are clamped), their offsets, and their weights.
    let htaps = (dst_w != src_w).then(|| {
        let taps = cubic_taps(src_w, dst_w);
        let offsets: Vec<[usize; 4]> = taps.index.iter().map(|idx| idx.map(|x| x as usize * 3)).collect();
        let adjacent: Vec<bool> =
            offsets.iter().map(|o| o[1] == o[0] + 3 && o[2] == o[0] + 6 && o[3] == o[0] + 9).collect();
        (offsets, adjacent, taps.weight)
    });
    let horizontal = |y: usize, out: &mut [F32x4]| {
        let row = y * sw * 3;
        match &htaps {
            Some((offsets, adjacent, weights)) => {
                for (((o, at), &adjacent), w) in out.iter_mut().zip(offsets).zip(adjacent).zip(weights) {
                    let s = if adjacent {
                        F32x4::rgb_quad(src, row + at[0])
                    } else {
                        [0, 1, 2, 3].map(|k| F32x4::from_rgb8(src, row + at[k]))
                    };
                    let w = w.map(F32x4::splat);
                    *o = s[0].mul(w[0]).add(s[1].mul(w[1])).add(s[2].mul(w[2])).add(s[3].mul(w[3]));
                }
            }
            None => {
                for (x, o) in out.iter_mut().enumerate() {
                    *o = F32x4::from_rgb8(src, row + x * 3);
                }
            }
        }
    };
    let mut out = vec![F32x4::splat(0.0); dw];
    if dst_h == src_h {
        for y in 0..src_h as usize {
            horizontal(y, &mut out);
            emit(y, &out);
        }
        return;
    }
    let vtaps = cubic_taps(src_h, dst_h);
    let mut cache = RowCache::new(dw);
    for (dy, (rows, w)) in vtaps.index.iter().zip(&vtaps.weight).enumerate() {
        let [r0, r1, r2, r3] = cache.rows(rows, |y, row| horizontal(y as usize, row));
        let w = w.map(F32x4::splat);
        for (x, o) in out.iter_mut().enumerate() {
            // OpenCV's vector loop order: S0·b0 + (S1·b1 + (S2·b2 + S3·b3)).
            *o = r0[x].mul(w[0]).add(r1[x].mul(w[1]).add(r2[x].mul(w[2]).add(r3[x].mul(w[3]))));
        }
        emit(dy, &out);
    }
}

/// Horizontally filtered rows, kept by source row: consecutive output rows share most of their four.
struct RowCache {
    rows: [(u32, Vec<F32x4>); 4],
}

impl RowCache {
    fn new(width: usize) -> RowCache {
        let row = || (u32::MAX, vec![F32x4::splat(0.0); width]);
        RowCache { rows: [row(), row(), row(), row()] }
    }

    /// The filtered rows `wanted`, computing with `fill` those not cached; slots holding rows still wanted
    /// are kept.
    fn rows(&mut self, wanted: &[u32; 4], mut fill: impl FnMut(u32, &mut [F32x4])) -> [&[F32x4]; 4] {
        let mut slots = [0usize; 4];
        for (k, &y) in wanted.iter().enumerate() {
            slots[k] = match self.rows.iter().position(|(row, _)| *row == y) {
                Some(slot) => slot,
                None => {
                    let free = (0..4).find(|s| !wanted.contains(&self.rows[*s].0) && !slots[..k].contains(s)).unwrap();
                    fill(y, &mut self.rows[free].1);
                    self.rows[free].0 = y;
                    free
                }
            };
        }
        slots.map(|s| &self.rows[s].1[..])
    }
}

/// The straightforward per-channel version of `resize_rgb8`, which the tests compare it with.
pub fn resize_rgb8_reference(src: &[u8], src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> Vec<f32> {
    let (sw, dw) = (src_w as usize, dst_w as usize);
    let htaps = cubic_taps(src_w, dst_w);
    let vtaps = cubic_taps(src_h, dst_h);
    let rows: Vec<Vec<f32>> = (0..src_h as usize)
        .map(|y| {
            let line = &src[y * sw * 3..(y + 1) * sw * 3];
            let mut out = vec![0.0; dw * 3];
            for ((o, idx), w) in out.chunks_exact_mut(3).zip(&htaps.index).zip(&htaps.weight) {
                for c in 0..3 {
                    let s = |k: usize| line[idx[k] as usize * 3 + c] as f32;
                    o[c] = s(0) * w[0] + s(1) * w[1] + s(2) * w[2] + s(3) * w[3];
                }
            }
            out
        })
        .collect();
    let mut out = Vec::with_capacity(dw * 3 * dst_h as usize);
    for (idx, w) in vtaps.index.iter().zip(&vtaps.weight) {
        let r = idx.map(|y| &rows[y as usize]);
        out.extend((0..dw * 3).map(|x| r[0][x] * w[0] + (r[1][x] * w[1] + (r[2][x] * w[2] + r[3][x] * w[3]))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (state >> 24) as u8
            })
            .collect()
    }

    fn fast(src: &[u8], sw: u32, sh: u32, dw: u32, dh: u32) -> Vec<f32> {
        let mut out = Vec::new();
        resize_rgb8(src, sw, sh, dw, dh, |y, row| {
            assert_eq!(y, out.len() / (dw as usize * 3));
            out.extend(row.iter().flat_map(|p| p.lanes()[..3].to_vec()));
        });
        out
    }

    #[test]
    fn weights_are_keys_cubic_with_a_minus_075() {
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
        let w = cubic_weights(0.5);
        assert_eq!(w, [-0.09375, 0.59375, 0.59375, -0.09375]);
    }

    #[test]
    fn same_size_is_identity_and_borders_replicate() {
        let taps = cubic_taps(5, 5);
        assert_eq!(taps.index[0], [0, 0, 1, 2]);
        assert_eq!(taps.index[4], [3, 4, 4, 4]);
        let src = noise(4 * 3 * 3, 1);
        let want: Vec<f32> = src.iter().map(|&v| v as f32).collect();
        assert_eq!(resize_rgb8_reference(&src, 4, 3, 4, 3), want);
        assert_eq!(fast(&src, 4, 3, 4, 3), want);
    }

    #[test]
    fn one_pixel_upscales_to_a_constant() {
        let out = fast(&[10, 20, 30], 1, 1, 16, 16);
        assert_eq!(out.len(), 16 * 16 * 3);
        for p in out.chunks_exact(3) {
            for (v, want) in p.iter().zip([10.0, 20.0, 30.0]) {
                assert!((v - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn fast_path_equals_the_reference_bit_for_bit() {
        for (i, &(sw, sh, dw, dh)) in [
            (37, 21, 48, 32),
            (300, 5, 128, 16),
            (3, 70, 16, 80),
            (250, 190, 64, 48),
            (64, 48, 64, 16),
            (17, 9, 17, 32),
        ]
        .iter()
        .enumerate()
        {
            let src = noise((sw * sh * 3) as usize, i as u32);
            let reference = resize_rgb8_reference(&src, sw, sh, dw, dh);
            let fast = fast(&src, sw, sh, dw, dh);
            assert!(reference.iter().zip(&fast).all(|(a, b)| a.to_bits() == b.to_bits()), "{sw}x{sh} -> {dw}x{dh}");
        }
    }
}
