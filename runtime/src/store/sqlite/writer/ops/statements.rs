//! The writer's connection and its hot statements, each prepared once and
//! found again by its place in [`Hot`] (and, beside them, the run snapshots
//! the writer's leases parsed).
//!
//! Why not rusqlite's `prepare_cached` for these: its cache finds a
//! statement by hashing and comparing its SQL text, dearer than most hot
//! statements' own work; here a statement is an index. The writer's other
//! operations use `prepare_cached`, on the same connection.

use std::cell::{OnceCell, RefCell, RefMut};
use std::ops::Deref;

use rusqlite::{Connection, Statement};

use super::counts::PendingCounts;
use super::snapshots::Snapshots;

/// The statements of the hot path: leases, results, the state changes they
/// make, and the transaction control around them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store::sqlite) enum Hot {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    RollbackToSavepoint,
    ReleaseSavepoint,
    TouchAgent,
    RunsToLease,
    PartToLease,
    LeasePart,
    InsertLease,
    ResultTarget,
    InsertResult,
    EndLease,
    ApplyResult,
    AcceptLateResult,
    InsertEvent,
    CountMove,
    ReadRunState,
    MoveRun,
    ExpirePart,
}

impl Hot {
    /// Every statement, in the order of the variants.
    const ALL: [Hot; 21] = [
        Hot::Begin,
        Hot::Commit,
        Hot::Rollback,
        Hot::Savepoint,
        Hot::RollbackToSavepoint,
        Hot::ReleaseSavepoint,
        Hot::TouchAgent,
        Hot::RunsToLease,
        Hot::PartToLease,
        Hot::LeasePart,
        Hot::InsertLease,
        Hot::ResultTarget,
        Hot::InsertResult,
        Hot::EndLease,
        Hot::ApplyResult,
        Hot::AcceptLateResult,
        Hot::InsertEvent,
        Hot::CountMove,
        Hot::ReadRunState,
        Hot::MoveRun,
        Hot::ExpirePart,
    ];

    /// The statement's SQL.
    fn sql(self) -> &'static str {
        match self {
            Hot::Begin => "BEGIN IMMEDIATE",
            Hot::Commit => "COMMIT",
            Hot::Rollback => "ROLLBACK",
            Hot::Savepoint => "SAVEPOINT op",
            Hot::RollbackToSavepoint => "ROLLBACK TO op",
            Hot::ReleaseSavepoint => "RELEASE op",
            Hot::TouchAgent => TOUCH_AGENT,
            Hot::RunsToLease => RUNS_TO_LEASE,
            Hot::PartToLease => PART_TO_LEASE,
            Hot::LeasePart => LEASE_PART,
            Hot::InsertLease => INSERT_LEASE,
            Hot::ResultTarget => RESULT_TARGET,
            Hot::InsertResult => INSERT_RESULT,
            Hot::EndLease => END_LEASE,
            Hot::ApplyResult => APPLY_RESULT,
            Hot::AcceptLateResult => ACCEPT_LATE_RESULT,
            Hot::InsertEvent => INSERT_EVENT,
            Hot::CountMove => COUNT_MOVE,
            Hot::ReadRunState => READ_RUN_STATE,
            Hot::MoveRun => MOVE_RUN,
            Hot::ExpirePart => EXPIRE_PART,
        }
    }
}

// The hot statements' SQL: leasing (the rule restated from
// `scheduler::service`, see `scheduler::fencing`'s list of copies), results
// (the fencing rule's compare-and-sets), state changes, counters.

/// The runs an agent may take from, in leasing order (rank: forced, priority;
/// then oldest): it targets the agent by name or automatically, and the agent
/// holds no part of it yet; with the run's plugin, which the caller checks
/// against the agent's. Runs are few; walking them first skips a run the agent
/// already holds a part of whole, instead of part by part (a million-part run,
/// an agent with several slots).
///
/// Written so that SQLite plans it without building anything per call: the
/// order is the index's (without `INDEXED BY` the planner chose
/// `runs_by_state` and sorted), and the holds are probed run by run in
/// `parts_by_owner` (`NOT IN` built a list of them first, as a plugin list in
/// SQL did).
const RUNS_TO_LEASE: &str = "\
SELECT r.id, r.rank, r.explicit_agents, r.lease_ttl_ms, r.plugin FROM runs r INDEXED BY runs_to_lease
WHERE r.state IN ('waiting', 'running')
  AND (r.explicit_agents = 0
       OR EXISTS (SELECT 1 FROM run_agents ra WHERE ra.run_id = r.id AND ra.agent_name = ?1))
  AND NOT EXISTS (SELECT 1 FROM parts q
                  WHERE q.state = 'running' AND q.owner = ?1 AND q.run_id = r.id)
