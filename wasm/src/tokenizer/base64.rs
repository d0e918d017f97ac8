//! Standard base64 (RFC 4648 alphabet, `=` padding) as `token_bytes` in tekken.json uses it.

const INVALID: u8 = 0xFF;

const fn table() -> [u8; 256] {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
}

static DECODE: [u8; 256] = table();

/// Appends the bytes `text` encodes to `out`; `None` if it is not padded base64.
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    if text.len() % 4 != 0 {
        return None;
    }
    let body = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in body {
        let v = DECODE[c as usize];
        if v == INVALID {
            return None;
        }
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // Leftover padding bits are ignored, as Python's b64decode (the reference's decoder) ignores them.
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        decode_into(s.as_bytes(), &mut out).map(|_| out)
    }

    #[test]
    fn decodes_padded_base64() {
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(decode("AA==").unwrap(), [0]);
        assert_eq!(decode("IGI=").unwrap(), b" b");
        assert_eq!(decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode("4oCU").unwrap(), "—".as_bytes());
        assert_eq!(decode("/+8=").unwrap(), [0xFF, 0xEF]);
        assert_eq!(decode("AB==").unwrap(), [0]);
    }

    #[test]
    fn rejects_malformed_input() {
        for bad in ["A", "AA=", "A===", "AA*=", "aGVsbG8", "=AAA"] {
            assert_eq!(decode(bad), None, "{}", bad);
        }
    }
}
