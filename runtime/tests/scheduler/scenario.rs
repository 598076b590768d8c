//! The FusionInventory "new job scheduler" scenario, step by step, with every
//! answer asserted in the document's order.

use std::time::Duration;

use jobstack::scheduler::{ResultAck, State};

use crate::harness::{Backend, Harness, finished};
use crate::store_tests;

store_tests!(
    fusioninventory_scenario,
    without_backoff_the_expired_part_is_leased_next,
    without_retries_the_late_success_of_the_expired_lease_is_accepted
);

async fn fusioninventory_scenario(backend: Backend) {
    let h = Harness::new(backend).await;
    let net = ["192.168.0.0/24"];
    let a = h.agent("A", &net).await;
    let b = h.agent("B", &net).await;
    let c = h.agent("C", &net).await;

    // The server wants network 192.168.0.0 scanned: one part per address.
    let parts: Vec<_> = (1..=8)
        .map(|i| serde_json::json!({ "label": format!("192.168.0.{i}"), "targets": [format!("192.168.0.{i}")] }))
        .collect();
    let spec = h.spec("scan-192.168.0.0", serde_json::Value::Array(parts));
    let run = h.run_of(&spec).await;
    assert_eq!(run.parts.waiting, 8);

    // Agent A asks Server for a job: 192.168.0.1, owner A.
    let a1 = h.lease(&a).await;
    assert_eq!((a1.part.label.as_str(), a1.attempt), ("192.168.0.1", 1));
    // Agent B asks: 192.168.0.2, owner B.
    let b2 = h.lease(&b).await;
    assert_eq!((b2.part.label.as_str(), b2.attempt), ("192.168.0.2", 1));
    let part2 = h.store.part(b2.part_id).await.unwrap().unwrap();
    assert_eq!(part2.owner.as_deref(), Some("B"));
    assert_eq!(part2.state, State::Running);

    // Agent A sends back information: the job leaves the stack.
    h.advance(Duration::from_secs(10));
    assert_eq!(h.sched.submit(&a, &finished(&a1)).await.unwrap(), ResultAck::Applied);
    // Agent A asks: 192.168.0.3.
    let a3 = h.lease(&a).await;
    assert_eq!(a3.part.label, "192.168.0.3");

    // Agent B is disconnected; its lease (60 s timeout + 30 s grace) runs out.
    // A finishes 192.168.0.3 in time.
    h.advance(Duration::from_secs(70));
    assert_eq!(h.sched.submit(&a, &finished(&a3)).await.unwrap(), ResultAck::Applied);
    h.advance(Duration::from_secs(11));
    // The server times out the 192.168.0.2 job and regenerates it.
    let report = h.sched.tick().await.unwrap();
    assert_eq!(report.expired.len(), 1);
    assert_eq!(report.expired[0].part_id, b2.part_id);
    let part2 = h.store.part(b2.part_id).await.unwrap().unwrap();
    assert_eq!(part2.state, State::Waiting);
    assert!(part2.error.as_deref().unwrap().contains("expired"), "{part2:?}");

    // Agent A asks (after the retry backoff): 192.168.0.2 again, owner A, attempt 2.
    h.advance(Duration::from_secs(5));
    let a2 = h.lease(&a).await;
    assert_eq!((a2.part.label.as_str(), a2.attempt), ("192.168.0.2", 2));

    // Agent B reconnects. Its heartbeat learns the lease was superseded: the
    // part is still open, so B's work is still worth sending.
    let hb = h.sched.heartbeat(&b, &[b2.lease_ref()]).await.unwrap();
    assert_eq!(hb.superseded, vec![b2.lease_ref()]);
    assert!(hb.revoked.is_empty(), "{hb:?}");
    // B updates the server with its 192.168.0.2 status:
    // accepted, the job leaves the stack, and A's lease on it is revoked.
    assert_eq!(h.sched.submit(&b, &finished(&b2)).await.unwrap(), ResultAck::AcceptedLate);
    // The part shows the result that finished it: B's attempt 1, no error
    // left from the expiry.
    let part2 = h.store.part(b2.part_id).await.unwrap().unwrap();
    assert_eq!((part2.state, part2.owner.as_deref()), (State::Finished, Some("B")));
    assert_eq!((part2.attempt, part2.result_attempt, part2.shown_attempt()), (2, Some(1), 1));
    assert_eq!(part2.error, None);
    // The event log marks the late acceptance and the lease it revoked.
    let events = h.store.events(0, 1000).await.unwrap();
    let late = events
        .iter()
        .find(|e| e.entity == "part" && e.entity_id == b2.part_id && e.detail["late"] == true)
        .expect("a late acceptance in the event log");
    assert_eq!((late.from, late.to), (Some(State::Running), Some(State::Finished)));
    assert_eq!(
        late.detail,
        serde_json::json!({"agent": "B", "attempt": 1, "status": "finished", "late": true,
                           "revoked": {"agent": "A", "attempt": 2}})
    );
    let hb = h.sched.heartbeat(&a, &[a2.lease_ref()]).await.unwrap();
    assert_eq!(hb.revoked, vec![a2.lease_ref()]);
    // A's own result for the revoked attempt is recorded, not applied.
    assert_eq!(h.sched.submit(&a, &finished(&a2)).await.unwrap(), ResultAck::Recorded);
    // The same again is a duplicate: stored once.
    assert_eq!(h.sched.submit(&a, &finished(&a2)).await.unwrap(), ResultAck::Duplicate);

    // Agent C asks: 192.168.0.4. Agent B asks: 192.168.0.5.
    let c4 = h.lease(&c).await;
    assert_eq!(c4.part.label, "192.168.0.4");
    let b5 = h.lease(&b).await;
    assert_eq!(b5.part.label, "192.168.0.5");

    // The rest of the stack, then every part holds exactly one applied result.
    h.sched.submit(&c, &finished(&c4)).await.unwrap();
    h.sched.submit(&b, &finished(&b5)).await.unwrap();
    for agent in [&a, &b, &c].iter().cycle() {
        match h.sched.lease(agent).await.unwrap() {
            Some(lease) => {
                assert_eq!(
                    h.sched.submit(agent, &finished(&lease)).await.unwrap(),
                    ResultAck::Applied
                );
            }
            None => break,
        }
    }
    let run = h.store.run(run.id).await.unwrap().unwrap();
    assert_eq!(run.state, State::Finished);
    assert_eq!(run.parts.finished, 8);
    let results = h.store.results(run.id).await.unwrap();
    for part in h.store.parts(run.id).await.unwrap() {
        let applied: Vec<_> =
            results.iter().filter(|r| r.submission.part_id == part.id && r.applied).collect();
        assert_eq!(applied.len(), 1, "part {} has {} applied results", part.label, applied.len());
    }
    // A's result for 192.168.0.2 is kept for the record, not applied.
    let for_part2: Vec<_> = results.iter().filter(|r| r.submission.part_id == b2.part_id).collect();
    assert_eq!(for_part2.len(), 2);
    assert!(for_part2.iter().any(|r| r.agent == "B" && r.applied));
    assert!(for_part2.iter().any(|r| r.agent == "A" && !r.applied));
}

