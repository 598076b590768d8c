//! Admin actions, snapshots, split failures, illegal transitions and the event log.

use std::time::Duration;

use jobstack::scheduler::{ResultAck, ResultStatus, RunCause, SchedulerError, State};
use jobstack::store::StoreError;

use crate::harness::{Backend, Harness, finished, result};
use crate::store_tests;

store_tests!(
    force_run_goes_first_and_wakes_waiting_agents,
    suspended_parts_are_not_leased_until_resumed,
    cancel_revokes_leases_and_late_results_change_nothing,
    rerun_repeats_a_whole_run_or_only_its_failed_parts,
    a_run_keeps_its_snapshot_when_the_task_and_plugin_change,
    a_failed_split_fails_the_run_with_its_reason,
    a_forced_run_is_stored_with_its_parts_or_failed_with_its_split_error,
    illegal_transitions_are_refused_naming_both_states,
    every_state_change_is_in_the_event_log,
    secrets_go_only_into_the_lease,
);

async fn force_run_goes_first_and_wakes_waiting_agents(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("a", &[]).await;
    let mut manual = h.spec("manual", Harness::labels(1));
    manual.frequency = jobstack::scheduler::Frequency::Manual;
    let task = h.task(&manual).await;
    h.run_of(&h.spec("busy", Harness::labels(3))).await;
    // A long-poll of the agent, between two looks.
    let mut waiter = h.sched.work_signal().waiter(agent.id);
    waiter.look().found(false);
    let forced = h.sched.force_run(&task).await.unwrap();
    assert_eq!(forced.cause, RunCause::Forced);
    // The waiting agent's long-poll is woken at once.
    tokio::time::timeout(Duration::from_secs(1), waiter.woken())
        .await
        .expect("force-run wakes waiting agents");
    assert_eq!(h.lease(&agent).await.run_id, forced.id);
}

async fn suspended_parts_are_not_leased_until_resumed(backend: Backend) {
    let h = Harness::new(backend).await;
    let [a, b] = h.agents(["a", "b"]).await;
    let run = h.run_of(&h.spec("job", Harness::labels(3))).await;
    let running = h.lease(&a).await;
    let suspended = h.sched.suspend(run.id).await.unwrap();
    assert_eq!(suspended.state, State::Suspended);
    assert_eq!((suspended.parts.suspended, suspended.parts.running), (2, 1));
    h.lease_none(&b).await;
    // The part already running finishes its lease.
    assert_eq!(h.sched.submit(&a, &finished(&running)).await.unwrap(), ResultAck::Applied);
    let resumed = h.sched.resume(run.id).await.unwrap();
    assert_eq!(resumed.state, State::Running);
    assert_eq!(resumed.parts.waiting, 2);
    assert_eq!(h.lease(&b).await.part.label, "p1");
    // Resuming a run that is not suspended is refused and changes nothing.
    let err = h.sched.resume(run.id).await.unwrap_err();
    assert!(err.to_string().contains("not suspended"), "{err}");
}

async fn cancel_revokes_leases_and_late_results_change_nothing(backend: Backend) {
    let (h, a, run, lease) = Harness::leased(backend, 3).await;
    let canceled = h.sched.cancel(run.id).await.unwrap();
    assert_eq!(canceled.state, State::Canceled);
    assert_eq!(canceled.parts.canceled, 3);
    let hb = h.sched.heartbeat(&a, &[lease.lease_ref()]).await.unwrap();
    assert_eq!(hb.revoked, vec![lease.lease_ref()]);
    assert_eq!(h.sched.submit(&a, &finished(&lease)).await.unwrap(), ResultAck::Recorded);
    let results = h.store.results(run.id).await.unwrap();
    assert_eq!((results.len(), results[0].applied), (1, false));
    assert_eq!(h.run_state(run.id).await, State::Canceled);
    h.lease_none(&a).await;
}

async fn rerun_repeats_a_whole_run_or_only_its_failed_parts(backend: Backend) {
    let h = Harness::new(backend).await;
    let a = h.agent("a", &[]).await;
    let mut spec = h.spec("job", Harness::labels(3));
    spec.retries = 0;
    let run = h.run_of(&spec).await;
    for i in 0..3 {
        let lease = h.lease(&a).await;
        let status = if i == 1 { ResultStatus::Failed } else { ResultStatus::Finished };
        h.sched.submit(&a, &result(&lease, status)).await.unwrap();
    }
    let run = h.store.run(run.id).await.unwrap().unwrap();
    assert_eq!((run.state, run.parts.failed), (State::Failed, 1));

    let failed_only = h.sched.rerun(run.id, true).await.unwrap();
    assert_eq!((failed_only.cause, failed_only.rerun_of), (RunCause::Rerun, Some(run.id)));
    assert_eq!(failed_only.plugin_sha256, run.plugin_sha256);
    let labels: Vec<_> =
        h.store.parts(failed_only.id).await.unwrap().into_iter().map(|p| p.label).collect();
    assert_eq!(labels, ["p1"]);

    let whole = h.sched.rerun(run.id, false).await.unwrap();
    assert_eq!(whole.parts.waiting, 3);
    // A run without failures has nothing to re-run failed-only.
    let lease = h.lease(&a).await;
    h.sched.submit(&a, &finished(&lease)).await.unwrap();
    let err = h.sched.rerun(failed_only.id, true).await.unwrap_err();
    assert!(err.to_string().contains("no failed parts"), "{err}");
}

