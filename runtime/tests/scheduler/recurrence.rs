//! Recurring tasks: intervals, cron, coalescing of missed runs, overlap.

use std::time::Duration;

use jobstack::scheduler::{Frequency, State};

use crate::harness::{Backend, Harness, finished};
use crate::store_tests;

store_tests!(
    a_once_task_runs_once,
    an_interval_task_runs_every_interval,
    missed_runs_coalesce_into_one,
    a_cron_task_runs_at_its_times,
    no_new_run_while_the_previous_is_active_unless_overlap_is_allowed,
    a_manual_task_runs_only_when_forced,
);

async fn runs_of(h: &Harness, name: &str) -> usize {
    let task = h.store.task_by_name(name).await.unwrap().unwrap();
    h.store.runs(Some(task.id)).await.unwrap().len()
}

async fn finish_all(h: &Harness, agent: &jobstack::scheduler::Agent) {
    while let Some(lease) = h.sched.lease(agent).await.unwrap() {
        h.sched.submit(agent, &finished(&lease)).await.unwrap();
    }
}

async fn a_once_task_runs_once(backend: Backend) {
    let h = Harness::new(backend).await;
    let a = h.agent("a", &[]).await;
    h.run_of(&h.spec("once", Harness::labels(1))).await;
    finish_all(&h, &a).await;
    h.advance(Duration::from_secs(3600));
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "once").await, 1);
}

/// A task `every` run every `seconds`, its first run done by agent `a`.
async fn every_first_run_done(backend: Backend, seconds: u64) -> Harness {
    let h = Harness::new(backend).await;
    let a = h.agent("a", &[]).await;
    let mut spec = h.spec("every", Harness::labels(1));
    spec.frequency = Frequency::Every { seconds };
    h.run_of(&spec).await;
    finish_all(&h, &a).await;
    h
}

async fn an_interval_task_runs_every_interval(backend: Backend) {
    let h = every_first_run_done(backend, 600).await;
    h.advance(Duration::from_secs(599));
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "every").await, 1);
    h.advance(Duration::from_secs(1));
    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.scheduled.len(), 1);
    assert_eq!(runs_of(&h, "every").await, 2);
    let task = h.store.task_by_name("every").await.unwrap().unwrap();
    assert_eq!(task.next_run_at, Some(h.sched.now() + chrono::TimeDelta::seconds(600)));
}

async fn missed_runs_coalesce_into_one(backend: Backend) {
    let h = every_first_run_done(backend, 60).await;
    // The daemon was down for an hour: one run, not sixty.
    h.advance(Duration::from_secs(3600 + 30));
    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.scheduled.len(), 1);
    assert_eq!(runs_of(&h, "every").await, 2);
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "every").await, 2);
    // The schedule keeps its phase: the next one on the minute.
    let task = h.store.task_by_name("every").await.unwrap().unwrap();
    let start = jobstack::scheduler::ManualClock::fixed();
    use jobstack::scheduler::Clock;
    assert_eq!(task.next_run_at, Some(start.now() + chrono::TimeDelta::seconds(3660)));
}

async fn a_cron_task_runs_at_its_times(backend: Backend) {
    let h = Harness::new(backend).await;
    let a = h.agent("a", &[]).await;
    let mut spec = h.spec("nightly", Harness::labels(1));
    // The clock starts at 2026-01-01T00:00:00Z; every day at 03:00.
    spec.frequency = Frequency::Cron { expr: "0 3 * * *".into() };
    let task = h.task(&spec).await;
    assert_eq!(task.next_run_at.unwrap().to_rfc3339(), "2026-01-01T03:00:00+00:00");
    h.advance(Duration::from_secs(3 * 3600 - 1));
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "nightly").await, 0);
    h.advance(Duration::from_secs(1));
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "nightly").await, 1);
    finish_all(&h, &a).await;
    // Three nights missed: one run, and the next is tomorrow at 03:00.
    h.advance(Duration::from_secs(3 * 86_400 + 3600));
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "nightly").await, 2);
    let task = h.store.task(task.id).await.unwrap().unwrap();
    assert_eq!(task.next_run_at.unwrap().to_rfc3339(), "2026-01-05T03:00:00+00:00");
}

async fn no_new_run_while_the_previous_is_active_unless_overlap_is_allowed(backend: Backend) {
    let h = Harness::new(backend).await;
    let a = h.agent("a", &[]).await;
    let mut spec = h.spec("slow", Harness::labels(1));
    spec.frequency = Frequency::Every { seconds: 60 };
    let first = h.run_of(&spec).await;
    h.advance(Duration::from_secs(60));
    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.held_back.len(), 1);
    assert_eq!(runs_of(&h, "slow").await, 1);
    // Once the first run ends, the held-back occurrence runs.
    finish_all(&h, &a).await;
    assert_eq!(h.run_state(first.id).await, State::Finished);
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "slow").await, 2);

    let mut overlap = h.spec("overlap", Harness::labels(1));
    overlap.frequency = Frequency::Every { seconds: 60 };
    overlap.allow_overlap = true;
    h.run_of(&overlap).await;
    h.advance(Duration::from_secs(60));
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "overlap").await, 2);
}

async fn a_manual_task_runs_only_when_forced(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut spec = h.spec("manual", Harness::labels(1));
    spec.frequency = Frequency::Manual;
    let task = h.task(&spec).await;
    h.advance(Duration::from_secs(86_400));
    h.sched.tick().await.unwrap();
    assert_eq!(runs_of(&h, "manual").await, 0);
    h.sched.force_run(&task).await.unwrap();
    assert_eq!(runs_of(&h, "manual").await, 1);
}
