//! Durability of the writer's batches, off the writer thread: the WAL is
//! flushed to disk (`fdatasync`) by a thread of its own, and a batch's callers
//! are answered only once a flush that began after its commit has finished.
//!
//! The writer's connection commits with `synchronous = NORMAL`: a commit
//! writes its frames to the WAL (the OS page cache) and returns, so the
//! writer goes on with the next batch while this thread waits for the disk.
//! Every batch committed while a flush was under way shares the next one.
//! An answered lease or result is then as durable as with `synchronous =
//! FULL` (whose commit flushes the same file before returning); what changes
//! is that the flush no longer stops the writer. SQLite itself still flushes
//! the WAL header when the log restarts (`sqlite3WalFrames`: under any
//! setting but OFF, SQLite ticket ff5be73dee) and the database file at each
//! checkpoint, so a power cut leaves a consistent database that holds at
//! least every answered change. A process crash loses nothing written to the
//! page cache.
//!
//! What the flush does not hold back: readers (the API's listings) see a
//! batch from its commit on, before its flush. A power cut in between can
//! take back a change a listing showed, never one a caller was told of.
//!
//! A flush that fails is not retried: after a failed `fdatasync` Linux may
//! have dropped the dirty pages, and a later flush that succeeds proves
//! nothing about them (PostgreSQL's "fsyncgate"). Every caller from then on
//! gets an error until the daemon is restarted, which recovers from the WAL
//! on disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::task::Poll;
use std::time::Duration;

use super::super::{Answer, Reply};
use super::awake::AwakeWait;
use crate::store::{StoreError, StoreResult};

/// A committed batch's answers, waiting for the flush.
pub(in crate::store::sqlite::writer) type Answers = Vec<(Reply, StoreResult<Answer>)>;

/// How long the flushing thread waits awake for the next batch (see
/// [`awake`](super::awake)).
const AWAKE_FOR: Duration = Duration::from_micros(200);

/// What a flush that ended covered: the writer's [`CommitPace`] keeps count.
///
/// [`CommitPace`]: super::pace::CommitPace
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store::sqlite::writer) struct FlushEnded {
    /// Committed batches the flush took.
    pub batches: usize,
    /// Callers it answered.
    pub answered: usize,
}

/// The queue in front of the flushing thread.
#[derive(Debug)]
pub(in crate::store::sqlite::writer) struct WalSync {
    queue: mpsc::Sender<Answers>,
}

impl WalSync {
    /// Start the flushing thread for the WAL of the database at `database`;
    /// it calls `flushed` as each flush ends, before that flush's callers
    /// are answered, with what the flush covered.
    pub fn start(
        database: &std::path::Path, flushed: impl Fn(FlushEnded) + Send + 'static,
    ) -> io::Result<Self> {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let (queue, committed) = mpsc::channel();
        let mut flusher = Flusher { wal: PathBuf::from(wal), file: None, failed: None };
        std::thread::Builder::new()
            .name("jobstack-sqlite-wal-sync".into())
            .spawn(move || flusher.run(committed, flushed))?;
        Ok(Self { queue })
    }

    /// Answer `answers` once the WAL, as it is now, is on disk. Whether a
    /// flush will report on them (not when the thread is gone: they are
    /// answered with an error at once).
    pub fn after_flush(&self, answers: Answers) -> bool {
        match self.queue.send(answers) {
            Ok(()) => true,
            Err(mpsc::SendError(answers)) => {
                // The thread is gone (it never panics; only at shutdown).
                for (reply, _) in answers {
                    let _ = reply.send(Err(flush_error("the WAL flushing thread has stopped")));
                }
                false
            }
        }
    }
}

struct Flusher {
    wal: PathBuf,
    /// The WAL, open for flushing; reopened if SQLite replaced the file.
    file: Option<(File, u64)>,
    /// Why a flush failed, once one has.
    failed: Option<String>,
}

