//! The engine: runs task plugins (WebAssembly components) in a sandbox.
//!
//! # What it owns
//!
//! - **Loading** ([`Engine::load`]): a component is validated (a core module, a
//!   component of another world, a truncated or random file each get a
//!   [`LoadError`] that names the problem), compiled once (the artifact is cached on
//!   disk by sha256 and engine settings, so a restart does not recompile),
//!   pre-instantiated against the host's linker, and asked for its manifest.
//! - **Executing** ([`Engine::start`], [`Engine::execute`], [`Engine::split`]):
//!   every execution gets a fresh instance, in one of two [`Mode`]s:
//!   - *pooled* (1:N, light): many executions multiplexed on a few threads of the
//!     engine's own runtime, instances from the pooling allocator, fuel yielding so
//!     a spinning plugin never starves the others;
//!   - *dedicated* (1:1, heavy): one OS thread per execution.
//!
//!   Each mode has a bounded number of slots; a request waits for one.
//! - **Ending executions**: a fuel budget bounds CPU work (deterministic), a
//!   wall-clock deadline bounds waiting; both end as [`Status::Timeout`], apart from
//!   plugin errors and traps ([`Status::Failed`]) and host cancels
//!   ([`Status::Canceled`]). Memory, table and stack limits fail the execution,
//!   never the engine. See [`ExecutionControl`] for stop and cancel.
//! - **Capabilities**: deny by default; see [`Grants`]. wasi:http is linked only
//!   for plugins that import it and declare the `http` capability; every request
//!   goes through [`http`]'s policy.
//!
//! # Example
//!
//! ```no_run
//! # async fn f(bytes: Vec<u8>) -> anyhow::Result<()> {
//! use jobstack::engine::{Engine, EngineConfig, ExecutionRequest, Mode, Part};
//!
//! let engine = Engine::new(EngineConfig::default())?;
//! let plugin = engine.load(&bytes).await?;
//! let parts = engine.split(&plugin, r#"{"range":"10.0.0.0/30"}"#).await?;
//! let request = ExecutionRequest::new(r#"{"range":"10.0.0.0/30"}"#, parts[0].clone());
//! let outcome = engine.execute(&plugin, request.mode(Mode::Pooled)).await;
//! println!("{}", outcome.status.as_str());
//! # Ok(()) }
//! ```

pub(crate) mod bindings;
mod capabilities;
pub mod config;
mod control;
mod error;
mod execute;
pub(crate) mod host;
pub mod http;
mod load;
mod module_store;
mod outcome;
mod params_schema;
mod plugin;

pub use capabilities::{Grants, Preopen};
pub use config::{EngineConfig, ExecutionLimits};
pub use control::{ExecutionControl, Progress};
pub use error::LoadError;
pub use execute::{ExecutionHandle, ExecutionRequest, Mode, SplitError, StageError};
pub use host::{LogLevel, LogLine, LogSource};
pub use module_store::ModuleStore;
pub use outcome::{ExecutionOutcome, Status};
pub use params_schema::{ParamsError, check_params};
pub use plugin::{Capability, Manifest, Part, Plugin, Sha256};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime::{Enabled, InstanceAllocationStrategy, PoolingAllocationConfig};

use config::*;
use host::HostState;

/// Component instances kept for the engine's own short calls (`manifest`, `split`)
/// beyond the configured slots.
const INTERNAL_SLOTS: u32 = 8;

