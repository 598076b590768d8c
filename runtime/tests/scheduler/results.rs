//! Results under the fencing rule: duplicate, late, stale and foreign results.

use jobstack::scheduler::SchedulerError;
use jobstack::scheduler::{Agent, Lease, ResultAck, ResultStatus, Run, State, Submission};
use jobstack::store::StoreError;
use std::time::Duration;

use crate::harness::{Backend, Harness, finished, result};
use crate::store_tests;

store_tests!(
    the_same_result_twice_is_a_duplicate,
    a_result_for_an_attempt_never_leased_is_refused,
    a_late_failure_is_recorded_and_changes_nothing,
    a_late_success_without_a_newer_lease_finishes_the_part,
    results_are_kept_with_output_records_and_timings,
    a_refused_result_among_concurrent_ones_changes_only_itself,
    leases_and_results_meet_heartbeats_sweeps_and_new_runs_without_errors,
    a_result_can_bring_the_agents_next_lease,
    a_refused_result_brings_no_lease_and_changes_nothing,
    a_late_result_with_a_lease_request_is_accepted_once_and_leases_on,
    a_failure_can_bring_the_agents_next_lease,
    concurrent_results_with_next_leases_finish_every_part_once,
);

/// `a`'s lease of a new one-part run expires and, past the retry's backoff,
/// `b` takes the part over: the run, `a`'s lease (cut off) and `b`'s.
async fn taken_over(h: &Harness, a: &Agent, b: &Agent) -> (Run, Lease, Lease) {
    let run = h.run_of(&h.spec("job", Harness::labels(1))).await;
    let cut_off = h.lease(a).await;
    h.advance(Duration::from_secs(91));
    h.sched.tick().await.unwrap();
    h.advance(Duration::from_secs(5));
    let current = h.lease(b).await;
    assert_eq!((current.part_id, current.attempt), (cut_off.part_id, 2));
    (run, cut_off, current)
}

/// Nothing happened to `run`: no result stored, and `lease`'s part still
/// running in `holder`'s hands.
async fn assert_untouched(h: &Harness, run: &Run, lease: &Lease) {
    assert!(h.store.results(run.id).await.unwrap().is_empty());
    let part = h.store.part(lease.part_id).await.unwrap().unwrap();
    assert_eq!((part.state, part.owner.as_deref()), (State::Running, Some("holder")));
}

fn is_not_leased(e: SchedulerError) -> bool {
    matches!(e, SchedulerError::Store(StoreError::NotLeased { .. }))
}

async fn the_same_result_twice_is_a_duplicate(backend: Backend) {
    let (h, agent, run, lease) = Harness::leased(backend, 2).await;
    assert_eq!(h.sched.submit(&agent, &finished(&lease)).await.unwrap(), ResultAck::Applied);
    // The spool sends it again (the first answer was lost): nothing changes.
    assert_eq!(h.sched.submit(&agent, &finished(&lease)).await.unwrap(), ResultAck::Duplicate);
    // Even a different outcome for the same attempt cannot overwrite it.
    let failed = result(&lease, ResultStatus::Failed);
    assert_eq!(h.sched.submit(&agent, &failed).await.unwrap(), ResultAck::Duplicate);
    let results = h.store.results(run.id).await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].submission.status, ResultStatus::Finished);
    assert_eq!(h.store.run(run.id).await.unwrap().unwrap().parts.finished, 1);
}

async fn a_result_for_an_attempt_never_leased_is_refused(backend: Backend) {
    let h = Harness::new(backend).await;
    let [holder, intruder] = h.agents(["holder", "intruder"]).await;
    let run = h.run_of(&h.spec("job", Harness::labels(2))).await;
    let lease = h.lease(&holder).await;
    // Another agent reporting on the holder's part.
    let err = h.sched.submit(&intruder, &finished(&lease)).await.unwrap_err();
    assert!(is_not_leased(err));
    // The holder naming an attempt that does not exist yet.
    let mut future = finished(&lease);
    future.attempt = 2;
    assert!(is_not_leased(h.sched.submit(&holder, &future).await.unwrap_err()));
    // A part nobody leased, and one that does not exist.
    let parts = h.store.parts(run.id).await.unwrap();
    let unleased = Submission { part_id: parts[1].id, attempt: 1, ..finished(&lease) };
    assert!(is_not_leased(h.sched.submit(&holder, &unleased).await.unwrap_err()));
    let missing = Submission { part_id: 999_999, ..finished(&lease) };
    assert!(is_not_leased(h.sched.submit(&holder, &missing).await.unwrap_err()));
    // Nothing changed.
    assert_untouched(&h, &run, &lease).await;
}

