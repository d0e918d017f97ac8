//! Tekken: tiktoken-style byte-level BPE over a regex pre-tokenizer, with the special (control) tokens at ids
//! below the BPE ranks: token id = rank + number of special tokens. Text is never parsed for special tokens.

mod base64;
mod bindings;
mod bpe;
pub mod cache;
mod classes;
mod cuts;
mod pieces;
pub mod pretokenize;
pub mod tekken_json;
pub mod vocab;

use bpe::Merger;
use cuts::Cuts;
use pieces::PieceCache;
use pretokenize::Splitter;
use std::collections::HashMap;
use vocab::{Escaped, TokenBytes, Vocab};

/// Image settings carried by multimodal tekken files (`multimodal` or `image` section).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageConfig {
    pub patch_size: u32,
    pub max_image_size: u32,
    pub spatial_merge_size: u32,
}

/// Everything a tokenizer is made of, from a tekken.json, a cache file or another format (a GGUF's token list).
#[derive(Clone)]
pub struct Parts {
    /// BPE tokens in rank order; those past `vocab_size - specials.len()` are dropped.
    pub tokens: TokenBytes,
    /// Special token names by id.
    pub specials: Vec<String>,
    pub pattern: String,
    /// Ids in all: special tokens and BPE ranks.
    pub vocab_size: usize,
    /// Tokenizer version ("v3" for Pixtral), empty when unknown.
    pub version: String,
    pub image: Option<ImageConfig>,
}

pub struct Tokenizer {
    meta: Meta,
    special_ids: HashMap<String, u32>,
    vocab: Vocab,
    splitter: Splitter,
    cuts: Cuts,
    merger: Merger,
    pieces: PieceCache,
}

/// The parts other than the BPE tokens, kept for accessors and for writing the cache.
struct Meta {
    specials: Vec<String>,
    pattern: String,
    version: String,
    image: Option<ImageConfig>,
}

impl Tokenizer {
    pub fn new(parts: Parts) -> Result<Tokenizer, String> {
        let Parts { mut tokens, specials, pattern, vocab_size, version, image } = parts;
        let num_special = specials.len();
        if vocab_size < num_special + 256 {
            return Err(format!(
                "vocab size {} leaves no room for the 256 byte tokens after {} special tokens",
                vocab_size, num_special
            ));
        }
        let inner = vocab_size - num_special;
        if tokens.len() < inner {
            return Err(format!(
                "vocab size {} needs {} BPE tokens after the {} special tokens, but there are only {}",
                vocab_size,
                inner,
                num_special,
                tokens.len()
            ));
        }
        tokens.truncate(inner);
        for b in 0..256 {
            if tokens.get(b) != [b as u8] {
                return Err(format!(
                    "BPE rank {} must be the single byte 0x{:02x}, found {:?}",
                    b,
                    b,
                    Escaped(tokens.get(b))
                ));
            }
        }
        let vocab = Vocab::new(tokens).map_err(|e| format!("BPE {}", e))?;
        let cuts = Cuts::new(&vocab);
        Tokenizer::assemble(Meta { specials, pattern, version, image }, vocab, cuts)
    }

    /// A tokenizer from checked parts, a built vocabulary and its cut-point tables.
    fn assemble(meta: Meta, vocab: Vocab, cuts: Cuts) -> Result<Tokenizer, String> {
        let mut special_ids = HashMap::with_capacity(meta.specials.len());
        for (id, name) in meta.specials.iter().enumerate() {
            if let Some(first) = special_ids.insert(name.clone(), id as u32) {
                return Err(format!("special tokens {} and {} are both named {:?}", first, id, name));
            }
        }
        let splitter = Splitter::new(&meta.pattern)?;
        Ok(Tokenizer {
            meta,
            special_ids,
            vocab,
            splitter,
            cuts,
            merger: Merger::default(),
            pieces: PieceCache::default(),
        })
    }

    pub fn num_special(&self) -> u32 {
        self.meta.specials.len() as u32
    }

    pub fn vocab_size(&self) -> u32 {
        self.num_special() + self.vocab.len() as u32
    }

    pub fn pattern(&self) -> &str {
        &self.meta.pattern
    }

    pub fn version(&self) -> &str {
        &self.meta.version
    }

    pub fn image(&self) -> Option<ImageConfig> {
        self.meta.image
    }

    pub fn special_id(&self, name: &str) -> Option<u32> {
        self.special_ids.get(name).copied()
    }

    pub fn special_name(&self, id: u32) -> Option<&str> {
        self.meta.specials.get(id as usize).map(|s| s.as_str())
    }

    /// Token ids of `text`: pre-tokenized pieces, each BPE-encoded (non-ASCII ones part by part, see `cuts`).
    /// Control-token names in the text are ordinary text.
    pub fn encode(&mut self, text: &str) -> Result<Vec<u32>, String> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        let offset = self.num_special();
        let Tokenizer { vocab, merger, pieces, splitter, cuts, .. } = self;
        let mut encode_part = |part: &[u8]| {
            if let Some(cached) = pieces.get(part) {
                // Not extend_from_slice: a copy of variable length is a call out of the WASM code (see `pieces`).
                for &id in cached {
                    ids.push(id);
                }
                return;
            }
            let first = ids.len();
            match vocab.rank(part) {
                Some(rank) => ids.push(rank + offset),
                None => merger.merge(vocab, part, &mut |rank| ids.push(rank + offset)),
            }
            pieces.put(part, &ids[first..]);
        };
        splitter.split(text, |start, end| {
            let piece = &text[start..end];
            if piece.is_ascii() {
                encode_part(piece.as_bytes());
            } else {
                cuts.split(piece, |a, b| encode_part(&piece.as_bytes()[a..b]));
            }
        })?;
        Ok(ids)
    }

    /// Bytes of a BPE token; an error for a special or unknown id.
    pub fn token_bytes(&self, id: u32) -> Result<&[u8], String> {
        self.check_id(id)?;
        let rank = id.checked_sub(self.num_special()).ok_or_else(|| format!("token id {} is a special token", id))?;
        Ok(self.vocab.token(rank as usize))
    }

    fn check_id(&self, id: u32) -> Result<(), String> {
        if id >= self.vocab_size() {
            return Err(format!("token id {} is out of range: the vocabulary has ids 0..{}", id, self.vocab_size() - 1));
        }
        Ok(())
    }

    /// Text of `ids` as mistral_common decodes it: runs of BPE tokens are joined and decoded as UTF-8 with
    /// U+FFFD for invalid sequences, each run on its own; special tokens are dropped, or written by name
    /// with `keep_special`.
    pub fn decode(&self, ids: &[u32], keep_special: bool) -> Result<String, String> {
        let num_special = self.num_special();
        let mut text = String::new();
        let mut run = Vec::new();
        for &id in ids {
            self.check_id(id)?;
            if id >= num_special {
                run.extend_from_slice(self.vocab.token((id - num_special) as usize));
                continue;
            }
            text.push_str(&String::from_utf8_lossy(&run));
            run.clear();
            if keep_special {
                text.push_str(&self.meta.specials[id as usize]);
            }
        }
        text.push_str(&String::from_utf8_lossy(&run));
        Ok(text)
    }

}

#[cfg(test)]
mod tests;
