//! Running one call into a plugin in a fresh instance: `split`, `manifest`, or
//! `init` then `execute`.
//!
//! Every call goes through [`Engine::launch`]: take a slot of the mode's kind,
//! build the store (fuel, limits, epoch deadline, WASI context from the grants),
//! instantiate from the plugin's `InstancePre`, call, and turn whatever happened
//! into an [`ExecutionOutcome`]. The call races the execution's cancel signal and its
//! wall-clock deadline, so a plugin waiting in the host is dropped at once; a
//! plugin running code is interrupted by fuel or by the epoch callback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{Task, TaskPre, wit};
use super::config::{FUEL_YIELD_INTERVAL, MAX_OUTPUT_BYTES, SPLIT_TIMEOUT, STAGE_TIMEOUT};
use super::control::ExecutionControl;
use super::host::{HostState, LimitHit, LogLevel, LogSource};
use super::outcome::{ExecutionOutcome, Status};
use super::plugin::{Part, Plugin};
use super::{Engine, ExecutionLimits, Grants};

/// How an execution is hosted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// 1:N: multiplexed with others on the engine's few threads. Light and fast;
    /// the right choice for I/O-bound work such as scans and inventories.
    #[default]
    Pooled,
    /// 1:1: a dedicated OS thread. For long CPU-heavy work that should not share.
    Dedicated,
}

/// Everything one `init` + `execute` needs.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    /// Task parameters (JSON).
    pub params: String,
    /// Task secrets (JSON object). Never logged.
    pub secrets: String,
    /// The part to work on.
    pub part: Part,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Pooled or dedicated.
    pub mode: Mode,
    /// Time, fuel, memory.
    pub limits: ExecutionLimits,
    /// What the plugin may touch (narrowed to its manifest's capabilities).
    pub grants: Grants,
}

impl ExecutionRequest {
    /// A pooled first attempt with default limits, no secrets and no grants.
    pub fn new(params: impl Into<String>, part: Part) -> Self {
        ExecutionRequest {
            params: params.into(),
            secrets: "{}".to_string(),
            part,
            attempt: 1,
            mode: Mode::Pooled,
            limits: ExecutionLimits::default(),
            grants: Grants::new(),
        }
    }

    /// Choose the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Choose the limits.
    pub fn limits(mut self, limits: ExecutionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Choose the grants.
    pub fn grants(mut self, grants: Grants) -> Self {
        self.grants = grants;
        self
    }

    /// Set the secrets (JSON object).
    pub fn secrets(mut self, secrets: impl Into<String>) -> Self {
        self.secrets = secrets.into();
        self
    }
}

/// `stage` did not map the records.
#[derive(Debug, thiserror::Error)]
#[error("stage {}: {}", .0.status.as_str(), .0.error.as_deref().unwrap_or("no reason given"))]
pub struct StageError(pub Box<ExecutionOutcome>);

/// `split` did not produce parts.
#[derive(Debug, thiserror::Error)]
#[error("split {}: {}", .0.status.as_str(), .0.error.as_deref().unwrap_or("no reason given"))]
pub struct SplitError(pub Box<ExecutionOutcome>);

/// The call made into a fresh instance.
pub(crate) enum Call {
    Manifest,
    Split { params: String },
    Execute { params: String, job: wit::Job },
    Stage { records: Vec<String>, origin: wit::Origin },
}

/// What the call returned when it returned normally.
pub(crate) enum CallResult {
    Manifest(wit::Manifest),
    Split(Vec<wit::Part>),
    Execute(String),
    Stage(Vec<String>),
}

/// A running execution: control it, then wait for its [`ExecutionOutcome`].
pub struct ExecutionHandle {
    control: Arc<ExecutionControl>,
    done: oneshot::Receiver<(ExecutionOutcome, Option<CallResult>)>,
}

impl ExecutionHandle {
    /// Stop and cancel this execution, read its progress.
    pub fn control(&self) -> &Arc<ExecutionControl> {
        &self.control
    }

