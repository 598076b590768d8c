//! The hot path of the SQLite store: leases and results, applied by one
//! writer thread with a synchronous connection, in batches that share one
//! transaction and one commit (group commit).
//!
//! Why a thread of its own: through sqlx every statement is a hand-off to the
//! connection's worker thread and back (tens of microseconds), and a lease or
//! a result is about a dozen statements; SQLite itself was a few percent of
//! the time. Here the statements run where the data is, each prepared once
//! ([`statements`]), and a run's part counters are written once per batch
//! ([`counts`]).
//!
//! Why batches: the leases and results that arrive while the writer is busy
//! are applied together, in arrival order, and committed once. One that
//! fails (an agent submitting for a part it never leased, a panic) is undone
//! alone and its neighbours still commit: without a savepoint when it wrote
//! nothing, else by replaying the batch ([`batch`]).
//!
//! Durability: flushing the WAL to disk takes about 300 µs on this project's
//! CI machine, more than a batch's statements. The writer does not wait for
//! it: [`wal_sync`] flushes on a thread of its own and answers a batch's
//! callers only after a flush that began after the batch's commit. While a
//! flush is under way the writer applies what arrives into the next batch's
//! open transaction, and commits it before the flush ends if the callers
//! the last flush answered are back, else when it ends ([`pace`]): about one
//! commit per flush, and batches as large as the load (a commit writes the
//! batch's pages to the WAL; it was a third of the writer's time with a
//! commit per arrival). The hand-offs between the two threads are on the
//! path of every answer: the writer hears of the flush's end before its
//! callers are answered, and each thread waits awake a moment for its next
//! work before it sleeps, while that pays ([`awake`]).
//!
//! Runs are created here too ([`runs`]): a forced run is a dozen statements
//! the admin waits for, and the agents it wakes wait for the admin. The other
//! writes of the store (catalog, admin actions on runs, sweeps) stay on sqlx's
//! writer connection. Both connections take the store's [`WriteLock`] for
//! the length of a transaction, so they never meet inside SQLite's own lock
//! (whose busy handler sleeps in milliseconds, and whose deferred
//! transactions fail outright when another connection committed since they
//! read).

mod awake;
mod batch;
mod counts;
mod lease;
mod pace;
pub(super) mod runs;
mod statements;
mod submit;
mod transition;
mod wal_sync;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::any::Any;
use std::path::Path;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::BUSY_TIMEOUT;
use crate::scheduler::{Agent, Lease, ResultAck, Submission};
use crate::store::{StoreError, StoreResult};
use awake::AwakeWait;
use batch::Batch;
use pace::CommitPace;
pub(super) use statements::WriterConn;

/// Most operations in one transaction: a full batch is committed even while a
/// flush is under way. It bounds what a batch adds to the wait of its first
/// member: when a forced run wakes every idle agent, the one lease that gets
/// the part may wait for the others' (empty) leases before its commit, each
/// some tens of microseconds.
const MAX_BATCH: usize = 32;

/// How long the writer waits awake for the next operation before it sleeps
/// (see [`awake`]); under load the next one is usually an agent's answer
/// away.
const WRITER_AWAKE_FOR: Duration = Duration::from_micros(100);

/// Statements kept prepared by rusqlite's cache for the writer connection:
/// those of run creation ([`runs`]); the hot ones are [`WriterConn`]'s.
const STATEMENT_CACHE: usize = 16;

/// The store's write lock: held by whichever of its two writer connections
/// is inside a write transaction. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(super) struct WriteLock(Arc<tokio::sync::Mutex<()>>);

impl WriteLock {
    /// Wait for the lock in async code (sqlx's writer).
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }

    /// Wait for the lock on the writer thread (not a runtime thread).
    fn blocking_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.blocking_lock()
    }
}

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
    /// A result, then the agent's next lease (each in a savepoint).
    SubmitAndLease {
        agent: Agent,
        submission: Submission,
        now: DateTime<Utc>,
    },
    /// Any other write ([`HotPath::write`]).
    Write(WriteFn),
}

/// A write run on the writer connection; its value is the caller's.
struct WriteFn(Box<WriteOnce>);

type WriteOnce = dyn FnOnce(&WriterConn<'_>) -> StoreResult<AnyValue> + Send;

/// What a [`WriteFn`] returns, to be downcast by its caller.
type AnyValue = Box<dyn Any + Send>;

impl std::fmt::Debug for WriteFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteFn")
    }
}

/// What an operation returned.
#[derive(Debug)]
enum Outcome {
    // Boxed: a lease is large, an acknowledgement a byte.
    Lease(Option<Box<Lease>>),
    Submit(ResultAck),
    /// The lease's own failure does not undo the applied result.
    SubmitAndLease(ResultAck, StoreResult<Option<Box<Lease>>>),
    Write(AnyValue),
}

type Reply = oneshot::Sender<StoreResult<Outcome>>;

/// What the writer thread receives: operations, and word from [`wal_sync`].
// Not boxed: `Close` is sent once in the store's life.
#[allow(clippy::large_enum_variant)]
enum Message {
    Op(Op, Reply),
    /// A flush of the WAL ended: commit the batch filled meanwhile, if it
    /// was not committed early ([`pace`]).
    Flushed(wal_sync::FlushEnded),
    /// Close the connection and end the thread; answered once it is closed.
    Close(oneshot::Sender<()>),
}

/// The queue in front of the writer thread. Cheap to clone; the thread ends
/// when the last clone is dropped or [`HotPath::close`] is called.
#[derive(Debug, Clone)]
pub(super) struct HotPath {
    queue: mpsc::UnboundedSender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Op(op, _) => f.debug_tuple("Op").field(op).finish(),
            Message::Flushed(ended) => f.debug_tuple("Flushed").field(ended).finish(),
            Message::Close(_) => f.write_str("Close"),
        }
    }
}

