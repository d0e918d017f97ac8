//! Image patcher: from encoded bytes to the normalized pixel tensor and its token layout.

mod bindings;
pub mod layout;
