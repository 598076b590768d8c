//! The port the scheduler needs of its durable state: the [`Store`] trait, the
//! plain types it names and its errors. The scheduler owns it; the backends
//! that implement it (SQLite embedded, PostgreSQL for several daemons) live in
//! [`crate::store`], which re-exports everything here.
//!
//! Each trait method is one scheduler operation done atomically (one database
//! transaction): a lease, a result, an expiry sweep, an admin action. The policy
//! those operations follow (the legal transitions, the fencing rule, the order of
//! leasing, backoff, targeting) lives in the scheduler as plain functions; a
//! backend reads the rows, asks the policy, and writes the answer. That keeps
//! one place for the rules and lets each backend lock its own way: SQLite with a
//! single writer connection, PostgreSQL with `FOR UPDATE SKIP LOCKED` so that
//! several daemons can share one database.
//!
//! Promises every backend keeps:
//! - an operation that returns `Ok` is durable (an accepted result survives a
//!   crash of the daemon right after the answer);
//! - an operation that returns `Err` changed nothing;
//! - every change of state writes an [`Event`] in the same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Agent, AgentRegistration, Event, HeartbeatAck, IllegalTransition, Lease, LeaseRef, NewPart,
    NewRun, Part, ProgressReport, ResultAck, Run, State, StoredResult, Submission, Task, TaskSpec,
};

/// A plugin module known to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct PluginRecord {
    /// Content address of the module.
    pub sha256: String,
    /// Task type, from the manifest.
    pub name: String,
    /// Version, from the manifest.
    pub version: String,
    /// The manifest as JSON.
    pub manifest: serde_json::Value,
    /// Size of the module in bytes.
    pub size: u64,
    /// First upload.
    pub uploaded_at: DateTime<Utc>,
    /// When it was retired: no new run uses it (it stays for the runs that
    /// did, and its name and version stay taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing named does not exist.
    #[error("{what} {id} not found")]
    NotFound {
        /// `task`, `run`, `part`, `agent`, `plugin`.
        what: &'static str,
        /// Its id or name.
        id: String,
    },
    /// A unique name is taken.
    #[error("{what} {name:?} already exists")]
    Conflict {
        /// What kind of thing.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A plugin version is stored already with other bytes: versions are
    /// immutable, so the same name and version always mean the same code.
    #[error(
        "plugin {name} {version} already exists with other bytes (sha256 {sha256}): \
         versions are immutable; bump the version in the plugin's manifest"
    )]
    VersionTaken {
        /// The plugin's name.
        name: String,
        /// Its version.
        version: String,
        /// The stored module's sha256.
        sha256: String,
    },
    /// The state machine refuses the change.
    #[error(transparent)]
    Transition(#[from] IllegalTransition),
    /// An agent reported on a part or attempt it was never given.
    #[error("part {part_id} attempt {attempt} was not leased to agent {agent}")]
    NotLeased {
        /// The part.
        part_id: i64,
        /// The attempt named.
        attempt: u32,
        /// The agent.
        agent: String,
    },
    /// A request the store refuses for a reason given in the message.
    #[error("{0}")]
    Invalid(String),
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite store's writer failed (see `sqlite::writer`).
    /// Shared: one failed commit fails every operation of its batch.
    #[error("database error: {0}")]
    Sqlite(#[source] std::sync::Arc<rusqlite::Error>),
    /// The store's writer (SQLite's writer thread, PostgreSQL's result
    /// batcher) is closed: the store was closed or the daemon is stopping.
    #[error("the store is closed")]
    Closed,
    /// The store's writer failed while applying this operation (a bug:
    /// the operation was undone, and the writer goes on with the next).
    #[error("the store's writer failed while applying this operation")]
    WriterFailed,
    /// Migrating the schema failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Stored data that does not parse: a bug or a hand-edited database.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Whether the database itself failed (so the daemon is not ready), as
    /// opposed to a refused request.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(_)
                | StoreError::Sqlite(_)
                | StoreError::Closed
                | StoreError::WriterFailed
        )
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(std::sync::Arc::new(e))
    }
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A task as the store writes it, on creation and on each edit.
#[derive(Debug, Clone)]
pub struct TaskWrite {
    /// Its definition.
    pub spec: TaskSpec,
    /// Its secrets (a JSON object). `None` keeps the stored ones on an edit
    /// and is `{}` for a new task.
    pub secrets: Option<serde_json::Value>,
    /// When its next run is due.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Since when it follows its trigger's task (`None` without a trigger).
    pub chained_since: Option<DateTime<Utc>>,
}

