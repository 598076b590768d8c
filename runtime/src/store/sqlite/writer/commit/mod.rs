//! The writer's commit cycle: when a batch commits, and when its callers are
//! answered.
//!
//! 1. The writer applies operations into an open transaction ([`super::batch`]).
//! 2. It commits that batch at once when no flush of the WAL is under way;
//!    while one is, as soon as the batch holds as many operations as the
//!    last flush answered, else when the flush ends ([`CommitPace`]).
//! 3. A commit writes the batch to the WAL without flushing it
//!    (`synchronous = NORMAL`); a thread of its own flushes the WAL and
//!    answers a batch's callers only after a flush that began after the
//!    batch's commit ([`WalSync`]). So an answer is as durable as with
//!    `synchronous = FULL`, and the writer never waits for the disk.
//! 4. Each thread waits awake a moment for the other's next hand-off before
//!    it sleeps, while that pays ([`AwakeWait`]).

mod awake;
mod pace;
mod wal_sync;

pub(super) use awake::AwakeWait;
pub(super) use pace::CommitPace;
pub(super) use wal_sync::{Answers, FlushEnded, WalSync};
