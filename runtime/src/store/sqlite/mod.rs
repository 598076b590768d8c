//! The embedded default store: one SQLite file in the data directory.
//!
//! - WAL journal with `synchronous = FULL`: a committed transaction (an accepted
//!   result) is on disk before the call returns, and readers never block the
//!   writer.
//! - One writer connection: SQLite allows one writer at a time anyway, and a
//!   single connection turns contention into a queue instead of `SQLITE_BUSY`
//!   retries. Reads that are not part of a change use a small reader pool.
//! - Leases and results, the hot path, are applied by a writer thread of
//!   their own ([`hot_path`]), with a synchronous driver, in batches that
//!   share one transaction and one fsync; new runs are created there too.
//!   Both writers take the store's write lock for each transaction.
//! - Versioned migrations from `runtime/migrations/sqlite/`, applied at open.

mod catalog;
mod hot_path;
mod leasing;
mod results;
mod rows;
mod runs;
mod transition;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use super::{PluginRecord, Recurrence, Store, StoreResult};
use crate::scheduler::{
    Agent, AgentRegistration, Event, HeartbeatAck, Lease, LeaseRef, NewPart, NewRun, Part,
    ResultAck, Run, StoredResult, Submission, Task, TaskSpec,
};

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "jobstack.db";

/// Readers besides the one writer: enough for the API's listings on 2 cores.
const READERS: u32 = 4;

/// How long a statement waits for a lock held by another process (e.g. a backup).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Held by the writer that is inside a transaction (this pool's one
    /// connection or the hot path's).
    writing: hot_path::WriteLock,
    hot_path: hot_path::HotPath,
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
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .connect_with(options.read_only(true))
            .await?;
        let writing = hot_path::WriteLock::default();
        let hot_path = hot_path::HotPath::start(path, writing.clone())?;
        Ok(Self {
            writer,
            reader,
            writing,
            hot_path,
        })
    }

    /// The sqlx writer connection, with the store's write lock held while the
    /// guard lives: the only way this module writes through sqlx, so that no
    /// write meets the hot path's transaction inside SQLite.
    async fn write(&self) -> (tokio::sync::MutexGuard<'_, ()>, &SqlitePool) {
        (self.writing.lock().await, &self.writer)
    }

    /// A run the hot path's writer has just written (and flushed), read back.
    async fn written_run(&self, id: i64) -> StoreResult<Run> {
        runs::run(&self.reader, id)
            .await?
            .ok_or_else(|| super::StoreError::NotFound {
                what: "run",
                id: id.to_string(),
            })
    }

    /// Close the hot path's writer and both pools, waiting for their
    /// connections to finish.
    pub async fn close(&self) {
        self.hot_path.close().await;
        self.reader.close().await;
        self.writer.close().await;
    }
}

pub(crate) use crate::store::{from_ms, ms};

