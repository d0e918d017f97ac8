//! A compact binary form of a built [`Tokenizer`]: its settings and special-token names, then the vocabulary
//! image (token bytes and ready hash table, see `vocab.rs`) verbatim. Loading it parses a few kilobytes and
//! keeps the buffer it was handed as the vocabulary's storage, so it costs one pass for the checksum instead of
//! parsing JSON and hashing 130k tokens. Whoever stores the bytes decides when they are stale (the TypeScript
//! side keys them to the JSON).
//!
//! Layout (little-endian): magic, format, [version, pattern, specials, image config], token count, table
//! capacity, the cut-point tables (`cuts.rs`), image, then a checksum of everything before it.

use super::cuts::{self, Cuts};
use super::vocab::Vocab;
use super::{ImageConfig, Meta, Tokenizer};

#[cfg(target_endian = "big")]
compile_error!("the vocabulary image is little-endian");

const MAGIC: &[u8; 4] = b"TKNC";
/// Bump when the layout changes: older caches are then rejected and rebuilt.
const FORMAT: u32 = 4;

pub fn write(tokenizer: &Tokenizer) -> Vec<u8> {
    let (meta, vocab) = (&tokenizer.meta, &tokenizer.vocab);
    let names: usize = meta.specials.iter().map(|s| s.len() + 4).sum();
    let mut out = Vec::with_capacity(64 + meta.pattern.len() + names + cuts::CACHE_BYTES + vocab.image().len());
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT);
    put_str(&mut out, &meta.version);
    put_str(&mut out, &meta.pattern);
    put_u32(&mut out, meta.specials.len() as u32);
    for name in &meta.specials {
        put_str(&mut out, name);
    }
    match meta.image {
        Some(image) => {
            out.push(1);
            for v in [image.patch_size, image.max_image_size, image.spatial_merge_size] {
                put_u32(&mut out, v);
            }
        }
        None => out.push(0),
    }
    put_u32(&mut out, vocab.len() as u32);
    put_u32(&mut out, vocab.capacity() as u32);
    tokenizer.cuts.write(&mut out);
    out.extend_from_slice(vocab.image());
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// The tokenizer in `bytes`, which become its vocabulary's storage.
pub fn read(mut bytes: Vec<u8>) -> Result<Tokenizer, String> {
    if bytes.len() < 16 || &bytes[..4] != MAGIC {
        return Err("not a tokenizer cache".into());
    }
    let body = bytes.len() - 8;
    if checksum(&bytes[..body]).to_le_bytes() != bytes[body..] {
        return Err("the tokenizer cache is corrupt (checksum mismatch)".into());
    }
    bytes.truncate(body);
    let mut r = Reader { bytes: &bytes, at: 4 };
    let format = r.u32()?;
    if format != FORMAT {
        return Err(format!("tokenizer cache format {} is not the current {}", format, FORMAT));
    }
    let version = r.string()?;
    let pattern = r.string()?;
    let specials = (0..r.u32()?).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
    let image = match r.take(1)?[0] {
        0 => None,
        _ => Some(ImageConfig { patch_size: r.u32()?, max_image_size: r.u32()?, spatial_merge_size: r.u32()? }),
    };
    let n = r.u32()? as usize;
    let capacity = r.u32()? as usize;
    let cuts = Cuts::read(r.take(cuts::CACHE_BYTES)?);
    let image_at = r.at;
    let vocab = Vocab::from_image(bytes, image_at, n, capacity)
        .map_err(|e| format!("the tokenizer cache is corrupt ({})", e))?;
    Tokenizer::assemble(Meta { specials, pattern, version, image }, vocab, cuts)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or("the tokenizer cache is truncated")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn string(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "the tokenizer cache is corrupt (text)".into())
    }
}

/// Multiply-rotate hash in four lanes of 8-byte words; detects torn or damaged files, not tampering.
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let word = |w: &[u8]| u64::from_le_bytes(w.try_into().unwrap());
    let mut lanes = [bytes.len() as u64, 1, 2, 3];
    let mut blocks = bytes.chunks_exact(32);
    for b in &mut blocks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane = (*lane ^ word(&b[8 * i..8 * i + 8])).wrapping_mul(K).rotate_left(27);
        }
    }
    for (i, &b) in blocks.remainder().iter().enumerate() {
        lanes[i % 4] = (lanes[i % 4] ^ b as u64).wrapping_mul(K).rotate_left(27);
    }
    let h = lanes.iter().fold(0u64, |h, &l| (h ^ l).wrapping_mul(K).rotate_left(31));
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::vocab::TokenBytes;
    use crate::tokenizer::Parts;

    fn tokenizer() -> Tokenizer {
        let mut tokens = TokenBytes::default();
        for b in 0..=255u8 {
            tokens.push(&[b]);
        }
        tokens.push(b"ab");
        Tokenizer::new(Parts {
            tokens,
            specials: vec!["<unk>".into(), "<s>".into()],
            pattern: "\\s+|\\S+".into(),
            vocab_size: 259,
            version: "v3".into(),
            image: Some(ImageConfig { patch_size: 16, max_image_size: 1024, spatial_merge_size: 1 }),
        })
        .unwrap()
    }

    #[test]
    fn round_trips() {
        let bytes = write(&tokenizer());
        let mut back = read(bytes.clone()).unwrap();
        assert_eq!(write(&back), bytes);
        assert_eq!((back.special_name(1), back.image(), back.vocab_size()), (Some("<s>"), tokenizer().image(), 259));
        assert_eq!(back.encode("ab a").unwrap(), vec![258, 34, 99]);
    }

    #[test]
    fn rejects_damage() {
        let bytes = write(&tokenizer());
        assert!(read(bytes[..bytes.len() - 1].to_vec()).is_err());
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert_eq!(read(flipped).err().unwrap(), "the tokenizer cache is corrupt (checksum mismatch)");
        assert_eq!(read(b"{\"config\": 1, \"vocab\": []}".to_vec()).err().unwrap(), "not a tokenizer cache");
    }
}
