//! Runs that start runs, targets from the inventory and the agents'
//! monitor, on each backend.

use std::time::Duration;

use jobstack::inventory::Observation;
use jobstack::inventory::store::{Processed, ProcessedResult};
use jobstack::scheduler::{
    DEFAULT_AGENT_DOWN_AFTER, Frequency, RunCause, State, TargetSelector, TaskSpec, Trigger,
    TriggerCondition,
};
use serde_json::json;

use crate::harness::{Backend, Harness, finished, result};
use crate::store_tests;

store_tests!(
    an_ended_upstream_run_starts_one_run_of_each_follower,
    a_follower_waits_for_the_inventory_and_for_its_own_run,
    a_canceled_or_unwanted_end_starts_nothing,
    a_selector_fills_the_run_from_the_inventory_and_an_empty_one_finishes_it,
    agents_go_down_and_come_back_with_events,
);

/// A follower of `upstream` on `on`, run only when triggered.
fn follower(h: &Harness, name: &str, upstream: &str, on: TriggerCondition) -> TaskSpec {
    let mut spec = h.spec(name, Harness::labels(1));
    spec.frequency = Frequency::Manual;
    spec.after = Some(Trigger { task: upstream.into(), on });
    spec
}

/// Finish every part of every waiting run, then process every result (as
/// a stage that observes `observed`).
async fn finish_all(h: &Harness, observed: &[serde_json::Value]) {
    let agent = h.agent("worker", &[]).await;
    while let Some(lease) = h.sched.lease(&agent).await.unwrap() {
        h.sched.submit(&agent, &finished(&lease)).await.unwrap();
    }
    process(h, observed).await;
}

async fn process(h: &Harness, observed: &[serde_json::Value]) {
    let pending = h.inventory.pending_results(1_000).await.unwrap();
    let processed = pending
        .into_iter()
        .map(|result| {
            let seen =
                observed.iter().map(|o| Observation::parse(&o.to_string()).unwrap()).collect();
            ProcessedResult { result, outcome: Processed::Observed(seen) }
        })
        .collect();
    h.inventory.ingest(processed).await.unwrap();
}

async fn an_ended_upstream_run_starts_one_run_of_each_follower(backend: Backend) {
    let h = Harness::new(backend).await;
    let scan = h.spec("scan", Harness::labels(2));
    let first = h.run_of(&scan).await;
    let snmp = h.task(&follower(&h, "snmp", "scan", TriggerCondition::Finished)).await;
    let esx = h.task(&follower(&h, "esx", "scan", TriggerCondition::Any)).await;
    finish_all(&h, &[]).await;
    assert_eq!(h.run_state(first.id).await, State::Finished);

    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.chained.len(), 2, "{report:?}");
    for task in [&snmp, &esx] {
        let runs = h.store.runs(Some(task.id)).await.unwrap();
        assert_eq!(runs.len(), 1, "one run of {}", task.spec.name);
        assert_eq!((runs[0].cause, runs[0].caused_by), (RunCause::Chained, Some(first.id)));
        assert_eq!(runs[0].state, State::Waiting, "split and stored with its parts");
    }
    finish_all(&h, &[]).await;
    let report = h.sched.tick().await.unwrap();
    assert!(report.chained.is_empty(), "each upstream run starts a follower once: {report:?}");
    // The followers' own ends start nothing: nobody follows them.
    assert_eq!(h.store.runs(Some(snmp.id)).await.unwrap().len(), 1);
}

async fn a_follower_waits_for_the_inventory_and_for_its_own_run(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut scan = h.spec("scan", Harness::labels(1));
    scan.frequency = Frequency::Manual;
    let scan = h.task(&scan).await;
    let snmp = h.task(&follower(&h, "snmp", "scan", TriggerCondition::Finished)).await;
    let agent = h.agent("worker", &[]).await;

    let one = h.sched.force_run(&scan).await.unwrap();
    let lease = h.lease(&agent).await;
    h.sched.submit(&agent, &finished(&lease)).await.unwrap();
    assert_eq!(h.run_state(one.id).await, State::Finished);
    let report = h.sched.tick().await.unwrap();
    assert!(report.chained.is_empty(), "its results are not in the inventory yet");
    process(&h, &[]).await;
    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.chained.len(), 1, "{report:?}");

    // A second upstream run ends while the follower's run is active: held
    // back, then started once that run ended.
    let two = h.sched.force_run(&scan).await.unwrap();
    let lease = h.lease(&agent).await;
    assert_eq!(lease.run_id, two.id, "the forced run first");
    h.sched.submit(&agent, &finished(&lease)).await.unwrap();
    process(&h, &[]).await;
    let report = h.sched.tick().await.unwrap();
    assert_eq!((report.chained.len(), report.held_back.clone()), (0, vec![snmp.id]));
    finish_all(&h, &[]).await;
    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.chained.len(), 1, "{report:?}");
    let runs = h.store.runs(Some(snmp.id)).await.unwrap();
    assert_eq!(runs[0].caused_by, Some(two.id));
}