async fn a_late_failure_is_recorded_and_changes_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
    let [a, b] = h.agents(["a", "b"]).await;
    let (run, first, second) = taken_over(&h, &a, &b).await;
    let late = result(&first, ResultStatus::Failed);
    assert_eq!(h.sched.submit(&a, &late).await.unwrap(), ResultAck::Recorded);
    let part = h.store.part(second.part_id).await.unwrap().unwrap();
    assert_eq!((part.state, part.attempt, part.owner.as_deref()), (State::Running, 2, Some("b")));
    assert_eq!(h.sched.submit(&b, &finished(&second)).await.unwrap(), ResultAck::Applied);
    let results = h.store.results(run.id).await.unwrap();
    assert_eq!(results.iter().filter(|r| r.applied).count(), 1);
    assert_eq!(results.len(), 2);
}

async fn a_late_success_without_a_newer_lease_finishes_the_part(backend: Backend) {
    let (h, a, run, lease) = Harness::leased(backend, 1).await;
    h.advance(Duration::from_secs(91));
    h.sched.tick().await.unwrap();
    // Back before anyone else took the part.
    assert_eq!(h.sched.submit(&a, &finished(&lease)).await.unwrap(), ResultAck::AcceptedLate);
    assert_eq!(h.run_state(run.id).await, State::Finished);
}

async fn results_are_kept_with_output_records_and_timings(backend: Backend) {
    let (h, a, run, lease) = Harness::leased(backend, 1).await;
    let mut submission = finished(&lease);
    submission.logs = vec![serde_json::json!({ "level": "info", "message": "hello" })];
    submission.duration_ms = 1234;
    h.sched.submit(&a, &submission).await.unwrap();
    let stored = &h.store.results(run.id).await.unwrap()[0];
    assert_eq!(stored.agent, "a");
    assert_eq!(stored.submission, submission);
    assert_eq!(stored.received_at, h.sched.now());
}

/// SQLite only: an acknowledged result is on disk when the call returns.
#[tokio::test]
async fn an_acknowledged_result_survives_reopening_the_database() {
    use jobstack::store::{SqliteStore, Store, StoreReads};
    let dir = tempfile::tempdir().unwrap();
    let (run_id, part_id) = {
        let store = SqliteStore::open_in(dir.path()).await.unwrap();
        let clock = jobstack::scheduler::ManualClock::fixed();
        let sched = jobstack::scheduler::Scheduler::new(
            std::sync::Arc::new(store.clone()),
            std::sync::Arc::new(clock),
            std::sync::Arc::new(crate::harness::ParamsSplitter),
        );
        let plugin = crate::harness::plugin_record("test", "1", sched.now());
        store.put_plugin(&plugin).await.unwrap();
        let mut spec = jobstack::scheduler::TaskSpec::new("durable", "test");
        spec.params = serde_json::json!({ "parts": Harness::labels(1) });
        sched.create_task(&spec, &serde_json::json!({})).await.unwrap();
        sched.tick().await.unwrap();
        let reg = jobstack::scheduler::AgentRegistration {
            name: "a".into(),
            networks: vec![],
            plugins: vec![],
            pooled_slots: 1,
            dedicated_slots: 0,
        };
        let agent = store.register_agent(&reg, "t", sched.now()).await.unwrap();
        let lease = sched.lease(&agent).await.unwrap().unwrap();
        assert_eq!(sched.submit(&agent, &finished(&lease)).await.unwrap(), ResultAck::Applied);
        // No close: as if the process died right after answering.
        (lease.run_id, lease.part_id)
    };
    let reopened = SqliteStore::open_in(dir.path()).await.unwrap();
    let results = reopened.results(run_id).await.unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].submission.part_id, part_id);
    assert_eq!(reopened.run(run_id).await.unwrap().unwrap().state, State::Finished);
}