/// Turn SQLite's memory statistics off, once, before the process's first
/// connection: with them on (the bundled library's default), every
/// allocation and free inside SQLite takes one global mutex. That was 8 % of
/// the hot path's writer thread (`perf`, `jobstack bench scheduler`), and
/// jobstack reads none of the statistics.
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
        let (_writing, writer) = self.write().await;
        catalog::put_plugin(writer, plugin).await
    }
    async fn plugins(&self) -> StoreResult<Vec<PluginRecord>> {
        catalog::plugins(&self.reader).await
    }
    async fn plugin(&self, sha256: &str) -> StoreResult<Option<PluginRecord>> {
        catalog::plugin(&self.reader, sha256).await
    }
    async fn latest_plugin(&self, name: &str) -> StoreResult<Option<PluginRecord>> {
        catalog::latest_plugin(&self.reader, name).await
    }
    async fn put_module(&self, sha256: &str, bytes: &[u8]) -> StoreResult<()> {
        let (_writing, writer) = self.write().await;
        catalog::put_module(writer, sha256, bytes).await
    }
    async fn module(&self, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
        catalog::module(&self.reader, sha256).await
    }
    async fn has_module(&self, sha256: &str) -> StoreResult<bool> {
        catalog::has_module(&self.reader, sha256).await
    }

    async fn register_agent(
        &self,
        registration: &AgentRegistration,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Agent> {
        let (_writing, writer) = self.write().await;
        catalog::register_agent(writer, registration, token_hash, now).await
    }
    async fn agent_by_token(&self, token_hash: &str) -> StoreResult<Option<Agent>> {
        catalog::agent_by_token(&self.reader, token_hash).await
    }
    async fn agents(&self) -> StoreResult<Vec<Agent>> {
        catalog::agents(&self.reader).await
    }

    async fn create_task(
        &self,
        spec: &TaskSpec,
        secrets: &serde_json::Value,
        next_run_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Task> {
        let (_writing, writer) = self.write().await;
        catalog::create_task(writer, spec, secrets, next_run_at, now).await
    }
    async fn update_task(
        &self,
        id: i64,
        spec: &TaskSpec,
        secrets: Option<&serde_json::Value>,
        next_run_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<Task> {
        let (_writing, writer) = self.write().await;
        catalog::update_task(writer, id, spec, secrets, next_run_at, now).await
    }
    async fn task(&self, id: i64) -> StoreResult<Option<Task>> {
        catalog::task(&self.reader, id).await
    }
    async fn task_by_name(&self, name: &str) -> StoreResult<Option<Task>> {
        catalog::task_by_name(&self.reader, name).await
    }
    async fn tasks(&self) -> StoreResult<Vec<Task>> {
        catalog::tasks(&self.reader).await
    }
    async fn task_secrets(&self, id: i64) -> StoreResult<serde_json::Value> {
        catalog::task_secrets(&self.reader, id).await
    }
    async fn due_tasks(&self, now: DateTime<Utc>) -> StoreResult<Vec<Task>> {
        catalog::due_tasks(&self.reader, now).await
    }

    async fn create_run(&self, run: &NewRun, now: DateTime<Utc>) -> StoreResult<Run> {
        let run = run.clone();
        let id = self
            .hot_path
            .write(move |conn| hot_path::runs::insert_run(conn, &run, now))
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
            .hot_path
            .write(move |conn| hot_path::runs::claim_recurrence(conn, &recurrence, &run, now))
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
        let (_writing, writer) = self.write().await;
        catalog::set_next_run(writer, task_id, expected, next).await
    }
    async fn add_parts(
        &self,
        run_id: i64,
        parts: &[NewPart],
        now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        let parts = parts.to_vec();
        self.hot_path
            .write(move |conn| hot_path::runs::store_parts(conn, run_id, &parts, now))
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
            .hot_path
            .write(move |conn| hot_path::runs::create_run_with_parts(conn, &run, &parts, now))
            .await?;
        self.written_run(id).await
    }
    async fn fail_run(&self, run_id: i64, error: &str, now: DateTime<Utc>) -> StoreResult<Run> {
        let (_writing, writer) = self.write().await;
        runs::fail_run(writer, run_id, error, now).await
    }
    async fn run(&self, id: i64) -> StoreResult<Option<Run>> {
        runs::run(&self.reader, id).await
    }
    async fn runs(&self, task_id: Option<i64>) -> StoreResult<Vec<Run>> {
        runs::runs(&self.reader, task_id).await
    }
    async fn active_runs(&self, task_id: i64) -> StoreResult<Vec<Run>> {
        runs::active_runs(&self.reader, task_id).await
    }
    async fn created_runs(&self) -> StoreResult<Vec<Run>> {
        runs::created_runs(&self.reader).await
    }
    async fn run_secrets(&self, run_id: i64) -> StoreResult<serde_json::Value> {
        runs::run_secrets(&self.reader, run_id).await
    }
    async fn parts(&self, run_id: i64) -> StoreResult<Vec<Part>> {
        runs::parts(&self.reader, run_id).await
    }
    async fn part(&self, part_id: i64) -> StoreResult<Option<Part>> {
        runs::part(&self.reader, part_id).await
    }
    async fn results(&self, run_id: i64) -> StoreResult<Vec<StoredResult>> {
        results::results(&self.reader, run_id).await
    }

    async fn lease(&self, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
        self.hot_path.lease(agent, now).await
    }
    async fn heartbeat(
        &self,
        agent: &Agent,
        held: &[LeaseRef],
        now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatAck> {
        let (_writing, writer) = self.write().await;
        leasing::heartbeat(writer, agent, held, now).await
    }
    async fn progress(
        &self,
        agent: &Agent,
        lease: LeaseRef,
        done: u64,
        total: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let (_writing, writer) = self.write().await;
        leasing::progress(writer, agent, lease, done, total, now).await
    }
    async fn submit(
        &self,
        agent: &Agent,
        result: &Submission,
        now: DateTime<Utc>,
    ) -> StoreResult<ResultAck> {
        self.hot_path.submit(agent, result, now).await
    }
    async fn submit_and_lease(
        &self,
        agent: &Agent,
        result: &Submission,
        now: DateTime<Utc>,
    ) -> StoreResult<(ResultAck, Option<Lease>)> {
        self.hot_path.submit_and_lease(agent, result, now).await
    }
    async fn expire_leases(&self, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>> {
        let (_writing, writer) = self.write().await;
        leasing::expire_leases(writer, now).await
    }

    async fn suspend_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        let (_writing, writer) = self.write().await;
        runs::suspend_run(writer, run_id, now).await
    }
    async fn resume_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        let (_writing, writer) = self.write().await;
        runs::resume_run(writer, run_id, now).await
    }
    async fn cancel_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        let (_writing, writer) = self.write().await;
        runs::cancel_run(writer, run_id, now).await
    }

    async fn events(&self, after: i64, limit: u32) -> StoreResult<Vec<Event>> {
        catalog::events(&self.reader, after, limit).await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// The migrations before version 4, then version 4.
    const BEFORE_4: [&str; 3] = [
        include_str!("../../../migrations/sqlite/0001_init.sql"),
        include_str!("../../../migrations/sqlite/0002_lease_by_run.sql"),
        include_str!("../../../migrations/sqlite/0003_modules.sql"),
    ];
    const VERSION_4: &str = include_str!("../../../migrations/sqlite/0004_lean_hot_tables.sql");

    fn rows(conn: &Connection, sql: &str) -> Vec<String> {
        let mut statement = conn.prepare(sql).unwrap();
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns)
                    .map(|i| {
                        Ok(format!(
                            "{:?}",
                            rusqlite::types::Value::from(row.get_ref(i)?)
                        ))
                    })
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map(|v| v.join("|"))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn version_4_keeps_every_event_and_lease_and_numbers_events_on() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("db")).unwrap();
        for sql in BEFORE_4 {
            conn.execute_batch(sql).unwrap();
        }
        // Leases name parts; the rows here stand alone.
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail)
             VALUES (1, 'part', 7, 'state', 'waiting', 'running', '{\"agent\":\"a\"}'),
                    (2, 'run', 3, 'state', 'running', 'finished', '{}');
             INSERT INTO leases (part_id, attempt, agent, leased_at, ended_at, end_reason)
             VALUES (7, 1, 'a', 1, 5, 'expired'), (7, 2, 'b', 6, NULL, NULL);",
        )
        .unwrap();
        let events = rows(&conn, "SELECT * FROM events ORDER BY id");
        let leases = rows(&conn, "SELECT * FROM leases ORDER BY part_id, attempt");

        conn.execute_batch(VERSION_4).unwrap();

        assert_eq!(rows(&conn, "SELECT * FROM events ORDER BY id"), events);
        assert_eq!(
            rows(&conn, "SELECT * FROM leases ORDER BY part_id, attempt"),
            leases
        );
        conn.execute(
            "INSERT INTO events (at, entity, entity_id, kind, detail) VALUES (3, 'run', 3, 'x', '{}')",
            [],
        )
        .unwrap();
        assert_eq!(
            conn.last_insert_rowid(),
            3,
            "the next event follows the last"
        );
        assert!(
            rows(
                &conn,
                "SELECT name FROM sqlite_sequence WHERE name = 'events'"
            )
            .is_empty()
        );
        let leases_sql = rows(&conn, "SELECT sql FROM sqlite_master WHERE name = 'leases'");
        assert!(leases_sql[0].contains("WITHOUT ROWID"), "{leases_sql:?}");
        // The key still refuses a second copy of one attempt.
        assert!(
            conn.execute(
                "INSERT INTO leases (part_id, attempt, agent, leased_at) VALUES (7, 2, 'c', 9)",
                [],
            )
            .is_err()
        );
    }
}
