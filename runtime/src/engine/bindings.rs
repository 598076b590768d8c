//! Host bindings of the `task` world, generated from `wit/task.wit`.
//!
//! Exports are async so that pooled executions can yield (fuel) and be dropped
//! (deadline, cancel) while a plugin waits in the host. The `host` imports are
//! synchronous and trappable: they only record into the execution's journal, and
//! a plugin that floods it is stopped with a trap rather than a silent drop.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "task",
    imports: { default: trappable },
    exports: { default: async },
});

pub use jobstack::plugin::host::Level;
pub use jobstack::plugin::types as wit;
