//! When the writer commits the batch it is filling.
//!
//! A batch is answered after the first flush that begins after its commit,
//! and a flush begins as soon as the previous one ends if a batch is waiting.
//! So what matters for latency is that a batch is committed *before* the
//! flush under way ends: a commit made after it (SQLite's commit is tens of
//! microseconds of `pwrite`s) delays the next flush, and every caller of the
//! next batch with it.
//!
//! The rule, asked after each operation: commit at once when no committed
//! batch is waiting for its flush (the disk is idle: even a batch of one is
//! worth flushing, while the writer applies the rest of its queue); while
//! one is, commit early when the batch holds as many operations
//! as the last flush answered (those callers are the likeliest to come back
//! next: agents whose result carried their next lease); otherwise when the
//! flush ends. Under a steady load the next flush then finds its batch
//! committed, and starts at once. A caller that does not come back costs
//! nothing: the batch commits when the flush ends. At most two batches are ever committed and unflushed,
//! so early commits never split a flush's worth of operations into many
//! small, dearer commits.

use super::wal_sync::FlushEnded;

/// The writer's view of the flushes, and its rule for committing.
#[derive(Debug)]
pub(in crate::store::sqlite::writer) struct CommitPace {
    /// Batches committed whose flush has not ended yet.
    unflushed: usize,
    /// Operations the last flush answered: how many to expect back.
    expected: usize,
}

impl CommitPace {
    /// No batch committed yet.
    pub fn new() -> Self {
        Self { unflushed: 0, expected: 1 }
    }

    /// A batch was committed and handed to the flushing thread.
    pub fn committed(&mut self) {
        self.unflushed += 1;
    }

    /// A flush ended.
    pub fn flushed(&mut self, ended: FlushEnded) {
        self.unflushed = self.unflushed.saturating_sub(ended.batches);
        self.expected = ended.answered.max(1);
    }

    /// Whether to commit an open batch of `size` operations now (asked
    /// after each operation the writer applies, and each word of a flush).
    pub fn commit_now(&self, size: usize) -> bool {
        self.unflushed == 0 || (self.unflushed == 1 && size >= self.expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_flush_under_way_a_batch_commits_at_once() {
        let pace = CommitPace::new();
        assert!(pace.commit_now(1));
    }

    #[test]
    fn during_a_flush_a_batch_commits_once_the_last_flushs_callers_are_back() {
        let mut pace = CommitPace::new();
        pace.committed();
        pace.flushed(FlushEnded { batches: 1, answered: 3 });
        // The next batch is being flushed; three callers were just answered.
        pace.committed();
        assert!(!pace.commit_now(1));
        assert!(!pace.commit_now(2));
        assert!(pace.commit_now(3));
        // Committed early: the next one waits for the flush to end, however
        // large it grows, so a flush's worth is not split into many commits.
        pace.committed();
        assert!(!pace.commit_now(3));
        assert!(!pace.commit_now(10));
        // The flush ends and the next one takes the early batch: the
        // operations that came meanwhile commit early again at their count.
        pace.flushed(FlushEnded { batches: 1, answered: 2 });
        assert!(!pace.commit_now(1));
        assert!(pace.commit_now(2));
        // Both flushed: whatever is open commits at once.
        pace.flushed(FlushEnded { batches: 1, answered: 3 });
        assert!(pace.commit_now(1));
    }

    #[test]
    fn a_flush_that_took_several_batches_counts_them_all() {
        let mut pace = CommitPace::new();
        pace.committed();
        pace.committed();
        pace.flushed(FlushEnded { batches: 2, answered: 5 });
        assert!(pace.commit_now(1));
    }
}
