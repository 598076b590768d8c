//! The transaction the writer is filling: operations applied one after the
//! other, answered after the commit's flush, and how one that fails is undone
//! without undoing its neighbours.
//!
//! Leases and results are applied directly, without a savepoint: a savepoint
//! is two more statements and a copy of every page written inside it (its
//! sub-journal), a cost every operation would pay for the rare one that
//! fails. Instead:
//! - an operation that fails having written nothing (a result for a part its
//!   sender does not hold: refused before any write) leaves nothing to undo;
//! - one that fails after writing (or panics) is undone by replay: the
//!   transaction is rolled back, begun again, and the batch's earlier
//!   operations applied again, each in a savepoint of its own, as is the
//!   failed one; the rest of the batch then runs with savepoints too.
//!
//! Why a replay is exact: the writer is the store's only writer and no
//! caller of the batch has been answered (answers wait for the commit's
//! flush), so the operations applied again meet the same data in the same
//! order, and their callers get what the replay said.
//!
//! Other writes ([`Op::Write`]: runs, the catalog, admin actions, expiry,
//! heartbeats) are closures that run once and cannot be replayed: each runs
//! in a savepoint and the batch is committed right after it, so no later
//! failure needs to undo it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use super::commit::{Answers, WalSync};
use super::ops::{Hot, WriterConn, lease, submit};
use super::{Answer, MAX_BATCH, Op, Reply, WriteFn};
use crate::scheduler::{Agent, Submission};
use crate::store::{StoreError, StoreResult};

/// The transaction the writer is filling.
pub(super) struct Batch {
    /// Each operation's caller and answer, in the order applied.
    pub answers: Answers,
    /// The operations applied directly, beside their answers, kept for a
    /// replay (`None`: nothing to apply again).
    applied: Vec<Option<Op>>,
    /// Every operation from now on runs in a savepoint (after a replay).
    isolated: bool,
    /// The batch must be committed now: it holds a write that cannot be
    /// replayed.
    pub sealed: bool,
    /// A savepoint or a replay that failed leaves the transaction in doubt:
    /// none of it is kept.
    broken: Option<rusqlite::Error>,
}

impl Batch {
    /// Begin a transaction.
    pub fn begin(conn: &WriterConn<'_>) -> rusqlite::Result<Self> {
        // Not rusqlite's `Transaction` and `Savepoint`: they parse their
        // statements anew each time.
        conn.control(Hot::Begin)?;
        Ok(Self {
            answers: Vec::with_capacity(MAX_BATCH),
            applied: Vec::with_capacity(MAX_BATCH),
            isolated: false,
            sealed: false,
            broken: None,
        })
    }

    /// Apply `op`; its answer waits for the commit.
    pub fn apply(mut self, conn: &WriterConn<'_>, op: Op, reply: Reply) -> Self {
        // A lease whose caller gave up waiting (its agent hung up) is not
        // granted: nobody would run the part before the lease expired. A
        // result is applied all the same (the agent will send it again),
        // without the lease that may follow it.
        let lease_wanted = !reply.is_closed();
        let (answer, kept) = if self.broken.is_some() {
            // Every caller is answered with the batch's error at the commit.
            (Err(not_applied()), None)
        } else if let Op::Write(WriteFn(write)) = op {
            // Sealed: committed right after, so nothing later in this batch
            // can need it undone by a replay.
            self.sealed = true;
            // The counters as stored, for the write to read.
            let answer = conn
                .write_counts()
                .and_then(|()| in_savepoint(conn, || write(conn)))
                .map(|a| a.map(Answer::Write));
            (self.unless_broken(answer), None)
        } else if self.isolated {
            let answer = apply_isolated(conn, &op, lease_wanted);
            (self.unless_broken(answer), None)
        } else {
            let before = conn.total_changes();
            match apply_directly(conn, &op, lease_wanted) {
                Ok(outcome) => (Ok(outcome), Some(op)),
                // Refused before any write: nothing to undo.
                Err(refused) if conn.total_changes() == before && !conn.is_autocommit() => {
                    (Err(refused), None)
                }
                Err(failed) => {
                    tracing::debug!(%failed, "an operation failed after writing; replaying its batch");
                    self.replay(conn);
                    // Not applied once the replay failed: outside a
                    // transaction its savepoint would commit it alone.
                    let answer = match self.broken {
                        Some(_) => Ok(Err(not_applied())),
                        None => apply_isolated(conn, &op, lease_wanted),
                    };
                    (self.unless_broken(answer), None)
                }
            }
        };
        self.answers.push((reply, answer));
        self.applied.push(kept);
        self
    }