impl TaskWrite {
    /// The secrets as stored (JSON text), if this write sets them.
    pub fn secrets_text(&self) -> Option<String> {
        self.secrets.as_ref().map(|s| s.to_string())
    }

    /// What a task's creation or edit event says of it.
    pub fn event_detail(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.spec.name,
            "plugin": self.spec.plugin,
            "secrets_changed": self.secrets.is_some(),
        })
    }
}

/// What one [`Store::monitor_agents`] found: agents' names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentChanges {
    /// Agents now down.
    pub down: Vec<String>,
    /// Agents back up.
    pub up: Vec<String>,
}

/// A due recurring run claimed by one daemon: the run to split, created in the
/// same transaction that moved the task's next run time.
#[derive(Debug, Clone)]
pub struct Recurrence {
    /// The task.
    pub task_id: i64,
    /// The time it was due, which the claim compared against.
    pub due: DateTime<Utc>,
    /// The task's next run time after this one.
    pub next: Option<DateTime<Utc>>,
}

/// What the scheduler reads of its durable state. Both backends answer it with
/// the same SQL ([`crate::store`]'s portable reads).
#[async_trait]
pub trait StoreReads: Send + Sync + 'static {
    // ---- plugins ------------------------------------------------------------

    /// Every plugin module, newest first.
    async fn plugins(&self) -> StoreResult<Vec<PluginRecord>>;
    /// The module with this sha256.
    async fn plugin(&self, sha256: &str) -> StoreResult<Option<PluginRecord>>;
    /// The newest module uploaded under this plugin name.
    async fn latest_plugin(&self, name: &str) -> StoreResult<Option<PluginRecord>>;
    /// A module's bytes, if they were stored.
    async fn module(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Whether a module's bytes were stored (without reading them).
    async fn has_module(&self, sha256: &str) -> StoreResult<bool>;

    // ---- agents -------------------------------------------------------------

    /// The agent whose token hashes to `token_hash`.
    async fn agent_by_token(&self, token_hash: &str) -> StoreResult<Option<Agent>>;
    /// Every agent.
    async fn agents(&self) -> StoreResult<Vec<Agent>>;

    // ---- tasks --------------------------------------------------------------

    /// A task by id.
    async fn task(&self, id: i64) -> StoreResult<Option<Task>>;
    /// A task by name.
    async fn task_by_name(&self, name: &str) -> StoreResult<Option<Task>>;
    /// Every task.
    async fn tasks(&self) -> StoreResult<Vec<Task>>;
    /// A task's secrets (only to snapshot them into a run).
    async fn task_secrets(&self, id: i64) -> StoreResult<serde_json::Value>;
    /// Tasks whose next run time is at or before `now`.
    async fn due_tasks(&self, now: DateTime<Utc>) -> StoreResult<Vec<Task>>;
    /// Tasks that follow another (their trigger set).
    async fn followers(&self) -> StoreResult<Vec<Task>>;

    // ---- runs and parts -----------------------------------------------------

    /// A run by id.
    async fn run(&self, id: i64) -> StoreResult<Option<Run>>;
    /// Runs, newest first; of one task when given.
    async fn runs(&self, task_id: Option<i64>) -> StoreResult<Vec<Run>>;
    /// Runs of a task that are not terminal.
    async fn active_runs(&self, task_id: i64) -> StoreResult<Vec<Run>>;
    /// Runs of task `upstream` that may start a run of `follower`: ended in
    /// one of `states` at or after `since`, with every result processed by
    /// the inventory, and no run of `follower` caused by them yet. In the
    /// order they ended; at most `limit`.
    async fn runs_to_chain(
        &self, upstream: i64, follower: i64, states: &[State], since: DateTime<Utc>, limit: u32,
    ) -> StoreResult<Vec<Run>>;
    /// Runs still in state Created (to split), oldest first.
    async fn created_runs(&self) -> StoreResult<Vec<Run>>;
    /// The secrets snapshotted by a run.
    async fn run_secrets(&self, run_id: i64) -> StoreResult<serde_json::Value>;
    /// The parts of a run in split order.
    async fn parts(&self, run_id: i64) -> StoreResult<Vec<Part>>;
    /// One part.
    async fn part(&self, part_id: i64) -> StoreResult<Option<Part>>;
    /// The results of a run, in part order then attempt.
    async fn results(&self, run_id: i64) -> StoreResult<Vec<StoredResult>>;

    // ---- events -------------------------------------------------------------

    /// Events with id greater than `after`, oldest first, at most `limit`.
    async fn events(&self, after: i64, limit: u32) -> StoreResult<Vec<Event>>;

    // ---- helpers ------------------------------------------------------------

    /// Task `id`, which must exist (one just written, read back).
    async fn existing_task(&self, id: i64) -> StoreResult<Task> {
        self.task(id)
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "task", id: id.to_string() })
    }
    /// Run `id`, which must exist (one just written, read back).
    async fn existing_run(&self, id: i64) -> StoreResult<Run> {
        self.run(id).await?.ok_or_else(|| StoreError::NotFound { what: "run", id: id.to_string() })
    }
}

