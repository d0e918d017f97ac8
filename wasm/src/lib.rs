//! The Rust half of the Pixtral server, compiled to WebAssembly. Each module keeps its plain Rust code
//! (unit-tested natively with `cargo test`) apart from its `wasm_bindgen` exports (`bindings.rs`).

pub mod patcher;
pub mod tokenizer;