    /// Undo the transaction and apply its operations again, each in a
    /// savepoint; the rest of the batch runs in savepoints as well.
    fn replay(&mut self, conn: &WriterConn<'_>) {
        self.isolated = true;
        // Nothing the batch counted is stored once it is rolled back.
        conn.counts.forget();
        let begun = match conn.is_autocommit() {
            // SQLite rolled the transaction back itself (an I/O error).
            true => conn.control(Hot::Begin),
            false => conn.control(Hot::Rollback).and_then(|()| conn.control(Hot::Begin)),
        };
        if let Err(error) = begun {
            self.broken = Some(error);
            return;
        }
        for (i, op) in self.applied.iter().enumerate() {
            let Some(op) = op else { continue };
            let lease_wanted = !self.answers[i].0.is_closed();
            match apply_isolated(conn, op, lease_wanted) {
                Ok(answer) => self.answers[i].1 = answer,
                Err(error) => {
                    self.broken = Some(error);
                    return;
                }
            }
        }
    }

    /// An operation's answer, unless a savepoint failed: then the batch is
    /// broken.
    fn unless_broken(
        &mut self, answer: rusqlite::Result<StoreResult<Answer>>,
    ) -> StoreResult<Answer> {
        answer.unwrap_or_else(|error| {
            self.broken = Some(error);
            Err(not_applied())
        })
    }

    /// Commit, and have every caller answered once the commit is on disk.
    /// Whether a flush will report on it (not when the batch failed: its
    /// callers are answered at once).
    pub fn commit(self, conn: &WriterConn<'_>, wal_sync: &WalSync) -> bool {
        let committed = match self.broken {
            Some(error) => Err(error),
            None => conn.write_counts().and_then(|()| conn.control(Hot::Commit)),
        };
        match committed {
            Ok(()) => wal_sync.after_flush(self.answers),
            Err(error) => {
                // Nothing of the batch was kept, whatever each operation said.
                conn.counts.forget();
                if !conn.is_autocommit()
                    && let Err(rollback) = conn.control(Hot::Rollback)
                {
                    tracing::error!(%rollback, "rolling back a failed batch failed");
                }
                tracing::warn!(%error, size = self.answers.len(), "a batch of leases and results failed");
                // One failure, every caller of the batch told of it.
                let error = Arc::new(error);
                for (reply, _) in self.answers {
                    let _ = reply.send(Err(StoreError::Sqlite(Arc::clone(&error))));
                }
                false
            }
        }
    }
}

fn not_applied() -> StoreError {
    StoreError::Invalid("not applied".into())
}

/// A lease, then the agent marked seen (once per operation, with its first
/// step, and not if that step is refused).
fn lease_step(
    conn: &WriterConn<'_>, agent: &Agent, now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<Option<crate::scheduler::Lease>> {
    let lease = lease::lease(conn, agent, now)?;
    lease::touch_agent(conn, agent, now)?;
    Ok(lease)
}

/// A result, then the agent marked seen (see [`lease_step`]).
fn submit_step(
    conn: &WriterConn<'_>, agent: &Agent, submission: &Submission,
    now: chrono::DateTime<chrono::Utc>,
) -> StoreResult<crate::scheduler::ResultAck> {
    let ack = submit::submit(conn, agent, submission, now)?;
    lease::touch_agent(conn, agent, now)?;
    Ok(ack)
}

/// A lease or a result (and the lease after it), without a savepoint; a
/// panic is an error. Any error: the operation failed (whether it wrote
/// anything is the caller's to find out).
fn apply_directly(conn: &WriterConn<'_>, op: &Op, lease_wanted: bool) -> StoreResult<Answer> {
    let run = || match op {
        Op::Lease { .. } if !lease_wanted => Ok(Answer::Lease(None)),
        Op::Lease { agent, now } => {
            lease_step(conn, agent, *now).map(|l| Answer::Lease(l.map(Box::new)))
        }
        Op::Submit { agent, submission, now } => {
            submit_step(conn, agent, submission, *now).map(Answer::Submit)
        }
        Op::SubmitAndLease { agent, submission, now } => {
            let ack = submit_step(conn, agent, submission, *now)?;
            let lease = match lease_wanted {
                true => lease::lease(conn, agent, *now)?,
                false => None,
            };
            Ok(Answer::SubmitAndLease(ack, Ok(lease.map(Box::new))))
        }
        Op::Write(_) => unreachable!("writes run in a savepoint"),
    };
    std::panic::catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|_| Err(panicked()))
}

