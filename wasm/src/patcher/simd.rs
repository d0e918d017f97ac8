//! Vectors of four 32-bit or eight 16-bit lanes for the resize and normalize loops: WASM SIMD (simd128) when
//! the build enables it, plain arrays otherwise. Every operation is IEEE float, wrapping or saturating integer
//! arithmetic, or a fixed rearrangement of lanes, so both backends give bit-identical results and the native
//! unit tests check the same arithmetic the WASM build runs.

pub use backend::{F32x4, I16x8, I32x4};

/// The last pixel's R, G, B and a zero, for loads of four bytes that would run past the end. Kept out of
/// line so that the compiler does not speculate its loads into the common path.
#[cold]
#[inline(never)]
fn last_pixel(bytes: &[u8], at: usize) -> [u8; 4] {
    [bytes[at], bytes[at + 1], bytes[at + 2], 0]
}

/// Up to eight bytes from `at` to the end, zero-padded: the second pixel of a pair may be past the end.
#[cold]
#[inline(never)]
fn tail_bytes(bytes: &[u8], at: usize) -> [u8; 8] {
    let mut out = [0; 8];
    for (o, b) in out.iter_mut().zip(&bytes[at..]) {
        *o = *b;
    }
    out
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod backend {
    use super::last_pixel;
    use core::arch::wasm32::*;

    #[derive(Clone, Copy)]
    pub struct F32x4(v128);

    #[derive(Clone, Copy)]
    pub struct I32x4(v128);

    #[derive(Clone, Copy)]
    pub struct I16x8(v128);

    impl I16x8 {
        #[inline(always)]
        pub fn new(l: [i16; 8]) -> Self {
            I16x8(i16x8(l[0], l[1], l[2], l[3], l[4], l[5], l[6], l[7]))
        }
        /// Two adjacent RGB pixels at byte `at`, paired per channel: R0 R1 G0 G1 B0 B1 and two lanes that the
        /// weights must zero.
        #[inline(always)]
        pub fn pixel_pair(bytes: &[u8], at: usize) -> Self {
            let v = if at + 8 <= bytes.len() {
                // SAFETY: the eight bytes read are inside `bytes` (checked just above).
                unsafe { v128_load64_zero(bytes.as_ptr().add(at) as *const u64) }
            } else {
                u64x2(u64::from_le_bytes(super::tail_bytes(bytes, at)), 0)
            };
            // Widened to 16-bit lanes R0 G0 B0 R1 G1 B1 R2 G2, then paired by a constant shuffle (cheaper than a
            // byte swizzle with zeroing lanes); lanes 6 and 7 keep R2 G2, which the weights there zero.
            let wide = u16x8_extend_low_u8x16(v);
            I16x8(i16x8_shuffle::<0, 3, 1, 4, 2, 5, 6, 7>(wide, wide))
        }
        /// The eight bytes at `a` and the eight at `b` interleaved, as 16-bit lanes: [a0 b0 a1 b1 a2 b2 a3 b3]
        /// and [a4 b4 .. a7 b7].
        #[inline(always)]
        pub fn row_pair(bytes: &[u8], a: usize, b: usize) -> [Self; 2] {
            let (a, b) = (&bytes[a..a + 8], &bytes[b..b + 8]);
            // SAFETY: `a` and `b` hold the eight bytes read from each.
            let (a, b) = unsafe { (v128_load64_zero(a.as_ptr() as *const u64), v128_load64_zero(b.as_ptr() as *const u64)) };
            let v = i8x16_shuffle::<0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23>(a, b);
            [I16x8(u16x8_extend_low_u8x16(v)), I16x8(u16x8_extend_high_u8x16(v))]
        }
        /// Lane-pair products summed: lane i is a[2i]·b[2i] + a[2i+1]·b[2i+1].
        #[inline(always)]
        pub fn dot(self, o: Self) -> I32x4 {
            I32x4(i32x4_dot_i16x8(self.0, o.0))
        }
    }

    /// Bytes `at..at + 4` as four 32-bit lanes: one 32-bit load where the bytes are in bounds.
    #[inline(always)]
    fn widen(bytes: &[u8], at: usize) -> v128 {
        let word = if at + 4 <= bytes.len() {
            // SAFETY: the four bytes read are inside `bytes` (checked just above); unaligned loads are allowed.
            unsafe { v128_load32_zero(bytes.as_ptr().add(at) as *const u32) }
        } else {
            u32x4(u32::from_le_bytes(last_pixel(bytes, at)), 0, 0, 0)
        };
        i32x4_extend_low_i16x8(i16x8_extend_low_u8x16(word))
    }

    impl F32x4 {
        #[inline(always)]
        pub fn splat(v: f32) -> Self {
            F32x4(f32x4_splat(v))
        }
        #[inline(always)]
        pub fn new(a: f32, b: f32, c: f32, d: f32) -> Self {
            F32x4(f32x4(a, b, c, d))
        }
        /// The RGB pixel at byte `at` (and one more byte) as floats.
        #[inline(always)]
        pub fn from_rgb8(bytes: &[u8], at: usize) -> Self {
            // Integer to float by placing it in the mantissa of 2^23 and subtracting 2^23 (exact below 2^23):
            // LLVM 14 would turn an extend-and-convert into per-lane scalar conversions.
            let magic = v128_or(widen(bytes, at), i32x4_splat(0x4B00_0000));
            F32x4(f32x4_sub(magic, f32x4_splat(8_388_608.0)))
        }
        /// The four RGB pixels at bytes `at`, `at + 3`, `at + 6`, `at + 9` (each with the byte after it) from
        /// one 16-byte load.
        #[inline(always)]
        pub fn rgb_quad(bytes: &[u8], at: usize) -> [Self; 4] {
            if at + 16 > bytes.len() {
                return [0, 3, 6, 9].map(|d| Self::from_rgb8(bytes, at + d));
            }
            // SAFETY: the sixteen bytes read are inside `bytes` (checked just above).
            let v = unsafe { v128_load(bytes.as_ptr().add(at) as *const v128) };
            // Each pixel's bytes into the low byte of the four lanes (swizzle indices 16 and up give zero),
            // then integer to float through the mantissa of 2^23.
            let float =
                |lanes: v128| F32x4(f32x4_sub(v128_or(lanes, i32x4_splat(0x4B00_0000)), f32x4_splat(8_388_608.0)));
            [
                float(i8x16_swizzle(v, i8x16(0, 16, 16, 16, 1, 16, 16, 16, 2, 16, 16, 16, 3, 16, 16, 16))),
                float(i8x16_swizzle(v, i8x16(3, 16, 16, 16, 4, 16, 16, 16, 5, 16, 16, 16, 6, 16, 16, 16))),
                float(i8x16_swizzle(v, i8x16(6, 16, 16, 16, 7, 16, 16, 16, 8, 16, 16, 16, 9, 16, 16, 16))),
                float(i8x16_swizzle(v, i8x16(9, 16, 16, 16, 10, 16, 16, 16, 11, 16, 16, 16, 12, 16, 16, 16))),
            ]
        }
        #[inline(always)]
        pub fn lanes(self) -> [f32; 4] {
            [
                f32x4_extract_lane::<0>(self.0),
                f32x4_extract_lane::<1>(self.0),
                f32x4_extract_lane::<2>(self.0),
                f32x4_extract_lane::<3>(self.0),
            ]
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            F32x4(f32x4_mul(self.0, o.0))
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            F32x4(f32x4_add(self.0, o.0))
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            F32x4(f32x4_sub(self.0, o.0))
        }
        #[inline(always)]
        pub fn div(self, o: Self) -> Self {
            F32x4(f32x4_div(self.0, o.0))
        }
    }

    impl I32x4 {
        #[inline(always)]
        pub fn splat(v: i32) -> Self {
            I32x4(i32x4_splat(v))
        }
        #[inline(always)]
        pub fn lanes(self) -> [i32; 4] {
            [
                i32x4_extract_lane::<0>(self.0),
                i32x4_extract_lane::<1>(self.0),
                i32x4_extract_lane::<2>(self.0),
                i32x4_extract_lane::<3>(self.0),
            ]
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            I32x4(i32x4_add(self.0, o.0))
        }
        #[inline(always)]
        pub fn shl(self, shift: u32) -> Self {
            I32x4(i32x4_shl(self.0, shift))
        }
        /// Arithmetic shift right, then clamp to 0..=255.
        #[inline(always)]
        pub fn shr(self, shift: u32) -> Self {
            I32x4(i32x4_shr(self.0, shift))
        }
        /// The lanes of `a` then `b`, clamped to 0..=255 (saturating narrows).
        #[inline(always)]
        pub fn pack_u8(a: Self, b: Self) -> [u8; 8] {
            let v = u8x16_narrow_i16x8(i16x8_narrow_i32x4(a.0, b.0), i16x8_splat(0));
            u64x2_extract_lane::<0>(v).to_le_bytes()
        }
        #[inline(always)]
        pub fn shr_clamp_u8(self, shift: u32) -> Self {
            I32x4(i32x4_min(i32x4_max(i32x4_shr(self.0, shift), i32x4_splat(0)), i32x4_splat(255)))
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod backend {
    use super::last_pixel;

    fn four_bytes(bytes: &[u8], at: usize) -> [u8; 4] {
        match bytes.get(at..at + 4) {
            Some(b) => [b[0], b[1], b[2], b[3]],
            None => last_pixel(bytes, at),
        }
    }

    #[derive(Clone, Copy)]
    pub struct F32x4([f32; 4]);

    #[derive(Clone, Copy)]
    pub struct I32x4([i32; 4]);

    #[derive(Clone, Copy)]
    pub struct I16x8([i16; 8]);

    impl I16x8 {
        pub fn new(lanes: [i16; 8]) -> Self {
            I16x8(lanes)
        }
        pub fn pixel_pair(bytes: &[u8], at: usize) -> Self {
            let b = match bytes.get(at..at + 8) {
                Some(b) => [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]],
                None => super::tail_bytes(bytes, at),
            };
            I16x8([b[0], b[3], b[1], b[4], b[2], b[5], b[6], b[7]].map(|v| v as i16))
        }
        pub fn row_pair(bytes: &[u8], a: usize, b: usize) -> [Self; 2] {
            let (a, b) = (&bytes[a..a + 8], &bytes[b..b + 8]);
            [0, 4].map(|h| I16x8(std::array::from_fn(|i| [a, b][i % 2][h + i / 2] as i16)))
        }
        pub fn dot(self, o: Self) -> I32x4 {
            let (a, b) = (self.0, o.0);
            I32x4(
                [0, 1, 2, 3].map(|i| {
                    (a[2 * i] as i32 * b[2 * i] as i32).wrapping_add(a[2 * i + 1] as i32 * b[2 * i + 1] as i32)
                }),
            )
        }
    }

    impl F32x4 {
        pub fn splat(v: f32) -> Self {
            F32x4([v; 4])
        }
        pub fn new(a: f32, b: f32, c: f32, d: f32) -> Self {
            F32x4([a, b, c, d])
        }
        pub fn from_rgb8(bytes: &[u8], at: usize) -> Self {
            F32x4(four_bytes(bytes, at).map(|v| v as f32))
        }
        pub fn rgb_quad(bytes: &[u8], at: usize) -> [Self; 4] {
            [0, 3, 6, 9].map(|d| Self::from_rgb8(bytes, at + d))
        }
        pub fn lanes(self) -> [f32; 4] {
            self.0
        }
        fn zip(self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
            F32x4([f(self.0[0], o.0[0]), f(self.0[1], o.0[1]), f(self.0[2], o.0[2]), f(self.0[3], o.0[3])])
        }
        pub fn mul(self, o: Self) -> Self {
            self.zip(o, |a, b| a * b)
        }
        pub fn add(self, o: Self) -> Self {
            self.zip(o, |a, b| a + b)
        }
        pub fn sub(self, o: Self) -> Self {
            self.zip(o, |a, b| a - b)
        }
        pub fn div(self, o: Self) -> Self {
            self.zip(o, |a, b| a / b)
        }
    }

    impl I32x4 {
        pub fn splat(v: i32) -> Self {
            I32x4([v; 4])
        }
        pub fn lanes(self) -> [i32; 4] {
            self.0
        }
        pub fn add(self, o: Self) -> Self {
            I32x4([0, 1, 2, 3].map(|i| self.0[i].wrapping_add(o.0[i])))
        }
        pub fn shl(self, shift: u32) -> Self {
            I32x4(self.0.map(|v| v << shift))
        }
        pub fn shr(self, shift: u32) -> Self {
            I32x4(self.0.map(|v| v >> shift))
        }
        pub fn pack_u8(a: Self, b: Self) -> [u8; 8] {
            std::array::from_fn(|i| [a, b][i / 4].0[i % 4].clamp(0, 255) as u8)
        }
        pub fn shr_clamp_u8(self, shift: u32) -> Self {
            I32x4(self.0.map(|v| (v >> shift).clamp(0, 255)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_pixels_and_stops_at_the_end() {
        let bytes = [1u8, 2, 3, 4, 5, 6];
        assert_eq!(F32x4::from_rgb8(&bytes, 0).lanes(), [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(F32x4::from_rgb8(&bytes, 3).lanes(), [4.0, 5.0, 6.0, 0.0]);
        let long: Vec<u8> = (1..=20).collect();
        for at in [0, 4, 5] {
            let quad = F32x4::rgb_quad(&long, at).map(|p| p.lanes());
            let single = [0, 3, 6, 9].map(|d| F32x4::from_rgb8(&long, at + d).lanes());
            assert_eq!(quad, single);
        }
        assert_eq!(I32x4::splat(-(1 << 22)).add(I32x4::splat(300 << 22)).shr_clamp_u8(22).lanes(), [255; 4]);
        let pair = I16x8::pixel_pair(&bytes, 0);
        assert_eq!(pair.dot(I16x8::new([1, 10, 1, 10, 1, 10, 1, 10])).lanes(), [41, 52, 63, 0]);
        assert_eq!(I16x8::pixel_pair(&bytes, 3).dot(I16x8::new([1; 8])).lanes(), [4, 5, 6, 0]);
        let [left, right] = I16x8::row_pair(&long, 0, 10);
        assert_eq!(left.dot(I16x8::new([1, 100, 1, 100, 1, 100, 1, 100])).lanes(), [1101, 1202, 1303, 1404]);
        assert_eq!(right.dot(I16x8::new([1; 8])).lanes(), [20, 22, 24, 26]);
        assert_eq!(I32x4::pack_u8(I32x4::splat(-3), I32x4::splat(300)), [0, 0, 0, 0, 255, 255, 255, 255]);
    }
}
