//! A cache of short pieces' token ids. Words recur all through a text (Zipf), so most pieces are found here in
//! a table that stays in the processor's cache, instead of in the multi-megabyte vocabulary or by merging.
//! Entries hold the piece's bytes, so a hit is exact.

use super::vocab::{read_u32, read_u64};

/// 2^15 entries: room for the distinct words of a megabyte of European text.
const BITS: u32 = 15;
/// Longest piece kept (its bytes fill two words; the length goes in the top byte).
const MAX_BYTES: usize = 15;
/// Most ids kept per piece.
const MAX_IDS: usize = 6;

#[derive(Clone, Copy)]
struct Entry {
    key: [u64; 2],
    ids: [u32; MAX_IDS],
    count: u32,
}

pub struct PieceCache {
    entries: Vec<Entry>,
}

impl Default for PieceCache {
    fn default() -> Self {
        // An all-zero key is no piece: every key has its nonzero length in the top byte.
        PieceCache { entries: vec![Entry { key: [0; 2], ids: [0; MAX_IDS], count: 0 }; 1 << BITS] }
    }
}

/// The piece's bytes and length as two words, or None if it is too long to keep. Built from whole-word loads:
/// a copy of variable length would be a `memory.copy`, which V8 runs as a call out of the WASM code.
#[inline(always)]
fn key(piece: &[u8]) -> Option<[u64; 2]> {
    let n = piece.len();
    let word = |i: usize| read_u64(piece, i);
    let half = |i: usize| read_u32(piece, i) as u64;
    let byte = |i: usize| (piece[i] as u64) << (8 * i);
    // Short pieces by overlapping reads, which agree where they overlap.
    let head = match n {
        0 => 0,
        1..=3 => byte(0) | byte(n / 2) | byte(n - 1),
        4..=7 => half(0) | half(n - 4) << (8 * (n - 4)),
        8..=MAX_BYTES => word(0),
        _ => return None,
    };
    let tail = if n > 8 { word(n - 8) >> (8 * (16 - n)) } else { 0 };
    Some([head, tail | (n as u64) << 56])
}

#[inline(always)]
fn slot(key: &[u64; 2]) -> usize {
    let h = (key[0] ^ key[1].rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> (64 - BITS)) as usize
}

impl PieceCache {
    /// The ids of `piece`, if cached.
    #[inline(always)]
    pub fn get(&self, piece: &[u8]) -> Option<&[u32]> {
        let key = key(piece)?;
        let entry = &self.entries[slot(&key)];
        if entry.key == key {
            Some(&entry.ids[..entry.count as usize])
        } else {
            None
        }
    }

    /// Remembers the ids of `piece` (when short enough), replacing whatever shared its slot.
    #[inline(always)]
    pub fn put(&mut self, piece: &[u8], ids: &[u32]) {
        if let (Some(key), true) = (key(piece), ids.len() <= MAX_IDS) {
            let entry = &mut self.entries[slot(&key)];
            entry.key = key;
            for (slot, &id) in entry.ids.iter_mut().zip(ids) {
                *slot = id;
            }
            entry.count = ids.len() as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hold_the_bytes_zero_padded_and_the_length() {
        let bytes: Vec<u8> = (1..=16).map(|i| i * 15).collect();
        for n in 0..=MAX_BYTES {
            let mut buf = [0u8; 16];
            buf[..n].copy_from_slice(&bytes[..n]);
            buf[15] = n as u8;
            let word = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().unwrap());
            let want = [word(0), word(8)];
            assert_eq!(key(&bytes[..n]), Some(want), "{} bytes", n);
        }
        assert_eq!(key(&bytes), None);
    }

    #[test]
    fn keeps_short_pieces_exactly() {
        let mut cache = PieceCache::default();
        assert_eq!(cache.get(b" the"), None);
        cache.put(b" the", &[1278]);
        cache.put(b"abc\0", &[1, 2]);
        assert_eq!(cache.get(b" the"), Some(&[1278][..]));
        assert_eq!(cache.get(b"abc\0"), Some(&[1, 2][..]));
        assert_eq!(cache.get(b"abc"), None); // not confused with its zero-padded form
        cache.put(b"0123456789abcdef", &[7]); // too long: not kept
        assert_eq!(cache.get(b"0123456789abcdef"), None);
        cache.put(b"many", &[1, 2, 3, 4, 5, 6, 7]); // too many ids: not kept
        assert_eq!(cache.get(b"many"), None);
    }
}
