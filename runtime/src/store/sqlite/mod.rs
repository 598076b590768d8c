//! The embedded default store: one SQLite file in the data directory.
//!
//! - WAL journal: readers never block the writer, and an accepted result
//!   is on disk before it is acknowledged (the writer answers after the
//!   WAL's flush, [`writer`]).
//! - One writer: a thread with its own connection applies every write, in
//!   batches that share a transaction and a flush. SQLite allows one writer
//!   at a time anyway; one connection turns contention into a queue instead
//!   of `SQLITE_BUSY` retries. Reads use a small read-only sqlx pool
//!   ([`reads`]).
//! - One migration, `runtime/migrations/sqlite/0001_init.sql`, applied by the
//!   writer at open (the schema version is SQLite's `user_version`).

mod reads;
mod rows;
mod writer;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::{PluginRecord, Recurrence, Store, StoreResult};
use crate::scheduler::{
    Agent, AgentRegistration, Event, HeartbeatAck, Lease, LeaseRef, NewPart, NewRun, Part,
    ResultAck, Run, StoredResult, Submission, Task, TaskSpec,
};
use writer::ops;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "jobstack.db";

/// Readers besides the one writer: enough for the API's listings on 2 cores.
const READERS: u32 = 4;

/// How long a statement waits for a lock held by another process (e.g. a backup).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    writer: writer::Writer,
}

impl SqliteStore {
    /// Open (creating if needed) `DATABASE_FILE` in `dir` and migrate it.
    pub async fn open_in(dir: &Path) -> StoreResult<Self> {
        std::fs::create_dir_all(dir).map_err(|e| {
            super::StoreError::Invalid(format!("cannot create {}: {e}", dir.display()))
        })?;
        Self::open(&dir.join(DATABASE_FILE)).await
    }

    /// Open (creating if needed) the database file at `path` and migrate it.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        memory_statistics_off();
        let writer = writer::Writer::start(path)?;
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT);
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options)
            .await?;
        Ok(Self { reader, writer })
    }

    /// A run the writer has just written (and flushed), read back.
    async fn written_run(&self, id: i64) -> StoreResult<Run> {
        reads::run(&self.reader, id)
            .await?
            .ok_or_else(|| super::StoreError::NotFound {
                what: "run",
                id: id.to_string(),
            })
    }

    /// A task the writer has just written, read back.
    async fn written_task(&self, id: i64) -> StoreResult<Task> {
        reads::task(&self.reader, id)
            .await?
            .ok_or_else(|| super::StoreError::NotFound {
                what: "task",
                id: id.to_string(),
            })
    }

    /// Close the writer and the readers, waiting for their connections to
    /// finish.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

pub(crate) use crate::store::ms;

