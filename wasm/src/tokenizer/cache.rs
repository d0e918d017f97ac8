//! A compact binary form of [`Parts`], so that a process can skip parsing the multi-megabyte JSON. The bytes
//! end in a checksum; whoever stores them decides when they are stale (the TypeScript side keys them by a
//! hash of the JSON).

use super::vocab::TokenBytes;
use super::{ImageConfig, Parts};

const MAGIC: &[u8; 4] = b"TKNC";
/// Bump when the layout changes: older caches are then rejected and rebuilt.
const FORMAT: u32 = 1;

pub fn write(parts: &Parts) -> Vec<u8> {
    let t = &parts.tokens;
    let mut out = Vec::with_capacity(64 + t.blob.len() + 4 * t.ends.len() + 16 * parts.specials.len());
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, FORMAT);
    put_u32(&mut out, parts.vocab_size as u32);
    put_str(&mut out, &parts.version);
    put_str(&mut out, &parts.pattern);
    put_u32(&mut out, parts.specials.len() as u32);
    for name in &parts.specials {
        put_str(&mut out, name);
    }
    match parts.image {
        Some(image) => {
            out.push(1);
            for v in [image.patch_size, image.max_image_size, image.spatial_merge_size] {
                put_u32(&mut out, v);
            }
        }
        None => out.push(0),
    }
    put_u32(&mut out, t.ends.len() as u32);
    for &end in &t.ends {
        put_u32(&mut out, end);
    }
    out.extend_from_slice(&t.blob);
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

pub fn read(bytes: &[u8]) -> Result<Parts, String> {
    if bytes.len() < 16 || &bytes[..4] != MAGIC {
        return Err("not a tokenizer cache".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if checksum(body).to_le_bytes() != sum {
        return Err("the tokenizer cache is corrupt (checksum mismatch)".into());
    }
    let mut r = Reader { bytes: body, at: 4 };
    let format = r.u32()?;
    if format != FORMAT {
        return Err(format!("tokenizer cache format {} is not the current {}", format, FORMAT));
    }
    let vocab_size = r.u32()? as usize;
    let version = r.string()?;
    let pattern = r.string()?;
    let specials = (0..r.u32()?).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
    let image = match r.take(1)?[0] {
        0 => None,
        _ => Some(ImageConfig { patch_size: r.u32()?, max_image_size: r.u32()?, spatial_merge_size: r.u32()? }),
    };
    let n = r.u32()? as usize;
    let ends = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
    let blob = r.bytes[r.at..].to_vec();
    let mut last = 0;
    for &end in &ends {
        if end < last || end as usize > blob.len() {
            return Err("the tokenizer cache is corrupt (token offsets)".into());
        }
        last = end;
    }
    if last as usize != blob.len() {
        return Err("the tokenizer cache is corrupt (token bytes)".into());
    }
    Ok(Parts { tokens: TokenBytes { blob, ends }, specials, pattern, vocab_size, version, image })
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

/// 64-bit multiply-rotate hash over 8-byte words; detects torn or damaged files, not tampering.
fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(K).rotate_left(27);
    }
    for &b in words.remainder() {
        h = (h ^ b as u64).wrapping_mul(K).rotate_left(27);
    }
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        let mut tokens = TokenBytes::default();
        for b in 0..=255u8 {
            tokens.push(&[b]);
        }
        tokens.push(b"ab");
        Parts {
            tokens,
            specials: vec!["<unk>".into(), "<s>".into()],
            pattern: "\\s+|\\S+".into(),
            vocab_size: 259,
            version: "v3".into(),
            image: Some(ImageConfig { patch_size: 16, max_image_size: 1024, spatial_merge_size: 1 }),
        }
    }

    #[test]
    fn round_trips() {
        let bytes = write(&parts());
        let back = read(&bytes).unwrap();
        assert_eq!(write(&back), bytes);
        assert_eq!((back.specials[1].as_str(), back.tokens.get(256), back.image), ("<s>", &b"ab"[..], parts().image));
    }

    #[test]
    fn rejects_damage() {
        let bytes = write(&parts());
        assert!(read(&bytes[..bytes.len() - 1]).is_err());
        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert_eq!(read(&flipped).err().unwrap(), "the tokenizer cache is corrupt (checksum mismatch)");
        assert_eq!(read(b"{\"config\": 1}").err().unwrap(), "not a tokenizer cache");
    }
}
