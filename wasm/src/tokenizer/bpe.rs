//! Byte-pair merging of one piece, tiktoken's rule: start from single bytes and repeatedly merge the adjacent
//! pair whose concatenation has the lowest rank (the leftmost of equals) until no concatenation is a token.
//!
//! Short pieces use tiktoken's own loop, a scan for the lowest pair per merge, over fixed arrays (fastest for a
//! few parts). Long pieces, such as a CJK sentence without spaces, keep their candidate pairs in a bucket queue
//! indexed by rank (`RankQueue`), so the cost per byte stays flat however long the piece: finding the lowest
//! rank is three bit scans and no heap grows with the piece. Both are checked against tiktoken's loop in the
//! tests.

use super::vocab::Vocab;

const NONE: u32 = u32::MAX;
/// Longest piece merged by scanning for the lowest pair; longer ones go through the rank queue.
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
    parts: Vec<Part>,
    queue: RankQueue,
}

/// One part of a long piece, named by its first byte: its token, the rank of its pair with the next part (or
/// NONE), and its neighbours. One struct, so a merge touches one or two cache lines per part.
#[derive(Clone, Copy)]
struct Part {
    token: u32,
    pair: u32,
    next: u32,
    prev: u32,
}

/// Candidate pairs of a long piece by rank: per rank a bucket of part starts, and a bitmap of the nonempty
/// buckets in levels of 64 (one bit of `levels[k + 1]` per word of `levels[k]`), so the lowest rank is one bit
/// scan per level. Within a rank the leftmost pair must merge first: a bucket pushed to out of order is marked
/// and sorted by start when next taken from, which is what keeps the result exact. Sorting is rare in practice:
/// merging a pair of rank r never makes another pair of rank r (the joined bytes are longer than token r), and
/// where merged tokens rank after their parts (as in trained vocabularies) a sweep fills buckets in order.
#[derive(Default)]
struct RankQueue {
    buckets: Vec<Bucket>,
    levels: Vec<Vec<u64>>,
}

#[derive(Clone, Default)]
struct Bucket {
    starts: Vec<u32>,
    /// `starts[head..]` are still queued; the bucket's bit is set exactly when that is not empty.
    head: u32,
    unsorted: bool,
}

impl RankQueue {
    /// Room for ranks below `n`. The buckets stay allocated from piece to piece; the queue is empty between them.
    fn reserve(&mut self, n: usize) {
        if self.buckets.len() >= n {
            return;
        }
        self.buckets.resize(n, Bucket::default());
        self.levels.clear();
        let mut bits = n;
        loop {
            let words = (bits + 63) / 64;
            self.levels.push(vec![0; words]);
            if words == 1 {
                break;
            }
            bits = words;
        }
    }

    #[inline(always)]
    fn push(&mut self, rank: u32, start: u32) {
        let bucket = &mut self.buckets[rank as usize];
        if bucket.head as usize == bucket.starts.len() {
            bucket.starts.clear();
            bucket.head = 0;
            bucket.unsorted = false;
            let mut i = rank as usize;
            for level in self.levels.iter_mut() {
                let word = &mut level[i / 64];
                let was = *word;
                *word |= 1 << (i % 64);
                if was != 0 {
                    break;
                }
                i /= 64;
            }
        } else if *bucket.starts.last().unwrap() > start {
            bucket.unsorted = true;
        }
        bucket.starts.push(start);
    }

    /// The lowest queued rank and its leftmost start, taken out of the queue.
    #[inline(always)]
    fn pop(&mut self) -> Option<(u32, u32)> {
        let top = self.levels.last()?[0];
        if top == 0 {
            return None;
        }
        let mut rank = top.trailing_zeros() as usize;
        for level in self.levels.iter().rev().skip(1) {
            rank = rank * 64 + level[rank].trailing_zeros() as usize;
        }
        let bucket = &mut self.buckets[rank];
        let head = bucket.head as usize;
        if bucket.unsorted {
            bucket.starts[head..].sort_unstable();
            bucket.unsorted = false;
        }
        let start = bucket.starts[head];
        bucket.head += 1;
        if bucket.head as usize == bucket.starts.len() {
            let mut i = rank;
            for level in self.levels.iter_mut() {
                let word = &mut level[i / 64];
                *word &= !(1 << (i % 64));
                if *word != 0 {
                    break;
                }
                i /= 64;
            }
        }
        Some((rank as u32, start))
    }
}

