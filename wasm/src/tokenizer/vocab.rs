//! The BPE vocabulary: token byte strings in rank order and a hash table from bytes to rank, kept together in
//! one byte buffer (the "image") whose layout is also the cache format, so a cached vocabulary is ready as soon
//! as its bytes are in memory.
//!
//! Image layout, little-endian: `slots: [u64; capacity]`, `ends: [u32; n]`, `blob: [u8]`. Token r is
//! `blob[ends[r - 1]..ends[r]]`. A slot holds `(tag << 32) | (rank + 1)`, 0 when empty; the tag (32 bits of the
//! hash) rejects almost every non-matching slot without comparing bytes.

/// Token byte strings in rank order, stored back to back: the input a vocabulary is built from.
#[derive(Clone, Default)]
pub struct TokenBytes {
    pub blob: Vec<u8>,
    /// `ends[r]` is where token `r` ends in `blob`; it starts where token `r - 1` ends.
    pub ends: Vec<u32>,
}

impl TokenBytes {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.blob.extend_from_slice(bytes);
        self.ends.push(self.blob.len() as u32);
    }

    pub fn get(&self, rank: usize) -> &[u8] {
        let start = if rank == 0 { 0 } else { self.ends[rank - 1] as usize };
        &self.blob[start..self.ends[rank] as usize]
    }

    pub fn truncate(&mut self, len: usize) {
        if len < self.ends.len() {
            self.ends.truncate(len);
            self.blob.truncate(self.ends.last().map_or(0, |&e| e as usize));
        }
    }
}

/// Most tokens a vocabulary may have: ranks and the empty marker fit in 20 bits (Tekken has 130,072).
pub const MAX_TOKENS: usize = (1 << 20) - 1;

pub struct Vocab {
    /// Holds the image at `image_at..`; bytes before it belong to whoever handed the buffer over (a cache file).
    buf: Vec<u8>,
    image_at: usize,
    n: usize,
    capacity: usize,
    shift: u32,
    ends_at: usize,
    blob_at: usize,
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// A fast hash of a short byte string. Reads overlap for lengths that are not a multiple of 8, which is fine
/// because the length is hashed too.
#[inline(always)]
fn hash(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    let mut h = (n as u64).wrapping_mul(K);
    if n >= 8 {
        let mut i = 0;
        while i + 8 <= n {
            h = (h ^ read_u64(bytes, i)).wrapping_mul(K).rotate_left(31);
            i += 8;
        }
        if i < n {
            h = (h ^ read_u64(bytes, n - 8)).wrapping_mul(K).rotate_left(31);
        }
    } else if n >= 4 {
        let lo = read_u32(bytes, 0) as u64;
        let hi = read_u32(bytes, n - 4) as u64;
        h = (h ^ (lo | (hi << 32))).wrapping_mul(K);
    } else if n > 0 {
        let v = bytes[0] as u64 | (bytes[n / 2] as u64) << 8 | (bytes[n - 1] as u64) << 16;
        h = (h ^ v).wrapping_mul(K);
    }
    (h ^ (h >> 29)).wrapping_mul(K)
}

/// Byte-string equality by whole-word loads: `==` on slices is a call to a byte loop in WASM.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if read_u64(a, i) != read_u64(b, i) {
                return false;
            }
            i += 8;
        }
        read_u64(a, n - 8) == read_u64(b, n - 8)
    } else if n >= 4 {
        read_u32(a, 0) == read_u32(b, 0) && read_u32(a, n - 4) == read_u32(b, n - 4)
    } else {
        n == 0 || (a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1])
    }
}

#[inline(always)]
pub(super) fn read_u64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

#[inline(always)]
pub(super) fn read_u32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

impl Vocab {
    /// Builds the hash table and the image; two ranks with the same bytes are an error, as in the reference.
    pub fn new(tokens: TokenBytes) -> Result<Vocab, String> {
        if tokens.len() > MAX_TOKENS {
            return Err(format!("has {} tokens, more than the {} supported", tokens.len(), MAX_TOKENS));
        }
        let bits = (tokens.len().max(1) * 2).next_power_of_two().trailing_zeros().max(4);
        let (capacity, shift) = (1usize << bits, 64 - bits);
        let mut slots = vec![0u64; capacity];
        for rank in 0..tokens.len() {
            let bytes = tokens.get(rank);
            let h = hash(bytes);
            let mut slot = (h >> shift) as usize;
            loop {
                let entry = slots[slot];
                if entry == 0 {
                    slots[slot] = ((h as u32 as u64) << 32) | (rank as u64 + 1);
                    break;
                }
                let other = (entry as u32 - 1) as usize;
                if (entry >> 32) as u32 == h as u32 && tokens.get(other) == bytes {
                    return Err(format!("tokens {} and {} have the same bytes {:?}", other, rank, Escaped(bytes)));
                }
                slot = (slot + 1) & (capacity - 1);
            }
        }
        let mut buf = Vec::with_capacity(8 * capacity + 4 * tokens.len() + tokens.blob.len());
        buf.extend(slots.iter().flat_map(|s| s.to_le_bytes()));
        buf.extend(tokens.ends.iter().flat_map(|e| e.to_le_bytes()));
        buf.extend_from_slice(&tokens.blob);
        Vocab::from_image(buf, 0, tokens.len(), capacity)
    }