/// A lease or a result (and the lease after it) in a savepoint: kept if it
/// succeeds, rolled back alone if it fails; a failed lease after a result
/// does not undo the result. The outer error: a savepoint itself failed.
fn apply_isolated(
    conn: &WriterConn<'_>, op: &Op, lease_wanted: bool,
) -> rusqlite::Result<StoreResult<Answer>> {
    Ok(match op {
        Op::Lease { .. } if !lease_wanted => Ok(Answer::Lease(None)),
        Op::Lease { agent, now } => in_savepoint(conn, || lease_step(conn, agent, *now))?
            .map(|l| Answer::Lease(l.map(Box::new))),
        Op::Submit { agent, submission, now } => {
            in_savepoint(conn, || submit_step(conn, agent, submission, *now))?.map(Answer::Submit)
        }
        Op::SubmitAndLease { agent, submission, now } if lease_wanted => {
            // Both steps in one savepoint. A failed lease must not undo the
            // result: then the savepoint is rolled back and the result
            // applied again, alone.
            let applied = std::cell::Cell::new(None);
            let both = in_savepoint(conn, || {
                let ack = submit_step(conn, agent, submission, *now)?;
                applied.set(Some(ack));
                Ok((ack, lease::lease(conn, agent, *now)?))
            })?;
            match (both, applied.get()) {
                (Ok((ack, lease)), _) => Ok(Answer::SubmitAndLease(ack, Ok(lease.map(Box::new)))),
                (Err(refused), None) => Err(refused),
                (Err(lease_failed), Some(_)) => {
                    in_savepoint(conn, || submit_step(conn, agent, submission, *now))?
                        .map(|ack| Answer::SubmitAndLease(ack, Err(lease_failed)))
                }
            }
        }
        Op::SubmitAndLease { agent, submission, now } => {
            in_savepoint(conn, || submit_step(conn, agent, submission, *now))?
                .map(|ack| Answer::SubmitAndLease(ack, Ok(None)))
        }
        Op::Write(_) => unreachable!("a write is applied once, by `Batch::apply`"),
    })
}

/// Run `step` in a savepoint: kept if it succeeds, rolled back alone if it
/// fails or panics (a panic must not end the writer thread, or every later
/// lease and result would fail).
fn in_savepoint<T>(
    conn: &WriterConn<'_>, step: impl FnOnce() -> StoreResult<T>,
) -> rusqlite::Result<StoreResult<T>> {
    conn.control(Hot::Savepoint)?;
    let counted = conn.counts.save();
    let outcome =
        std::panic::catch_unwind(AssertUnwindSafe(step)).unwrap_or_else(|_| Err(panicked()));
    if outcome.is_err() {
        conn.control(Hot::RollbackToSavepoint)?;
        conn.counts.restore(counted);
    }
    conn.control(Hot::ReleaseSavepoint)?;
    Ok(outcome)
}