/// Results sent at once, one of them for a part its sender never leased: the
/// others are applied, that one alone is refused. (On SQLite they meet in one
/// batch of the hot path, where the refused one's savepoint is rolled back.)
async fn a_refused_result_among_concurrent_ones_changes_only_itself(backend: Backend) {
    let h = Harness::new(backend).await;
    let run = h.run_of(&h.spec("job", Harness::labels(8))).await;
    let mut agents = Vec::new();
    let mut leases = Vec::new();
    for i in 0..8 {
        let agent = h.agent(&format!("a{i}"), &[]).await;
        leases.push(h.lease(&agent).await);
        agents.push(agent);
    }
    let intruder = h.agent("intruder", &[]).await;
    let stolen = finished(&leases[3]);
    let sched = &h.sched;
    let good = futures_util::future::join_all(
        agents
            .iter()
            .zip(&leases)
            .map(|(agent, lease)| async move { sched.submit(agent, &finished(lease)).await }),
    );
    let (good, bad) = tokio::join!(good, h.sched.submit(&intruder, &stolen));
    assert!(is_not_leased(bad.unwrap_err()));
    for ack in good {
        assert_eq!(ack.unwrap(), ResultAck::Applied);
    }
    let parts = h.store.parts(run.id).await.unwrap();
    assert!(parts.iter().all(|p| p.state == State::Finished));
    let results = h.store.results(run.id).await.unwrap();
    assert_eq!(results.len(), 8, "the refused result left no row");
    assert!(results.iter().all(|r| r.applied && r.agent != "intruder"));
    assert_eq!(h.run_state(run.id).await, State::Finished);
}

/// Leases and results from several agents at once, while the same store
/// extends leases, sweeps and stores new runs' parts: nothing fails and
/// nothing is lost. (On SQLite the first are the hot path's writer thread,
/// the others sqlx's writer connection: the two meet only through the
/// store's write lock, never in SQLite's busy handler.)
async fn leases_and_results_meet_heartbeats_sweeps_and_new_runs_without_errors(backend: Backend) {
    const AGENTS: usize = 8;
    const PARTS: usize = 400;
    let h = Harness::new(backend).await;
    let run = h.run_of(&h.spec("job", Harness::labels(PARTS))).await;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push(h.agent(&format!("a{i}"), &[]).await);
    }
    let sched = &h.sched;
    let workers = futures_util::future::join_all(agents.iter().map(|agent| async move {
        let mut applied = 0;
        while let Some(lease) = sched.lease(agent).await.expect("lease") {
            let ack = sched.heartbeat(agent, &[lease.lease_ref()]).await.expect("heartbeat");
            assert_eq!(ack.extended, vec![lease.lease_ref()]);
            let ack = sched.submit(agent, &finished(&lease)).await.expect("submit");
            assert_eq!(ack, ResultAck::Applied);
            applied += 1;
        }
        applied
    }));
    let others = async {
        for i in 0..5 {
            sched.tick().await.expect("sweep");
            h.run_of(&h.spec(&format!("other{i}"), Harness::labels(50))).await;
        }
    };
    let (applied, ()) = tokio::join!(workers, others);
    assert!(applied.iter().sum::<usize>() >= PARTS);
    let parts = h.store.parts(run.id).await.unwrap();
    assert!(parts.iter().all(|p| p.state == State::Finished));
    let results = h.store.results(run.id).await.unwrap();
    assert_eq!(results.len(), PARTS);
    assert!(results.iter().all(|r| r.applied));
}

