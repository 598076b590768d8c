//! The store for several daemons: one PostgreSQL database shared by every
//! `jobstack serve --database postgres://...`.
//!
//! - Leasing and expiry lock part rows with `FOR UPDATE SKIP LOCKED`: daemons
//!   never wait on each other's parts and never hand one part out twice.
//! - Results are a compare-and-set on the part's state and attempt under the
//!   part's row lock (see `results`): the fencing outcomes are the SQLite
//!   store's, however many daemons receive results for one part. Finished
//!   results that ask for the agent's next part, most of the traffic, are
//!   applied for several agents at once with set-based statements (see
//!   `finish_batch`).
//! - Recurrence is a compare-and-set on the task's `next_run_at`: exactly one
//!   daemon creates each due run.
//! - Work made available (a split, a resume, a retry) is announced with
//!   `NOTIFY` on [`WORK_CHANNEL`] in the same transaction (delivered at commit);
//!   [`PostgresStore::listen_for_work`] turns it into the local scheduler's
//!   work signal, so agents long-polling any daemon wake up.
//! - A bounded connection pool with an acquire timeout: a database that is gone
//!   fails requests fast (the API answers 503) instead of queueing them, and the
//!   pool reconnects by itself when the database is back.
//! - The tables are versioned migrations from `runtime/migrations/postgres/`,
//!   applied at open (sqlx takes an advisory lock, so daemons starting together
//!   migrate once). The functions are in its `functions/`, one file each, so
//!   that the live body is one file: every open replaces them all after the
//!   migrations ([`FUNCTIONS`]).
//! - The run's part counters are not stored (see `runs` in the migration and
//!   `transition`).

mod catalog;
mod finish_batch;
mod inventory;
mod inventory_reads;
mod leasing;
mod outbox;
mod reads;
mod results;
mod rows;
mod runs;
mod scratch;
mod transition;

pub use scratch::{ScratchDatabase, with_database};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Executor, PgConnection, PgPool};
use std::str::FromStr;
use std::time::Duration;

use super::{AgentChanges, PluginRecord, Recurrence, Store, StoreReads, StoreResult, TaskWrite};
use crate::scheduler::{
    Agent, AgentRegistration, HeartbeatAck, Lease, LeaseRef, NewPart, NewRun, ProgressReport,
    ResultAck, ResultStatus, Run, Submission, Task, WorkSignal,
};

/// The `NOTIFY` channel announcing leasable work.
pub const WORK_CHANNEL: &str = "jobstack_work";

/// Connections per daemon by default: enough for 2 cores' worth of requests
/// while leaving room on the server (PostgreSQL allows 100 by default) for a
/// few daemons.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// How long a request waits for a connection before failing (503): a lost
/// database fails fast instead of piling up requests.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long the listener waits before reconnecting after losing the database.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// The files of `runtime/migrations/postgres/functions/`, each a `CREATE OR
/// REPLACE` of one function (and of the trigger that calls it, if any), in the
/// order every open applies them after the migrations: a function after those
/// it calls.
const FUNCTIONS: [&str; 7] = [
    include_str!("../../../migrations/postgres/functions/jobstack_advance_lease_mark.sql"),
    include_str!("../../../migrations/postgres/functions/jobstack_lower_lease_mark.sql"),
    include_str!("../../../migrations/postgres/functions/jobstack_lease_in.sql"),
    include_str!("../../../migrations/postgres/functions/jobstack_lease.sql"),
    include_str!("../../../migrations/postgres/functions/jobstack_submit.sql"),
    include_str!("../../../migrations/postgres/functions/jobstack_submit_and_lease.sql"),
    include_str!("../../../migrations/postgres/functions/jobstack_finish_and_lease.sql"),
];

/// The advisory lock (two-key form, apart from sqlx's one-key lock) under which
/// an open applies [`FUNCTIONS`]: two sessions replacing one function at once
/// would fail ("tuple concurrently updated").
const FUNCTIONS_LOCK: (i32, i32) = (27253, 0);

