//! JavaScript exports of the patcher.

use super::decode::{check_size, dimensions, sniff, Transparency};
use super::error::ImageError;
use super::layout::{self, Grid, SizeRounding, TokenIds};
use super::orientation::{exif_orientation, swaps_sides};
use super::preprocess::{preprocess, DType, Mode, Options, Pixels, Preprocessed};
use wasm_bindgen::prelude::*;

/// Errors cross to JavaScript as `"<code>: <message>"`; runtime/images/errors.ts turns the code into a class.
fn js_error(err: ImageError) -> JsError {
    JsError::new(&format!("{}: {}", err.code(), err))
}

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

/// Format and size from the header alone: `{ format, width, height }`.
#[wasm_bindgen(js_name = imageHeader)]
pub fn image_header(bytes: &[u8]) -> Result<ImageHeader, JsError> {
    let format = sniff(bytes).map_err(js_error)?;
    let (width, height) = dimensions(bytes, format).map_err(js_error)?;
    check_size(width, height, u64::MAX).map_err(js_error)?;
    Ok(ImageHeader { format: format.name().to_string(), width, height })
}

#[wasm_bindgen]
pub struct ImageHeader {
    format: String,
    pub width: u32,
    pub height: u32,
}

#[wasm_bindgen]
impl ImageHeader {
    #[wasm_bindgen(getter)]
    pub fn format(&self) -> String {
        self.format.clone()
    }
}

/// Decodes an image to 8-bit RGB over white (the first frame of an animation), as mistral_common does before
/// resizing.
#[wasm_bindgen(js_name = decodeRgb)]
pub fn decode_rgb(bytes: &[u8], max_pixels: f64) -> Result<DecodedImage, JsError> {
    let image =
        super::decode::decode_rgb(bytes, pixel_limit(max_pixels)?, Transparency::IgnoreOnRgb).map_err(js_error)?;
    Ok(DecodedImage { width: image.width, height: image.height, pixels: Some(image.pixels) })
}

#[wasm_bindgen]
pub struct DecodedImage {
    pub width: u32,
    pub height: u32,
    pixels: Option<Vec<u8>>,
}

#[wasm_bindgen]
impl DecodedImage {
    /// Interleaved RGB rows, moved out once.
    #[wasm_bindgen(js_name = takePixels)]
    pub fn take_pixels(&mut self) -> Result<Vec<u8>, JsError> {
        self.pixels.take().ok_or_else(|| JsError::new("pixels already taken"))
    }
}

fn pixel_limit(max_pixels: f64) -> Result<u64, JsError> {
    if max_pixels >= 1.0 {
        Ok(max_pixels as u64)
    } else {
        Err(js_error(ImageError::InvalidOptions(format!("the pixel limit must be at least 1, not {max_pixels}"))))
    }
}

/// Decodes, turns, resizes and normalizes an image. `mode` is "mistral" or "hf", `dtype` "f32" or "f16",
/// `orientation` "exif" (turned as its EXIF tag says) or "ignore" (as stored); `max_pixels` (a JS number)
/// bounds width·height as declared by the header.
#[wasm_bindgen(js_name = preprocessImage)]
pub fn preprocess_image(
    bytes: &[u8],
    mode: &str,
    max_image_size: u32,
    patch_size: u32,
    max_pixels: f64,
    dtype: &str,
    orientation: &str,
) -> Result<PreprocessedImage, JsError> {
    let invalid = |what: String| js_error(ImageError::InvalidOptions(what));
    let mode = resize_mode(mode)?;
    let dtype = match dtype {
        "f32" => DType::F32,
        "f16" => DType::F16,
        other => return Err(invalid(format!("dtype must be \"f32\" or \"f16\", not {other:?}"))),
    };
    let options = Options {
        mode,
        max_image_size,
        patch_size,
        max_pixels: pixel_limit(max_pixels)?,
        dtype,
        exif_orientation: exif_turns(orientation)?,
    };
    let Preprocessed { width, height, grid, pixels } = preprocess(bytes, &options).map_err(js_error)?;
    Ok(PreprocessedImage { width, height, cols: grid.cols, rows: grid.rows, pixels: Some(pixels) })
}

fn exif_turns(orientation: &str) -> Result<bool, JsError> {
    match orientation {
        "exif" => Ok(true),
        "ignore" => Ok(false),
        other => Err(js_error(ImageError::InvalidOptions(format!(
            "orientation must be \"exif\" or \"ignore\", not {other:?}"
        )))),
    }
}

fn resize_mode(mode: &str) -> Result<Mode, JsError> {
    match mode {
        "mistral" => Ok(Mode::Mistral),
        "hf" => Ok(Mode::Hf),
        other => Err(js_error(ImageError::InvalidOptions(format!(
            "resize mode must be \"mistral\" or \"hf\", not {other:?}"
        )))),
    }
}

/// What `preprocessImage` would make of an image, from its header alone: its size and patch grid (the decoded
/// image always has the header's size). An edge gateway lays out an image's tokens so and leaves the decoding to
/// the GPU host.
#[wasm_bindgen(js_name = measureImage)]
pub fn measure_image(
    bytes: &[u8],
    mode: &str,
    max_image_size: u32,
    patch_size: u32,
    max_pixels: f64,
    orientation: &str,
) -> Result<MeasuredImage, JsError> {
    let rounding = match resize_mode(mode)? {
        Mode::Mistral => SizeRounding::HalfEven,
        Mode::Hf => SizeRounding::Floor,
    };
    let format = sniff(bytes).map_err(js_error)?;
    let (mut width, mut height) = dimensions(bytes, format).map_err(js_error)?;
    check_size(width, height, pixel_limit(max_pixels)?).map_err(js_error)?;
    if exif_turns(orientation)? && swaps_sides(exif_orientation(bytes, format)) {
        (width, height) = (height, width);
    }
    let grid = layout::image_grid_rounded(width, height, max_image_size, patch_size, rounding)
        .map_err(|e| js_error(ImageError::InvalidOptions(e)))?;
    Ok(MeasuredImage { width, height, cols: grid.cols, rows: grid.rows })
}

#[wasm_bindgen]
pub struct MeasuredImage {
    pub width: u32,
    pub height: u32,
    pub cols: u32,
    pub rows: u32,
}

/// The result of `preprocessImage`: the decoded size, the patch grid, and the tensor `[3, rows·patch,
/// cols·patch]`, moved out once with `takePixelsF32` or `takePixelsF16` (whichever dtype was asked for).
#[wasm_bindgen]
pub struct PreprocessedImage {
    pub width: u32,
    pub height: u32,
    pub cols: u32,
    pub rows: u32,
    pixels: Option<Pixels>,
}

#[wasm_bindgen]
impl PreprocessedImage {
    #[wasm_bindgen(js_name = takePixelsF32)]
    pub fn take_pixels_f32(&mut self) -> Result<Vec<f32>, JsError> {
        match self.pixels.take() {
            Some(Pixels::F32(v)) => Ok(v),
            _ => Err(JsError::new("no float32 pixels to take")),
        }
    }

    /// IEEE half-precision bit patterns.
    #[wasm_bindgen(js_name = takePixelsF16)]
    pub fn take_pixels_f16(&mut self) -> Result<Vec<u16>, JsError> {
        match self.pixels.take() {
            Some(Pixels::F16(v)) => Ok(v),
            _ => Err(JsError::new("no float16 pixels to take")),
        }
    }
}