async fn a_run_keeps_its_snapshot_when_the_task_and_plugin_change(backend: Backend) {
    let h = Harness::new(backend).await;
    let a = h.agent("a", &[]).await;
    let spec = h.spec("job", Harness::labels(2));
    let run = h.run_of(&spec).await;
    let task_id = run.task_id;
    // Edit the task and upload a new plugin version while the run is in flight.
    let mut edited = spec.clone();
    edited.params = serde_json::json!({ "parts": Harness::labels(5) });
    edited.frequency = jobstack::scheduler::Frequency::Manual;
    h.sched.update_task(task_id, &edited, None).await.unwrap();
    let v2 = h.plugin("test", "2.0.0").await;
    let lease = h.lease(&a).await;
    assert_eq!(lease.plugin_sha256, run.plugin_sha256);
    assert_eq!(lease.params, spec.params);
    let stored = h.store.run(run.id).await.unwrap().unwrap();
    // The snapshot is the definition, with the daemon's lease grace it was made with.
    let mut snapshot = spec.clone();
    snapshot.lease_grace_ms = Some(30_000);
    assert_eq!(stored.spec, snapshot);
    assert_eq!(stored.parts.total(), 2);
    // The next run takes the new definition and the new module.
    let task = h.store.task(task_id).await.unwrap().unwrap();
    let next = h.sched.force_run(&task).await.unwrap();
    assert_eq!(next.plugin_sha256, v2.sha256);
    assert_eq!(next.parts.total(), 5);
}

async fn a_failed_split_fails_the_run_with_its_reason(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut spec = h.spec("broken", Harness::labels(0));
    spec.params = serde_json::json!({ "fail": "range 10.0.0.9-10.0.0.1 is reversed" });
    let run = h.run_of(&spec).await;
    assert_eq!(run.state, State::Failed);
    assert_eq!(run.error.as_deref(), Some("split failed: range 10.0.0.9-10.0.0.1 is reversed"));
}

async fn a_forced_run_is_stored_with_its_parts_or_failed_with_its_split_error(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut spec = h.spec("manual", Harness::labels(3));
    spec.frequency = jobstack::scheduler::Frequency::Manual;
    let task = h.task(&spec).await;
    let forced = h.sched.force_run(&task).await.unwrap();
    assert_eq!((forced.state, forced.parts.waiting), (State::Waiting, 3));
    assert_eq!(h.store.parts(forced.id).await.unwrap().len(), 3);
    // Created and given its parts in one step: the log still says both.
    let events = h.store.events(0, 1000).await.unwrap();
    let of_run: Vec<(&str, Option<State>)> = events
        .iter()
        .filter(|e| e.entity == "run" && e.entity_id == forced.id)
        .map(|e| (e.kind.as_str(), e.to))
        .collect();
    assert_eq!(of_run, [("created", None), ("state", Some(State::Waiting))], "{events:#?}");

    let mut broken = h.spec("broken", Harness::labels(0));
    broken.frequency = jobstack::scheduler::Frequency::Manual;
    broken.params = serde_json::json!({ "fail": "no such range" });
    let task = h.task(&broken).await;
    let failed = h.sched.force_run(&task).await.unwrap();
    assert_eq!(failed.state, State::Failed);
    assert_eq!(failed.error.as_deref(), Some("split failed: no such range"));
    assert!(h.store.parts(failed.id).await.unwrap().is_empty());
}

async fn illegal_transitions_are_refused_naming_both_states(backend: Backend) {
    let (h, a, run, lease) = Harness::leased(backend, 1).await;
    h.sched.submit(&a, &finished(&lease)).await.unwrap();
    let err = h.sched.suspend(run.id).await.unwrap_err();
    assert!(matches!(err, SchedulerError::Store(StoreError::Transition(_))));
    assert_eq!(err.to_string(), "the run already ended (finished); it cannot become suspended");
    let err = h.sched.cancel(run.id).await.unwrap_err();
    assert_eq!(err.to_string(), "the run already ended (finished); it cannot become canceled");
    assert_eq!(h.run_state(run.id).await, State::Finished);
}

async fn every_state_change_is_in_the_event_log(backend: Backend) {
    let (h, a, run, lease) = Harness::leased(backend, 1).await;
    h.sched.submit(&a, &finished(&lease)).await.unwrap();
    let events = h.store.events(0, 1000).await.unwrap();
    let changes: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "state")
        .map(|e| format!("{} {}->{}", e.entity, e.from.unwrap(), e.to.unwrap()))
        .collect();
    assert_eq!(
        changes,
        [
            "run created->waiting",
            "part waiting->running",
            "run waiting->running",
            "part running->finished",
            "run running->finished",
        ]
    );
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert!(
        events.iter().any(|e| e.entity == "run" && e.entity_id == run.id && e.kind == "created")
    );
    // Reading from where one stopped.
    let tail = h.store.events(events[2].id, 1000).await.unwrap();
    assert_eq!(tail.len(), events.len() - 3);
}

async fn secrets_go_only_into_the_lease(backend: Backend) {
    let h = Harness::new(backend).await;
    let a = h.agent("a", &[]).await;
    let run = h.run_of(&h.spec("job", Harness::labels(1))).await;
    let task = h.store.task(run.task_id).await.unwrap().unwrap();
    assert!(task.has_secrets);
    let listed = serde_json::to_string(&(task, h.store.runs(None).await.unwrap())).unwrap();
    assert!(!listed.contains("s3cret"), "{listed}");
    let lease = h.lease(&a).await;
    assert_eq!(lease.secrets["community"], "s3cret");
    let events = serde_json::to_string(&h.store.events(0, 1000).await.unwrap()).unwrap();
    assert!(!events.contains("s3cret"));
}
