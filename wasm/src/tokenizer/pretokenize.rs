//! Pre-tokenization: splitting text into the pieces that BPE encodes one by one.
//!
//! Tekken's pattern gets a hand-written splitter ([`split_tekken`]) that reproduces the regex's leftmost-first,
//! backtracking semantics branch by branch in one forward pass; any other pattern goes through `fancy-regex`,
//! the engine tiktoken itself uses.

use super::classes::{self, LETTER, LOWERISH, NEWLINE, NUMBER, SPACE, UPPERISH};

/// The pre-tokenization pattern of every Tekken file (Mistral NeMo, Pixtral, ...).
pub const TEKKEN_PATTERN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub enum Splitter {
    Tekken,
    Regex(Box<fancy_regex::Regex>),
}

impl Splitter {
    pub fn new(pattern: &str) -> Result<Splitter, String> {
        if pattern == TEKKEN_PATTERN {
            return Ok(Splitter::Tekken);
        }
        fancy_regex::Regex::new(pattern)
            .map(|re| Splitter::Regex(Box::new(re)))
            .map_err(|e| format!("the pre-tokenization pattern is not a valid regex: {}", e))
    }

    /// Calls `piece` with the byte range of each piece of `text`, in order.
    pub fn split(&self, text: &str, mut piece: impl FnMut(usize, usize)) -> Result<(), String> {
        match self {
            Splitter::Tekken => {
                split_tekken(text.as_bytes(), piece);
                Ok(())
            }
            Splitter::Regex(re) => {
                for m in re.find_iter(text) {
                    let m = m.map_err(|e| format!("the pre-tokenization pattern failed on this text: {}", e))?;
                    if m.start() < m.end() {
                        piece(m.start(), m.end());
                    }
                }
                Ok(())
            }
        }
    }
}

/// Splits UTF-8 `text` exactly as [`TEKKEN_PATTERN`] does under leftmost-first alternation:
/// ```text
/// A1 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+
/// A2 [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*
/// A3 \p{N}
/// A4  ?[^\s\p{L}\p{N}]+[\r\n/]*
/// A5 \s*[\r\n]+
/// A6 \s+(?!\S)
/// A7 \s+
/// ```
/// Every character starts a match of some branch, so pieces tile the text.
pub fn split_tekken(text: &[u8], mut piece: impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < text.len() {
        let end = piece_end(text, i);
        piece(i, end);
        i = end;
    }
}

/// Class flags and UTF-8 length of the character at byte `i` (a character boundary of valid UTF-8).
#[inline(always)]
fn char_at(s: &[u8], i: usize) -> (u8, usize) {
    let b0 = s[i] as u32;
    if b0 < 0x80 {
        return (classes::ascii_flags(b0 as u8), 1);
    }
    let cont = |k: usize| (s[i + k] & 0x3F) as u32;
    if b0 < 0xE0 {
        (classes::flags(((b0 & 0x1F) << 6) | cont(1)), 2)
    } else if b0 < 0xF0 {
        (classes::flags(((b0 & 0x0F) << 12) | (cont(1) << 6) | cont(2)), 3)
    } else {
        (classes::flags(((b0 & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3)), 4)
    }
}

#[inline(always)]
fn is_upperish(flags: u8) -> bool {
    flags & UPPERISH != 0
}

#[inline(always)]
fn is_lowerish(flags: u8) -> bool {
    flags & LOWERISH != 0
}

/// `[^\r\n\p{L}\p{N}]`: the optional first character of A1 and A2.
#[inline(always)]
fn is_prefix(flags: u8) -> bool {
    flags & (LETTER | NUMBER | NEWLINE) == 0
}

/// `[^\s\p{L}\p{N}]`: the body of A4.
#[inline(always)]
fn is_punctuation(flags: u8) -> bool {
    flags & (SPACE | LETTER | NUMBER) == 0
}

/// End of the piece that starts at byte `i`.
#[inline(always)]
fn piece_end(s: &[u8], i: usize) -> usize {
    if let Some(end) = ascii_word(s, i) {
        return end;
    }
    let (f0, len0) = char_at(s, i);
    if let Some(end) = letters(s, i, f0, len0) {
        return end;
    }
    if f0 & NUMBER != 0 {
        return i + len0;
    }
    if let Some(end) = punctuation(s, i) {
        return end;
    }
    whitespace(s, i, len0)
}

/// The common case of A1 and A2 in ASCII: an optional prefix character, then `[A-Z]*[a-z]+` or `[A-Z]+`,
/// followed by an ASCII character. No ASCII uppercase letter is lowerish, so neither branch backtracks. None
/// leaves the piece to the general path (no letters, or a non-ASCII character that might extend the word).
#[inline(always)]
fn ascii_word(s: &[u8], i: usize) -> Option<usize> {
    if s[i] >= 0x80 {
        return None;
    }
    let start = if is_prefix(classes::ascii_flags(s[i])) { i + 1 } else { i };
    let mut end = start;
    while end < s.len() && s[end].is_ascii_uppercase() {
        end += 1;
    }
    let upper_end = end;
    while end < s.len() && s[end].is_ascii_lowercase() {
        end += 1;
    }
    if end < s.len() && s[end] >= 0x80 {
        return None;
    }
    if end > upper_end {
        Some(end)
    } else if upper_end > start {
        Some(upper_end)
    } else {
        None
    }
}

/// A maximal run of `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` from `start`, and where the run would have to be cut for
/// its last `[\p{Ll}\p{Lm}\p{Lo}\p{M}]` character to end the match.
struct UpperRun {
    start: usize,
    end: usize,
    last_lowerish_end: Option<usize>,
}

#[inline(always)]
fn upper_run(s: &[u8], start: usize) -> UpperRun {
    let mut end = start;
    let mut last_lowerish_end = None;
    while end < s.len() {
        let (f, len) = char_at(s, end);
        if !is_upperish(f) {
            break;
        }
        end += len;
        if is_lowerish(f) {
            last_lowerish_end = Some(end);
        }
    }
    UpperRun { start, end, last_lowerish_end }
}

#[inline(always)]
fn lower_run_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() {
        let (f, len) = char_at(s, i);
        if !is_lowerish(f) {
            break;
        }
        i += len;
    }
    i
}

