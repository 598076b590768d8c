//! The FusionInventory "new job scheduler" scenario, step by step, with every
//! answer asserted in the document's order.

use std::time::Duration;

use jobstack::scheduler::{ResultAck, State};

use crate::harness::{Backend, Harness, finished};
use crate::store_tests;

store_tests!(fusioninventory_scenario);

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
    let part2 = h.store.part(b2.part_id).await.unwrap().unwrap();
    assert_eq!((part2.state, part2.owner.as_deref()), (State::Finished, Some("B")));
    let hb = h.sched.heartbeat(&a, &[a2.lease_ref()]).await.unwrap();
    assert_eq!(hb.revoked, vec![a2.lease_ref()]);
    // A's own result for the revoked attempt changes nothing.
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
    // A's duplicate for 192.168.0.2 is kept for the record, not applied.
    let for_part2: Vec<_> = results.iter().filter(|r| r.submission.part_id == b2.part_id).collect();
    assert_eq!(for_part2.len(), 2);
    assert!(for_part2.iter().any(|r| r.agent == "B" && r.applied));
    assert!(for_part2.iter().any(|r| r.agent == "A" && !r.applied));
}
