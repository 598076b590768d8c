//! Errors of loading a plugin: what was wrong with the bytes, in words a plugin
//! author can act on.
//!
//! Failures of an *execution* are not errors of the engine: they are reported in
//! its [`ExecutionOutcome`](super::ExecutionOutcome) (failed, timeout, canceled).

use super::plugin::Sha256;

/// Why a file could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is empty.
    #[error("the file is empty: a plugin is a WebAssembly component (.wasm)")]
    Empty,
    /// The bytes do not start with the WebAssembly magic number.
    #[error(
        "not a WebAssembly file: it does not start with the `\\0asm` magic \
         (a plugin is a component built with `cargo build --target wasm32-wasip2`)"
    )]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin for the \
         `wasm32-wasip2` target, which produces a component"
    )]
    CoreModule,
    /// The component is malformed or truncated.
    #[error("invalid component (truncated or corrupt?): {0}")]
    Invalid(String),
    /// The component imports something the host does not provide.
    #[error("the plugin imports something jobstack does not provide: {0}")]
    UnsupportedImport(String),
    /// The component does not export the `task` world.
    #[error("the component does not implement the jobstack:plugin/task world: {0}")]
    WrongWorld(String),
    /// `manifest()` failed or returned something invalid.
    #[error("the plugin's manifest is not valid: {0}")]
    BadManifest(String),
    /// The module store could not read or write.
    #[error("module store: {0}")]
    Io(#[from] std::io::Error),
    /// No module with that sha256 is stored.
    #[error("no plugin with sha256 {0} is stored")]
    UnknownModule(Sha256),
    /// The engine itself failed (out of pool slots, compiler error).
    #[error("engine: {0}")]
    Engine(String),
}