/// Settings of the connection pool.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Most connections open at once. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: u32,
    /// Wait for a connection at most this long. Default [`ACQUIRE_TIMEOUT`].
    pub acquire_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self { max_connections: DEFAULT_MAX_CONNECTIONS, acquire_timeout: ACQUIRE_TIMEOUT }
    }
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    finishes: finish_batch::FinishQueue,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user@host:port/db`) with default settings
    /// and migrate the database.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &PgSettings::default()).await
    }

    /// Connect to `url` with `settings` and migrate the database.
    pub async fn connect_with(url: &str, settings: &PgSettings) -> StoreResult<Self> {
        // No slow-statement warnings: an inventory merge is one long script
        // sent at once (store/postgres/inventory.rs), which sqlx would log whole.
        let options = PgConnectOptions::from_str(url)?
            .application_name("jobstack")
            .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(1));
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // sqlx already pings every connection when it goes back to the pool
            // and drops broken ones; a second ping per request is not needed.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        apply_functions(&pool).await?;
        let finishes = finish_batch::FinishQueue::start(pool.clone());
        Ok(Self { pool, finishes })
    }

    /// The connection pool (for tests and benchmarks that inspect the database).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Close the pool, waiting for its connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Wake `signal`'s waiters whenever any daemon announces work on
    /// [`WORK_CHANNEL`] (as many as the parts announced), until the pool is
    /// closed. After losing the database the listener reconnects, and wakes
    /// every waiter once since announcements made meanwhile are lost.
    pub async fn listen_for_work(self, signal: WorkSignal) {
        let mut listener: Option<PgListener> = None;
        loop {
            if self.pool.is_closed() {
                return;
            }
            let current = match listener.as_mut() {
                Some(l) => l,
                None => match self.subscribe().await {
                    Ok(l) => {
                        // Anything announced while we were not listening.
                        signal.notify();
                        listener.insert(l)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for work; retrying");
                        tokio::time::sleep(LISTEN_RETRY).await;
                        continue;
                    }
                },
            };
            match current.try_recv().await {
                // An announcement without a count (an older daemon): wake all.
                Ok(Some(announced)) => match announced.payload().parse() {
                    Ok(parts) => signal.notify_parts(parts),
                    Err(_) => signal.notify(),
                },
                // The connection was lost; the next try_recv reconnects.
                Ok(None) => {
                    tracing::warn!("work listener lost the database; reconnecting");
                    signal.notify();
                }
                Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "work listener failed; reconnecting");
                    listener = None;
                    tokio::time::sleep(LISTEN_RETRY).await;
                }
            }
        }
    }

    async fn subscribe(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WORK_CHANNEL).await?;
        Ok(listener)
    }
}

/// Replace every function with the body of its file, in one transaction under
/// [`FUNCTIONS_LOCK`] (several daemons may open the database at once).
async fn apply_functions(pool: &PgPool) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(FUNCTIONS_LOCK.0)
        .bind(FUNCTIONS_LOCK.1)
        .execute(&mut *tx)
        .await?;
    // One round trip (each file ends its statements with `;`), through a plain
    // connection: with `&mut *tx` rustc finds `connect`'s future not `Send`.
    let conn: &mut PgConnection = &mut tx;
    conn.execute(sqlx::raw_sql(&FUNCTIONS.concat())).await?;
    tx.commit().await?;
    Ok(())
}

/// Announce `parts` new leasable parts to every daemon (delivered when the
/// transaction commits). The payload is the count, so that a daemon wakes as
/// many of its waiters ([`WorkSignal::notify_parts`]).
async fn notify_work(conn: &mut PgConnection, parts: u64) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(WORK_CHANNEL)
        .bind(parts.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn put_plugin(&self, plugin: &PluginRecord) -> StoreResult<bool> {
        catalog::put_plugin(&self.pool, plugin).await
    }
    async fn put_module(&self, sha256: &str, bytes: &[u8]) -> StoreResult<()> {
        catalog::put_module(&self.pool, sha256, bytes).await
    }

    async fn retire_plugin(
        &self, name: &str, version: &str, now: DateTime<Utc>,
    ) -> StoreResult<String> {
        catalog::retire_plugin(&self.pool, name, version, now).await
    }

    async fn register_agent(
        &self, registration: &AgentRegistration, token_hash: &str, now: DateTime<Utc>,
    ) -> StoreResult<Agent> {
        catalog::register_agent(&self.pool, registration, token_hash, now).await
    }

    async fn monitor_agents(
        &self, cutoff: DateTime<Utc>, now: DateTime<Utc>,
    ) -> StoreResult<AgentChanges> {
        catalog::monitor_agents(&self.pool, cutoff, now).await
    }

    async fn create_task(&self, task: &TaskWrite, now: DateTime<Utc>) -> StoreResult<Task> {
        let id = catalog::create_task(&self.pool, task, now).await?;
        self.existing_task(id).await
    }
    async fn update_task(
        &self, id: i64, task: &TaskWrite, now: DateTime<Utc>,
    ) -> StoreResult<Task> {
        catalog::update_task(&self.pool, id, task, now).await?;
        self.existing_task(id).await
    }

    async fn create_run(&self, run: &NewRun, now: DateTime<Utc>) -> StoreResult<Run> {
        let mut tx = self.pool.begin().await?;
        let id = runs::insert_run(&mut tx, run, now).await?;
        let created = runs::load_run(&mut tx, id).await?;
        tx.commit().await?;
        Ok(created)
    }
    async fn claim_recurrence(
        &self, recurrence: &Recurrence, run: &NewRun, now: DateTime<Utc>,
    ) -> StoreResult<Option<Run>> {
        runs::claim_recurrence(&self.pool, recurrence, run, now).await
    }
    async fn set_next_run(
        &self, task_id: i64, expected: Option<DateTime<Utc>>, next: Option<DateTime<Utc>>,
    ) -> StoreResult<bool> {
        catalog::set_next_run(&self.pool, task_id, expected, next).await
    }
    async fn add_parts(
        &self, run_id: i64, parts: &[NewPart], now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        runs::add_parts(&self.pool, run_id, parts, now).await
    }
    async fn create_run_with_parts(
        &self, run: &NewRun, parts: &[NewPart], now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        runs::create_run_with_parts(&self.pool, run, parts, now).await
    }
    async fn fail_run(&self, run_id: i64, error: &str, now: DateTime<Utc>) -> StoreResult<Run> {
        runs::fail_run(&self.pool, run_id, error, now).await
    }

    async fn lease(&self, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
        leasing::lease(&self.pool, agent, now).await
    }
    async fn heartbeat(
        &self, agent: &Agent, held: &[LeaseRef], now: DateTime<Utc>,
    ) -> StoreResult<HeartbeatAck> {
        leasing::heartbeat(&self.pool, agent, held, now).await
    }
    async fn progress(
        &self, agent: &Agent, report: &ProgressReport, now: DateTime<Utc>,
    ) -> StoreResult<()> {
        leasing::progress(&self.pool, agent, report, now).await
    }
    async fn submit(
        &self, agent: &Agent, result: &Submission, now: DateTime<Utc>,
    ) -> StoreResult<ResultAck> {
        results::submit(&self.pool, agent, result, now).await
    }
    async fn submit_and_lease(
        &self, agent: &Agent, result: &Submission, now: DateTime<Utc>,
    ) -> StoreResult<(ResultAck, Option<Lease>)> {
        if result.status == ResultStatus::Finished {
            self.finishes.finish_and_lease(agent, result, now).await
        } else {
            results::submit_and_lease(&self.pool, agent, result, now).await
        }
    }
    async fn expire_leases(&self, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>> {
        leasing::expire_leases(&self.pool, now).await
    }

    async fn suspend_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        runs::suspend_run(&self.pool, run_id, now).await
    }
    async fn resume_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        runs::resume_run(&self.pool, run_id, now).await
    }
    async fn cancel_run(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
        runs::cancel_run(&self.pool, run_id, now).await
    }
}
