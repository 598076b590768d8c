//! The two policies that exist in several copies, each as one table of cases
//! run through every copy:
//!
//! - who may lease which part: the Rust rule (`agent_may_take`, reached
//!   through [`Scheduler::unassignable_parts`](jobstack::scheduler::Scheduler::unassignable_parts))
//!   and each backend's leasing SQL, by a lease alone and by the lease a
//!   result brings (see `scheduler::targeting` for where each copy is);
//! - what a result may change: [`fencing::judge`] and each backend's
//!   compare-and-sets, by a result alone and by a result with the next lease
//!   (see `scheduler::fencing`).
//!
//! Each case is a row of data; a test walks its table once per backend and
//! reports every row where a copy answers otherwise than the row, all at once.

mod eligibility;
mod fencing;

use std::future::Future;

use futures_util::{StreamExt, stream};

use crate::harness::Harness;

/// Rows run at once, each on a fresh store of its own.
const AT_ONCE: usize = 2;

/// Walk every case of `table` through `row` (which answers what each copy of
/// `rule` got wrong) and fail listing all of it.
async fn check_table<C, F>(table: &'static [C], rule: &str, row: impl Fn(&'static C) -> F)
where
    F: Future<Output = Vec<String>>,
{
    let wrong: Vec<String> = stream::iter(table).map(row).buffered(AT_ONCE).concat().await;
    assert!(wrong.is_empty(), "{rule}'s copies disagree with the table:\n{}", wrong.join("\n"));
}

/// Cancel run `run_id` unless it ended: its parts leave the cases after it
/// on the same store alone.
async fn end(h: &Harness, run_id: i64) {
    let run = h.store.run(run_id).await.unwrap().unwrap();
    if !run.state.is_terminal() {
        h.sched.cancel(run_id).await.unwrap();
    }
}
