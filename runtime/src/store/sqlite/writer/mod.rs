//! The SQLite store's one writer: a thread with its own (rusqlite)
//! connection that applies every write of the store, in batches that share
//! one transaction and one commit (group commit). Reads go through the
//! store's reader pool and never wait for it.
//!
//! Three concepts, one place each:
//! - [`ops`]: what is applied, with its SQL: leases and results (the hot
//!   path, its statements prepared once), new runs, admin actions, expiry,
//!   heartbeats and progress, the catalog; every state change goes through
//!   [`ops::transition`].
//! - [`batch`]: the transaction being filled, and how an operation that
//!   fails is undone without undoing its neighbours.
//! - [`commit`]: when a batch commits and when its callers are answered
//!   (after a WAL flush on a thread of its own, paced by the callers).
//!
//! Why one thread with a synchronous driver: SQLite allows one writer at a
//! time, and through an async driver every statement was a hand-off to the
//! connection's thread and back, dearer than the statement itself.

mod batch;
mod commit;
pub(super) mod ops;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use std::any::Any;
use std::path::Path;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::BUSY_TIMEOUT;
use crate::scheduler::{Agent, Lease, ResultAck, Submission};
use crate::store::{StoreError, StoreResult};
use batch::Batch;
use commit::{AwakeWait, CommitPace, WalSync};
use ops::WriterConn;

/// Most operations in one transaction: a full batch is committed even while a
/// flush is under way. It bounds what a batch adds to the wait of its first
/// member: when a forced run wakes every idle agent, the one lease that gets
/// the part may wait for the others' (empty) leases before its commit, each
/// some tens of microseconds.
const MAX_BATCH: usize = 32;

/// How long the writer waits awake for the next operation before it sleeps
/// (see [`AwakeWait`]); under load the next one is usually an agent's answer
/// away.
const WRITER_AWAKE_FOR: Duration = Duration::from_micros(100);

/// Statements kept prepared by rusqlite's cache for the writer connection:
/// those of every operation but the hot ones ([`ops`]); the hot ones are [`WriterConn`]'s.
const STATEMENT_CACHE: usize = 64;

/// The schema's migrations, in order; a database records how many it has
/// applied in its `user_version`.
fn migrations() -> rusqlite_migration::Migrations<'static> {
    rusqlite_migration::Migrations::new(vec![
        rusqlite_migration::M::up(include_str!("../../../../migrations/sqlite/0001_init.sql")),
        rusqlite_migration::M::up(include_str!("../../../../migrations/sqlite/0002_inventory.sql")),
        rusqlite_migration::M::up(include_str!(
            "../../../../migrations/sqlite/0003_chains_and_webhooks.sql"
        )),
        rusqlite_migration::M::up(include_str!(
            "../../../../migrations/sqlite/0004_plugin_retirement_and_task_timing.sql"
        )),
    ])
}

/// Bring the database at `path` to the latest schema. A database made by a
/// development version that kept sqlx's migration table is refused with what
/// to do: its schema history is not this one's.
fn migrate(conn: &mut Connection, path: &Path) -> StoreResult<()> {
    let sqlx_made: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = '_sqlx_migrations')",
        [],
        |row| row.get(0),
    )?;
    if sqlx_made {
        return Err(StoreError::Invalid(format!(
            "{} was made by an earlier development version of jobstack whose schema \
             history this version does not continue: move it away (or use another data \
             directory) and start again",
            path.display()
        )));
    }
    migrations()
        .to_latest(conn)
        .map_err(|e| StoreError::Invalid(format!("migrating {}: {e}", path.display())))
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
    /// Any other write ([`Writer::write`]).
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

/// What an operation answered.
#[derive(Debug)]
enum Answer {
    // Boxed: a lease is large, an acknowledgement a byte.
    Lease(Option<Box<Lease>>),
    Submit(ResultAck),
    /// The lease's own failure does not undo the applied result.
    SubmitAndLease(ResultAck, StoreResult<Option<Box<Lease>>>),
    Write(AnyValue),
}

type Reply = oneshot::Sender<StoreResult<Answer>>;

/// What the writer thread receives: operations, and word from the WAL's
/// flushing thread ([`commit`]).
// Not boxed: `Close` is sent once in the store's life.
#[allow(clippy::large_enum_variant)]
enum Message {
    Op(Op, Reply),
    /// A flush of the WAL ended: commit the batch filled meanwhile, if it
    /// was not committed early ([`CommitPace`]).
    Flushed(commit::FlushEnded),
    /// Close the connection and end the thread; answered once it is closed.
    Close(oneshot::Sender<()>),
}

