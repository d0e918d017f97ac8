//! Reading Mistral's `tekken.json` with the checks of mistral_common's `Tekkenizer.from_file`.

use super::base64;
use super::vocab::TokenBytes;
use super::{ImageConfig, Parts};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::borrow::Cow;

/// Tokenizer versions mistral_common knows, oldest first.
const VERSIONS: &[&str] = &["v1", "v2", "v3", "v7", "v11", "v13", "v15"];

/// The named special tokens that files without a `special_tokens` list get (mistral_common's
/// `DEPRECATED_SPECIAL_TOKENS`); the rest up to `default_num_special_tokens` are `<SPECIAL_{id}>`.
const DEFAULT_SPECIALS: &[&str] = &[
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
];

#[derive(Deserialize)]
struct File<'a> {
    config: Config,
    #[serde(borrow)]
    vocab: Vec<VocabEntry<'a>>,
    special_tokens: Option<Vec<SpecialEntry>>,
    multimodal: Option<ImageSection>,
    image: Option<ImageSection>,
}

#[derive(Deserialize)]
struct Config {
    pattern: String,
    default_vocab_size: u32,
    default_num_special_tokens: u32,
    version: Option<String>,
}

#[derive(Deserialize)]
struct VocabEntry<'a> {
    rank: u32,
    #[serde(borrow)]
    token_bytes: Cow<'a, str>,
    #[allow(dead_code)] // parsed so that a malformed value is reported, never used
    token_str: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct SpecialEntry {
    rank: u32,
    token_str: String,
}

#[derive(Deserialize)]
struct ImageSection {
    image_patch_size: u32,
    max_image_size: u32,
    spatial_merge_size: Option<u32>,
}

/// Parses a tekken.json file. `vocab_size` overrides the file's `default_vocab_size` (it may only shrink it).
pub fn parse(json: &[u8], vocab_size: Option<u32>) -> Result<Parts, String> {
    let file: File = serde_json::from_slice(json).map_err(|e| {
        let what = if e.is_eof() { "is truncated" } else { "is not a valid tekken.json" };
        format!("the tokenizer file {}: {}", what, e)
    })?;
    let config = &file.config;
    let version = config.version.clone().ok_or("config.version is missing from the tokenizer file")?;
    let level = VERSIONS.iter().position(|v| *v == version).ok_or_else(|| {
        format!("unknown tokenizer version {:?} in config.version (known: {})", version, VERSIONS.join(", "))
    })?;
    let (v7, v11) = (3, 4);

    let num_special = config.default_num_special_tokens as usize;
    let mut specials: Vec<String> = match &file.special_tokens {
        Some(list) => {
            for (i, s) in list.iter().enumerate() {
                if s.rank as usize != i {
                    return Err(format!(
                        "special_tokens[{}] ({:?}) has rank {}: special tokens must be listed in rank order 0, 1, 2...",
                        i, s.token_str, s.rank
                    ));
                }
            }
            list.iter().map(|s| s.token_str.clone()).collect()
        }
        None if level > v7 => {
            return Err(format!("special_tokens is missing: tokenizer version {} must list its special tokens", version))
        }
        None => DEFAULT_SPECIALS.iter().map(|s| s.to_string()).collect(),
    };
    if specials.len() > num_special {
        return Err(format!(
            "the file lists {} special tokens but config.default_num_special_tokens is {}",
            specials.len(),
            num_special
        ));
    }
    for id in specials.len()..num_special {
        specials.push(format!("<SPECIAL_{}>", id));
    }

    if file.multimodal.is_some() && level > v11 {
        return Err(format!("tokenizer version {} must call its image section \"image\", not \"multimodal\"", version));
    }
    let image = file.multimodal.as_ref().or(file.image.as_ref()).map(|s| ImageConfig {
        patch_size: s.image_patch_size,
        max_image_size: s.max_image_size,
        spatial_merge_size: s.spatial_merge_size.unwrap_or(1),
    });

    let file_vocab_size = config.default_vocab_size as usize;
    let vocab_size = match vocab_size {
        Some(v) if v as usize > file_vocab_size => {
            return Err(format!(
                "vocab size {} is larger than the tokenizer's default_vocab_size {}",
                v, file_vocab_size
            ))
        }
        Some(v) => v as usize,
        None => file_vocab_size,
    };
    if vocab_size < num_special {
        return Err(format!("vocab size {} is smaller than the {} special tokens", vocab_size, num_special));
    }
    let inner = vocab_size - num_special;
    if file.vocab.len() < inner {
        return Err(format!(
            "vocab has {} entries but vocab size {} with {} special tokens needs {}",
            file.vocab.len(),
            vocab_size,
            num_special,
            inner
        ));
    }
    // Only the entries below the vocab size are used, and only they are checked (as the reference does).
    let mut tokens = TokenBytes::default();
    for (i, entry) in file.vocab[..inner].iter().enumerate() {
        if entry.rank as usize != i {
            return Err(format!("vocab[{}] has rank {}: ranks must be 0, 1, 2... in order", i, entry.rank));
        }
        base64::decode_into(entry.token_bytes.as_bytes(), &mut tokens.blob)
            .ok_or_else(|| format!("vocab[{}].token_bytes is not base64: {:?}", i, entry.token_bytes))?;
        tokens.ends.push(tokens.blob.len() as u32);
    }
    Ok(Parts { tokens, specials, pattern: config.pattern.clone(), vocab_size, version, image })
}