async fn a_result_can_bring_the_agents_next_lease(backend: Backend) {
    let (h, a, run, first) = Harness::leased(backend, 2).await;
    // One part per run per agent: the next part of the same run is leased
    // only because the result before it was applied first.
    let (ack, next) = h.sched.submit_and_lease(&a, &finished(&first)).await.unwrap();
    assert_eq!(ack, ResultAck::Applied);
    let next = next.expect("the second part is leased with the first's result");
    assert_eq!((next.run_id, next.attempt), (run.id, 1));
    assert_ne!(next.part_id, first.part_id);
    let part = h.store.part(next.part_id).await.unwrap().unwrap();
    assert_eq!((part.state, part.owner.as_deref()), (State::Running, Some("a")));
    // The last result: nothing left to lease, the run ends.
    let (ack, none) = h.sched.submit_and_lease(&a, &finished(&next)).await.unwrap();
    assert_eq!((ack, none), (ResultAck::Applied, None));
    // Sent again (its answer was lost): a duplicate, and still no lease.
    let (ack, none) = h.sched.submit_and_lease(&a, &finished(&next)).await.unwrap();
    assert_eq!((ack, none), (ResultAck::Duplicate, None));
    let run = h.store.run(run.id).await.unwrap().unwrap();
    assert_eq!((run.state, run.parts.finished), (State::Finished, 2));
    let results = h.store.results(run.id).await.unwrap();
    assert_eq!(results.iter().filter(|r| r.applied).count(), 2);
}

async fn a_refused_result_brings_no_lease_and_changes_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
    let [holder, intruder] = h.agents(["holder", "intruder"]).await;
    let run = h.run_of(&h.spec("job", Harness::labels(3))).await;
    let lease = h.lease(&holder).await;
    let err = h.sched.submit_and_lease(&intruder, &finished(&lease)).await.unwrap_err();
    assert!(is_not_leased(err));
    // The intruder was leased nothing: both other parts still wait.
    let parts = h.store.parts(run.id).await.unwrap();
    let waiting = parts.iter().filter(|p| p.state == State::Waiting).count();
    assert_eq!(waiting, 2, "{parts:?}");
    assert_untouched(&h, &run, &lease).await;
}

async fn a_late_result_with_a_lease_request_is_accepted_once_and_leases_on(backend: Backend) {
    let h = Harness::new(backend).await;
    let [a, b] = h.agents(["a", "b"]).await;
    let (late, cut_off, current) = taken_over(&h, &a, &b).await;
    let next = h.run_of(&h.spec("next", Harness::labels(1))).await;
    // a comes back: its result is accepted late (revoking b's lease), and
    // its request for work is answered in the same call.
    let (ack, lease) = h.sched.submit_and_lease(&a, &finished(&cut_off)).await.unwrap();
    assert_eq!(ack, ResultAck::AcceptedLate);
    let lease = lease.expect("a is leased the next run's part");
    assert_eq!(lease.run_id, next.id);
    // b's result for the revoked lease is recorded, not applied, and brings
    // b no part: the only waiting one is gone.
    let (ack, none) = h.sched.submit_and_lease(&b, &finished(&current)).await.unwrap();
    assert_eq!((ack, none), (ResultAck::Recorded, None));
    let part = h.store.part(cut_off.part_id).await.unwrap().unwrap();
    assert_eq!((part.state, part.owner.as_deref()), (State::Finished, Some("a")));
    let results = h.store.results(late.id).await.unwrap();
    assert_eq!(results.iter().filter(|r| r.applied).count(), 1);
    assert_eq!(results.len(), 2);
}

async fn a_failure_can_bring_the_agents_next_lease(backend: Backend) {
    let (h, a, run, first) = Harness::leased(backend, 2).await;
    let (ack, next) =
        h.sched.submit_and_lease(&a, &result(&first, ResultStatus::Failed)).await.unwrap();
    assert_eq!(ack, ResultAck::Applied);
    // The failed part waits for its retry's backoff; the other is leased.
    let next = next.expect("the other part is leased with the failure");
    assert_eq!(next.run_id, run.id);
    assert_ne!(next.part_id, first.part_id);
    let failed = h.store.part(first.part_id).await.unwrap().unwrap();
    assert_eq!((failed.state, failed.attempt), (State::Waiting, 1));
}