/// The rule the scenario's "A asks: 192.168.0.2" depends on: an expired part
/// waits out its task's retry backoff, and agents get fresh parts meanwhile;
/// with `retry_backoff_ms: 0` it is leased again at once, before the parts
/// after it. A task's `lease_grace_ms` sets its leases' expiry.
async fn without_backoff_the_expired_part_is_leased_next(backend: Backend) {
    let h = Harness::new(backend).await;
    let net = ["192.168.0.0/24"];
    let a = h.agent("A", &net).await;
    let b = h.agent("B", &net).await;
    let parts: Vec<_> = (1..=3)
        .map(|i| serde_json::json!({ "label": format!("192.168.0.{i}"), "targets": [format!("192.168.0.{i}")] }))
        .collect();
    let mut spec = h.spec("scan", serde_json::Value::Array(parts));
    spec.retry_backoff_ms = 0;
    spec.lease_grace_ms = Some(2_000);
    h.run_of(&spec).await;
    let a1 = h.lease(&a).await;
    let b2 = h.lease(&b).await;
    assert_eq!(b2.part.label, "192.168.0.2");
    // timeout 60 s + grace 2 s.
    let ttl = b2.expires_at - h.sched.now();
    assert_eq!(ttl.num_milliseconds(), 62_000);
    h.sched.submit(&a, &finished(&a1)).await.unwrap();
    h.advance(Duration::from_secs(63));
    assert_eq!(h.sched.tick().await.unwrap().expired.len(), 1);
    // No backoff: A gets 192.168.0.2 again, not the fresh 192.168.0.3.
    let a2 = h.lease(&a).await;
    assert_eq!((a2.part.label.as_str(), a2.attempt), ("192.168.0.2", 2));
}

/// `retries: 0`: the expiry of the only lease fails the part and its run;
/// that lease's late success is still the part's (as agent B's is in the
/// scenario), so both end finished.
async fn without_retries_the_late_success_of_the_expired_lease_is_accepted(backend: Backend) {
    let h = Harness::new(backend).await;
    let a = h.agent("A", &[]).await;
    let mut spec = h.spec("once", Harness::labels(1));
    spec.retries = 0;
    let run = h.run_of(&spec).await;
    let lease = h.lease(&a).await;
    h.advance(Duration::from_secs(91));
    assert_eq!(h.sched.tick().await.unwrap().expired.len(), 1);
    assert_eq!(h.run_state(run.id).await, State::Failed);
    assert_eq!(h.sched.submit(&a, &finished(&lease)).await.unwrap(), ResultAck::AcceptedLate);
    let part = h.store.part(lease.part_id).await.unwrap().unwrap();
    assert_eq!((part.state, part.error, part.result_attempt), (State::Finished, None, Some(1)));
    let run = h.store.run(run.id).await.unwrap().unwrap();
    assert_eq!((run.state, run.parts.finished, run.parts.failed), (State::Finished, 1, 0));
    // Once: the same result again changes nothing.
    assert_eq!(h.sched.submit(&a, &finished(&lease)).await.unwrap(), ResultAck::Duplicate);
}