/// The queue in front of the writer thread. Cheap to clone; the thread ends
/// when the last clone is dropped or [`Writer::close`] is called.
#[derive(Debug, Clone)]
pub(super) struct Writer {
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

impl Writer {
    /// Open a writer connection to the (migrated) database at `path` and
    /// start the writer thread on it.
    pub fn start(path: &Path) -> StoreResult<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer. A setting of the file, kept.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&mut conn, path)?;
        // Per connection: the journal mode is the file's (WAL, set at open).
        // NORMAL: a commit does not flush the WAL; the flushing thread does,
        // before any caller is answered ([`commit`]).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let thread_failed =
            |e: std::io::Error| StoreError::Invalid(format!("cannot start the writer thread: {e}"));
        let (queue, pending) = mpsc::unbounded_channel();
        // Weak: the writer thread ends when the store's last handle is gone.
        let writer = queue.downgrade();
        let wal_sync = WalSync::start(path, move |ended| {
            if let Some(writer) = writer.upgrade() {
                let _ = writer.send(Message::Flushed(ended));
            }
        })
        .map_err(thread_failed)?;
        std::thread::Builder::new()
            .name("jobstack-sqlite-writer".into())
            .spawn(move || write_batches(conn, pending, wal_sync))
            .map_err(thread_failed)?;
        Ok(Self { queue })
    }

    /// [`ops::lease::lease`] in the next batch.
    pub async fn lease(&self, agent: &Agent, now: DateTime<Utc>) -> StoreResult<Option<Lease>> {
        let op = Op::Lease { agent: agent.clone(), now };
        match self.call(op).await? {
            Answer::Lease(lease) => Ok(lease.map(|l| *l)),
            _ => unreachable!("a lease answers with a lease"),
        }
    }

    /// [`ops::submit::submit`] in the next batch.
    pub async fn submit(
        &self, agent: &Agent, submission: &Submission, now: DateTime<Utc>,
    ) -> StoreResult<ResultAck> {
        let op = Op::Submit { agent: agent.clone(), submission: submission.clone(), now };
        match self.call(op).await? {
            Answer::Submit(ack) => Ok(ack),
            _ => unreachable!("a result answers with an acknowledgement"),
        }
    }

    /// [`ops::submit::submit`] then, if it succeeded, [`ops::lease::lease`]: one
    /// operation, so both share a batch and its flush, and a result that is
    /// refused leases nothing.
    pub async fn submit_and_lease(
        &self, agent: &Agent, submission: &Submission, now: DateTime<Utc>,
    ) -> StoreResult<(ResultAck, Option<Lease>)> {
        let op = Op::SubmitAndLease { agent: agent.clone(), submission: submission.clone(), now };
        match self.call(op).await? {
            Answer::SubmitAndLease(ack, lease) => {
                Ok((ack, crate::store::lease_after_result(lease.map(|l| l.map(|l| *l)))))
            }
            _ => unreachable!("a result and lease answers with both"),
        }
    }

    /// Run `write` on the writer connection in the next batch, in a
    /// savepoint of its own, and answer once it is on disk.
    pub async fn write<T: Send + 'static>(
        &self, write: impl FnOnce(&WriterConn<'_>) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let op = Op::Write(WriteFn(Box::new(move |conn| {
            write(conn).map(|value| Box::new(value) as AnyValue)
        })));
        match self.call(op).await? {
            Answer::Write(value) => Ok(*value.downcast().expect("a write answers its own type")),
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

    async fn call(&self, op: Op) -> StoreResult<Answer> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Message::Op(op, reply)).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

fn closed() -> StoreError {
    StoreError::Closed
}

/// The writer thread: apply operations as they arrive into an open
/// transaction, and commit it when [`CommitPace`] says so (or it is full).
fn write_batches(
    conn: Connection, mut pending: mpsc::UnboundedReceiver<Message>, wal_sync: WalSync,
) {
    let writer = WriterConn::new(&conn);
    let mut open: Option<Batch> = None;
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
                    match open.take().map_or_else(|| Batch::begin(&writer), Ok) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_migrated_once_and_an_old_development_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        // Applied again: nothing to do.
        migrate(&mut conn, &path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).unwrap();
        assert_eq!(version, 4, "0001_init to 0004_plugin_retirement_and_task_timing");

        let old = dir.path().join("old.db");
        let mut conn = Connection::open(&old).unwrap();
        conn.execute_batch("CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY)").unwrap();
        let error = migrate(&mut conn, &old).unwrap_err().to_string();
        assert!(error.contains("move it away"), "{error}");
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'runs'", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(tables, 0, "the refused database is left as it was");
    }
}