    /// Wait for the end.
    pub async fn wait(self) -> ExecutionOutcome {
        self.finish().await.0
    }

    pub(crate) async fn finish(self) -> (ExecutionOutcome, Option<CallResult>) {
        self.done.await.unwrap_or_else(|_| {
            let outcome = ExecutionOutcome::not_run(
                Status::Failed,
                "the engine shut down during the execution".into(),
            );
            (outcome, None)
        })
    }
}

impl Engine {
    /// Start `init` + `execute` of one part; returns at once with a handle.
    pub fn start(&self, plugin: &Plugin, request: ExecutionRequest) -> ExecutionHandle {
        let execution = self.prepare_execute(plugin, request);
        self.launch(execution, false)
    }

    /// Run `init` + `execute` of one part to its end.
    ///
    /// Called from a task on the engine's own pooled threads (see
    /// [`Engine::spawn`]), a pooled execution runs inline in the caller's task:
    /// no hand-off between threads, which halves the latency of short parts.
    pub async fn execute(&self, plugin: &Plugin, request: ExecutionRequest) -> ExecutionOutcome {
        if request.mode == Mode::Pooled && self.on_pooled_threads() {
            let execution = self.prepare_execute(plugin, request);
            let Ok(_slot) = self.inner.pooled_slots.acquire().await else {
                return ExecutionOutcome::not_run(
                    Status::Failed,
                    "the engine is shutting down".into(),
                );
            };
            return execution.execute().await.0;
        }
        self.start(plugin, request).wait().await
    }

    /// Run `future` on the engine's pooled threads. Callers that drive many
    /// executions (an agent's part loop) run there so [`Engine::execute`] needs
    /// no thread hand-off.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.pooled_runtime().spawn(future)
    }