/// SQLite: a result whose next lease fails after the lease's own writes
/// (here the next run's stored spec cannot be read) is applied all the same,
/// and the failed lease leaves nothing behind. Both steps share one
/// savepoint on the writer thread, so the result is applied again, alone.
#[tokio::test]
async fn sqlite_a_lease_failing_after_a_result_keeps_the_result_and_nothing_of_itself() {
    let h = Harness::new(Backend::Sqlite).await;
    let a = h.agent("a", &[]).await;
    let first = h.run_of(&h.spec("first", Harness::labels(1))).await;
    let lease = h.lease(&a).await;
    let second = h.run_of(&h.spec("second", Harness::labels(1))).await;
    let db = rusqlite::Connection::open(h.sqlite_file().expect("SQLite")).unwrap();
    db.execute("UPDATE runs SET spec = 'not json' WHERE id = ?1", [second.id]).unwrap();
    let (ack, next) = h.sched.submit_and_lease(&a, &finished(&lease)).await.unwrap();
    assert_eq!(ack, ResultAck::Applied);
    assert!(next.is_none(), "the lease failed");
    let done = h.store.part(lease.part_id).await.unwrap().unwrap();
    assert_eq!(done.state, State::Finished);
    let results = h.store.results(first.id).await.unwrap();
    assert_eq!(results.len(), 1);
    let waiting = h.store.parts(second.id).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(
        (waiting[0].state, waiting[0].attempt, waiting[0].owner.as_deref()),
        (State::Waiting, 0, None)
    );
    let leases: i64 = db
        .query_row("SELECT count(*) FROM leases WHERE part_id = ?1", [waiting[0].id], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(leases, 0, "the failed lease is not recorded");
}

/// Agents that each send their result with a request for the next part, all
/// at once (on PostgreSQL such requests are applied several agents to a call,
/// see `store::postgres::finish_batch`), with a foreign result among them:
/// every part is finished once, by one lease, and the foreign result changes
/// nothing.
async fn concurrent_results_with_next_leases_finish_every_part_once(backend: Backend) {
    const AGENTS: usize = 6;
    const PARTS: usize = 120;
    let h = Harness::new(backend).await;
    let run = h.run_of(&h.spec("job", Harness::labels(PARTS))).await;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        agents.push(h.agent(&format!("a{i}"), &[]).await);
    }
    let intruder = h.agent("intruder", &[]).await;
    let sched = &h.sched;
    let first = h.lease(&agents[0]).await;
    let stolen = finished(&first);
    let refused = sched.submit_and_lease(&intruder, &stolen);
    let workers = futures_util::future::join_all(agents.iter().enumerate().map(|(i, agent)| {
        let first = (i == 0).then(|| first.clone());
        async move {
            let mut held = match first {
                Some(lease) => Some(lease),
                None => sched.lease(agent).await.expect("lease"),
            };
            let mut done = Vec::new();
            while let Some(lease) = held {
                let (ack, next) =
                    sched.submit_and_lease(agent, &finished(&lease)).await.expect("result");
                assert_eq!(ack, ResultAck::Applied);
                if let Some(next) = &next {
                    assert_ne!(next.part_id, lease.part_id);
                    assert_eq!(next.attempt, 1);
                }
                done.push(lease.part_id);
                held = next;
            }
            done
        }
    }));
    let (done, refused) = tokio::join!(workers, refused);
    assert!(is_not_leased(refused.unwrap_err()));
    let mut done: Vec<i64> = done.into_iter().flatten().collect();
    done.sort_unstable();
    let before = done.len();
    done.dedup();
    assert_eq!((before, done.len()), (PARTS, PARTS), "each part leased and done once");
    let parts = h.store.parts(run.id).await.unwrap();
    assert!(parts.iter().all(|p| p.state == State::Finished && p.attempt == 1));
    let results = h.store.results(run.id).await.unwrap();
    assert_eq!(results.len(), PARTS);
    assert!(results.iter().all(|r| r.applied && r.agent != "intruder"));
    assert_eq!(h.run_state(run.id).await, State::Finished);
}
