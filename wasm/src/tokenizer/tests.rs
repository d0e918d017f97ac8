//! Tokenizer tests on small synthetic tekken files; the exactness tests against the reference's goldens and
//! peers run from TypeScript (tests/tokenizer*_test.ts) on the real vocabulary.

use super::*;

const S: u32 = 24;

fn b64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let v = chunk.iter().enumerate().fold(0u32, |v, (i, &b)| v | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { A[(v >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// A v3 file with S specials (the 20 default names and fillers), the 256 bytes and `merges`; `edit` adjusts the JSON text.
fn file(merges: &[&str], extra: &str) -> String {
    let mut vocab: Vec<String> = (0..256u32)
        .map(|b| format!(r#"{{"rank": {}, "token_bytes": "{}", "token_str": null}}"#, b, b64(&[b as u8])))
        .collect();
    for (i, m) in merges.iter().enumerate() {
        vocab.push(format!(r#"{{"rank": {}, "token_bytes": "{}", "token_str": "{}"}}"#, 256 + i, b64(m.as_bytes()), m));
    }
    let pattern = pretokenize::TEKKEN_PATTERN.replace('\\', "\\\\");
    format!(
        r#"{{"config": {{"pattern": "{}", "num_vocab_tokens": {}, "default_vocab_size": {}, "default_num_special_tokens": {}, "version": "v3"}}, "vocab": [{}]{}}}"#,
        pattern,
        vocab.len(),
        vocab.len() + S as usize,
        S,
        vocab.join(", "),
        extra
    )
}

fn load(json: &str) -> Result<Tokenizer, String> {
    Tokenizer::new(tekken_json::parse(json.as_bytes(), None)?)
}

#[test]
fn encodes_with_ids_after_the_specials_and_decodes_back() {
    let mut t = load(&file(&["he", "ll", "hell", "hello", " w"], "")).unwrap();
    assert_eq!(t.vocab_size(), S + 261);
    assert_eq!(t.encode("hello").unwrap(), vec![S + 259]);
    // " world": " w" + o r l d
    assert_eq!(t.encode(" world").unwrap(), vec![S + 260, S + 111, S + 114, S + 108, S + 100]);
    assert_eq!(t.encode("[INST]").unwrap().iter().filter(|&&id| id < S).count(), 0);
    let ids = t.encode("hello world [INST] ü").unwrap();
    assert_eq!(t.decode(&ids, false).unwrap(), "hello world [INST] ü");
}

#[test]
fn specials_default_to_mistral_commons_list_and_fillers() {
    let t = load(&file(&[], "")).unwrap();
    assert_eq!(
        (0..4).map(|i| t.special_name(i).unwrap()).collect::<Vec<_>>(),
        ["<unk>", "<s>", "</s>", "[INST]"]
    );
    let listed = file(
        &[],
        r#", "special_tokens": [{"rank": 0, "token_str": "<unk>", "is_control": true}, {"rank": 1, "token_str": "<s>", "is_control": true}]"#,
    );
    let t = load(&listed).unwrap();
    assert_eq!((t.special_id("<s>"), t.special_name(3)), (Some(1), Some("<SPECIAL_3>")));
    assert_eq!(t.special_name(S - 1), Some("<SPECIAL_23>"));
    assert_eq!(t.special_id("[INST]"), None);
}

#[test]
fn decode_skips_or_names_specials_and_replaces_broken_utf8_per_run() {
    let t = load(&file(&[], "")).unwrap();
    let euro: Vec<u32> = "€".bytes().map(|b| b as u32 + S).collect();
    assert_eq!(t.decode(&euro, false).unwrap(), "€");
    // A special token between the bytes of one character splits it into two invalid runs, as in mistral_common.
    let split = [euro[0], 1, euro[1], euro[2]];
    assert_eq!(t.decode(&split, false).unwrap(), "\u{fffd}\u{fffd}\u{fffd}");
    assert_eq!(t.decode(&split, true).unwrap(), "\u{fffd}<s>\u{fffd}\u{fffd}");
    assert_eq!(t.decode(&[280], false).err().unwrap(), "token id 280 is out of range: the vocabulary has ids 0..279");
}

#[test]
fn bad_files_get_errors_that_name_the_problem() {
    let good = file(&["ab"], "");
    let cases: Vec<(String, &str)> = vec![
        (good[..good.len() / 2].to_string(), "the tokenizer file is truncated"),
        ("[1, 2]".to_string(), "is not a valid tekken.json"),
        (good.replace(r#""version": "v3""#, r#""version": "v99""#), "unknown tokenizer version \"v99\""),
        (good.replace(r#", "version": "v3""#, ""), "config.version is missing"),
        (good.replace(r#""version": "v3""#, r#""version": "v13""#), "special_tokens is missing"),
        (good.replace(r#""pattern""#, r#""patern""#), "missing field `pattern`"),
        (good.replace(r#""rank": 256"#, r#""rank": 255"#), "vocab[256] has rank 255"),
        (good.replace(&format!(r#""token_bytes": "{}""#, b64(b"ab")), r#""token_bytes": "YQ==""#), "tokens 97 and 256 have the same bytes \"a\""),
        (good.replace(&format!(r#""token_bytes": "{}""#, b64(b"ab")), r#""token_bytes": "Y!==""#), "vocab[256].token_bytes is not base64"),
        (good.replace(r#""default_vocab_size": 281"#, r#""default_vocab_size": 300"#), "vocab has 257 entries but vocab size 300"),
        (good.replace(r#""pattern": ""#, r#""pattern": "("#), "not a valid regex"),
    ];
    for (json, want) in cases {
        let err = load(&json).err().unwrap_or_else(|| panic!("no error for {}", want));
        assert!(err.contains(want), "{:?} does not contain {:?}", err, want);
    }
}

#[test]
fn vocab_is_truncated_to_the_vocab_size() {
    let json = file(&["ab", "abc"], "");
    let mut full = load(&json).unwrap();
    assert_eq!(full.encode("abc").unwrap(), vec![S + 257]);
    let mut cut = Tokenizer::new(tekken_json::parse(json.as_bytes(), Some(S + 257)).unwrap()).unwrap();
    assert_eq!(cut.vocab_size(), S + 257);
    assert_eq!(cut.encode("abc").unwrap(), vec![S + 256, S + 99]);
    assert!(tekken_json::parse(json.as_bytes(), Some(9999)).err().unwrap().contains("larger than"));
}

#[test]
fn cache_round_trip_gives_the_same_tokenizer() {
    let mut t = load(&file(&["he", "ll", "hello"], r#", "multimodal": {"image_patch_size": 16, "max_image_size": 1024}"#)).unwrap();
    let mut back = cache::read(cache::write(&t)).unwrap();
    assert_eq!(back.encode("hello hell").unwrap(), t.encode("hello hell").unwrap());
    assert_eq!((back.vocab_size(), back.version(), back.image()), (t.vocab_size(), "v3", t.image()));
    assert_eq!(back.image().unwrap().patch_size, 16);
}

#[test]
fn a_token_that_merging_cannot_build_is_not_taken_whole_from_a_cut_piece() {
    // No two-byte token leads to "日本", so tiktoken's merges leave "日本語" as its nine bytes; with the cut
    // between 本 and 語, emitting the part "日本" whole would give its token instead.
    let mut t = load(&file(&["日本"], "")).unwrap();
    let bytes = "日本語".bytes().map(|b| S + b as u32).collect::<Vec<_>>();
    assert_eq!(t.encode("日本語").unwrap(), bytes);
}