    fn on_pooled_threads(&self) -> bool {
        tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.id() == self.pooled_runtime().handle().id())
    }

    fn pooled_runtime(&self) -> &tokio::runtime::Runtime {
        self.inner
            .pooled_runtime
            .as_ref()
            .expect("the engine's runtime lives as long as the engine")
    }

    /// Prepare `init` + `execute` of one part.
    fn prepare_execute(&self, plugin: &Plugin, request: ExecutionRequest) -> PreparedExecution {
        let job = wit::Job {
            params: request.params.clone(),
            secrets: request.secrets,
            part: (&request.part).into(),
            attempt: request.attempt,
        };
        let grants = request.grants.restrict_to(&plugin.manifest.capabilities);
        let call = Call::Execute { params: request.params, job };
        self.prepare(plugin.pre.clone(), call, request.mode, request.limits, grants)
    }

    /// Cut a run into parts with the plugin's `split`: no capabilities, a tight
    /// budget ([`SPLIT_TIMEOUT`]). The outcome (logs included) comes with an error.
    pub async fn split(&self, plugin: &Plugin, params: &str) -> Result<Vec<Part>, SplitError> {
        let outcome = self.split_outcome(plugin, params).await;
        if !outcome.is_finished() {
            return Err(SplitError(Box::new(outcome)));
        }
        let parts = outcome.output.clone().unwrap_or_default();
        serde_json::from_value(parts).map_err(|e| {
            let mut outcome = outcome;
            outcome.status = Status::Failed;
            outcome.error = Some(format!("split returned parts the host cannot read: {e}"));
            SplitError(Box::new(outcome))
        })
    }

    /// Run `split` and return its outcome; on success the output is the parts.
    pub async fn split_outcome(&self, plugin: &Plugin, params: &str) -> ExecutionOutcome {
        let call = Call::Split { params: params.to_string() };
        let execution = self.prepare(
            plugin.pre.clone(),
            call,
            Mode::Pooled,
            ExecutionLimits::with_timeout(SPLIT_TIMEOUT),
            Grants::new(),
        );
        self.launch(execution, true).wait().await
    }

    /// Map the emitted `records` (JSON texts) of a part that `agent` finished
    /// over `targets` to inventory observations (JSON texts) with the
    /// plugin's `stage`: no capabilities, a tight budget ([`STAGE_TIMEOUT`]).
    /// A plugin of contract 0.1.0 has no stage and maps them to nothing. The
    /// outcome (logs included) comes with an error.
    pub async fn stage(
        &self, plugin: &Plugin, records: &[String], agent: &str, targets: &[String],
    ) -> Result<Vec<String>, StageError> {
        if plugin.contract() != super::bindings::CONTRACT {
            return Ok(Vec::new());
        }
        let origin = wit::Origin { agent: agent.to_string(), targets: targets.to_vec() };
        let call = Call::Stage { records: records.to_vec(), origin };
        let limits = ExecutionLimits::with_timeout(STAGE_TIMEOUT);
        let execution = self.prepare(plugin.pre.clone(), call, Mode::Pooled, limits, Grants::new());
        let (outcome, result) = self.launch(execution, true).finish().await;
        match result {
            Some(CallResult::Stage(observations)) if outcome.is_finished() => Ok(observations),
            _ => Err(StageError(Box::new(outcome))),
        }
    }

    /// Prepare `call` for a fresh instance.
    pub(crate) fn prepare(
        &self, pre: TaskPre, call: Call, mode: Mode, limits: ExecutionLimits, grants: Grants,
    ) -> PreparedExecution {
        PreparedExecution {
            engine: self.inner.wasmtime.clone(),
            pre,
            call,
            mode,
            limits: clamp(limits, self.inner.config.max_memory),
            grants,
            control: Arc::new(ExecutionControl::default()),
            running: self.inner.running.clone(),
        }
    }

    /// Take a slot of the execution's mode (or of the engine's own, for
    /// `internal` calls) and run it on the mode's threads.
    pub(crate) fn launch(&self, execution: PreparedExecution, internal: bool) -> ExecutionHandle {
        let control = execution.control.clone();
        let (tx, done) = oneshot::channel();
        let slots = match (internal, execution.mode) {
            (true, _) => self.inner.internal_slots.clone(),
            (false, Mode::Pooled) => self.inner.pooled_slots.clone(),
            (false, Mode::Dedicated) => self.inner.dedicated_slots.clone(),
        };
        let runtime = self.pooled_runtime();
        match execution.mode {
            Mode::Pooled => {
                runtime.spawn(execution.in_slot(slots, tx));
            }
            Mode::Dedicated => {
                // Wait for the slot on the shared runtime, then move to a thread
                // of its own; the thread ends with the execution.
                runtime.spawn(async move {
                    let Ok(permit) = slots.acquire_owned().await else {
                        return;
                    };
                    let spawned = std::thread::Builder::new()
                        .name("jobstack-dedicated".into())
                        .spawn(move || {
                            let rt =
                                tokio::runtime::Builder::new_current_thread().enable_all().build();
                            let result = match rt {
                                Ok(rt) => rt.block_on(execution.execute()),
                                Err(e) => (
                                    ExecutionOutcome::not_run(
                                        Status::Failed,
                                        format!("cannot start a runtime: {e}"),
                                    ),
                                    None,
                                ),
                            };
                            drop(permit);
                            let _ = tx.send(result);
                        });
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "cannot spawn a dedicated execution thread");
                    }
                });
            }
        }
        ExecutionHandle { control, done }
    }
}

fn clamp(mut limits: ExecutionLimits, max_memory: u64) -> ExecutionLimits {
    limits.memory = limits.memory.min(max_memory);
    limits
}

/// Why the host interrupted running code from the epoch callback.
#[derive(Debug, thiserror::Error)]
enum Interrupted {
    #[error("canceled")]
    Canceled,
    #[error("wall-clock deadline passed")]
    Deadline,
}

/// How the race between the call, the deadline and cancel ended.
enum Ended {
    Returned(wasmtime::Result<Result<CallResult, String>>),
    Deadline,
    Canceled,
}

