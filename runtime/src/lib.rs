//! jobstack: a WebAssembly-plugin task runtime.
pub mod engine;