impl Flusher {
    fn run(&mut self, committed: mpsc::Receiver<Answers>, flushed: impl Fn(FlushEnded)) {
        // Under load the next batch follows a flush within some tens of
        // microseconds (the writer commits as the flush ends). std's
        // receiver takes `&self`: a shared reference is the queue here.
        let mut awake = AwakeWait::new(AWAKE_FOR);
        let mut next_batch = || {
            awake.wait(
                &mut &committed,
                |committed| match committed.try_recv() {
                    Ok(answers) => Poll::Ready(Some(answers)),
                    Err(mpsc::TryRecvError::Disconnected) => Poll::Ready(None),
                    Err(mpsc::TryRecvError::Empty) => Poll::Pending,
                },
                |committed| committed.recv().ok(),
            )
        };
        while let Some(mut answers) = next_batch() {
            // Every batch committed before this flush starts shares it.
            let mut batches = 1;
            while let Ok(more) = committed.try_recv() {
                answers.extend(more);
                batches += 1;
            }
            if self.failed.is_none()
                && let Err(error) = self.flush()
            {
                tracing::error!(%error, wal = %self.wal.display(),
                    "flushing the SQLite WAL failed; leases and results fail until a restart");
                self.failed = Some(error.to_string());
            }
            // The writer first: it commits the batch it filled meanwhile
            // while the callers are answered, so the next flush starts sooner.
            flushed(FlushEnded { batches, answered: answers.len() });
            for (reply, outcome) in answers {
                let answer = match &self.failed {
                    None => outcome,
                    Some(why) => Err(flush_error(why)),
                };
                // The caller may have given up waiting; its change stays.
                let _ = reply.send(answer);
            }
        }
    }

    /// `fdatasync` the WAL file SQLite writes now (checked by inode: SQLite
    /// deletes the WAL only when its last connection closes, and the hot
    /// path's stays open, but a flush of a replaced file would prove nothing).
    fn flush(&mut self) -> io::Result<()> {
        let current = std::fs::metadata(&self.wal)?.ino();
        if self.file.as_ref().map(|(_, ino)| *ino) != Some(current) {
            let file = File::open(&self.wal)?;
            let ino = file.metadata()?.ino();
            self.file = Some((file, ino));
        }
        let (file, _) = self.file.as_ref().expect("opened above");
        file.sync_data()
    }
}

fn flush_error(why: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Io(io::Error::other(format!(
        "flushing the SQLite WAL to disk failed ({why}); restart the daemon"
    ))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::ResultAck;
    use tokio::sync::oneshot;

    /// Hand one applied result to `sync` and wait for its answer.
    fn answer(sync: &WalSync) -> StoreResult<Answer> {
        let (reply, answer) = oneshot::channel();
        assert!(sync.after_flush(vec![(reply, Ok(Answer::Submit(ResultAck::Applied)))]));
        answer.blocking_recv().expect("answered")
    }

    #[test]
    fn a_batch_is_answered_as_applied_once_the_wal_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db-wal"), b"frames").unwrap();
        let sync = WalSync::start(&dir.path().join("db"), |_| {}).unwrap();
        assert!(matches!(answer(&sync), Ok(Answer::Submit(ResultAck::Applied))));
    }

    #[test]
    fn batches_are_answered_whether_the_thread_waits_awake_or_asleep() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db-wal"), b"frames").unwrap();
        let sync = WalSync::start(&dir.path().join("db"), |_| {}).unwrap();
        for pause in [Duration::ZERO, AWAKE_FOR * 4, Duration::ZERO] {
            // Past `AWAKE_FOR` the thread sleeps until the next batch.
            std::thread::sleep(pause);
            assert!(matches!(answer(&sync), Ok(Answer::Submit(ResultAck::Applied))));
        }
    }

    #[test]
    fn each_flush_reports_the_batches_and_callers_it_covered() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db-wal"), b"frames").unwrap();
        let (report, reports) = std::sync::mpsc::channel();
        let sync = WalSync::start(&dir.path().join("db"), move |ended| {
            report.send(ended).unwrap();
        })
        .unwrap();
        // Three batches of one, two and three callers, queued at once: one
        // flush or several may take them, every one is reported once.
        let mut answers = Vec::new();
        for size in 1..=3 {
            let mut batch = Vec::new();
            for _ in 0..size {
                let (reply, answer) = oneshot::channel();
                batch.push((reply, Ok(Answer::Submit(ResultAck::Applied))));
                answers.push(answer);
            }
            assert!(sync.after_flush(batch));
        }
        for answer in answers {
            assert!(answer.blocking_recv().expect("answered").is_ok());
        }
        let (mut batches, mut answered) = (0, 0);
        while batches < 3 {
            let ended = reports.recv().expect("a flush reported");
            batches += ended.batches;
            answered += ended.answered;
        }
        assert_eq!((batches, answered), (3, 6));
        assert!(reports.try_recv().is_err(), "no flush without a batch");
    }

    #[test]
    fn after_a_failed_flush_every_answer_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        // No WAL file: the flush fails.
        let sync = WalSync::start(&dir.path().join("db"), |_| {}).unwrap();
        let first = answer(&sync).unwrap_err().to_string();
        assert!(first.contains("restart the daemon"), "{first}");
        // A later flush that would succeed proves nothing about the pages
        // the failed one may have dropped.
        std::fs::write(dir.path().join("db-wal"), b"frames").unwrap();
        assert!(answer(&sync).is_err());
    }
}
