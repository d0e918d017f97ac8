//! Cut points inside a piece: character boundaries that no token can straddle. BPE only ever joins adjacent
//! parts into tokens, so no merge crosses such a boundary, and the parts on either side merge exactly as they
//! would alone: the piece's tokens are its parts' tokens in order. A CJK sentence, one long piece for the
//! pre-tokenizer, falls apart this way into words of a few characters, which recur (the piece cache has them)
//! and merge in a few steps, instead of the whole sentence being merged byte by byte.
//!
//! A token that straddles the boundary between characters `a` and `b` either is valid UTF-8, and then holds `a`
//! and `b` whole and adjacent, or is not, and then holds the last byte of `a` followed by the first byte of
//! `b`. Two tables record those facts for every token: adjacent character pairs in a Bloom filter, adjacent
//! byte pairs of the tokens that are not UTF-8 in a bitmap. Both err only towards "may straddle", which costs
//! a cut point, never exactness. Only boundaries next to a non-ASCII character are tested: ASCII pieces are
//! short and mostly single tokens, and their pairs would crowd the filter.
//!
//! One assumption: BPE builds every token from its own bytes. A part that is a token is emitted whole (the
//! shortcut tiktoken takes for whole pieces), which equals merging it only if merging reaches it. Real Tekken
//! vocabularies hold it; for a vocabulary that does not, the tables say "may straddle" everywhere: no cuts.

use super::bpe::Merger;
use super::vocab::Vocab;

const PAIR_BITS: u32 = 18;
const PAIR_WORDS: usize = (1 << PAIR_BITS) / 64;
const BYTE_WORDS: usize = (1 << 16) / 64;
const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// Size of the tables in a cache file, where they are kept so that loading does not recompute them.
pub const CACHE_BYTES: usize = 8 * (PAIR_WORDS + BYTE_WORDS);

pub struct Cuts {
    /// Bloom filter (two bits per pair) over the adjacent character pairs, not both ASCII, of UTF-8 tokens.
    pairs: Vec<u64>,
    /// Bit `a << 8 | b` is set when byte `b` follows byte `a` in a token that is not valid UTF-8.
    bytes: Vec<u64>,
}

/// The filter's two bit positions for the pair `a`, `b`.
#[inline(always)]
fn pair_bits(a: u32, b: u32) -> (usize, usize) {
    let h = (((a as u64) << 32) | b as u64).wrapping_mul(K);
    ((h >> (64 - PAIR_BITS)) as usize, (h >> (64 - 2 * PAIR_BITS)) as usize & ((1 << PAIR_BITS) - 1))
}

#[inline(always)]
fn get(bits: &[u64], i: usize) -> bool {
    bits[i / 64] >> (i % 64) & 1 != 0
}