fn panicked() -> StoreError {
    tracing::error!("an operation of the writer panicked; undone");
    StoreError::WriterFailed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::{
        AgentRegistration, NewPart, NewRun, ResultAck, RunCause, State, TaskSpec,
    };
    use crate::store::{PluginRecord, Store, StoreReads, TaskWrite, sqlite::SqliteStore};
    use chrono::Utc;
    use rusqlite::Connection;
    use tokio::sync::oneshot;

    /// Two runs of plugin `test`: the first with two parts, the second with
    /// one whose run's stored spec cannot be read, so that leasing it fails
    /// after the lease's writes. Three agents.
    async fn two_runs(store: &SqliteStore) -> (Vec<Agent>, i64, i64) {
        let now = Utc::now();
        let plugin = PluginRecord {
            sha256: "ab".repeat(32),
            name: "test".into(),
            version: "1.0.0".into(),
            manifest: serde_json::json!({}),
            size: 1,
            uploaded_at: now,
            retired_at: None,
        };
        store.put_plugin(&plugin).await.unwrap();
        let mut agents = Vec::new();
        for name in ["a", "b", "c"] {
            let registration = AgentRegistration {
                name: name.into(),
                networks: Vec::new(),
                plugins: Vec::new(),
                pooled_slots: 1,
                dedicated_slots: 1,
            };
            agents.push(store.register_agent(&registration, name, now).await.unwrap());
        }
        let spec = TaskSpec::new("job", "test");
        let write =
            TaskWrite { spec: spec.clone(), secrets: None, next_run_at: None, chained_since: None };
        let task = store.create_task(&write, now).await.unwrap();
        let mut runs = Vec::new();
        for parts in [2, 1] {
            let run = NewRun {
                task_id: task.id,
                spec: spec.clone(),
                secrets: serde_json::json!({}),
                plugin_sha256: plugin.sha256.clone(),
                cause: RunCause::Forced,
                rerun_of: None,
                caused_by: None,
            };
            let parts: Vec<_> = (0..parts)
                .map(|i| NewPart {
                    label: format!("p{i}"),
                    targets: Vec::new(),
                    payload: "{}".into(),
                })
                .collect();
            runs.push(store.create_run_with_parts(&run, &parts, now).await.unwrap().id);
        }
        (agents, runs[0], runs[1])
    }

    /// A finished result for attempt 1 of part `part_id`.
    fn finished(part_id: i64) -> Submission {
        Submission {
            part_id,
            attempt: 1,
            status: crate::scheduler::ResultStatus::Finished,
            output: None,
            error: None,
            emitted: Vec::new(),
            logs: Vec::new(),
            started_at: None,
            duration_ms: 1,
        }
    }

    /// Apply `ops` in one batch on a connection of its own to the database
    /// at `db`, and commit: whether the batch was replayed, and each answer.
    async fn one_batch(db: std::path::PathBuf, ops: Vec<Op>) -> (bool, Vec<StoreResult<Answer>>) {
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&db).unwrap();
            let writer = WriterConn::new(&conn);
            let wal_sync = WalSync::start(&db, |_| {}).unwrap();
            let mut batch = Batch::begin(&writer).unwrap();
            let mut answers = Vec::new();
            for op in ops {
                let (reply, answer) = oneshot::channel();
                batch = batch.apply(&writer, op, reply);
                answers.push(answer);
            }
            let replayed = batch.isolated;
            assert!(batch.commit(&writer, &wal_sync));
            let answers =
                answers.into_iter().map(|a| a.blocking_recv().expect("answered")).collect();
            (replayed, answers)
        })
        .await
        .unwrap()
    }

    fn lease(agent: &Agent) -> Op {
        Op::Lease { agent: agent.clone(), now: Utc::now() }
    }

    fn submit(agent: &Agent, part_id: i64) -> Op {
        Op::Submit { agent: agent.clone(), submission: finished(part_id), now: Utc::now() }
    }

    #[tokio::test]
    async fn an_operation_failing_after_its_writes_is_undone_by_replay_and_its_neighbours_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let (agents, first, unreadable) = two_runs(&store).await;
        let check = Connection::open(&path).unwrap();
        check.execute("UPDATE runs SET spec = 'not json' WHERE id = ?1", [unreadable]).unwrap();
        // a and b take the first run's parts; c finds only the unreadable
        // run's part (its lease fails after writing); then a sends its
        // result, after the replay.
        let ops =
            vec![lease(&agents[0]), lease(&agents[1]), lease(&agents[2]), submit(&agents[0], 1)];
        let (replayed, answers) = one_batch(path.clone(), ops).await;
        assert!(replayed, "the failure after writing replayed the batch");
        let leased = |answer: &StoreResult<Answer>| match answer {
            Ok(Answer::Lease(Some(lease))) => (lease.run_id, lease.part_id, lease.attempt),
            other => panic!("expected a lease, got {other:?}"),
        };
        assert_eq!(leased(&answers[0]), (first, 1, 1));
        assert_eq!(leased(&answers[1]), (first, 2, 1));
        assert!(matches!(answers[2], Err(StoreError::Corrupt(_))), "{:?}", answers[2]);
        assert!(matches!(answers[3], Ok(Answer::Submit(ResultAck::Applied))), "{:?}", answers[3]);
        // The failed lease left nothing; the replayed one is there once.
        let parts = store.parts(unreadable).await.unwrap();
        assert_eq!((parts[0].state, parts[0].attempt), (State::Waiting, 0));
        let count = |sql: &str| -> i64 { check.query_row(sql, [], |row| row.get(0)).unwrap() };
        assert_eq!(count("SELECT count(*) FROM leases"), 2);
        assert_eq!(
            count("SELECT count(*) FROM events WHERE entity = 'part' AND to_state = 'running'"),
            2
        );
        assert_eq!(
            count(&format!("SELECT n_running * 10 + n_finished FROM runs WHERE id = {first}")),
            11
        );
        assert_eq!(count(&format!("SELECT n_waiting FROM runs WHERE id = {unreadable}")), 1);
        store.close().await;
    }

    #[tokio::test]
    async fn a_refusal_before_any_write_needs_no_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let (agents, _, _) = two_runs(&store).await;
        // b sends a result for a part it never leased, between two leases.
        let ops = vec![lease(&agents[0]), submit(&agents[1], 1), lease(&agents[1])];
        let (replayed, answers) = one_batch(path, ops).await;
        assert!(!replayed, "nothing to undo, no replay");
        assert!(matches!(answers[0], Ok(Answer::Lease(Some(_)))));
        assert!(matches!(answers[1], Err(StoreError::NotLeased { .. })), "{:?}", answers[1]);
        assert!(matches!(answers[2], Ok(Answer::Lease(Some(_)))));
        store.close().await;
    }
}
