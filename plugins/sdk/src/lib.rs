//! Bindings and small helpers for writing jobstack task plugins in Rust.
//!
//! A plugin implements [`Guest`] and exports it with [`export!`]:
//!
//! ```text
//! use jobstack_plugin::{Guest, Job, Manifest, Origin, Part};
//!
//! struct Hello;
//!
//! impl Guest for Hello {
//!     fn manifest() -> Manifest { /* ... */ }
//!     fn split(params: String) -> Result<Vec<Part>, String> { /* ... */ }
//!     fn init(params: String) -> Result<(), String> { Ok(()) }
//!     fn execute(job: Job) -> Result<String, String> { /* ... */ }
//!     fn stage(records: Vec<String>, origin: Origin) -> Result<Vec<String>, String> {
//!         Ok(Vec::new()) // no inventory
//!     }
//! }
//!
//! jobstack_plugin::export!(Hello);
//! ```
//!
//! The contract itself is `wit/task.wit` at the root of the jobstack repository;
//! this crate only generates its Rust bindings and adds conveniences.

/// The generated bindings of the `task` world. In a module of its own because
/// wit-bindgen's exported macro clashes with its re-export at a crate root.
#[doc(hidden)]
// Generated code: the canonical ABI flattens records into many arguments.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "task",
        pub_export_macro: true,
        default_bindings_module: "jobstack_plugin::bindings",
    });
}

#[cfg(feature = "http")]
pub mod http;

pub use bindings::jobstack::plugin::host;
pub use bindings::jobstack::plugin::types::Capability;
pub use bindings::{Guest, Job, Manifest, Origin, Part, export};

/// Parse a JSON text (parameters, secrets, a part payload) into `T`, turning a
/// parse failure into the error string the contract returns.
pub fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid {what}: {e}"))
}

/// Serialize a value to the JSON text the contract returns.
pub fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plugin values serialize to JSON")
}

/// Log at info level.
pub fn info(message: &str) {
    host::log(host::Level::Info, message);
}

/// Log at warn level.
pub fn warn(message: &str) {
    host::log(host::Level::Warn, message);
}

/// Emit one result record, serialized as JSON.
pub fn emit<T: serde::Serialize>(record: &T) {
    host::emit(&to_json(record));
}

/// A manifest for a plugin that takes any parameters and needs no capabilities;
/// adjust the fields that differ.
pub fn manifest(name: &str, version: &str, description: &str) -> Manifest {
    Manifest {
        name: name.to_string(),
        version: version.to_string(),
        description: description.to_string(),
        params_schema: "{}".to_string(),
        capabilities: Vec::new(),
    }
}

/// One part with no targets whose payload is `payload` (JSON text).
pub fn part(label: &str, payload: &str) -> Part {
    Part { label: label.to_string(), targets: Vec::new(), payload: payload.to_string() }
}
