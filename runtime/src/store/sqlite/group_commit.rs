//! Group commit of the hot path: the leases and results that arrive while the
//! writer is busy are applied together, in arrival order, in one transaction.
//!
//! With `synchronous = FULL` every commit waits for the WAL to reach the disk
//! (about 250 µs here), which was half of what a lease or a result cost. One
//! commit per batch makes a whole batch durable at once; every caller still
//! gets its answer only after the commit that made its change durable.
//!
//! Applying operations one after another in one transaction has the same
//! outcome as committing each alone in that order. If any operation of a batch
//! fails (an agent submitting for a part it never leased, a database error),
//! the whole batch is rolled back and each operation is applied again alone,
//! so one bad request never takes its neighbours' answers down with it.

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sqlx::SqlitePool;
use std::panic::AssertUnwindSafe;
use tokio::sync::{mpsc, oneshot};

use super::{leasing, results};
use crate::scheduler::{Agent, Lease, ResultAck, Submission};
use crate::store::{StoreError, StoreResult};

/// Most operations in one transaction. It bounds what a batch adds to the
/// wait of its first member: when a forced run wakes every idle agent, the one
/// lease that gets the part waits for the others' (empty) leases before its
/// commit. Eight already spreads the fsync thin (a lease or a result costs far
/// more in statements than its share of the commit).
const MAX_BATCH: usize = 8;

/// An operation waiting for the writer.
#[derive(Debug)]
enum Op {
    Lease {
        agent: Agent,
        now: DateTime<Utc>,
    },
    Submit {
        agent: Agent,
        submission: Submission,
        now: DateTime<Utc>,
    },
}

/// What an operation returned.
#[derive(Debug)]
enum Outcome {
    // Boxed: a lease is large, an acknowledgement a byte.
    Lease(Option<Box<Lease>>),
    Submit(ResultAck),
}

type Reply = oneshot::Sender<StoreResult<Outcome>>;

/// The queue in front of the writer connection. Cheap to clone; the batching
/// task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<(Op, Reply)>,
}

impl GroupCommit {
    /// Start the batching task on `writer` (the one-connection writer pool).
    pub fn start(writer: SqlitePool) -> Self {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(batches(writer, pending));
        Self { queue }
    }

    /// [`leasing::lease`] in the next batch.
    pub async fn lease(&self, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
        let op = Op::Lease {
            agent: agent.clone(),
            now,
        };
        match self.call(op).await? {
            Outcome::Lease(lease) => Ok(lease.map(|l| *l)),
            Outcome::Submit(_) => unreachable!("a lease answers with a lease"),
        }
    }

    /// [`results::submit`] in the next batch.
    pub async fn submit(
        &self,
        agent: &Agent,
        submission: &Submission,
        now: DateTime<Utc>,
    ) -> StoreResult<ResultAck> {
        let op = Op::Submit {
            agent: agent.clone(),
            submission: submission.clone(),
            now,
        };
        match self.call(op).await? {
            Outcome::Submit(ack) => Ok(ack),
            Outcome::Lease(_) => unreachable!("a result answers with an acknowledgement"),
        }
    }

    async fn call(&self, op: Op) -> StoreResult<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((op, reply)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Database(sqlx::Error::PoolClosed)
}

/// Take what is queued (up to [`MAX_BATCH`]), apply it, answer, repeat.
async fn batches(writer: SqlitePool, mut pending: mpsc::UnboundedReceiver<(Op, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A lease whose caller gave up waiting (its agent hung up) is not
        // granted: nobody would run the part before the lease expired. A
        // result is applied all the same (the agent will send it again).
        batch.retain(|(op, reply)| !(matches!(op, Op::Lease { .. }) && reply.is_closed()));
        if batch.is_empty() {
            continue;
        }
        let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.drain(..).unzip();
        match apply_guarded(&writer, &ops).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The caller may have given up waiting; its change stays.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(error) if ops.len() == 1 => {
                let _ = replies.into_iter().next().expect("one").send(Err(error));
            }
            Err(error) => {
                tracing::debug!(%error, size = ops.len(), "batch rolled back; applying alone");
                for (op, reply) in ops.into_iter().zip(replies) {
                    let _ =
                        reply.send(apply_guarded(&writer, std::slice::from_ref(&op)).await.map(
                            |mut outcomes| outcomes.pop().expect("one outcome per operation"),
                        ));
                }
            }
        }
    }
}

/// [`apply`], a panic turned into an error for the batch (its transaction is
/// rolled back as it unwinds): the batching task must outlive any one batch,
/// or every later lease and result would fail.
async fn apply_guarded(writer: &SqlitePool, ops: &[Op]) -> StoreResult<Vec<Outcome>> {
    AssertUnwindSafe(apply(writer, ops))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(StoreError::Database(sqlx::Error::WorkerCrashed)))
}

/// Apply `ops` in order in one transaction: all of them, or none.
async fn apply(writer: &SqlitePool, ops: &[Op]) -> StoreResult<Vec<Outcome>> {
    let mut tx = writer.begin().await?;
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        outcomes.push(match op {
            Op::Lease { agent, now } => {
                Outcome::Lease(leasing::lease(&mut tx, agent, *now).await?.map(Box::new))
            }
            Op::Submit {
                agent,
                submission,
                now,
            } => Outcome::Submit(results::submit(&mut tx, agent, submission, *now).await?),
        });
    }
    tx.commit().await?;
    Ok(outcomes)
}
