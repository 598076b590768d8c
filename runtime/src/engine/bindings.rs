//! Host bindings of the `task` world in each version of the contract the host
//! links: the current one (`wit/task.wit`, 0.2.0) and 0.1.0
//! (`wit/0.1.0/task.wit`, without `stage`). Both versions' records are the
//! same, so 0.1.0 shares the current types; each version's `host` interface
//! is linked under its own name. [`TaskPre`] and [`Task`] hide which version
//! a plugin implements from the rest of the engine.
//!
//! Exports are async so that pooled executions can yield (fuel) and be dropped
//! (deadline, cancel) while a plugin waits in the host. The `host` imports are
//! synchronous and trappable: they only record into the execution's journal, and
//! a plugin that floods it is stopped with a trap rather than a silent drop.

use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::host::HostState;

mod current {
    wasmtime::component::bindgen!({ path: "../wit", world: "task",
        imports: { default: trappable }, exports: { default: async } });
}

mod v0_1 {
    wasmtime::component::bindgen!({ path: "../wit/0.1.0", world: "task",
        imports: { default: trappable }, exports: { default: async },
        with: { "jobstack:plugin/types@0.1.0": super::current::jobstack::plugin::types } });
}

pub(crate) use current::jobstack::plugin::host::Host;
pub use current::jobstack::plugin::host::Level;
pub use current::jobstack::plugin::types as wit;
pub(crate) use v0_1::jobstack::plugin::host::{Host as HostV0_1, Level as LevelV0_1};

/// The version of the contract the host calls current.
pub const CONTRACT: &str = "0.2.0";

/// Link the `host` interface of every version the host supports.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    current::Task::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?;
    v0_1::Task::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
}

/// A plugin pre-instantiated against the version of the world it implements.
#[derive(Clone)]
pub(crate) enum TaskPre {
    Current(current::TaskPre<HostState>),
    V0_1(v0_1::TaskPre<HostState>),
}

impl TaskPre {
    /// The plugin's world: the current one, else 0.1.0; when it is neither,
    /// why it is not the current one.
    pub fn new(pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        match current::TaskPre::new(pre.clone()) {
            Ok(current) => Ok(Self::Current(current)),
            Err(e) => v0_1::TaskPre::new(pre).map(Self::V0_1).map_err(|_| e),
        }
    }

    /// The version of the contract the plugin implements.
    pub fn contract(&self) -> &'static str {
        match self {
            Self::Current(_) => CONTRACT,
            Self::V0_1(_) => "0.1.0",
        }
    }

    /// A fresh instance.
    pub async fn instantiate_async(&self, store: &mut Store<HostState>) -> wasmtime::Result<Task> {
        Ok(match self {
            Self::Current(pre) => Task::Current(pre.instantiate_async(store).await?),
            Self::V0_1(pre) => Task::V0_1(pre.instantiate_async(store).await?),
        })
    }
}

/// An instance of a plugin, of either version.
pub(crate) enum Task {
    Current(current::Task),
    V0_1(v0_1::Task),
}

/// What a call into a plugin answers: the plugin's own result, inside the
/// engine's (a trap, a limit).
pub(crate) type Answer<T> = wasmtime::Result<Result<T, String>>;

/// `$call` with `$t` bound to the instance, whichever version it is.
macro_rules! on_either {
    ($task:expr, $t:ident => $call:expr) => {
        match $task {
            Task::Current($t) => $call,
            Task::V0_1($t) => $call,
        }
    };
}

impl Task {
    pub async fn call_manifest(
        &self, store: &mut Store<HostState>,
    ) -> wasmtime::Result<wit::Manifest> {
        on_either!(self, t => t.call_manifest(store).await)
    }

    pub async fn call_split(
        &self, store: &mut Store<HostState>, params: &str,
    ) -> Answer<Vec<wit::Part>> {
        on_either!(self, t => t.call_split(store, params).await)
    }

    pub async fn call_init(&self, store: &mut Store<HostState>, params: &str) -> Answer<()> {
        on_either!(self, t => t.call_init(store, params).await)
    }

    pub async fn call_execute(
        &self, store: &mut Store<HostState>, job: &wit::Job,
    ) -> Answer<String> {
        on_either!(self, t => t.call_execute(store, job).await)
    }

    /// `stage`; a 0.1.0 plugin has none and maps its records to nothing.
    pub async fn call_stage(
        &self, store: &mut Store<HostState>, records: &[String], origin: &wit::Origin,
    ) -> Answer<Vec<String>> {
        match self {
            Self::Current(t) => t.call_stage(store, records, origin).await,
            Self::V0_1(_) => Ok(Ok(Vec::new())),
        }
    }
}