/// The scheduler's durable state: its writes, each one atomic operation, and
/// (through [`StoreReads`]) its reads. See the module documentation for the
/// promises.
#[async_trait]
pub trait Store: StoreReads {
    // ---- plugins ------------------------------------------------------------

    /// Record a plugin module; `Ok(false)` if the same sha256 was already known
    /// (uploading the same bytes twice is not an error).
    async fn put_plugin(&self, plugin: &PluginRecord) -> StoreResult<bool>;
    /// Keep a module's bytes, so that every daemon on this store can serve
    /// and split it (a daemon's own module directory is only a cache).
    /// Storing the same sha256 twice is not an error. The caller checked the
    /// bytes hash to `sha256`.
    async fn put_module(&self, sha256: &str, bytes: &[u8]) -> StoreResult<()>;
    /// Retire plugin `name` `version` at `now` (see [`crate::store::retire`]
    /// for when it is refused); its sha256. Retiring a retired version again
    /// changes nothing.
    async fn retire_plugin(
        &self, name: &str, version: &str, now: DateTime<Utc>,
    ) -> StoreResult<String>;

    // ---- agents -------------------------------------------------------------

    /// Register an agent, or update the registration of the agent with that name
    /// (its networks and plugins may change), setting its token hash.
    async fn register_agent(
        &self, registration: &AgentRegistration, token_hash: &str, now: DateTime<Utc>,
    ) -> StoreResult<Agent>;

    /// Mark down the agents not seen since `cutoff`, and up again those
    /// seen since they were marked down, each with its event (`down`, `up`).
    async fn monitor_agents(
        &self, cutoff: DateTime<Utc>, now: DateTime<Utc>,
    ) -> StoreResult<AgentChanges>;

    // ---- tasks --------------------------------------------------------------

    /// Create a task.
    async fn create_task(&self, task: &TaskWrite, now: DateTime<Utc>) -> StoreResult<Task>;
    /// Replace task `id`'s definition. Runs already created keep their snapshot.
    async fn update_task(&self, id: i64, task: &TaskWrite, now: DateTime<Utc>)
    -> StoreResult<Task>;

    // ---- runs and parts -----------------------------------------------------

