//! The BPE vocabulary: token byte strings in rank order, and a hash table from bytes to rank.

/// Token byte strings in rank order, stored back to back.
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

    #[inline(always)]
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

/// Open-addressing map from token bytes to rank. Each slot holds `(tag << 32) | (rank + 1)`, 0 when empty; the
/// tag (32 bits of the hash) rejects almost every non-matching slot without comparing bytes.
pub struct Vocab {
    pub tokens: TokenBytes,
    slots: Vec<u64>,
    shift: u32,
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

#[inline(always)]
fn read_u64(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().unwrap())
}

#[inline(always)]
fn read_u32(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

impl Vocab {
    /// Builds the table; two ranks with the same bytes are an error, as in the reference.
    pub fn new(tokens: TokenBytes) -> Result<Vocab, String> {
        let bits = (tokens.len().max(1) * 2).next_power_of_two().trailing_zeros().max(4);
        let mut vocab = Vocab { tokens, slots: vec![0; 1 << bits], shift: 64 - bits };
        for rank in 0..vocab.tokens.len() {
            let bytes = vocab.tokens.get(rank);
            let h = hash(bytes);
            let mut slot = (h >> vocab.shift) as usize;
            let mask = vocab.slots.len() - 1;
            loop {
                let entry = vocab.slots[slot];
                if entry == 0 {
                    vocab.slots[slot] = ((h as u32 as u64) << 32) | (rank as u64 + 1);
                    break;
                }
                let other = (entry as u32 - 1) as usize;
                if (entry >> 32) as u32 == h as u32 && vocab.tokens.get(other) == bytes {
                    return Err(format!("tokens {} and {} have the same bytes {:?}", other, rank, Escaped(bytes)));
                }
                slot = (slot + 1) & mask;
            }
        }
        Ok(vocab)
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Rank of a byte string, if it is a token.
    #[inline(always)]
    pub fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let h = hash(bytes);
        let tag = h as u32;
        let mask = self.slots.len() - 1;
        let mut slot = (h >> self.shift) as usize;
        loop {
            let entry = self.slots[slot];
            if entry == 0 {
                return None;
            }
            if (entry >> 32) as u32 == tag {
                let rank = entry as u32 - 1;
                if self.tokens.get(rank as usize) == bytes {
                    return Some(rank);
                }
            }
            slot = (slot + 1) & mask;
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
        let words: Vec<Vec<u8>> = (0..5000u32).map(|i| format!("w{}_{}", i, "x".repeat((i % 23) as usize)).into_bytes()).collect();
        for w in &words {
            t.push(w);
        }
        let vocab = Vocab::new(t).unwrap();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(vocab.rank(w), Some(256 + i as u32));
        }
        assert_eq!(vocab.rank(b"a"), Some(97));
        assert_eq!(vocab.rank(b""), None);
        assert_eq!(vocab.rank(b"w1_y"), None);
        assert_eq!(vocab.rank(b"w12345678901234567890"), None);
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