ORDER BY r.rank, r.id";

/// The first part of a run (index `parts_to_lease`) the agent may take: due,
/// pinned to it or to nobody, and for automatic targeting, inside one of its
/// networks. With what the lease hands out of the part and of its run (read
/// for the part found only, not for every run walked), and the run's state
/// and counters (`transition::run_state_at`).
const PART_TO_LEASE: &str = "\
SELECT p.id, p.attempt, p.label, p.targets, p.payload,
       r.task_id, r.spec, r.secrets, r.plugin_sha256,
       r.state, r.n_waiting, r.n_running, r.n_suspended, r.n_finished, r.n_failed, r.n_canceled
FROM parts p JOIN runs r ON r.id = p.run_id
WHERE p.rank = ?1 AND p.run_id = ?2 AND p.state = 'waiting' AND p.available_at <= ?3
  AND (p.pinned_agent IS NULL OR p.pinned_agent = ?4)
  AND (p.span_lo IS NULL OR ?5
       OR EXISTS (SELECT 1 FROM agent_networks n
                  WHERE n.agent_id = ?6 AND n.lo <= p.span_lo AND p.span_hi <= n.hi))
ORDER BY p.rank, p.run_id, p.seq
LIMIT 1";

/// Take the part found: Running, the next attempt, owned by the agent until
/// the expiry.
const LEASE_PART: &str = "UPDATE parts SET state = 'running', attempt = ?1, owner = ?2, \
     lease_expires_at = ?3, progress_done = NULL, progress_total = NULL \
     WHERE id = ?4 AND state = 'waiting'";

/// Record the lease of an attempt.
const INSERT_LEASE: &str =
    "INSERT INTO leases (part_id, attempt, agent, leased_at) VALUES (?1, ?2, ?3, ?4)";

/// The part a result names, its run's retries and backoff, who the attempt
/// the result names was leased to and whether that lease expired, whether a
/// result of that attempt is stored, and its run's state and counters
/// (`transition::run_state_at`).
const RESULT_TARGET: &str = "SELECT p.run_id, p.state, p.attempt, p.owner, r.retries, \
     r.retry_backoff_ms, (SELECT l.agent FROM leases l WHERE l.part_id = p.id AND l.attempt = ?1), \
     COALESCE((SELECT l.end_reason = 'expired' FROM leases l \
               WHERE l.part_id = p.id AND l.attempt = ?1), 0), \
     EXISTS (SELECT 1 FROM results x WHERE x.part_id = p.id AND x.attempt = ?1), \
     r.state, r.n_waiting, r.n_running, r.n_suspended, r.n_finished, r.n_failed, r.n_canceled \
     FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = ?2";

/// Store a result, applied or not.
const INSERT_RESULT: &str = "INSERT INTO results (part_id, attempt, run_id, agent, \
     status, output, error, emitted, logs, started_at, duration_ms, applied, received_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)";

/// End an attempt's lease, if it has not ended.
const END_LEASE: &str = "UPDATE leases SET ended_at = ?1, end_reason = ?2 \
     WHERE part_id = ?3 AND attempt = ?4 AND ended_at IS NULL";

/// Apply a current result: the part finishes, fails, or waits for its retry.
const APPLY_RESULT: &str = "UPDATE parts SET state = ?1, \
     owner = CASE WHEN ?2 THEN owner END, lease_expires_at = NULL, available_at = ?3, \
     error = COALESCE(?4, error) WHERE id = ?5 AND state = 'running'";

/// Apply a late result: the part finishes, owned by the late agent.
const ACCEPT_LATE_RESULT: &str = "UPDATE parts SET state = 'finished', owner = ?1, \
     lease_expires_at = NULL WHERE id = ?2 AND state = ?3";

/// Add to a run's part counters (written once per batch and run,
/// [`counts`](super::counts): the deltas are parameters, in the order of
/// [`COUNTERS`]).
const COUNT_MOVE: &str = "UPDATE runs SET n_waiting = n_waiting + ?2, \
     n_running = n_running + ?3, n_suspended = n_suspended + ?4, \
     n_finished = n_finished + ?5, n_failed = n_failed + ?6, n_canceled = n_canceled + ?7 \
     WHERE id = ?1";