impl Merger {
    /// Emits the ranks of `piece`'s tokens, in order. Ranks 0-255 must be the single bytes.
    #[inline]
    pub fn merge(&mut self, vocab: &Vocab, piece: &[u8], emit: &mut impl FnMut(u32)) {
        if piece.len() <= SCAN_MAX {
            self.merge_scan(vocab, piece, emit)
        } else {
            self.merge_long(vocab, piece, emit)
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

    /// The same merges through the rank queue. Queue entries whose rank no longer matches `parts[p].pair` are
    /// stale: a part's pair only ever grows, and a longer byte string has another rank.
    fn merge_long(&mut self, vocab: &Vocab, piece: &[u8], emit: &mut impl FnMut(u32)) {
        let n = piece.len();
        let Merger { memo, parts, queue, .. } = self;
        queue.reserve(vocab.len());
        parts.clear();
        parts.extend((0..n).map(|i| Part { token: piece[i] as u32, pair: NONE, next: i as u32 + 1, prev: (i as u32).wrapping_sub(1) }));
        for i in 0..n - 1 {
            let rank = memo.rank(vocab, parts[i].token, parts[i + 1].token, &piece[i..i + 2]);
            parts[i].pair = rank;
            if rank != NONE {
                queue.push(rank, i as u32);
            }
        }
        // Re-ranks the pair of part p with its successor and queues it.
        let mut pair = |parts: &mut [Part], queue: &mut RankQueue, p: usize| {
            let q = parts[p].next as usize;
            let rank = if q < n { memo.rank(vocab, parts[p].token, parts[q].token, &piece[p..parts[q].next as usize]) } else { NONE };
            parts[p].pair = rank;
            if rank != NONE {
                queue.push(rank, p as u32);
            }
        };
        while let Some((rank, p)) = queue.pop() {
            let p = p as usize;
            if parts[p].pair != rank {
                continue;
            }
            let q = parts[p].next as usize;
            let r = parts[q].next;
            parts[q].pair = NONE;
            parts[p].next = r;
            parts[p].token = rank;
            if (r as usize) < n {
                parts[r as usize].prev = p as u32;
            }
            // Left neighbour first: a sweep left to right then fills every bucket in order of start.
            if p > 0 {
                let o = parts[p].prev as usize;
                pair(parts, queue, o);
            }
            pair(parts, queue, p);
        }
        let mut p = 0;
        while p < n {
            emit(parts[p].token);
            p = parts[p].next as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::TokenBytes;

    /// Steps a linear congruential generator and returns its high bits.
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 16
    }

    /// The 256 bytes, then `count` distinct random byte strings of 2-7 units drawn from `units`, ranked in the
    /// order drawn: merges overlap in every way, including equal pairs in a row, and a merged pair often ranks
    /// below the pair that made one of its halves.
    fn random_vocab(units: &[&[u8]], count: usize, mut seed: u64) -> Vocab {
        let mut t = TokenBytes::default();
        for b in 0..=255u8 {
            t.push(&[b]);
        }
        let mut seen = std::collections::HashSet::new();
        while t.len() < 256 + count {
            let len = 2 + lcg(&mut seed) as usize % 6;
            let word: Vec<u8> = (0..len).flat_map(|_| units[lcg(&mut seed) as usize % units.len()].to_vec()).collect();
            if seen.insert(word.clone()) {
                t.push(&word);
            }
        }
        Vocab::new(t).unwrap()
    }

    /// A vocabulary over a 4-letter alphabet.
    fn vocab() -> Vocab {
        random_vocab(&[b"a", b"b", b"c", b"d"], 1244, 12345)
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

    /// Merges `piece` by every path that takes it and checks each against tiktoken's loop.
    fn check(merger: &mut Merger, vocab: &Vocab, piece: &[u8]) {
        let want = tiktoken_merge(vocab, piece);
        let mut long = Vec::new();
        merger.merge_long(vocab, piece, &mut |r| long.push(r));
        assert_eq!(long, want, "long: {}", String::from_utf8_lossy(piece));
        if piece.len() <= SCAN_MAX {
            let mut scan = Vec::new();
            merger.merge_scan(vocab, piece, &mut |r| scan.push(r));
            assert_eq!(scan, want, "scan: {}", String::from_utf8_lossy(piece));
        }
        let joined: Vec<u8> = want.iter().flat_map(|&r| vocab.token(r as usize).to_vec()).collect();
        assert_eq!(joined, piece);
    }

    #[test]
    fn scan_and_queue_merge_like_tiktoken() {
        let vocab = vocab();
        let mut merger = Merger::default();
        let mut seed = 99u64;
        for len in 1..400 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let piece: Vec<u8> = (0..len).map(|k| b"abcd"[((seed >> (k % 60)) & 3) as usize]).collect();
            check(&mut merger, &vocab, &piece);
        }
    }

    /// Long pieces built to stress the leftmost-of-equals rule and the queue's out-of-order buckets: one letter
    /// repeated (every pair equal, chains of overlapping merges), short patterns repeated, random text over
    /// two or three letters, and CJK without cut points whose tokens end inside characters.
    #[test]
    fn long_adversarial_pieces_merge_like_tiktoken() {
        let mut seed = 7u64;
        for vocab_seed in 0..6 {
            // 200 of the 252 strings of 2-7 letters a and b. A merger memoizes one vocabulary's pairs.
            let vocab = random_vocab(&[b"a", b"b"], 200, vocab_seed);
            let mut merger = Merger::default();
            for len in [65, 66, 127, 128, 129, 511, 1000, 2047] {
                check(&mut merger, &vocab, &vec![b'a'; len]);
                for pattern in [&b"ab"[..], b"aab", b"abb", b"aba"] {
                    let piece: Vec<u8> = pattern.iter().copied().cycle().take(len).collect();
                    check(&mut merger, &vocab, &piece);
                }
                let piece: Vec<u8> = (0..len).map(|_| b"ab"[lcg(&mut seed) as usize % 2]).collect();
                check(&mut merger, &vocab, &piece);
            }
            let vocab = random_vocab(&[b"a", b"b", b"c"], 600, 100 + vocab_seed);
            let mut merger = Merger::default();
            for len in [65, 300, 1500] {
                check(&mut merger, &vocab, &vec![b'c'; len]);
                let piece: Vec<u8> = (0..len).map(|_| b"abc"[lcg(&mut seed) as usize % 3]).collect();
                check(&mut merger, &vocab, &piece);
            }
        }
        // Tokens are random runs of the bytes of four CJK characters, so they start and end inside characters.
        let bytes: Vec<u8> = "\u{4e00}\u{4e8c}\u{4e09}\u{56db}".bytes().collect();
        let units: Vec<&[u8]> = bytes.chunks(1).collect();
        let vocab = random_vocab(&units, 2000, 3);
        let mut merger = Merger::default();
        let chars = ["\u{4e00}", "\u{4e8c}", "\u{4e09}", "\u{56db}"];
        for len in [22, 100, 700] {
            let piece: String = (0..len).map(|_| chars[lcg(&mut seed) as usize % 4]).collect();
            check(&mut merger, &vocab, piece.as_bytes());
            check(&mut merger, &vocab, chars[0].repeat(len).as_bytes());
        }
    }

    #[test]
    fn queue_pops_lowest_rank_then_leftmost_start() {
        let mut queue = RankQueue::default();
        queue.reserve(300_000);
        for (rank, start) in [(70_000, 9), (70_000, 3), (5, 8), (299_999, 1), (70_000, 5), (5, 2)] {
            queue.push(rank, start);
        }
        assert_eq!(queue.pop(), Some((5, 2)));
        assert_eq!(queue.pop(), Some((5, 8)));
        assert_eq!(queue.pop(), Some((70_000, 3)));
        // A lower rank queued while a bucket is half taken, then more of that bucket out of order.
        queue.push(4, 0);
        queue.push(70_000, 4);
        queue.push(70_000, 1);
        assert_eq!(queue.pop(), Some((4, 0)));
        let rest: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(rest, vec![(70_000, 1), (70_000, 4), (70_000, 5), (70_000, 9), (299_999, 1)]);
        queue.push(64, 7);
        assert_eq!(queue.pop(), Some((64, 7)));
        assert_eq!(queue.pop(), None);
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
