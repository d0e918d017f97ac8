//! JavaScript exports of the patcher.

use super::layout::{self, Grid, TokenIds};
use wasm_bindgen::prelude::*;

/// Token grid `[cols, rows]` of an image of `width` x `height` pixels (mistral_common's rule).
#[wasm_bindgen(js_name = imageGrid)]
pub fn image_grid(width: u32, height: u32, max_image_size: u32, patch_size: u32) -> Result<Vec<u32>, JsError> {
    let grid = layout::image_grid(width, height, max_image_size, patch_size).map_err(|e| JsError::new(&e))?;
    Ok(vec![grid.cols, grid.rows])
}

/// Token ids for an image of `cols` x `rows` patches: each row of `[IMG]` ends in `[IMG_BREAK]`, the last in `[IMG_END]`.
#[wasm_bindgen(js_name = imageTokenLayout)]
pub fn image_token_layout(cols: u32, rows: u32, img: u32, img_break: u32, img_end: u32) -> Result<Vec<u32>, JsError> {
    layout::token_layout(Grid { cols, rows }, TokenIds { img, img_break, img_end }).map_err(|e| JsError::new(&e))
}
