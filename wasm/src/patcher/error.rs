//! What can be wrong with an input image. Each kind has a stable code that the TypeScript side maps to its
//! error classes (and the HTTP layer to 400 or 413).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// The bytes are none of the supported formats (PNG, JPEG, WebP, GIF, BMP).
    UnknownFormat,
    /// A supported format using a feature the decoder lacks (e.g. 12-bit JPEG).
    Unsupported(String),
    /// Truncated or corrupt data.
    Corrupt(String),
    /// The header declares a width or height of zero.
    ZeroSize { width: u32, height: u32 },
    /// The header declares more pixels than the caller allows; nothing was decoded.
    TooManyPixels { width: u32, height: u32, limit: u64 },
    /// Preprocessing options out of range (not the image's fault).
    InvalidOptions(String),
}

impl ImageError {
    pub fn code(&self) -> &'static str {
        match self {
            ImageError::UnknownFormat => "unknown_format",
            ImageError::Unsupported(_) => "unsupported",
            ImageError::Corrupt(_) => "corrupt",
            ImageError::ZeroSize { .. } => "zero_size",
            ImageError::TooManyPixels { .. } => "too_many_pixels",
            ImageError::InvalidOptions(_) => "invalid_options",
        }
    }
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::UnknownFormat => {
                write!(f, "unknown image format (supported: PNG, JPEG, WebP, GIF, BMP)")
            }
            ImageError::Unsupported(what) => write!(f, "unsupported image: {what}"),
            ImageError::Corrupt(what) => write!(f, "corrupt or truncated image: {what}"),
            ImageError::ZeroSize { width, height } => write!(f, "image has zero size ({width}x{height})"),
            ImageError::TooManyPixels { width, height, limit } => write!(
                f,
                "image is {width}x{height} = {} pixels, more than the limit of {limit}",
                *width as u64 * *height as u64
            ),
            ImageError::InvalidOptions(what) => write!(f, "invalid preprocessing options: {what}"),
        }
    }
}