    /// A vocabulary over an image saved from [`Vocab::image`] at `buf[image_at..]`, with `n` tokens and a
    /// table of `capacity` slots. Only the shape is checked: the bytes come from a checksummed cache this code
    /// wrote.
    pub fn from_image(buf: Vec<u8>, image_at: usize, n: usize, capacity: usize) -> Result<Vocab, String> {
        let ends_at = image_at + 8 * capacity;
        let blob_at = ends_at + 4 * n;
        if capacity < 16 || !capacity.is_power_of_two() || capacity < n || n > MAX_TOKENS || blob_at > buf.len() {
            return Err("the vocabulary image does not fit its sizes".into());
        }
        let vocab = Vocab { buf, image_at, n, capacity, shift: 64 - capacity.trailing_zeros(), ends_at, blob_at };
        if n > 0 && vocab.end(n - 1) != vocab.buf.len() - blob_at {
            return Err("the vocabulary image's token bytes do not end with the image".into());
        }
        Ok(vocab)
    }

    /// The image bytes, to be saved; `capacity` and `len` go with them.
    pub fn image(&self) -> &[u8] {
        &self.buf[self.image_at..]
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.n
    }

    #[inline(always)]
    fn end(&self, rank: usize) -> usize {
        read_u32(&self.buf, self.ends_at + 4 * rank) as usize
    }

    /// Bytes of token `rank` (< `len()`).
    #[inline(always)]
    pub fn token(&self, rank: usize) -> &[u8] {
        let start = if rank == 0 { 0 } else { self.end(rank - 1) };
        &self.buf[self.blob_at + start..self.blob_at + self.end(rank)]
    }

    /// Rank of a byte string, if it is a token.
    #[inline(always)]
    pub fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let h = hash(bytes);
        let tag = h as u32;
        let mut slot = (h >> self.shift) as usize;
        loop {
            let entry = read_u64(&self.buf, self.image_at + 8 * slot);
            if entry == 0 {
                return None;
            }
            if (entry >> 32) as u32 == tag {
                let rank = entry as u32 - 1;
                if same(self.token(rank as usize), bytes) {
                    return Some(rank);
                }
            }
            slot = (slot + 1) & (self.capacity - 1);
        }
    }
}

/// Bytes shown as text where printable, `\xNN` elsewhere.
pub struct Escaped<'a>(pub &'a [u8]);

impl std::fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(list: &[&[u8]]) -> TokenBytes {
        let mut t = TokenBytes::default();
        for b in list {
            t.push(b);
        }
        t
    }

    #[test]
    fn finds_every_token_and_nothing_else() {
        let mut t = TokenBytes::default();
        for b in 0..=255u8 {
            t.push(&[b]);
        }
        let words: Vec<Vec<u8>> =
            (0..5000u32).map(|i| format!("w{}_{}", i, "x".repeat((i % 23) as usize)).into_bytes()).collect();
        for w in &words {
            t.push(w);
        }
        let vocab = Vocab::new(t).unwrap();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(vocab.rank(w), Some(256 + i as u32));
            assert_eq!(vocab.token(256 + i), &w[..]);
        }
        assert_eq!(vocab.rank(b"a"), Some(97));
        assert_eq!(vocab.rank(b""), None);
        assert_eq!(vocab.rank(b"w1_y"), None);
        assert_eq!(vocab.rank(b"w12345678901234567890"), None);
    }

    #[test]
    fn same_compares_every_byte() {
        let a: Vec<u8> = (0..20).collect();
        for n in 0..=20 {
            assert!(same(&a[..n], &a[..n]));
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 0x40;
                assert!(!same(&a[..n], &b), "{} bytes, byte {} differs", n, i);
            }
        }
        assert!(!same(b"ab", b"abc"));
    }

    #[test]
    fn an_image_at_an_offset_is_the_same_vocabulary() {
        let vocab = Vocab::new(tokens(&[b"a", b"bc", b"def"])).unwrap();
        let mut buf = b"header".to_vec();
        buf.extend_from_slice(vocab.image());
        let moved = Vocab::from_image(buf, 6, vocab.len(), vocab.capacity()).unwrap();
        assert_eq!((moved.rank(b"bc"), moved.rank(b"def"), moved.token(2)), (Some(1), Some(2), &b"def"[..]));
        assert!(Vocab::from_image(vocab.image()[1..].to_vec(), 0, 3, vocab.capacity()).is_err());
    }

    #[test]
    fn duplicate_bytes_are_an_error() {
        let err = Vocab::new(tokens(&[b"a", b"bc", b"a"])).err().unwrap();
        assert_eq!(err, "tokens 0 and 2 have the same bytes \"a\"");
    }

    #[test]
    fn truncate_keeps_the_first_tokens() {
        let mut t = tokens(&[b"a", b"bc", b"def"]);
        t.truncate(2);
        assert_eq!((t.len(), t.get(1), t.blob.len()), (2, &b"bc"[..], 3));
    }
}