async fn a_canceled_or_unwanted_end_starts_nothing(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut scan = h.spec("scan", Harness::labels(1));
    scan.frequency = Frequency::Manual;
    scan.retries = 0;
    let scan = h.task(&scan).await;
    let on_failure = h.task(&follower(&h, "alert", "scan", TriggerCondition::Failed)).await;
    let agent = h.agent("worker", &[]).await;

    let canceled = h.sched.force_run(&scan).await.unwrap();
    h.sched.suspend(canceled.id).await.unwrap();
    assert!(h.sched.tick().await.unwrap().chained.is_empty(), "a suspended run has not ended");
    h.sched.cancel(canceled.id).await.unwrap();
    assert!(h.sched.tick().await.unwrap().chained.is_empty(), "a canceled run starts nothing");

    let fine = h.sched.force_run(&scan).await.unwrap();
    let lease = h.lease(&agent).await;
    h.sched.submit(&agent, &finished(&lease)).await.unwrap();
    process(&h, &[]).await;
    assert_eq!(h.run_state(fine.id).await, State::Finished);
    assert!(h.sched.tick().await.unwrap().chained.is_empty(), "it follows failures only");

    let failed = h.sched.force_run(&scan).await.unwrap();
    let lease = h.lease(&agent).await;
    h.sched
        .submit(&agent, &result(&lease, jobstack::scheduler::ResultStatus::Failed))
        .await
        .unwrap();
    assert_eq!(h.run_state(failed.id).await, State::Failed);
    assert_eq!(h.sched.tick().await.unwrap().chained.len(), 1);
    let runs = h.store.runs(Some(on_failure.id)).await.unwrap();
    assert_eq!(runs[0].caused_by, Some(failed.id));
}

async fn a_selector_fills_the_run_from_the_inventory_and_an_empty_one_finishes_it(
    backend: Backend,
) {
    let h = Harness::new(backend).await;
    // Discovery found two hosts, one with 161 open.
    let found = [
        json!({"kind": "host", "keys": {"ip": "10.0.0.9"}, "attributes": {"tcp_open": [22, 161]}}),
        json!({"kind": "host", "keys": {"ip": "10.0.0.3"}, "attributes": {"tcp_open": [1610]}}),
    ];
    h.run_of(&h.spec("scan", Harness::labels(1))).await;
    finish_all(&h, &found).await;

    let mut snmp = h.spec("snmp", json!([]));
    snmp.frequency = Frequency::Manual;
    snmp.params = json!({"devices": ["192.0.2.1"], "parts": [{"label": "one"}]});
    snmp.select = Some(TargetSelector {
        into: "devices".into(),
        kind: Some("host".into()),
        cidr: Some("10.0.0.0/24".into()),
        attr: vec!["tcp_open[]=161".into()],
        seen_within: Some("1h".into()),
    });
    let snmp = h.task(&snmp).await;
    let run = h.sched.force_run(&snmp).await.unwrap();
    assert_eq!(run.selected, Some(vec!["10.0.0.9".to_string()]));
    assert_eq!(run.spec.params["devices"], json!(["10.0.0.9"]), "the snapshot holds them");
    assert_eq!(run.state, State::Waiting);

    let mut none = snmp.spec.clone();
    none.name = "printers".into();
    none.select.as_mut().unwrap().kind = Some("printer".into());
    let none = h.task(&none).await;
    let run = h.sched.force_run(&none).await.unwrap();
    assert_eq!((run.state, run.selected.clone()), (State::Finished, Some(vec![])));
    assert_eq!(run.parts.total(), 0);
}

async fn agents_go_down_and_come_back_with_events(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("edge", &[]).await;
    let last = h.store.events(0, 10_000).await.unwrap().last().map_or(0, |e| e.id);
    h.advance(DEFAULT_AGENT_DOWN_AFTER / 2);
    assert!(h.sched.tick().await.unwrap().agents_down.is_empty(), "not judged right after start");
    h.advance(DEFAULT_AGENT_DOWN_AFTER);
    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.agents_down, ["edge"]);
    assert!(h.sched.tick().await.unwrap().agents_down.is_empty(), "once");
    let listed = h.store.agents().await.unwrap();
    assert!(listed[0].down_since.is_some());

    h.advance(Duration::from_secs(2));
    h.lease_none(&agent).await;
    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.agents_up, ["edge"]);
    assert!(h.store.agents().await.unwrap()[0].down_since.is_none());
    let kinds: Vec<String> = h
        .store
        .events(last, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.entity == "agent")
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["down", "up"]);
}
