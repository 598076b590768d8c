//! jobstack: a WebAssembly-plugin task runtime for fleet inventory and management.
//!
//! One daemon hosts a **scheduler** and an **engine**. Each task type is a
//! sandboxed WebAssembly component implementing the `task` world of `wit/`.
//!
//! - [`engine`]: loads plugins and runs them in pooled (1:N) or dedicated (1:1)
//!   executions with fuel and wall-clock timeouts, limits and capability grants.
//! - [`bench`]: the measurements behind `jobstack bench`.

pub mod bench;
pub mod engine;
