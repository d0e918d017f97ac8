//! Byte-pair merging of one piece, tiktoken's rule: start from single bytes and repeatedly merge the adjacent
//! pair whose concatenation has the lowest rank (the leftmost of equals) until no concatenation is a token.
//!
//! Short pieces use tiktoken's own loop, a scan for the lowest pair per merge, over fixed arrays (fastest for a
//! few parts). Long pieces, such as a CJK sentence without spaces, use a heap of candidate pairs over a linked
//! list of parts: O(n log n) instead of O(n^2), with the same result since the heap orders candidates by
//! (rank, position) exactly like the scan. Both are checked against tiktoken's loop in the tests.

use super::vocab::Vocab;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const NONE: u32 = u32::MAX;
/// Longest piece merged by scanning for the lowest pair; longer ones go through the heap.
const SCAN_MAX: usize = 64;
const MEMO_BITS: u32 = 16;

/// Ranks of joined token pairs, memoized in a direct-mapped table. Both halves of a candidate pair are tokens,
/// so the pair is named by two ranks; the same few thousand pairs recur all through a text, and a hit is one
/// probe in this small table instead of hashing and comparing bytes in the multi-megabyte vocabulary. An entry
/// packs `left << 40 | right << 20 | joined` in one word (ranks below 2^20, see `vocab::MAX_TOKENS`).
struct PairMemo {
    entries: Vec<u64>,
}

const RANK_BITS: u32 = 20;
const RANK_MASK: u64 = (1 << RANK_BITS) - 1;

impl Default for PairMemo {
    fn default() -> Self {
        // No pair has both halves at the all-ones rank, so this never matches a key.
        PairMemo { entries: vec![u64::MAX; 1 << MEMO_BITS] }
    }
}

impl PairMemo {
    /// Rank of `joined`, the bytes of token `left` followed by token `right`, or NONE.
    #[inline(always)]
    fn rank(&mut self, vocab: &Vocab, left: u32, right: u32, joined: &[u8]) -> u32 {
        let key = ((left as u64) << (2 * RANK_BITS)) | ((right as u64) << RANK_BITS);
        let slot = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - MEMO_BITS)) as usize;
        let entry = self.entries[slot];
        if entry & !RANK_MASK == key {
            let rank = (entry & RANK_MASK) as u32;
            return if rank == RANK_MASK as u32 { NONE } else { rank };
        }
        let rank = vocab.rank(joined).unwrap_or(NONE);
        self.entries[slot] = key | (rank as u64 & RANK_MASK);
        rank
    }
}

/// The scan's arrays, kept from piece to piece: arrays on the stack would be cleared for every piece, and in
/// WASM each clearing is a `memory.fill`, a call out of the compiled code.
struct Scan {
    part: [u32; SCAN_MAX],
    pair: [u32; SCAN_MAX],
    next: [u8; SCAN_MAX + 1],
    prev: [u8; SCAN_MAX],
}

impl Default for Scan {
    fn default() -> Self {
        Scan { part: [0; SCAN_MAX], pair: [NONE; SCAN_MAX], next: [0; SCAN_MAX + 1], prev: [0; SCAN_MAX] }
    }
}

#[derive(Default)]
pub struct Merger {
    memo: PairMemo,
    scan: Scan,
    pair_ranks: Vec<u32>,
    part_ranks: Vec<u32>,
    next: Vec<u32>,
    prev: Vec<u32>,
    heap: BinaryHeap<Reverse<u64>>,
}

impl Merger {
    /// Emits the ranks of `piece`'s tokens, in order. Ranks 0-255 must be the single bytes.
    #[inline]
    pub fn merge(&mut self, vocab: &Vocab, piece: &[u8], emit: &mut impl FnMut(u32)) {
        if piece.len() <= SCAN_MAX {
            self.merge_scan(vocab, piece, emit)
        } else {
            self.merge_heap(vocab, piece, emit)
        }
    }

    /// tiktoken's `_byte_pair_merge` over fixed arrays: part p starts at byte p and is token `part[p]`,
    /// `pair[p]` is the rank of part p joined with the next one, `next[p]` starts the next part. A merged part
    /// is not removed but gets `pair = NONE`, so it never wins the scan for the lowest rank (leftmost on ties).
    fn merge_scan(&mut self, vocab: &Vocab, piece: &[u8], emit: &mut impl FnMut(u32)) {
        let n = piece.len();
        let Scan { part, pair, next, prev } = &mut self.scan;
        for i in 0..n {
            part[i] = piece[i] as u32;
            next[i] = i as u8 + 1;
            prev[i] = (i as u8).wrapping_sub(1);
        }
        for i in 0..n - 1 {
            pair[i] = self.memo.rank(vocab, part[i], part[i + 1], &piece[i..i + 2]);
        }
        pair[n - 1] = NONE;
        loop {
            let mut best = NONE;
            let mut p = 0;
            for (i, &r) in pair[..n].iter().enumerate() {
                if r < best {
                    best = r;
                    p = i;
                }
            }
            if best == NONE {
                break;
            }
            let q = next[p] as usize;
            let r = next[q] as usize;
            part[p] = best;
            next[p] = r as u8;
            pair[q] = NONE;
            if r < n {
                prev[r] = p as u8;
                pair[p] = self.memo.rank(vocab, best, part[r], &piece[p..next[r] as usize]);
            } else {
                pair[p] = NONE;
            }
            if p > 0 {
                let o = prev[p] as usize;
                pair[o] = self.memo.rank(vocab, part[o], best, &piece[o..r]);
            }
        }
        let mut p = 0;
        while p < n {
            emit(part[p]);
            p = next[p] as usize;
        }
    }

