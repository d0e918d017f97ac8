//! Image patcher: from encoded bytes to the normalized pixel tensor and its token layout.

pub mod bindings;
pub mod bmp;
pub mod decode;
pub mod error;
pub mod gif;
pub mod layout;
pub mod orientation;
pub mod png_repair;
pub mod preprocess;
pub mod resize_cv;
pub mod resize_pil;
pub mod rgb;
pub mod simd;
pub mod webp;