impl UpperRun {
    /// A1 after this run: `[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` right after the greedy run, or else backtracking into
    /// the run to its last lowerish character (which then ends the match, since what follows it is not).
    #[inline(always)]
    fn a1_end(&self, s: &[u8]) -> Option<usize> {
        if self.end < s.len() {
            let (f, len) = char_at(s, self.end);
            if is_lowerish(f) {
                return Some(lower_run_end(s, self.end + len));
            }
        }
        self.last_lowerish_end
    }
}

/// A1, then A2, each trying the optional prefix character first and then doing without it.
#[inline(always)]
fn letters(s: &[u8], i: usize, f0: u8, len0: usize) -> Option<usize> {
    let with_prefix = if is_prefix(f0) { Some(upper_run(s, i + len0)) } else { None };
    if let Some(end) = with_prefix.as_ref().and_then(|run| run.a1_end(s)) {
        return Some(end);
    }
    let without = upper_run(s, i);
    if let Some(end) = without.a1_end(s) {
        return Some(end);
    }
    // A2: A1 failed, so the character after each run is not lowerish and the trailing `[...]*` is empty.
    for run in with_prefix.iter().chain(std::iter::once(&without)) {
        if run.end > run.start {
            return Some(run.end);
        }
    }
    None
}

/// A4: ` ?[^\s\p{L}\p{N}]+[\r\n/]*`. Without the optional space the run could not start at a space, so only the
/// first choice can match.
#[inline(always)]
fn punctuation(s: &[u8], i: usize) -> Option<usize> {
    let start = if s[i] == b' ' { i + 1 } else { i };
    let mut end = start;
    while end < s.len() {
        let (f, len) = char_at(s, end);
        if !is_punctuation(f) {
            break;
        }
        end += len;
    }
    if end == start {
        return None;
    }
    while end < s.len() && matches!(s[end], b'\r' | b'\n' | b'/') {
        end += 1;
    }
    Some(end)
}

/// A5 to A7, for a piece starting with whitespace (every other character matched an earlier branch).
#[inline(always)]
fn whitespace(s: &[u8], i: usize, len0: usize) -> usize {
    let mut end = i;
    let mut last_start = i;
    let mut count = 0;
    let mut last_newline_end = None;
    while end < s.len() {
        let (f, len) = char_at(s, end);
        if f & SPACE == 0 {
            break;
        }
        last_start = end;
        end += len;
        count += 1;
        if f & NEWLINE != 0 {
            last_newline_end = Some(end);
        }
    }
    if count == 0 {
        // Unreachable with consistent class tables; never stall.
        return i + len0;
    }
    if let Some(newline_end) = last_newline_end {
        return newline_end; // A5: backtrack `\s*` to the last newline
    }
    if end == s.len() || count == 1 {
        return end; // A6 at the end of the text, else A7 for a single space before a non-space
    }
    last_start // A6: the last space goes with what follows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(splitter: &Splitter, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        splitter.split(text, |a, b| out.push(text[a..b].to_string())).unwrap();
        out
    }

    /// Deterministic pseudo-random text over the characters that exercise every branch.
    fn random_text(seed: &mut u64, len: usize) -> String {
        const ALPHABET: &[&str] = &[
            "a", "Z", "q", "B", "é", "É", "ǅ", "ʰ", "日", "ア", "\u{301}", "\u{20DD}", "1", "٣", "½", " ", "  ", "\t", "\n",
            "\r", "\r\n", "\u{a0}", "\u{3000}", "/", ".", "!", "(", "😀", "\u{200d}", "\0", "-", "'",
        ];
        let mut out = String::new();
        for _ in 0..len {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            out.push_str(ALPHABET[(*seed % ALPHABET.len() as u64) as usize]);
        }
        out
    }

    #[test]
    fn hand_written_splitter_equals_the_regex() {
        let regex = Splitter::Regex(Box::new(fancy_regex::Regex::new(TEKKEN_PATTERN).unwrap()));
        let mut seed = 0x9E37_79B9_7F4A_7C15;
        for round in 0..20_000 {
            let text = random_text(&mut seed, 1 + round % 24);
            assert_eq!(pieces(&Splitter::Tekken, &text), pieces(&regex, &text), "{:?}", text);
        }
    }

    #[test]
    fn known_splits() {
        let cases: &[(&str, &[&str])] = &[
            ("Hello, world!", &["Hello", ",", " world", "!"]),
            ("HELLO world", &["HELLO", " world"]),
            ("日本ABC", &["日本", "ABC"]),
            ("x = 42  // y\n\n", &["x", " =", " ", "4", "2", " ", " //", " y", "\n\n"]),
            ("a  \n b", &["a", "  \n", " b"]),
            ("end   ", &["end", "   "]),
            ("\u{301}ABC", &["\u{301}", "ABC"]),
        ];
        for (text, want) in cases {
            assert_eq!(pieces(&Splitter::Tekken, text), *want, "{:?}", text);
        }
    }

    #[test]
    fn every_letter_is_upperish_or_lowerish() {
        for cp in (0..0x11_0000u32).filter(|c| char::from_u32(*c).is_some()) {
            let f = classes::flags(cp);
            assert!(f & LETTER == 0 || f & (UPPERISH | LOWERISH) != 0, "{:x}", cp);
        }
    }
}