/// One execution of a call into a plugin (`manifest`, `split`, or `init` +
/// `execute`), prepared: it only waits for a slot. Not a scheduler run.
pub(crate) struct PreparedExecution {
    engine: wasmtime::Engine,
    pre: TaskPre,
    call: Call,
    mode: Mode,
    limits: ExecutionLimits,
    grants: Grants,
    control: Arc<ExecutionControl>,
    running: Arc<AtomicUsize>,
}

/// Counts an execution as running for as long as it lives.
struct RunningGuard(Arc<AtomicUsize>);

impl RunningGuard {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        RunningGuard(counter.clone())
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PreparedExecution {
    async fn in_slot(
        self, slots: Arc<Semaphore>, tx: oneshot::Sender<(ExecutionOutcome, Option<CallResult>)>,
    ) {
        let Ok(_permit) = slots.acquire_owned().await else {
            return;
        };
        let _ = tx.send(self.execute().await);
    }

    async fn execute(self) -> (ExecutionOutcome, Option<CallResult>) {
        let started = Instant::now();
        let deadline = started + self.limits.timeout;
        let state = match HostState::new(&self.grants, &self.limits, self.control.clone(), deadline)
        {
            Ok(state) => state,
            Err(e) => {
                return (ExecutionOutcome::not_run(Status::Failed, e.to_string()), None);
            }
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let fuel = self.limits.fuel_budget();
        if let Err(e) = store.set_fuel(fuel) {
            return (ExecutionOutcome::not_run(Status::Failed, format!("{e:#}")), None);
        }
        if self.mode == Mode::Pooled {
            let _ = store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL));
        }
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            if s.control.is_canceled() {
                return Err(wasmtime::Error::new(Interrupted::Canceled));
            }
            if Instant::now() >= s.deadline {
                return Err(wasmtime::Error::new(Interrupted::Deadline));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);

        let ended = {
            let work = async {
                let task = self.pre.instantiate_async(&mut store).await?;
                let _running = RunningGuard::new(&self.running);
                invoke(&task, &mut store, &self.call).await
            };
            tokio::select! {
                biased;
                _ = self.control.canceled() => Ended::Canceled,
                _ = tokio::time::sleep_until(deadline.into()) => Ended::Deadline,
                r = work => Ended::Returned(r),
            }
        };

        let fuel_consumed = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let state = store.into_data();
        let (status, output, error, result) = classify(ended, &state, &self.limits, fuel);
        let mut journal = state.journal;
        for note in state.http_policy.take_notes() {
            journal.log(LogLevel::Warn, LogSource::Engine, note);
        }
        for line in state.stdout.lines() {
            journal.log(LogLevel::Info, LogSource::Stdout, line);
        }
        for line in state.stderr.lines() {
            journal.log(LogLevel::Warn, LogSource::Stderr, line);
        }
        if journal.dropped_log_lines > 0 {
            let n = journal.dropped_log_lines;
            journal.logs.push(super::LogLine {
                level: LogLevel::Warn,
                source: LogSource::Engine,
                message: format!("{n} more log lines were dropped"),
            });
        }
        let outcome = ExecutionOutcome {
            status,
            output,
            error,
            logs: journal.logs,
            emitted: journal.emitted,
            progress: self.control.progress(),
            fuel_consumed,
            duration: started.elapsed(),
        };
        (outcome, result)
    }
}

async fn invoke(
    task: &Task, store: &mut Store<HostState>, call: &Call,
) -> wasmtime::Result<Result<CallResult, String>> {
    Ok(match call {
        Call::Manifest => Ok(CallResult::Manifest(task.call_manifest(&mut *store).await?)),
        Call::Split { params } => {
            task.call_split(&mut *store, params).await?.map(CallResult::Split)
        }
        Call::Execute { params, job } => match task.call_init(&mut *store, params).await? {
            Err(e) => Err(format!("init: {e}")),
            Ok(()) => task.call_execute(&mut *store, job).await?.map(CallResult::Execute),
        },
        Call::Stage { records, origin } => {
            task.call_stage(&mut *store, records, origin).await?.map(CallResult::Stage)
        }
    })
}