    /// The same merges through a min-heap of `(rank << 32) | start`. Parts are named by their first byte;
    /// `pair_ranks[p]` is the current rank of part p joined with its successor, so heap entries that no longer
    /// match it are stale (a part's pair only ever grows, and a longer byte string has another rank).
    fn merge_heap(&mut self, vocab: &Vocab, piece: &[u8], emit: &mut impl FnMut(u32)) {
        let n = piece.len();
        let Merger { memo, pair_ranks, part_ranks, next, prev, heap, .. } = self;
        next.clear();
        prev.clear();
        pair_ranks.clear();
        part_ranks.clear();
        heap.clear();
        for i in 0..n {
            next.push(i as u32 + 1);
            prev.push((i as u32).wrapping_sub(1));
            part_ranks.push(piece[i] as u32);
        }
        for i in 0..n {
            let rank = if i + 1 < n { memo.rank(vocab, part_ranks[i], part_ranks[i + 1], &piece[i..i + 2]) } else { NONE };
            pair_ranks.push(rank);
            if rank != NONE {
                heap.push(Reverse(((rank as u64) << 32) | i as u64));
            }
        }
        let mut pair = |next: &[u32], part_ranks: &[u32], p: usize| -> u32 {
            let q = next[p] as usize;
            if q >= n {
                return NONE;
            }
            memo.rank(vocab, part_ranks[p], part_ranks[q], &piece[p..next[q] as usize])
        };
        while let Some(Reverse(key)) = heap.pop() {
            let rank = (key >> 32) as u32;
            let p = key as u32 as usize;
            if pair_ranks[p] != rank {
                continue;
            }
            let q = next[p] as usize;
            let r = next[q];
            next[p] = r;
            if (r as usize) < n {
                prev[r as usize] = p as u32;
            }
            pair_ranks[q] = NONE;
            part_ranks[p] = rank;
            let after = pair(next, part_ranks, p);
            pair_ranks[p] = after;
            if after != NONE {
                heap.push(Reverse(((after as u64) << 32) | p as u64));
            }
            if p > 0 {
                let o = prev[p] as usize;
                let before = pair(next, part_ranks, o);
                pair_ranks[o] = before;
                if before != NONE {
                    heap.push(Reverse(((before as u64) << 32) | o as u64));
                }
            }
        }
        let mut p = 0;
        while p < n {
            emit(part_ranks[p]);
            p = next[p] as usize;
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

    /// tiktoken's `_byte_pair_merge` as written there: the slow, obviously correct twin.
    fn tiktoken_merge(vocab: &Vocab, piece: &[u8]) -> Vec<u32> {
        let rank = |a: usize, b: usize| vocab.rank(&piece[a..b]).unwrap_or(NONE);
        let mut parts: Vec<(usize, u32)> = (0..piece.len() - 1).map(|i| (i, rank(i, i + 2))).collect();
        parts.push((piece.len() - 1, NONE));
        parts.push((piece.len(), NONE));
        loop {
            let (mut best, mut i) = (NONE, 0);
            for (j, &(_, r)) in parts[..parts.len() - 1].iter().enumerate() {
                if r < best {
                    best = r;
                    i = j;
                }
            }
            if best == NONE {
                break;
            }
            let get = |parts: &Vec<(usize, u32)>, i: usize| {
                if i + 3 < parts.len() {
                    rank(parts[i].0, parts[i + 3].0)
                } else {
                    NONE
                }
            };
            if i > 0 {
                parts[i - 1].1 = get(&parts, i - 1);
            }
            parts[i].1 = get(&parts, i);
            parts.remove(i + 1);
        }
        parts.windows(2).map(|w| rank(w[0].0, w[1].0)).collect()
    }

    #[test]
    fn scan_and_heap_merge_like_tiktoken() {
        let vocab = vocab();
        let mut merger = Merger::default();
        let mut seed = 99u64;
        for len in 1..400 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let piece: Vec<u8> = (0..len).map(|k| b"abcd"[((seed >> (k % 60)) & 3) as usize]).collect();
            let want = tiktoken_merge(&vocab, &piece);
            let mut heap = Vec::new();
            merger.merge_heap(&vocab, &piece, &mut |r| heap.push(r));
            assert_eq!(heap, want, "heap: {}", String::from_utf8_lossy(&piece));
            if len <= SCAN_MAX {
                let mut scan = Vec::new();
                merger.merge_scan(&vocab, &piece, &mut |r| scan.push(r));
                assert_eq!(scan, want, "scan: {}", String::from_utf8_lossy(&piece));
            }
            let joined: Vec<u8> = want.iter().flat_map(|&r| vocab.token(r as usize).to_vec()).collect();
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
        merger.merge_scan(&vocab, b"aaab", &mut |r| out.push(r));
        assert_eq!(out, vec![256, 257]);
    }
}