/// Turn SQLite's memory statistics off, once, before the process's first
/// connection: with them on (the bundled library's default), every
/// allocation and free inside SQLite takes one global mutex, on the writer's
/// every statement, and jobstack reads none of the statistics.
fn memory_statistics_off() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` must run before SQLite is initialized and
        // while no other thread uses it. Every connection of this process is
        // opened by a store, after this `Once`; had one been opened anyway,
        // SQLite is initialized and the call returns SQLITE_MISUSE without
        // changing anything.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was initialized already; its memory statistics stay on"
            );
        }
    });
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_plugin(&self, plugin: &PluginRecord) -> StoreResult<bool> {
        let plugin = plugin.clone();
        self.writer
            .write(move |conn| ops::catalog::put_plugin(conn, &plugin))
            .await
    }
    async fn plugins(&self) -> StoreResult<Vec<PluginRecord>> {
        reads::plugins(&self.reader).await
    }
    async fn plugin(&self, sha256: &str) -> StoreResult<Option<PluginRecord>> {
        reads::plugin(&self.reader, sha256).await
    }
    async fn latest_plugin(&self, name: &str) -> StoreResult<Option<PluginRecord>> {
        reads::latest_plugin(&self.reader, name).await
    }
    async fn put_module(&self, sha256: &str, bytes: &[u8]) -> StoreResult<()> {
        let (sha256, bytes) = (sha256.to_owned(), bytes.to_vec());
        self.writer
            .write(move |conn| ops::catalog::put_module(conn, &sha256, &bytes))
            .await
    }
    async fn module(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        reads::module(&self.reader, sha256).await
    }
    async fn has_module(&self, sha256: &str) -> StoreResult<bool> {
        reads::has_module(&self.reader, sha256).await
    }

    async fn register_agent(
        &self,
        registration: &AgentRegistration,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Agent> {
        let (registration, token_hash) = (registration.clone(), token_hash.to_owned());
        self.writer
            .write(move |conn| ops::agents::register_agent(conn, &registration, &token_hash, now))
            .await
    }
    async fn agent_by_token(&self, token_hash: &str) -> StoreResult<Option<Agent>> {
        reads::agent_by_token(&self.reader, token_hash).await
    }
    async fn agents(&self) -> StoreResult<Vec<Agent>> {
        reads::agents(&self.reader).await
    }

    async fn create_task(
        &self,
        spec: &TaskSpec,
        secrets: &serde_json::Value,
        next_run_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Task> {
        let (spec, secrets) = (spec.clone(), secrets.clone());
        let id = self
            .writer
            .write(move |conn| ops::catalog::create_task(conn, &spec, &secrets, next_run_at, now))
            .await?;
        self.written_task(id).await
    }
    async fn update_task(
        &self,
        id: i64,
        spec: &TaskSpec,
        secrets: Option<&serde_json::Value>,
        next_run_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Task> {
        let (spec, secrets) = (spec.clone(), secrets.cloned());
        self.writer
            .write(move |conn| {
                ops::catalog::update_task(conn, id, &spec, secrets.as_ref(), next_run_at, now)
            })
            .await?;
        self.written_task(id).await
    }
    async fn task(&self, id: i64) -> StoreResult<Option<Task>> {
        reads::task(&self.reader, id).await
    }
    async fn task_by_name(&self, name: &str) -> StoreResult<Option<Task>> {
        reads::task_by_name(&self.reader, name).await
    }
    async fn tasks(&self) -> StoreResult<Vec<Task>> {
        reads::tasks(&self.reader).await
    }
    async fn task_secrets(&self, id: i64) -> StoreResult<serde_json::Value> {
        reads::task_secrets(&self.reader, id).await
    }
    async fn due_tasks(&self, now: DateTime<Utc>) -> StoreResult<Vec<Task>> {
        reads::due_tasks(&self.reader, now).await
    }

    async fn create_run(&self, run: &NewRun, now: DateTime<Utc>) -> StoreResult<Run> {
        let run = run.clone();
        let id = self
            .writer
            .write(move |conn| ops::runs::insert_run(conn, &run, now))
            .await?;
        self.written_run(id).await
    }
    async fn claim_recurrence(
        &self,
        recurrence: &Recurrence,
        run: &NewRun,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Run>> {
        let (recurrence, run) = (recurrence.clone(), run.clone());
        let claimed = self
            .writer
            .write(move |conn| ops::runs::claim_recurrence(conn, &recurrence, &run, now))
            .await?;
        match claimed {
            Some(id) => self.written_run(id).await.map(Some),
            None => Ok(None),
        }
    }
    async fn set_next_run(
        &self,
        task_id: i64,
        expected: Option<DateTime<Utc>>,
        next: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        self.writer
            .write(move |conn| ops::catalog::set_next_run(conn, task_id, expected, next))
            .await
    }
    async fn add_parts(
        &self,
        run_id: i64,
        parts: &[NewPart],
        now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        let parts = parts.to_vec();
        self.writer
            .write(move |conn| ops::runs::store_parts(conn, run_id, &parts, now))
            .await?;
        self.written_run(run_id).await
    }
    async fn create_run_with_parts(
        &self,
        run: &NewRun,
        parts: &[NewPart],
        now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        let (run, parts) = (run.clone(), parts.to_vec());
        let id = self
            .writer
            .write(move |conn| ops::runs::create_run_with_parts(conn, &run, &parts, now))
            .await?;
        self.written_run(id).await
    }
    async fn fail_run(&self, run_id: i64, error: &str, now: DateTime<Utc>) -> StoreResult<Run> {
        let error = error.to_owned();
        self.writer
            .write(move |conn| ops::admin::fail_run(conn, run_id, &error, now))
            .await?;
        self.written_run(run_id).await
    }
    async fn run(&self, id: i64) -> StoreResult<Option<Run>> {
        reads::run(&self.reader, id).await
    }
    async fn runs(&self, task_id: Option<i64>) -> StoreResult<Vec<Run>> {
        reads::runs(&self.reader, task_id).await
    }
    async fn active_runs(&self, task_id: i64) -> StoreResult<Vec<Run>> {
        reads::active_runs(&self.reader, task_id).await
    }
    async fn created_runs(&self) -> StoreResult<Vec<Run>> {
        reads::created_runs(&self.reader).await
    }
    async fn run_secrets(&self, run_id: i64) -> StoreResult<serde_json::Value> {
        reads::run_secrets(&self.reader, run_id).await
    }
    async fn parts(&self, run_id: i64) -> StoreResult<Vec<Part>> {
        reads::parts(&self.reader, run_id).await
    }
    async fn part(&self, part_id: i64) -> StoreResult<Option<Part>> {
        reads::part(&self.reader, part_id).await
    }
    async fn results(&self, run_id: i64) -> StoreResult<Vec<StoredResult>> {
        reads::results(&self.reader, run_id).await
    }

    async fn lease(&self, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
        self.writer.lease(agent, now).await
    }
    async fn heartbeat(
        &self,
        agent: &Agent,
        held: &[LeaseRef],
        now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatAck> {
        let (agent, held) = (agent.clone(), held.to_vec());
        self.writer
            .write(move |conn| ops::agents::heartbeat(conn, &agent, &held, now))
            .await
    }
    async fn progress(
        &self,
        agent: &Agent,
        lease: LeaseRef,
        done: u64,
        total: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let agent = agent.clone();
        self.writer
            .write(move |conn| ops::agents::progress(conn, &agent, lease, (done, total), now))
            .await
    }
    async fn submit(
        &self,
        agent: &Agent,
        result: &Submission,
        now: DateTime<Utc>,
    ) -> StoreResult<ResultAck> {
        self.writer.submit(agent, result, now).await
    }
    async fn submit_and_lease(
        &self,
        agent: &Agent,
        result: &Submission,
        now: DateTime<Utc>,
    ) -> StoreResult<(ResultAck, Option<Lease>)> {
        self.writer.submit_and_lease(agent, result, now).await
    }
    async fn expire_leases(&self, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>> {
        self.writer
            .write(move |conn| ops::expiry::expire_leases(conn, now))
            .await
    }

    async fn suspend_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        self.writer
            .write(move |conn| ops::admin::suspend_run(conn, run_id, now))
            .await?;
        self.written_run(run_id).await
    }
    async fn resume_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        self.writer
            .write(move |conn| ops::admin::resume_run(conn, run_id, now))
            .await?;
        self.written_run(run_id).await
    }
    async fn cancel_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        self.writer
            .write(move |conn| ops::admin::cancel_run(conn, run_id, now))
            .await?;
        self.written_run(run_id).await
    }

    async fn events(&self, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        reads::events(&self.reader, after, limit).await
    }
}
