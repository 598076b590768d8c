//! The changes a batch made to its runs' part counters, kept per run and
//! written once, before the batch commits.
//!
//! Every lease and result moves a part, and each move changed its run's
//! counters with an `UPDATE` of the run's row: two per result that carries
//! the next lease, most of them to the same run. Kept here, a run's row is
//! written once per batch. Until then the stored counters lag: whoever reads
//! them inside the batch adds [`PendingCounts::of`] (the hot path's reads
//! do, `transition::RunBefore`), and they are written before anything else
//! reads them (a write that reads the stored counters, the commit:
//! [`WriterConn::write_counts`](super::statements::WriterConn::write_counts)).
//! What is undone is forgotten with it: the whole list after a rollback of
//! the batch, the changes since a savepoint after a rollback to it.

use std::cell::RefCell;
use std::collections::HashMap;

/// Changes to each counter of `runs`, in the order of `transition::COUNTERS`.
pub(in crate::store::sqlite) type Deltas = [i64; 6];

/// The counter changes not yet written, by run.
#[derive(Debug, Default)]
pub(in crate::store::sqlite) struct PendingCounts(RefCell<HashMap<i64, Deltas>>);

/// The pending changes at a savepoint, to return to if it is rolled back.
#[derive(Debug)]
pub(in crate::store::sqlite) struct SavedCounts(HashMap<i64, Deltas>);

impl PendingCounts {
    /// Count a change of run `run_id`'s counters.
    pub fn add(&self, run_id: i64, deltas: Deltas) {
        let mut pending = self.0.borrow_mut();
        let counts = pending.entry(run_id).or_default();
        for (count, delta) in counts.iter_mut().zip(deltas) {
            *count += delta;
        }
    }

    /// The changes to run `run_id`'s counters not yet written.
    pub fn of(&self, run_id: i64) -> Deltas {
        self.0.borrow().get(&run_id).copied().unwrap_or_default()
    }

    /// Take every pending change, to be written before the commit (or
    /// before a write that reads the counters); none is pending afterwards.
    pub fn take(&self) -> HashMap<i64, Deltas> {
        std::mem::take(&mut *self.0.borrow_mut())
    }

    /// Forget every pending change: the transaction that made them was
    /// rolled back.
    pub fn forget(&self) {
        self.0.borrow_mut().clear();
    }

    /// The pending changes as they are now (at a savepoint).
    pub fn save(&self) -> SavedCounts {
        SavedCounts(self.0.borrow().clone())
    }

    /// Return to the changes saved at a savepoint rolled back since.
    pub fn restore(&self, saved: SavedCounts) {
        *self.0.borrow_mut() = saved.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_add_up_per_run_and_a_savepoint_returns_to_its_own() {
        let pending = PendingCounts::default();
        pending.add(1, [-1, 1, 0, 0, 0, 0]);
        pending.add(1, [0, -1, 0, 1, 0, 0]);
        pending.add(2, [-1, 1, 0, 0, 0, 0]);
        assert_eq!(pending.of(1), [-1, 0, 0, 1, 0, 0]);
        assert_eq!(pending.of(3), [0; 6]);
        let saved = pending.save();
        pending.add(1, [-1, 1, 0, 0, 0, 0]);
        pending.restore(saved);
        assert_eq!(pending.of(1), [-1, 0, 0, 1, 0, 0]);
        pending.forget();
        assert_eq!(pending.of(1), [0; 6]);
    }
}
