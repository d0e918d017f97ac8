//! Image patcher: from encoded bytes to the normalized pixel tensor and its token layout.

pub mod layout;
