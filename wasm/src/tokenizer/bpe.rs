//! Byte-pair merging of one piece, tiktoken's rule: start from single bytes and repeatedly merge the adjacent
//! pair whose concatenation has the lowest rank (the leftmost of equals) until no concatenation is a token.
//!
//! Short pieces use tiktoken's own loop (a rescan per merge, fastest for a few parts). Long pieces, such as a
//! CJK sentence without spaces, use a heap of candidate pairs over a linked list of parts: O(n log n) instead of
//! O(n^2), with the same result since the heap orders candidates by (rank, position) exactly like the rescan.

use super::vocab::Vocab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const NONE: u32 = u32::MAX;
/// Longest piece merged by rescanning; longer ones go through the heap.
const RESCAN_MAX: usize = 48;

#[derive(Default)]
pub struct Merger {
    starts: Vec<u32>,
    pair_ranks: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    part_ranks: Vec<u32>,
    heap: BinaryHeap<Reverse<u64>>,
}

impl Merger {
    /// Emits the ranks of `piece`'s tokens, in order. Every single byte must be a token.
    #[inline]
    pub fn merge(&mut self, vocab: &Vocab, piece: &[u8], emit: &mut impl FnMut(u32)) {
        if piece.len() <= RESCAN_MAX {
            self.merge_rescan(vocab, piece, emit)
        } else {
            self.merge_heap(vocab, piece, emit)
        }
    }

    /// tiktoken's `_byte_pair_merge`: `starts[i]` begins part i, `pair_ranks[i]` is the rank of part i joined
    /// with part i + 1.
    fn merge_rescan(&mut self, vocab: &Vocab, piece: &[u8], emit: &mut impl FnMut(u32)) {
        let n = piece.len();
        let starts = &mut self.starts;
        let ranks = &mut self.pair_ranks;
        starts.clear();
        ranks.clear();
        for i in 0..n {
            starts.push(i as u32);
            ranks.push(if i + 1 < n { vocab.rank(&piece[i..i + 2]).unwrap_or(NONE) } else { NONE });
        }
        starts.push(n as u32);
        loop {
            let mut best = NONE;
            let mut at = 0;
            for (i, &r) in ranks.iter().enumerate() {
                if r < best {
                    best = r;
                    at = i;
                }
            }
            if best == NONE {
                break;
            }
            // Parts `at` and `at + 1` become one; recompute the pairs that now end or start there.
            starts.remove(at + 1);
            ranks.remove(at + 1);
            let pair = |i: usize| -> u32 {
                if i + 2 < starts.len() {
                    vocab.rank(&piece[starts[i] as usize..starts[i + 2] as usize]).unwrap_or(NONE)
                } else {
                    NONE
                }
            };
            ranks[at] = pair(at);
            if at > 0 {
                ranks[at - 1] = pair(at - 1);
            }
        }
        for w in starts.windows(2) {
            emit(vocab.rank(&piece[w[0] as usize..w[1] as usize]).expect("every part is a token"));
        }
    }

    /// The same merges through a min-heap of `(rank << 32) | start`. Parts are named by their first byte;
    /// `pair_ranks[p]` is the current rank of part p joined with its successor, so heap entries that no longer
    /// match it are stale (a part's pair only ever grows, and a longer byte string has another rank).
    fn merge_heap(&mut self, vocab: &Vocab, piece: &[u8], emit: &mut impl FnMut(u32)) {
        let n = piece.len();
        self.next.clear();
        self.prev.clear();
        self.pair_ranks.clear();
        self.part_ranks.clear();
        self.heap.clear();
        for i in 0..n {
            self.next.push(i as u32 + 1);
            self.prev.push((i as u32).wrapping_sub(1));
            self.part_ranks.push(vocab.rank(&piece[i..i + 1]).expect("every byte is a token"));
            let rank = if i + 1 < n { vocab.rank(&piece[i..i + 2]).unwrap_or(NONE) } else { NONE };
            self.pair_ranks.push(rank);
            if rank != NONE {
                self.heap.push(Reverse(((rank as u64) << 32) | i as u64));
            }
        }
        let pair_rank = |next: &[u32], p: usize| -> u32 {
            let q = next[p] as usize;
            if q >= n {
                return NONE;
            }
            vocab.rank(&piece[p..next[q] as usize]).unwrap_or(NONE)
        };
        while let Some(Reverse(key)) = self.heap.pop() {
            let rank = (key >> 32) as u32;
            let p = key as u32 as usize;
            if self.pair_ranks[p] != rank {
                continue;
            }
            let q = self.next[p] as usize;
            let r = self.next[q];
            self.next[p] = r;
            if (r as usize) < n {
                self.prev[r as usize] = p as u32;
            }
            self.pair_ranks[q] = NONE;
            self.part_ranks[p] = rank;
            let after = pair_rank(&self.next, p);
            self.pair_ranks[p] = after;
            if after != NONE {
                self.heap.push(Reverse(((after as u64) << 32) | p as u64));
            }
            if p > 0 {
                let o = self.prev[p] as usize;
                let before = pair_rank(&self.next, o);
                self.pair_ranks[o] = before;
                if before != NONE {
                    self.heap.push(Reverse(((before as u64) << 32) | o as u64));
                }
            }
        }
        let mut p = 0;
        while p < n {
            emit(self.part_ranks[p]);
            p = self.next[p] as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::TokenBytes;

    /// A vocabulary over a 4-letter alphabet whose merges overlap in every way, including equal pairs in a row.
    fn vocab() -> Vocab {
        let mut t = TokenBytes::default();
        for b in 0..=255u8 {
            t.push(&[b]);
        }
        let mut seed = 12345u64;
        let mut seen = std::collections::HashSet::new();
        while t.len() < 1500 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = 2 + (seed >> 60) as usize % 6;
            let word: Vec<u8> = (0..len).map(|k| b"abcd"[((seed >> (8 + 2 * k)) & 3) as usize]).collect();
            if seen.insert(word.clone()) {
                t.push(&word);
            }
        }
        Vocab::new(t).unwrap()
    }

    #[test]
    fn heap_merges_equal_rescan_merges() {
        let vocab = vocab();
        let mut merger = Merger::default();
        let mut seed = 99u64;
        for len in 1..400 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let piece: Vec<u8> = (0..len).map(|k| b"abcd"[((seed >> (k % 60)) & 3) as usize]).collect();
            let (mut a, mut b) = (Vec::new(), Vec::new());
            merger.merge_rescan(&vocab, &piece, &mut |r| a.push(r));
            merger.merge_heap(&vocab, &piece, &mut |r| b.push(r));
            assert_eq!(a, b, "{}", String::from_utf8_lossy(&piece));
            let joined: Vec<u8> = a.iter().flat_map(|&r| vocab.token(r as usize).to_vec()).collect();
            assert_eq!(joined, piece);
        }
    }

    #[test]
    fn lowest_rank_first_leftmost_on_ties() {
        let mut t = TokenBytes::default();
        for b in 0..=255u8 {
            t.push(&[b]);
        }
        t.push(b"aa"); // 256
        t.push(b"ab"); // 257
        t.push(b"aab"); // 258
        let vocab = Vocab::new(t).unwrap();
        let mut merger = Merger::default();
        let mut out = Vec::new();
        // "aaab": aa (256) merges first, leftmost: [aa][a][b]; then ab (257): [aa][ab]; "aaab" is no token.
        merger.merge_rescan(&vocab, b"aaab", &mut |r| out.push(r));
        assert_eq!(out, vec![256, 257]);
    }
}