impl HotPath {
    /// Open a writer connection to the (migrated) database at `path` and
    /// start the writer thread on it.
    pub fn start(path: &Path, lock: WriteLock) -> StoreResult<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Per connection: the journal mode is the file's (WAL, set at open).
        // NORMAL: a commit does not flush the WAL; `wal_sync` does, before
        // any caller is answered.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let thread_failed =
            |e: std::io::Error| StoreError::Invalid(format!("cannot start the writer thread: {e}"));
        let (queue, pending) = mpsc::unbounded_channel();
        // Weak: the writer thread ends when the store's last handle is gone.
        let writer = queue.downgrade();
        let wal_sync = wal_sync::WalSync::start(path, move |ended| {
            if let Some(writer) = writer.upgrade() {
                let _ = writer.send(Message::Flushed(ended));
            }
        })
        .map_err(thread_failed)?;
        std::thread::Builder::new()
            .name("jobstack-sqlite-writer".into())
            .spawn(move || write_batches(conn, pending, lock, wal_sync))
            .map_err(thread_failed)?;
        Ok(Self { queue })
    }

    /// [`lease::lease`] in the next batch.
    pub async fn lease(&self, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
        let op = Op::Lease {
            agent: agent.clone(),
            now,
        };
        match self.call(op).await? {
            Outcome::Lease(lease) => Ok(lease.map(|l| *l)),
            _ => unreachable!("a lease answers with a lease"),
        }
    }

    /// [`submit::submit`] in the next batch.
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
            _ => unreachable!("a result answers with an acknowledgement"),
        }
    }

    /// [`submit::submit`] then, if it succeeded, [`lease::lease`]: one
    /// operation, so both share a batch and its flush, and a result that is
    /// refused leases nothing.
    pub async fn submit_and_lease(
        &self,
        agent: &Agent,
        submission: &Submission,
        now: DateTime<Utc>,
    ) -> StoreResult<(ResultAck, Option<Lease>)> {
        let op = Op::SubmitAndLease {
            agent: agent.clone(),
            submission: submission.clone(),
            now,
        };
        match self.call(op).await? {
            Outcome::SubmitAndLease(ack, lease) => Ok((
                ack,
                crate::store::lease_after_result(lease.map(|l| l.map(|l| *l))),
            )),
            _ => unreachable!("a result and lease answers with both"),
        }
    }

    /// Run `write` on the writer connection in the next batch, in a
    /// savepoint of its own, and answer once it is on disk.
    pub async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&WriterConn<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let op = Op::Write(WriteFn(Box::new(move |conn| {
            write(conn).map(|value| Box::new(value) as AnyValue)
        })));
        match self.call(op).await? {
            Outcome::Write(value) => Ok(*value.downcast().expect("a write answers its own type")),
            _ => unreachable!("a write answers with its value"),
        }
    }

    /// Close the writer connection once the operations queued before this
    /// call are answered; later calls fail.
    pub async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Message::Close(done)).is_ok() {
            let _ = closed.await;
        }
    }

    async fn call(&self, op: Op) -> StoreResult<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Op(op, reply))
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Closed
}

/// The writer thread: apply operations as they arrive into an open
/// transaction, and commit it when [`CommitPace`] says so (or it is full).
fn write_batches(
    conn: Connection,
    mut pending: mpsc::UnboundedReceiver<Message>,
    lock: WriteLock,
    wal_sync: wal_sync::WalSync,
) {
    let writer = WriterConn::new(&conn);
    let mut open: Option<Batch<'_>> = None;
    let mut pace = CommitPace::new();
    let mut closing = None;
    let mut awake = AwakeWait::new(WRITER_AWAKE_FOR);
    while closing.is_none() {
        let first = awake.wait(
            &mut pending,
            |pending| match pending.try_recv() {
                Ok(message) => Poll::Ready(Some(message)),
                Err(mpsc::error::TryRecvError::Disconnected) => Poll::Ready(None),
                Err(mpsc::error::TryRecvError::Empty) => Poll::Pending,
            },
            |pending| pending.blocking_recv(),
        );
        let Some(first) = first else {
            break;
        };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Op(op, reply) => {
                    match open.take().map_or_else(|| Batch::begin(&writer, &lock), Ok) {
                        Err(error) => {
                            let _ = reply.send(Err(error.into()));
                        }
                        Ok(batch) => {
                            let batch = batch.apply(&writer, op, reply);
                            if batch.answers.len() < MAX_BATCH && !batch.sealed {
                                open = Some(batch);
                            } else if batch.commit(&writer, &wal_sync) {
                                pace.committed();
                            }
                        }
                    }
                }
                Message::Flushed(ended) => pace.flushed(ended),
                Message::Close(done) => closing = Some(done),
            }
            // Asked after each message, not once the queue is drained: while
            // the flushing thread is idle, or the callers it answered last
            // are back, a commit now starts the next flush sooner than one
            // after the rest of the queue.
            if let Some(batch) =
                open.take_if(|b| closing.is_some() || pace.commit_now(b.answers.len()))
                && batch.commit(&writer, &wal_sync)
            {
                pace.committed();
            }
            next = pending.try_recv().ok();
        }
    }
    if let Some(batch) = open.take() {
        batch.commit(&writer, &wal_sync);
    }
    drop(writer);
    if let Err((_, error)) = conn.close() {
        tracing::warn!(%error, "closing the SQLite writer connection failed");
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}