    /// Create a run (state Created) from a snapshot.
    async fn create_run(&self, run: &NewRun, now: DateTime<Utc>) -> StoreResult<Run>;
    /// Create the run of a due recurrence, if the task's next run time is still
    /// `recurrence.due` (then move it to `recurrence.next`); `None` if another
    /// daemon claimed it first. Exactly one caller wins each due time.
    async fn claim_recurrence(
        &self, recurrence: &Recurrence, run: &NewRun, now: DateTime<Utc>,
    ) -> StoreResult<Option<Run>>;
    /// Move a task's next run time without creating a run (a due time skipped
    /// because the previous run is still active keeps the task due; this is for
    /// edits). Compare-and-set like `claim_recurrence`.
    async fn set_next_run(
        &self, task_id: i64, expected: Option<DateTime<Utc>>, next: Option<DateTime<Utc>>,
    ) -> StoreResult<bool>;
    /// Store the parts of a Created run; the run becomes Waiting. With no parts
    /// the run is Finished at once.
    async fn add_parts(
        &self, run_id: i64, parts: &[NewPart], now: DateTime<Utc>,
    ) -> StoreResult<Run>;
    /// Create a run from a snapshot together with its parts, split before
    /// it was stored (a forced run, a re-run), in one transaction: the run is
    /// Waiting (Finished with no parts) from the start, and nothing of it is
    /// kept if the daemon stops before the commit.
    async fn create_run_with_parts(
        &self, run: &NewRun, parts: &[NewPart], now: DateTime<Utc>,
    ) -> StoreResult<Run>;
    /// Mark a Created run Failed (its split failed).
    async fn fail_run(&self, run_id: i64, error: &str, now: DateTime<Utc>) -> StoreResult<Run>;

    // ---- leasing ------------------------------------------------------------

    /// Lease the best waiting part `agent` may take, or `None`.
    async fn lease(&self, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>>;
    /// Extend the leases `agent` still works on; answer which are no longer valid.
    async fn heartbeat(
        &self, agent: &Agent, held: &[LeaseRef], now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatAck>;
    /// Store progress of a part the agent holds.
    async fn progress(
        &self, agent: &Agent, report: &ProgressReport, now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Apply a result under the fencing rule; durable before it returns.
    async fn submit(
        &self, agent: &Agent, result: &Submission, now: DateTime<Utc>,
    ) -> StoreResult<ResultAck>;
    /// Apply a result, then lease the agent's next part: [`Store::submit`]
    /// then [`Store::lease`], each atomic and durable on its own, in one call
    /// so that a backend may share one commit (and one flush) between them.
    /// The lease comes after the result: the part just reported no longer
    /// holds back another part of its run. `Err` means the result was not
    /// applied; a lease that fails after the result was applied is `None`.
    async fn submit_and_lease(
        &self, agent: &Agent, result: &Submission, now: DateTime<Utc>,
    ) -> StoreResult<(ResultAck, Option<Lease>)> {
        let ack = self.submit(agent, result, now).await?;
        Ok((ack, lease_after_result(self.lease(agent, now).await)))
    }
    /// Turn every lease past its expiry into a timed-out attempt (retry with
    /// backoff or fail); each expired lease is handled once however many daemons
    /// sweep at the same time. Returns the expired leases.
    async fn expire_leases(&self, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>>;

    // ---- admin actions ------------------------------------------------------

    /// Suspend a run: its waiting parts are not leased until resumed; running
    /// parts finish their lease.
    async fn suspend_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run>;
    /// Resume a suspended run.
    async fn resume_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run>;
    /// Cancel a run: its open parts are canceled and their leases revoked; late
    /// results are recorded and change nothing.
    async fn cancel_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run>;
}

/// The lease half of [`Store::submit_and_lease`]: its failure is logged and
/// answered as no lease, since the result before it was applied and its
/// acknowledgement must reach the agent (which will long-poll next).
pub(crate) fn lease_after_result(lease: StoreResult<Option<Lease>>) -> Option<Lease> {
    lease.unwrap_or_else(|error| {
        tracing::warn!(%error, "leasing after a result failed; the agent will ask again");
        None
    })
}
