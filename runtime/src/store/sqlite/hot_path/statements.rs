//! The writer's connection and its hot statements, each prepared once and
//! found again by its place in [`Hot`] (and, beside them, the run snapshots
//! the writer's leases parsed).
//!
//! Why not rusqlite's `prepare_cached`: its cache finds a statement by its
//! SQL text, so every use trims, hashes and compares the text, copies it into
//! a new shared string, and hashes it again to put the statement back; with
//! some twenty statements per lease and result that was a tenth of the
//! writer's instructions (callgrind), more than any one statement's own
//! work. Here a statement is an index. Statements used once per run or per
//! split (`runs`) still go through `prepare_cached`, on the same connection.

use std::cell::{OnceCell, RefCell, RefMut};
use std::ops::Deref;

use rusqlite::{Connection, Statement};

use super::super::leasing::TOUCH_AGENT;
use super::super::transition::{INSERT_EVENT, READ_RUN_STATE};
use super::{counts, lease, submit, transition};

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
}

impl Hot {
    /// Every statement, in the order of the variants.
    const ALL: [Hot; 20] = [
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
    ];

    /// The statement's SQL (kept beside the code that binds it).
    fn sql(self) -> &'static str {
        match self {
            Hot::Begin => "BEGIN IMMEDIATE",
            Hot::Commit => "COMMIT",
            Hot::Rollback => "ROLLBACK",
            Hot::Savepoint => "SAVEPOINT op",
            Hot::RollbackToSavepoint => "ROLLBACK TO op",
            Hot::ReleaseSavepoint => "RELEASE op",
            Hot::TouchAgent => TOUCH_AGENT,
            Hot::RunsToLease => lease::RUNS_TO_LEASE,
            Hot::PartToLease => lease::PART_TO_LEASE,
            Hot::LeasePart => lease::LEASE_PART,
            Hot::InsertLease => lease::INSERT_LEASE,
            Hot::ResultTarget => submit::RESULT_TARGET,
            Hot::InsertResult => submit::INSERT_RESULT,
            Hot::EndLease => submit::END_LEASE,
            Hot::ApplyResult => submit::APPLY_RESULT,
            Hot::AcceptLateResult => submit::ACCEPT_LATE_RESULT,
            Hot::InsertEvent => INSERT_EVENT,
            Hot::CountMove => transition::COUNT_MOVE,
            Hot::ReadRunState => READ_RUN_STATE,
            Hot::MoveRun => transition::MOVE_RUN,
        }
    }
}

/// The writer's connection with what it keeps between operations: its
/// [`Hot`] statements, prepared on first use, the run snapshots its leases
/// parsed, and the batch's counter changes not yet written. Derefs to the
/// connection for everything else.
pub(in crate::store::sqlite) struct WriterConn<'c> {
    conn: &'c Connection,
    prepared: [OnceCell<RefCell<Statement<'c>>>; Hot::ALL.len()],
    /// Run snapshots parsed by leases ([`lease::Snapshots`]).
    pub(super) snapshots: lease::Snapshots,
    /// Counter changes of the batch not yet written ([`counts`]).
    pub(super) counts: counts::PendingCounts,
}

impl<'c> WriterConn<'c> {
    /// Wrap `conn`; nothing is prepared yet.
    pub fn new(conn: &'c Connection) -> Self {
        Self {
            conn,
            prepared: std::array::from_fn(|_| OnceCell::new()),
            snapshots: lease::Snapshots::default(),
            counts: counts::PendingCounts::default(),
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
        let store = crate::store::sqlite::SqliteStore::open(&path)
            .await
            .unwrap();
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
