//! The VP8 keyframe decoder of image-webp 0.2.4 (lossy WebP), without the rest of the crate: see VENDORED.md.

#![forbid(unsafe_code)]

mod loop_filter;
mod transform;
mod vp8_arithmetic_decoder;

pub mod vp8;

use std::fmt;
use std::io;

/// The errors of image-webp's `DecodingError` that the VP8 decoder raises.
#[derive(Debug)]
pub enum DecodingError {
    /// The bitstream ends early (as an I/O error of the reader).
    IoError(io::Error),
    /// The bitstream was somehow corrupt
    BitStreamError,
    /// VP8's `[0x9D, 0x01, 0x2A]` magic not found or invalid
    Vp8MagicInvalid([u8; 3]),
    /// VP8 Decoder initialisation wasn't provided with enough data
    NotEnoughInitData,
    /// At time of writing, only the YUV colour-space encoded as `0` is specified
    ColorSpaceInvalid(u8),
    /// LUMA prediction mode was not recognised
    LumaPredictionModeInvalid(i8),
    /// Intra-prediction mode was not recognised
    IntraPredictionModeInvalid(i8),
    /// Chroma prediction mode was not recognised
    ChromaPredictionModeInvalid(i8),
    /// The file may be valid, but this crate doesn't support decoding it.
    UnsupportedFeature(String),
}

impl fmt::Display for DecodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IoError(err) => write!(f, "{err}"),
            Self::BitStreamError => write!(f, "Corrupt bitstream"),
            Self::Vp8MagicInvalid(err) => write!(f, "Invalid VP8 magic: {err:x?}"),
            Self::NotEnoughInitData => write!(f, "Not enough VP8 init data"),
            Self::ColorSpaceInvalid(err) => write!(f, "Invalid VP8 color space: {err}"),
            Self::LumaPredictionModeInvalid(err) => {
                write!(f, "Invalid VP8 luma prediction mode: {err}")
            }
            Self::IntraPredictionModeInvalid(err) => {
                write!(f, "Invalid VP8 intra prediction mode: {err}")
            }
            Self::ChromaPredictionModeInvalid(err) => {
                write!(f, "Invalid VP8 chroma prediction mode: {err}")
            }
            Self::UnsupportedFeature(err) => write!(f, "Unsupported feature: {err}"),
        }
    }
}

impl std::error::Error for DecodingError {}

impl From<io::Error> for DecodingError {
    fn from(err: io::Error) -> Self {
        Self::IoError(err)
    }
}