/// Move a run from a state (?4) to another (?1); ?2: when it ended, if now.
const MOVE_RUN: &str = "UPDATE runs SET state = ?1, ended_at = COALESCE(?2, ended_at) \
     WHERE id = ?3 AND state = ?4";

/// Take back an expired lease's part: it waits again (?1: `waiting`, from
/// ?3 on) or fails (?1: `failed`), with the reason ?2.
const EXPIRE_PART: &str = "UPDATE parts SET state = ?1, error = ?2, available_at = ?3, \
     owner = NULL, lease_expires_at = NULL WHERE id = ?4 AND state = 'running'";

/// Mark the agent seen, at most once a second. Parameters: now (ms), agent id.
const TOUCH_AGENT: &str =
    "UPDATE agents SET last_seen = ?1 WHERE id = ?2 AND last_seen < ?1 - 1000";

/// Insert an event: at (ms), entity, entity id, kind, from state, to state,
/// detail (JSON).
const INSERT_EVENT: &str = "INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// A run's state and part counters by id (`transition::run_state_at`).
const READ_RUN_STATE: &str = "SELECT state, n_waiting, n_running, n_suspended, \
     n_finished, n_failed, n_canceled FROM runs WHERE id = ?1";

/// The writer's connection with what it keeps between operations: its
/// [`Hot`] statements, prepared on first use, the run snapshots its leases
/// parsed, and the batch's counter changes not yet written. Derefs to the
/// connection for everything else.
pub(in crate::store::sqlite) struct WriterConn<'c> {
    conn: &'c Connection,
    prepared: [OnceCell<RefCell<Statement<'c>>>; Hot::ALL.len()],
    /// Run snapshots parsed by leases.
    pub snapshots: Snapshots,
    /// Counter changes of the batch not yet written.
    pub counts: PendingCounts,
}

impl<'c> WriterConn<'c> {
    /// Wrap `conn`; nothing is prepared yet.
    pub fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            prepared: std::array::from_fn(|_| OnceCell::new()),
            snapshots: Snapshots::default(),
            counts: PendingCounts::default(),
        }
    }

    /// Statement `hot`, ready to bind and run. Each is borrowed by one caller
    /// at a time (the writer never nests two uses of the same statement).
    pub fn prepared(&self, hot: Hot) -> rusqlite::Result<RefMut<'_, Statement<'c>>> {
        let cell = &self.prepared[hot as usize];
        let statement = match cell.get() {
            Some(statement) => statement,
            None => {
                let statement = self.conn.prepare(hot.sql())?;
                cell.get_or_init(|| RefCell::new(statement))
            }
        };
        Ok(statement.borrow_mut())
    }

    /// Write every pending change of the runs' part counters, inside the
    /// current transaction; none is pending afterwards.
    pub fn write_counts(&self) -> rusqlite::Result<()> {
        for (run_id, [w, r, s, f, x, c]) in self.counts.take() {
            if [w, r, s, f, x, c] != [0; 6] {
                self.prepared(Hot::CountMove)?
                    .execute(rusqlite::params![run_id, w, r, s, f, x, c])?;
            }
        }
        Ok(())
    }

    /// Run a statement without parameters or rows (transaction control).
    pub fn control(&self, hot: Hot) -> rusqlite::Result<()> {
        self.prepared(hot)?.execute([])?;
        Ok(())
    }
}

impl Deref for WriterConn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_sits_at_its_own_index() {
        for (i, hot) in Hot::ALL.iter().enumerate() {
            assert_eq!(*hot as usize, i, "{hot:?}");
        }
    }

    #[tokio::test]
    async fn every_statement_prepares_against_the_migrated_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = crate::store::sqlite::SqliteStore::open(&path).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let writer = WriterConn::new(&conn);
        for hot in Hot::ALL {
            if let Err(error) = writer.prepared(hot) {
                panic!("{hot:?}: {error}");
            }
        }
        // Prepared once: a transaction begun and committed twice with the
        // same two statements.
        for _ in 0..2 {
            writer.control(Hot::Begin).unwrap();
            assert!(!conn.is_autocommit());
            writer.control(Hot::Commit).unwrap();
            assert!(conn.is_autocommit());
        }
        drop(writer);
        store.close().await;
    }
}