/// The jobstack engine. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    wasmtime: wasmtime::Engine,
    linker: Linker<HostState>,
    /// `linker` plus wasi:http, for plugins declaring the `http` capability.
    http_linker: Linker<HostState>,
    config: EngineConfig,
    modules: Option<ModuleStore>,
    loaded: Mutex<HashMap<Sha256, Arc<Plugin>>>,
    /// One load (compilation) at a time: the compiler already uses every core,
    /// and loads of one module that arrive together (a new plugin's first
    /// parts on every slot) compile it once instead of once each.
    loading: tokio::sync::Mutex<()>,
    compilations: AtomicU64,
    /// Executions instantiated and not yet ended (parked in the host included).
    running: Arc<AtomicUsize>,
    pooled_runtime: Option<tokio::runtime::Runtime>,
    pooled_slots: Arc<Semaphore>,
    dedicated_slots: Arc<Semaphore>,
    internal_slots: Arc<Semaphore>,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
        // Dropping a runtime blocks; the engine may be dropped inside async code.
        if let Some(rt) = self.pooled_runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Engine {
    /// Start an engine: compiler, pooling allocator, linker, epoch ticker and the
    /// runtime of pooled executions.
    pub fn new(config: EngineConfig) -> Result<Self, LoadError> {
        let engine_err = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let max_memory = config.max_memory.min(MAX_MEMORY_LIMIT);
        let slots = config.pooled_slots + config.dedicated_slots + INTERNAL_SLOTS;

        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(slots)
            .total_core_instances(slots * MAX_CORE_INSTANCES_PER_PLUGIN)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_PLUGIN)
            .max_memories_per_component(MAX_MEMORIES_PER_PLUGIN)
            .max_tables_per_component(MAX_TABLES_PER_PLUGIN)
            .total_memories(slots * MAX_MEMORIES_PER_PLUGIN)
            .total_tables(slots * MAX_TABLES_PER_PLUGIN)
            .total_stacks(slots)
            .max_memory_size(max_memory as usize)
            .table_elements(DEFAULT_TABLE_ELEMENTS)
            // Reusing a slot without returning its pages to the kernel avoids an
            // madvise and a TLB shootdown per execution. With PAGEMAP_SCAN (Linux
            // 6.7+) only the pages the last execution dirtied are reset, so a large
            // keep-resident window costs nothing for small plugins.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(64 << 10);

        let mut wasm_config = wasmtime::Config::new();
        wasm_config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(MAX_WASM_STACK)
            .async_stack_size(ASYNC_STACK_SIZE)
            .memory_reservation(max_memory)
            .memory_init_cow(true);
        let wasmtime = wasmtime::Engine::new(&wasm_config).map_err(engine_err)?;

        let mut linker = Linker::new(&wasmtime);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_err)?;
        bindings::add_to_linker(&mut linker).map_err(engine_err)?;
        let mut http_linker = linker.clone();
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(engine_err)?;

        let modules = match &config.data_dir {
            Some(dir) => Some(ModuleStore::open(dir, &wasmtime)?),
            None => None,
        };
        let pooled_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.pooled_threads.max(1))
            .thread_name("jobstack-pooled")
            .enable_all()
            .build()?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(wasmtime.weak(), ticker_stop.clone())?;

        Ok(Engine {
            inner: Arc::new(Inner {
                pooled_slots: Arc::new(Semaphore::new(config.pooled_slots as usize)),
                dedicated_slots: Arc::new(Semaphore::new(config.dedicated_slots as usize)),
                internal_slots: Arc::new(Semaphore::new(INTERNAL_SLOTS as usize)),
                wasmtime,
                linker,
                http_linker,
                config,
                modules,
                loaded: Mutex::new(HashMap::new()),
                loading: tokio::sync::Mutex::new(()),
                compilations: AtomicU64::new(0),
                running: Arc::new(AtomicUsize::new(0)),
                pooled_runtime: Some(pooled_runtime),
                ticker_stop,
            }),
        })
    }

    /// The settings the engine was started with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The module store, when the engine has a data directory.
    pub fn module_store(&self) -> Option<&ModuleStore> {
        self.inner.modules.as_ref()
    }

    /// How many components this engine compiled (rather than loaded from its
    /// cache) since it started.
    pub fn compilations(&self) -> u64 {
        self.inner.compilations.load(Ordering::Relaxed)
    }

    /// Executions that hold an instance right now (running code or waiting in
    /// the host).
    pub fn running_executions(&self) -> usize {
        self.inner.running.load(Ordering::Relaxed)
    }
}

/// Advance the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
/// Each store checks its deadline and cancel flag when the epoch moves.
fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    std::thread::Builder::new().name("jobstack-epoch".into()).spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(EPOCH_TICK);
            match engine.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        }
    })?;
    Ok(())
}
