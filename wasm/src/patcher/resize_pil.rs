//! Pillow's `Image.resize(size, Image.BICUBIC)` on an 8-bit RGB image, as the Hugging Face slow Pixtral
//! processor calls it (spec section 6.4): Keys' cubic with a = −0.5, the kernel widened by the scale when
//! shrinking (antialiasing), weights normalized to sum 1 and rounded to 22-bit fixed point, a horizontal pass
//! to 8 bits (rounded and clamped) over the rows the vertical pass needs, then the vertical pass.
//! Integer arithmetic throughout after the double-precision weights, so the result is bit-exact.

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

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved RGB8 image, handing each finished row (interleaved RGB8) to `emit`.
pub fn resize_rgb8(src: &[u8], src_w: u32, src_h: u32, dst_w: u32, dst_h: u32, mut emit: impl FnMut(usize, &[u8])) {
    let (sw, dw) = (src_w as usize, dst_w as usize);
    assert_eq!(src.len(), sw * src_h as usize * 3);
    let vertical = filter(src_h, dst_h);
    // Rows the vertical pass reads, and the horizontal pass (skipped when the width is unchanged) before it.
    let first_row = vertical.first[0] as usize;
    let last_row = *vertical.first.last().unwrap() as usize + vertical.weights.last().unwrap().len();
    let temp: Vec<u8>;
    let (rows, row_len) = if dst_w != src_w {
        let horizontal = filter(src_w, dst_w);
        let mut t = vec![0u8; (last_row - first_row) * dw * 3];
        for (y, out) in (first_row..last_row).zip(t.chunks_exact_mut(dw * 3)) {
            horizontal_row(&src[y * sw * 3..(y + 1) * sw * 3], &horizontal, out);
        }
        temp = t;
        (&temp[..], dw * 3)
    } else {
        (&src[first_row * sw * 3..last_row * sw * 3], sw * 3)
    };
    let mut out = vec![0u8; dw * 3];
    if dst_h == src_h {
        for (y, row) in rows.chunks_exact(row_len).enumerate() {
            emit(y, row);
        }
        return;
    }
    let mut acc = vec![0i32; row_len];
    for (dy, (&first, weights)) in vertical.first.iter().zip(&vertical.weights).enumerate() {
        acc.fill(1 << (PRECISION_BITS - 1));
        for (k, &w) in weights.iter().enumerate() {
            let y = first as usize - first_row + k;
            for (a, &v) in acc.iter_mut().zip(&rows[y * row_len..(y + 1) * row_len]) {
                *a += v as i32 * w;
            }
        }
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
        emit(dy, &out);
    }
}

fn horizontal_row(line: &[u8], filter: &Filter, out: &mut [u8]) {
    for ((o, &first), weights) in out.chunks_exact_mut(3).zip(&filter.first).zip(&filter.weights) {
        let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
        for (k, &w) in weights.iter().enumerate() {
            let p = (first as usize + k) * 3;
            for c in 0..3 {
                acc[c] += line[p + c] as i32 * w;
            }
        }
        for c in 0..3 {
            o[c] = clip8(acc[c]);
        }
    }
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
    fn constant_image_stays_constant() {
        let src = vec![77u8; 13 * 7 * 3];
        let mut rows = Vec::new();
        resize_rgb8(&src, 13, 7, 32, 16, |_, row| rows.extend_from_slice(row));
        assert!(rows.iter().all(|&v| v == 77));
    }
}
