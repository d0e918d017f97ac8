//! JavaScript exports of the tokenizer: one `Tekken` object per loaded vocabulary.

use super::vocab::TokenBytes;
use super::{cache, tekken_json, Parts, Tokenizer};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct Tekken {
    inner: Tokenizer,
}

fn js(e: String) -> JsError {
    JsError::new(&e)
}

/// Splits a blob of back-to-back items at `ends`.
fn items(blob: &[u8], ends: &[u32]) -> Result<TokenBytes, JsError> {
    let mut last = 0;
    for &end in ends {
        if end < last || end as usize > blob.len() {
            return Err(JsError::new("item offsets must be ascending and within the bytes"));
        }
        last = end;
    }
    Ok(TokenBytes { blob: blob.to_vec(), ends: ends.to_vec() })
}

#[wasm_bindgen]
impl Tekken {
    /// Parses a tekken.json file; `vocab_size` (the model's) may cut the file's default_vocab_size.
    #[wasm_bindgen(js_name = fromTekkenJson)]
    pub fn from_tekken_json(json: &[u8], vocab_size: Option<u32>) -> Result<Tekken, JsError> {
        let parts = tekken_json::parse(json, vocab_size).map_err(js)?;
        Ok(Tekken { inner: Tokenizer::new(parts).map_err(js)? })
    }

    /// Rebuilds a tokenizer from bytes written by `toCache`.
    #[wasm_bindgen(js_name = fromCache)]
    pub fn from_cache(bytes: Vec<u8>) -> Result<Tekken, JsError> {
        Ok(Tekken { inner: cache::read(bytes).map_err(js)? })
    }

    /// Builds a tokenizer from raw parts: BPE token bytes in rank order (`token_ends[r]` = end of rank r in
    /// `token_blob`), special-token names by id (UTF-8, split the same way), the pre-tokenization pattern and
    /// the vocab size (specials + ranks used).
    #[wasm_bindgen(js_name = fromParts)]
    pub fn from_parts(
        token_blob: &[u8],
        token_ends: &[u32],
        special_blob: &[u8],
        special_ends: &[u32],
        pattern: String,
        vocab_size: u32,
        version: String,
    ) -> Result<Tekken, JsError> {
        let names = items(special_blob, special_ends)?;
        let specials = (0..names.len())
            .map(|i| String::from_utf8(names.get(i).to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| JsError::new("special token names must be UTF-8"))?;
        let parts = Parts {
            tokens: items(token_blob, token_ends)?,
            specials,
            pattern,
            vocab_size: vocab_size as usize,
            version,
            image: None,
        };
        Ok(Tekken { inner: Tokenizer::new(parts).map_err(js)? })
    }

    #[wasm_bindgen(js_name = toCache)]
    pub fn to_cache(&self) -> Vec<u8> {
        cache::write(&self.inner)
    }

    pub fn encode(&mut self, text: &str) -> Result<Vec<u32>, JsError> {
        self.inner.encode(text).map_err(js)
    }

    pub fn decode(&self, ids: &[u32], keep_special: bool) -> Result<String, JsError> {
        self.inner.decode(ids, keep_special).map_err(js)
    }

    /// Bytes of a BPE token (an error for special or out-of-range ids).
    #[wasm_bindgen(js_name = tokenBytes)]
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>, JsError> {
        self.inner.token_bytes(id).map(|b| b.to_vec()).map_err(js)
    }

    #[wasm_bindgen(js_name = specialId)]
    pub fn special_id(&self, name: &str) -> Option<u32> {
        self.inner.special_id(name)
    }

    #[wasm_bindgen(js_name = specialName)]
    pub fn special_name(&self, id: u32) -> Option<String> {
        self.inner.special_name(id).map(String::from)
    }

    #[wasm_bindgen(getter, js_name = vocabSize)]
    pub fn vocab_size(&self) -> u32 {
        self.inner.vocab_size()
    }

    #[wasm_bindgen(getter, js_name = numSpecial)]
    pub fn num_special(&self) -> u32 {
        self.inner.num_special()
    }

    #[wasm_bindgen(getter)]
    pub fn pattern(&self) -> String {
        self.inner.pattern().to_string()
    }

    #[wasm_bindgen(getter)]
    pub fn version(&self) -> String {
        self.inner.version().to_string()
    }

    /// `[patch_size, max_image_size, spatial_merge_size]`, or empty without an image section.
    #[wasm_bindgen(js_name = imageConfig)]
    pub fn image_config(&self) -> Vec<u32> {
        self.inner.image().map_or(Vec::new(), |c| vec![c.patch_size, c.max_image_size, c.spatial_merge_size])
    }
}
