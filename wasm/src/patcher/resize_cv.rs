//! OpenCV's `cv2.resize(..., interpolation=INTER_CUBIC)` on float32 RGB, as mistral_common (since 1.4.1)
//! and vLLM call it on the 0..255 values (spec section 6.4): Keys' cubic with a = −0.75, pixel-centre
//! sampling `src = (dst + 0.5)·scale − 0.5`, replicated borders, no antialiasing when shrinking, no clamping.
//!
//! The arithmetic follows OpenCV's `resizeGeneric_` for 32-bit floats step by step: the scale is
//! `1 / (dst / src)` in double, the sampling position is computed in double and rounded to float, the
//! weights are computed in float by `interpolateCubic`, rows are filtered horizontally first, then columns.

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

/// Resizes an interleaved RGB8 image to `dst_w` x `dst_h`, handing each finished float row (interleaved RGB,
/// unclamped, on the 0..255 scale) to `emit` with its row index.
pub fn resize_rgb8(src: &[u8], src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, mut emit: impl FnMut(usize, &[f32])) {
    let (sw, dw) = (src_w as usize, dst_w as usize);
    assert_eq!(src.len(), sw * src_h as usize * 3);
    let htaps = cubic_taps(src_w, dst_w);
    let vtaps = cubic_taps(src_h, dst_h);
    // Horizontally filtered rows, cached by source row: consecutive output rows share most of their four.
    let mut cache: [(u32, Vec<f32>); 4] = Default::default();
    for slot in cache.iter_mut() {
        *slot = (u32::MAX, vec![0.0; dw * 3]);
    }
    let mut out = vec![0.0f32; dw * 3];
    for (dy, (rows, w)) in vtaps.index.iter().zip(&vtaps.weight).enumerate() {
        let mut slots = [0usize; 4];
        for (k, &sy) in rows.iter().enumerate() {
            // Slots still holding rows this output needs are kept; the others are refilled.
            let found = cache.iter().position(|(row, _)| *row == sy);
            slots[k] = match found {
                Some(slot) => slot,
                None => {
                    let slot = (0..4).find(|s| !rows.contains(&cache[*s].0) && !slots[..k].contains(s)).unwrap();
                    let line = &src[sy as usize * sw * 3..(sy as usize + 1) * sw * 3];
                    horizontal(line, &htaps, &mut cache[slot].1);
                    cache[slot].0 = sy;
                    slot
                }
            };
        }
        let (r0, r1, r2, r3) = (&cache[slots[0]].1, &cache[slots[1]].1, &cache[slots[2]].1, &cache[slots[3]].1);
        for x in 0..dw * 3 {
            // OpenCV's vector loop order: S0·b0 + (S1·b1 + (S2·b2 + S3·b3)).
            out[x] = r0[x] * w[0] + (r1[x] * w[1] + (r2[x] * w[2] + r3[x] * w[3]));
        }
        emit(dy, &out);
    }
}

fn horizontal(line: &[u8], taps: &CubicTaps, out: &mut [f32]) {
    for ((o, idx), w) in out.chunks_exact_mut(3).zip(&taps.index).zip(&taps.weight) {
        for c in 0..3 {
            let s = |k: usize| line[idx[k] as usize * 3 + c] as f32;
            o[c] = s(0) * w[0] + s(1) * w[1] + s(2) * w[2] + s(3) * w[3];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let src: Vec<u8> = (0..4 * 3 * 3).map(|v| (v * 7) as u8).collect();
        let mut rows = Vec::new();
        resize_rgb8(&src, 4, 3, 4, 3, |_, row| rows.extend_from_slice(row));
        assert_eq!(rows, src.iter().map(|&v| v as f32).collect::<Vec<_>>());
    }

    #[test]
    fn one_pixel_upscales_to_a_constant() {
        let mut rows = Vec::new();
        resize_rgb8(&[10, 20, 30], 1, 1, 16, 16, |_, row| rows.extend_from_slice(row));
        assert_eq!(rows.len(), 16 * 16 * 3);
        for p in rows.chunks_exact(3) {
            for (v, want) in p.iter().zip([10.0, 20.0, 30.0]) {
                assert!((v - want).abs() < 1e-4);
            }
        }
    }
}
