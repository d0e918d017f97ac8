//! The vector types the simd128 kernels are written in: WASM SIMD when the build enables simd128, plain arrays
//! otherwise. Every operation is lane-wise wrapping integer arithmetic or a saturating narrowing, defined the
//! same way in both backends, so the native unit tests check the arithmetic the WASM build runs.

pub use backend::{I16x8, I32x4};

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod backend {
    use core::arch::wasm32::*;

    /// Four `i32` lanes.
    #[derive(Clone, Copy)]
    pub struct I32x4(v128);

    /// Eight `i16` lanes.
    #[derive(Clone, Copy)]
    pub struct I16x8(v128);

    impl I32x4 {
        #[inline(always)]
        pub fn splat(v: i32) -> Self {
            I32x4(i32x4_splat(v))
        }
        /// `s[at..at + 8]` sign-extended, as two vectors.
        #[inline(always)]
        pub fn load_i16(s: &[i16], at: usize) -> [Self; 2] {
            let s = &s[at..at + 8];
            // SAFETY: the 16 bytes read are inside `s` (sliced just above); unaligned loads are allowed.
            let v = unsafe { v128_load(s.as_ptr() as *const v128) };
            [I32x4(i32x4_extend_low_i16x8(v)), I32x4(i32x4_extend_high_i16x8(v))]
        }
        /// `s[at..at + 8]` zero-extended, as two vectors.
        #[inline(always)]
        pub fn load_u16(s: &[u16], at: usize) -> [Self; 2] {
            let s = &s[at..at + 8];
            // SAFETY: as in `load_i16`.
            let v = unsafe { v128_load(s.as_ptr() as *const v128) };
            [I32x4(u32x4_extend_low_u16x8(v)), I32x4(u32x4_extend_high_u16x8(v))]
        }
        /// `s[at..at + 16]` zero-extended, as four vectors.
        #[inline(always)]
        pub fn load_u8(s: &[u8], at: usize) -> [Self; 4] {
            let s = &s[at..at + 16];
            // SAFETY: as in `load_i16`.
            let v = unsafe { v128_load(s.as_ptr() as *const v128) };
            let (lo, hi) = (u16x8_extend_low_u8x16(v), u16x8_extend_high_u8x16(v));
            [
                I32x4(u32x4_extend_low_u16x8(lo)),
                I32x4(u32x4_extend_high_u16x8(lo)),
                I32x4(u32x4_extend_low_u16x8(hi)),
                I32x4(u32x4_extend_high_u16x8(hi)),
            ]
        }
        #[inline(always)]
        pub fn shl(self, n: u32) -> Self {
            I32x4(i32x4_shl(self.0, n))
        }
        /// Arithmetic shift right.
        #[inline(always)]
        pub fn shr(self, n: u32) -> Self {
            I32x4(i32x4_shr(self.0, n))
        }
        #[inline(always)]
        pub fn or(self, o: Self) -> Self {
            I32x4(v128_or(self.0, o.0))
        }
        #[inline(always)]
        pub fn min(self, o: Self) -> Self {
            I32x4(i32x4_min(self.0, o.0))
        }
        #[inline(always)]
        pub fn max(self, o: Self) -> Self {
            I32x4(i32x4_max(self.0, o.0))
        }
        #[inline(always)]
        pub fn any_nonzero(self) -> bool {
            v128_any_true(self.0)
        }
        /// Rows to columns.
        #[inline(always)]
        pub fn transpose([a, b, c, d]: [Self; 4]) -> [Self; 4] {
            let ab_lo = i32x4_shuffle::<0, 4, 1, 5>(a.0, b.0);
            let ab_hi = i32x4_shuffle::<2, 6, 3, 7>(a.0, b.0);
            let cd_lo = i32x4_shuffle::<0, 4, 1, 5>(c.0, d.0);
            let cd_hi = i32x4_shuffle::<2, 6, 3, 7>(c.0, d.0);
            [
                I32x4(i32x4_shuffle::<0, 1, 4, 5>(ab_lo, cd_lo)),
                I32x4(i32x4_shuffle::<2, 3, 6, 7>(ab_lo, cd_lo)),
                I32x4(i32x4_shuffle::<0, 1, 4, 5>(ab_hi, cd_hi)),
                I32x4(i32x4_shuffle::<2, 3, 6, 7>(ab_hi, cd_hi)),
            ]
        }
        /// Eight lanes, each clamped to 0..=255, stored as bytes at `out[at..at + 8]`.
        #[inline(always)]
        pub fn store_u8x8(lo: Self, hi: Self, out: &mut [u8], at: usize) {
            let out = &mut out[at..at + 8];
            let bytes = u8x16_narrow_i16x8(i16x8_narrow_i32x4(lo.0, hi.0), i16x8_splat(0));
            // SAFETY: the eight bytes written are inside `out` (sliced just above).
            unsafe { v128_store64_lane::<0>(bytes, out.as_mut_ptr() as *mut u64) }
        }
        /// Sixteen pixels, each channel's lanes clamped to 0..=255, stored interleaved (RGBRGB...) at
        /// `out[at..at + 48]`.
        #[inline(always)]
        pub fn store_rgb16(r: [Self; 4], g: [Self; 4], b: [Self; 4], out: &mut [u8], at: usize) {
            let out = &mut out[at..at + 48];
            let pack = |v: [Self; 4]| {
                u8x16_narrow_i16x8(i16x8_narrow_i32x4(v[0].0, v[1].0), i16x8_narrow_i32x4(v[2].0, v[3].0))
            };
            let (r, g, b) = (pack(r), pack(g), pack(b));
            // R and G interleaved for pixels 0..5, 5..10, 10..16 (B's places left as don't-care), then B in.
            let rg0 = i8x16_shuffle::<0, 16, 0, 1, 17, 0, 2, 18, 0, 3, 19, 0, 4, 20, 0, 5>(r, g);
            let rg1 = i8x16_shuffle::<21, 0, 6, 22, 0, 7, 23, 0, 8, 24, 0, 9, 25, 0, 10, 26>(r, g);
            let rg2 = i8x16_shuffle::<0, 11, 27, 0, 12, 28, 0, 13, 29, 0, 14, 30, 0, 15, 31, 0>(r, g);
            let out0 = i8x16_shuffle::<0, 1, 16, 3, 4, 17, 6, 7, 18, 9, 10, 19, 12, 13, 20, 15>(rg0, b);
            let out1 = i8x16_shuffle::<0, 21, 2, 3, 22, 5, 6, 23, 8, 9, 24, 11, 12, 25, 14, 15>(rg1, b);
            let out2 = i8x16_shuffle::<26, 1, 2, 27, 4, 5, 28, 7, 8, 29, 10, 11, 30, 13, 14, 31>(rg2, b);
            // SAFETY: the 48 bytes written are inside `out` (sliced just above).
            unsafe {
                let p = out.as_mut_ptr() as *mut v128;
                v128_store(p, out0);
                v128_store(p.add(1), out1);
                v128_store(p.add(2), out2);
            }
        }
    }

    impl I16x8 {
        #[inline(always)]
        pub fn splat(v: i16) -> Self {
            I16x8(i16x8_splat(v))
        }
        /// `s[at..at + 8]` zero-extended.
        #[inline(always)]
        pub fn load_u8(s: &[u8], at: usize) -> Self {
            let s = &s[at..at + 8];
            // SAFETY: the eight bytes read are inside `s` (sliced just above); unaligned loads are allowed.
            I16x8(u16x8_extend_low_u8x16(unsafe { v128_load64_zero(s.as_ptr() as *const u64) }))
        }
        /// Logical shift right.
        #[inline(always)]
        pub fn shr(self, n: u32) -> Self {
            I16x8(u16x8_shr(self.0, n))
        }
        /// Lanes of `a` and `b` alternating (a0 b0 a1 b1 ...), each clamped to 0..=255, stored as bytes at
        /// `out[at..at + 16]`.
        #[inline(always)]
        pub fn store_interleaved_u8(a: Self, b: Self, out: &mut [u8], at: usize) {
            let out = &mut out[at..at + 16];
            let bytes = u8x16_narrow_i16x8(a.0, b.0);
            let v = i8x16_shuffle::<0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15>(bytes, bytes);
            // SAFETY: the 16 bytes written are inside `out` (sliced just above).
            unsafe { v128_store(out.as_mut_ptr() as *mut v128, v) }
        }
    }

    macro_rules! binary {
        ($t:ident, $tr:ident, $f:ident, $op:ident) => {
            impl core::ops::$tr for $t {
                type Output = $t;
                #[inline(always)]
                fn $f(self, o: $t) -> $t {
                    $t($op(self.0, o.0))
                }
            }
        };
    }
    binary!(I32x4, Add, add, i32x4_add);
    binary!(I32x4, Sub, sub, i32x4_sub);
    binary!(I32x4, Mul, mul, i32x4_mul);
    binary!(I16x8, Add, add, i16x8_add);
    binary!(I16x8, Mul, mul, i16x8_mul);
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod backend {
    #[derive(Clone, Copy)]
    pub struct I32x4([i32; 4]);

    #[derive(Clone, Copy)]
    pub struct I16x8([i16; 8]);

    fn clamp_u8(v: i32) -> u8 {
        v.max(0).min(255) as u8
    }

    impl I32x4 {
        pub fn splat(v: i32) -> Self {
            I32x4([v; 4])
        }
        pub fn load_i16(s: &[i16], at: usize) -> [Self; 2] {
            let s = &s[at..at + 8];
            [0, 4].map(|o| I32x4([0, 1, 2, 3].map(|i| i32::from(s[o + i]))))
        }
        pub fn load_u16(s: &[u16], at: usize) -> [Self; 2] {
            let s = &s[at..at + 8];
            [0, 4].map(|o| I32x4([0, 1, 2, 3].map(|i| i32::from(s[o + i]))))
        }
        pub fn load_u8(s: &[u8], at: usize) -> [Self; 4] {
            let s = &s[at..at + 16];
            [0, 4, 8, 12].map(|o| I32x4([0, 1, 2, 3].map(|i| i32::from(s[o + i]))))
        }
        pub fn shl(self, n: u32) -> Self {
            I32x4(self.0.map(|v| v.wrapping_shl(n)))
        }
        pub fn shr(self, n: u32) -> Self {
            I32x4(self.0.map(|v| v >> n))
        }
        pub fn or(self, o: Self) -> Self {
            I32x4([0, 1, 2, 3].map(|i| self.0[i] | o.0[i]))
        }
        pub fn min(self, o: Self) -> Self {
            I32x4([0, 1, 2, 3].map(|i| self.0[i].min(o.0[i])))
        }
        pub fn max(self, o: Self) -> Self {
            I32x4([0, 1, 2, 3].map(|i| self.0[i].max(o.0[i])))
        }
        pub fn any_nonzero(self) -> bool {
            self.0.iter().any(|&v| v != 0)
        }
        pub fn transpose(rows: [Self; 4]) -> [Self; 4] {
            [0, 1, 2, 3].map(|c| I32x4([0, 1, 2, 3].map(|r| rows[r].0[c])))
        }
        pub fn store_u8x8(lo: Self, hi: Self, out: &mut [u8], at: usize) {
            let out = &mut out[at..at + 8];
            for i in 0..4 {
                out[i] = clamp_u8(lo.0[i]);
                out[4 + i] = clamp_u8(hi.0[i]);
            }
        }
        pub fn store_rgb16(r: [Self; 4], g: [Self; 4], b: [Self; 4], out: &mut [u8], at: usize) {
            let out = &mut out[at..at + 48];
            for p in 0..16 {
                out[3 * p] = clamp_u8(r[p / 4].0[p % 4]);
                out[3 * p + 1] = clamp_u8(g[p / 4].0[p % 4]);
                out[3 * p + 2] = clamp_u8(b[p / 4].0[p % 4]);
            }
        }
    }

    impl I16x8 {
        pub fn splat(v: i16) -> Self {
            I16x8([v; 8])
        }
        pub fn load_u8(s: &[u8], at: usize) -> Self {
            let s = &s[at..at + 8];
            I16x8([0, 1, 2, 3, 4, 5, 6, 7].map(|i| i16::from(s[i])))
        }
        pub fn shr(self, n: u32) -> Self {
            I16x8(self.0.map(|v| ((v as u16) >> n) as i16))
        }
        pub fn store_interleaved_u8(a: Self, b: Self, out: &mut [u8], at: usize) {
            let out = &mut out[at..at + 16];
            for i in 0..8 {
                out[2 * i] = clamp_u8(i32::from(a.0[i]));
                out[2 * i + 1] = clamp_u8(i32::from(b.0[i]));
            }
        }
    }

    macro_rules! binary {
        ($t:ident, $n:expr, $tr:ident, $f:ident, $op:ident) => {
            impl core::ops::$tr for $t {
                type Output = $t;
                fn $f(self, o: $t) -> $t {
                    let mut out = self.0;
                    for i in 0..$n {
                        out[i] = self.0[i].$op(o.0[i]);
                    }
                    $t(out)
                }
            }
        };
    }
    binary!(I32x4, 4, Add, add, wrapping_add);
    binary!(I32x4, 4, Sub, sub, wrapping_sub);
    binary!(I32x4, 4, Mul, mul, wrapping_mul);
    binary!(I16x8, 8, Add, add, wrapping_add);
    binary!(I16x8, 8, Mul, mul, wrapping_mul);
}