#[inline(always)]
fn set(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

/// Whether merging each token's bytes gives back that one token (empty tokens, which no part can be, aside).
fn every_token_merges_to_itself(vocab: &Vocab) -> bool {
    let mut merger = Merger::default();
    (256..vocab.len()).all(|rank| {
        let token = vocab.token(rank);
        if token.is_empty() {
            return true;
        }
        let (mut first, mut count) = (0, 0);
        merger.merge(vocab, token, &mut |id| {
            first = if count == 0 { id } else { first };
            count += 1;
        });
        count == 1 && first == rank as u32
    })
}

impl Cuts {
    pub fn new(vocab: &Vocab) -> Cuts {
        if !every_token_merges_to_itself(vocab) {
            return Cuts { pairs: vec![u64::MAX; PAIR_WORDS], bytes: vec![u64::MAX; BYTE_WORDS] };
        }
        let mut cuts = Cuts { pairs: vec![0; PAIR_WORDS], bytes: vec![0; BYTE_WORDS] };
        for rank in 0..vocab.len() {
            let token = vocab.token(rank);
            if token.is_ascii() {
                continue;
            }
            match std::str::from_utf8(token) {
                Ok(text) => {
                    let mut chars = text.chars().map(|c| c as u32);
                    let mut prev = chars.next().unwrap_or(0);
                    for c in chars {
                        if (prev | c) >= 0x80 {
                            let (i, j) = pair_bits(prev, c);
                            set(&mut cuts.pairs, i);
                            set(&mut cuts.pairs, j);
                        }
                        prev = c;
                    }
                }
                Err(_) => {
                    for w in token.windows(2) {
                        set(&mut cuts.bytes, (w[0] as usize) << 8 | w[1] as usize);
                    }
                }
            }
        }
        cuts
    }

    /// Appends the tables ([`CACHE_BYTES`], little-endian words) to a cache file.
    pub fn write(&self, out: &mut Vec<u8>) {
        for word in self.pairs.iter().chain(&self.bytes) {
            out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// The tables from the [`CACHE_BYTES`] bytes that [`Cuts::write`] wrote.
    pub fn read(bytes: &[u8]) -> Cuts {
        let mut words = bytes.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap()));
        let pairs = words.by_ref().take(PAIR_WORDS).collect();
        Cuts { pairs, bytes: words.collect() }
    }

    /// Whether no token can straddle the boundary between characters `a` and `b`, whose bytes meeting there are
    /// `last` (of `a`) and `first` (of `b`).
    #[inline(always)]
    fn is_cut(&self, a: u32, b: u32, last: u8, first: u8) -> bool {
        if (a | b) < 0x80 || get(&self.bytes, (last as usize) << 8 | first as usize) {
            return false;
        }
        let (i, j) = pair_bits(a, b);
        !(get(&self.pairs, i) && get(&self.pairs, j))
    }

    /// Calls `part` with the byte range of each part of `piece` between cut points, in order.
    #[inline]
    pub fn split(&self, piece: &str, mut part: impl FnMut(usize, usize)) {
        let bytes = piece.as_bytes();
        let mut chars = piece.char_indices();
        let mut prev = match chars.next() {
            Some((_, c)) => c as u32,
            None => return,
        };
        let mut start = 0;
        for (i, c) in chars {
            let c = c as u32;
            if self.is_cut(prev, c, bytes[i - 1], bytes[i]) {
                part(start, i);
                start = i;
            }
            prev = c;
        }
        part(start, bytes.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::TokenBytes;

    fn parts(cuts: &Cuts, piece: &str) -> Vec<String> {
        let mut out = Vec::new();
        cuts.split(piece, |a, b| out.push(piece[a..b].to_string()));
        out
    }

    #[test]
    fn cuts_only_where_no_token_straddles() {
        let mut t = TokenBytes::default();
        for b in 0..=255u8 {
            t.push(&[b]);
        }
        // 日本 with the tokens that merging needs to reach it (the cuts assume every token is reachable).
        for token in [&[0xe6, 0x97][..], "日".as_bytes(), &[0xe6, 0x9c], "本".as_bytes(), "日本".as_bytes()] {
            t.push(token);
        }
        let (go, no) = ("語".as_bytes(), "の".as_bytes());
        t.push(&[go[2], no[0]]);
        let cuts = Cuts::new(&Vocab::new(t).unwrap());
        // 日本 is a token; the last byte of 語 and the first of の are adjacent in a (non-UTF-8) token.
        assert_eq!(parts(&cuts, "日本語の本"), vec!["日本", "語の", "本"]);
        assert_eq!(parts(&cuts, "ab日c"), vec!["ab", "日", "c"]);
        assert_eq!(parts(&cuts, "abc"), vec!["abc"]);
        assert_eq!(parts(&cuts, ""), Vec::<String>::new());
        // Without the steps to 日本, no boundary is cut.
        let mut t = TokenBytes::default();
        for b in 0..=255u8 {
            t.push(&[b]);
        }
        t.push("日本".as_bytes());
        assert_eq!(parts(&Cuts::new(&Vocab::new(t).unwrap()), "日本語の本"), vec!["日本語の本"]);
    }
}