type Classified = (Status, Option<serde_json::Value>, Option<String>, Option<CallResult>);

/// Turn how the call ended into a status, an output and an error a user can act on.
fn classify(ended: Ended, state: &HostState, limits: &ExecutionLimits, fuel: u64) -> Classified {
    let deadline_msg =
        || format!("timed out: wall-clock deadline of {} passed", human(limits.timeout));
    match ended {
        Ended::Canceled => (Status::Canceled, None, Some("canceled by the host".into()), None),
        Ended::Deadline => (Status::Timeout, None, Some(deadline_msg()), None),
        Ended::Returned(Ok(Err(plugin_error))) => (Status::Failed, None, Some(plugin_error), None),
        Ended::Returned(Ok(Ok(result))) => match output_of(&result) {
            Ok(output) => (Status::Finished, Some(output), None, Some(result)),
            Err(e) => (Status::Failed, None, Some(e), None),
        },
        Ended::Returned(Err(e)) => {
            if let Some(i) = e.downcast_ref::<Interrupted>() {
                return match i {
                    Interrupted::Canceled => {
                        (Status::Canceled, None, Some("canceled by the host".into()), None)
                    }
                    Interrupted::Deadline => (Status::Timeout, None, Some(deadline_msg()), None),
                };
            }
            let message = match e.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => {
                    let msg = format!("timed out: CPU budget of {fuel} fuel exhausted");
                    return (Status::Timeout, None, Some(msg), None);
                }
                Some(Trap::StackOverflow) => format!(
                    "wasm stack exhausted (limit {} KiB): runaway recursion?",
                    super::config::MAX_WASM_STACK >> 10
                ),
                _ => match &state.limiter.hit {
                    Some(LimitHit::Memory { desired, limit }) => format!(
                        "memory limit exceeded: the plugin asked for {} MiB, the limit is {} MiB ({})",
                        desired.div_ceil(1 << 20),
                        limit >> 20,
                        first_line(&e)
                    ),
                    Some(LimitHit::Table { desired, limit }) => format!(
                        "table limit exceeded: the plugin asked for {desired} elements, the limit is {limit} ({})",
                        first_line(&e)
                    ),
                    None => format!("plugin trapped: {}", first_line(&e)),
                },
            };
            (Status::Failed, None, Some(message), None)
        }
    }
}

/// The JSON output of a call that returned normally.
fn output_of(result: &CallResult) -> Result<serde_json::Value, String> {
    match result {
        CallResult::Manifest(_) => Ok(serde_json::Value::Null),
        CallResult::Split(parts) => {
            let parts: Vec<Part> = parts.iter().cloned().map(Part::from).collect();
            serde_json::to_value(parts).map_err(|e| e.to_string())
        }
        CallResult::Stage(observations) => {
            serde_json::to_value(observations).map_err(|e| e.to_string())
        }
        CallResult::Execute(text) => {
            if text.len() > MAX_OUTPUT_BYTES {
                return Err(format!(
                    "output of {} bytes is over the {} MiB limit",
                    text.len(),
                    MAX_OUTPUT_BYTES >> 20
                ));
            }
            serde_json::from_str(text)
                .map_err(|e| format!("the plugin returned output that is not JSON: {e}"))
        }
    }
}

/// The cause of a trap in one line: the trap's own description when there is one
/// (wasmtime puts the wasm backtrace, not the cause, on the outer error).
fn first_line(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<Trap>() {
        Some(Trap::UnreachableCodeReached) => {
            "wasm `unreachable` executed (a panic or abort in the plugin; see its stderr)"
                .to_string()
        }
        Some(trap) => trap.to_string(),
        None => format!("{e}").lines().next().unwrap_or_default().to_string(),
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}
