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
//! - The migrations, `runtime/migrations/sqlite/`, applied by the writer at
//!   open (the schema version is SQLite's `user_version`).

mod inventory;
mod inventory_reads;
mod outbox;
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

use super::{AgentChanges, PluginRecord, Recurrence, Store, StoreReads, StoreResult, TaskWrite};
use crate::scheduler::{
    Agent, AgentRegistration, HeartbeatAck, Lease, LeaseRef, NewPart, NewRun, ProgressReport,
    ResultAck, Run, Submission, Task,
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
        let reader =
            SqlitePoolOptions::new().max_connections(READERS).connect_with(options).await?;
        Ok(Self { reader, writer })
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
            tracing::debug!(rc, "SQLite was initialized already; its memory statistics stay on");
        }
    });
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_plugin(&self, plugin: &PluginRecord) -> StoreResult<bool> {
        let plugin = plugin.clone();
        self.writer.write(move |conn| ops::catalog::put_plugin(conn, &plugin)).await
    }
    async fn put_module(&self, sha256: &str, bytes: &[u8]) -> StoreResult<()> {
        let (sha256, bytes) = (sha256.to_owned(), bytes.to_vec());
        self.writer.write(move |conn| ops::catalog::put_module(conn, &sha256, &bytes)).await
    }
    async fn retire_plugin(
        &self, name: &str, version: &str, now: DateTime<Utc>,
    ) -> StoreResult<String> {
        let (name, version) = (name.to_owned(), version.to_owned());
        self.writer.write(move |conn| ops::catalog::retire_plugin(conn, &name, &version, now)).await
    }

    async fn register_agent(
        &self, registration: &AgentRegistration, token_hash: &str, now: DateTime<Utc>,
    ) -> StoreResult<Agent> {
        let (registration, token_hash) = (registration.clone(), token_hash.to_owned());
        self.writer
            .write(move |conn| ops::agents::register_agent(conn, &registration, &token_hash, now))
            .await
    }

    async fn monitor_agents(
        &self, cutoff: DateTime<Utc>, now: DateTime<Utc>,
    ) -> StoreResult<AgentChanges> {
        self.writer.write(move |conn| ops::agents::monitor_agents(conn, cutoff, now)).await
    }

    async fn create_task(&self, task: &TaskWrite, now: DateTime<Utc>) -> StoreResult<Task> {
        let task = task.clone();
        let id = self.writer.write(move |conn| ops::catalog::create_task(conn, &task, now)).await?;
        self.existing_task(id).await
    }
    async fn update_task(
        &self, id: i64, task: &TaskWrite, now: DateTime<Utc>,
    ) -> StoreResult<Task> {
        let task = task.clone();
        self.writer.write(move |conn| ops::catalog::update_task(conn, id, &task, now)).await?;
        self.existing_task(id).await
    }

    async fn create_run(&self, run: &NewRun, now: DateTime<Utc>) -> StoreResult<Run> {
        let run = run.clone();
        let id = self.writer.write(move |conn| ops::runs::insert_run(conn, &run, now)).await?;
        self.existing_run(id).await
    }
    async fn claim_recurrence(
        &self, recurrence: &Recurrence, run: &NewRun, now: DateTime<Utc>,
    ) -> StoreResult<Option<Run>> {
        let (recurrence, run) = (recurrence.clone(), run.clone());
        let claimed = self
            .writer
            .write(move |conn| ops::runs::claim_recurrence(conn, &recurrence, &run, now))
            .await?;
        match claimed {
            Some(id) => self.existing_run(id).await.map(Some),
            None => Ok(None),
        }
    }
    async fn set_next_run(
        &self, task_id: i64, expected: Option<DateTime<Utc>>, next: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        self.writer
            .write(move |conn| ops::catalog::set_next_run(conn, task_id, expected, next))
            .await
    }
    async fn add_parts(
        &self, run_id: i64, parts: &[NewPart], now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        let parts = parts.to_vec();
        self.writer.write(move |conn| ops::runs::store_parts(conn, run_id, &parts, now)).await?;
        self.existing_run(run_id).await
    }
    async fn create_run_with_parts(
        &self, run: &NewRun, parts: &[NewPart], now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        let (run, parts) = (run.clone(), parts.to_vec());
        let id = self
            .writer
            .write(move |conn| ops::runs::create_run_with_parts(conn, &run, &parts, now))
            .await?;
        self.existing_run(id).await
    }
    async fn fail_run(&self, run_id: i64, error: &str, now: DateTime<Utc>) -> StoreResult<Run> {
        let error = error.to_owned();
        self.writer.write(move |conn| ops::admin::fail_run(conn, run_id, &error, now)).await?;
        self.existing_run(run_id).await
    }

    async fn lease(&self, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
        self.writer.lease(agent, now).await
    }
    async fn heartbeat(
        &self, agent: &Agent, held: &[LeaseRef], now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatAck> {
        let (agent, held) = (agent.clone(), held.to_vec());
        self.writer.write(move |conn| ops::agents::heartbeat(conn, &agent, &held, now)).await
    }
    async fn progress(
        &self, agent: &Agent, report: &ProgressReport, now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (agent, report) = (agent.clone(), *report);
        self.writer.write(move |conn| ops::agents::progress(conn, &agent, &report, now)).await
    }
    async fn submit(
        &self, agent: &Agent, result: &Submission, now: DateTime<Utc>,
    ) -> StoreResult<ResultAck> {
        self.writer.submit(agent, result, now).await
    }
    async fn submit_and_lease(
        &self, agent: &Agent, result: &Submission, now: DateTime<Utc>,
    ) -> StoreResult<(ResultAck, Option<Lease>)> {
        self.writer.submit_and_lease(agent, result, now).await
    }
    async fn expire_leases(&self, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>> {
        self.writer.write(move |conn| ops::expiry::expire_leases(conn, now)).await
    }

    async fn suspend_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        self.writer.write(move |conn| ops::admin::suspend_run(conn, run_id, now)).await?;
        self.existing_run(run_id).await
    }
    async fn resume_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        self.writer.write(move |conn| ops::admin::resume_run(conn, run_id, now)).await?;
        self.existing_run(run_id).await
    }
    async fn cancel_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        self.writer.write(move |conn| ops::admin::cancel_run(conn, run_id, now)).await?;
        self.existing_run(run_id).await
    }
}
