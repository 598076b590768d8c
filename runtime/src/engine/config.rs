//! Engine-wide settings and the documented constants behind every limit.
//!
//! Each limit lives here once, with its reason and default. [`EngineConfig`] is
//! fixed when the engine starts (it shapes the pooling allocator and the compiled
//! code); [`ExecutionLimits`] is chosen per execution, within the engine's bounds.

use std::path::PathBuf;
use std::time::Duration;

/// Fuel granted per millisecond of an execution's timeout.
///
/// Fuel counts WebAssembly operations, so a budget is deterministic: the same
/// plugin on the same input stops at the same instruction on every machine.
/// Calibrated on this project's reference machine (2 cores), where a tight loop
/// burns 10 to 14 million fuel per millisecond: a spinning plugin reaches its
/// wall-clock deadline just before its fuel runs out, so both bound it at about
/// the same time; on a machine much faster than the reference, fuel ends it first.
pub const FUEL_PER_MS: u64 = 15_000_000;

/// How much fuel a pooled execution may burn before it yields to the executor.
///
/// Small enough that a spinning plugin gives the thread back about every 33 µs
/// (500,000 fuel at [`FUEL_PER_MS`]), so hundreds of other executions keep running beside it; large enough that the
/// yield costs under 1% of the plugin's time.
pub const FUEL_YIELD_INTERVAL: u64 = 500_000;

/// Period of the epoch ticker that enforces wall-clock deadlines and cancel
/// while a plugin runs code (a plugin waiting in the host is stopped at once).
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Default time an execution gets when the caller does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default grace period between a stop request and the cancel that follows it.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// Time and fuel allowed for `split`, which runs on the daemon: it must only cut
/// the work, never do it.
pub const SPLIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time and fuel allowed for `stage`, which runs on the daemon for every
/// finished part: it only maps records to observations.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(5);

/// Time and fuel allowed for `manifest`, called once at upload.
pub const MANIFEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of a reused memory slot kept resident (reset in place) rather than
/// returned to the kernel: covers the stack and heap a typical plugin touches.
pub const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Default linear memory an execution may use, in bytes.
pub const DEFAULT_MEMORY_LIMIT: u64 = 128 << 20;

/// Largest linear memory any execution may be given; also the size of a memory
/// slot in the pooling allocator.
pub const MAX_MEMORY_LIMIT: u64 = 1 << 30;

/// Most table elements an execution may have (function tables of Rust plugins hold
/// a few hundred entries).
pub const DEFAULT_TABLE_ELEMENTS: usize = 20_000;

/// Most core instances a plugin may create. A component is a handful of core
/// instances (the code, its shims, adapters).
pub const MAX_CORE_INSTANCES_PER_PLUGIN: u32 = 32;

/// Most linear memories and tables per plugin instance.
pub const MAX_MEMORIES_PER_PLUGIN: u32 = 2;
/// See [`MAX_MEMORIES_PER_PLUGIN`].
pub const MAX_TABLES_PER_PLUGIN: u32 = 8;

/// WebAssembly stack a plugin may use before it traps with a stack overflow.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Native stack of each pooled execution's fiber; must exceed [`MAX_WASM_STACK`]
/// plus what host calls need.
pub const ASYNC_STACK_SIZE: usize = 2 << 20;

/// Log lines kept per execution; later lines are dropped and counted.
pub const MAX_LOG_LINES: usize = 1_000;

/// Longest log line kept; longer lines are cut.
pub const MAX_LOG_LINE_BYTES: usize = 4 << 10;

/// Bytes of stdout and of stderr captured per execution; the rest is dropped.
pub const MAX_STDIO_BYTES: usize = 64 << 10;

/// Total size of the records one execution may emit. Past it the execution fails:
/// a result silently missing records would be worse than an error.
pub const MAX_EMITTED_BYTES: usize = 16 << 20;

/// Largest output an execution may return.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// Settings fixed for the life of an [`Engine`](super::Engine).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where modules (`modules/<sha256>.wasm`) and compiled artifacts
    /// (`compiled/<sha256>-<engine>.cwasm`) are kept. `None`: in memory only.
    pub data_dir: Option<PathBuf>,
    /// Pooled (1:N) executions that may run at once. Default 1,000.
    pub pooled_slots: u32,
    /// Dedicated (1:1) executions that may run at once, each on its own OS
    /// thread. Default: twice the number of cores.
    pub dedicated_slots: u32,
    /// Worker threads multiplexing the pooled executions. Default: the number of cores.
    pub pooled_threads: usize,
    /// Largest linear memory an execution may ask for. Default [`MAX_MEMORY_LIMIT`].
    pub max_memory: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        EngineConfig {
            data_dir: None,
            pooled_slots: 1_000,
            dedicated_slots: (2 * cores) as u32,
            pooled_threads: cores,
            max_memory: MAX_MEMORY_LIMIT,
        }
    }
}

/// Limits of one execution. Start from [`ExecutionLimits::default`] and adjust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionLimits {
    /// Wall-clock deadline, counted from the moment the execution gets its slot.
    /// Default [`DEFAULT_TIMEOUT`].
    pub timeout: Duration,
    /// CPU budget in fuel. Default: `timeout` × [`FUEL_PER_MS`].
    pub fuel: Option<u64>,
    /// Linear memory in bytes. Default [`DEFAULT_MEMORY_LIMIT`]; at most the
    /// engine's `max_memory`.
    pub memory: u64,
    /// Table elements. Default [`DEFAULT_TABLE_ELEMENTS`].
    pub table_elements: usize,
}

impl Default for ExecutionLimits {
    fn default() -> Self {
        ExecutionLimits {
            timeout: DEFAULT_TIMEOUT,
            fuel: None,
            memory: DEFAULT_MEMORY_LIMIT,
            table_elements: DEFAULT_TABLE_ELEMENTS,
        }
    }
}

impl ExecutionLimits {
    /// Limits with the given timeout and the default for everything else.
    pub fn with_timeout(timeout: Duration) -> Self {
        ExecutionLimits { timeout, ..ExecutionLimits::default() }
    }

    /// The fuel budget: explicit, or derived from the timeout.
    pub fn fuel_budget(&self) -> u64 {
        self.fuel.unwrap_or_else(|| {
            let ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
            ms.saturating_mul(FUEL_PER_MS).max(1)
        })
    }
}
