//! Who gets which part, in which order, for how long.

use std::time::Duration;

use jobstack::scheduler::{
    Agent, Lease, ResultAck, ResultStatus, SchedulerError, State, Targeting,
};

/// A long-poll for a lease running on its own task.
type LongPoll = tokio::task::JoinHandle<Result<Option<Lease>, SchedulerError>>;

use crate::harness::{Backend, Harness, finished, prio, result};
use crate::store_tests;

store_tests!(
    priority_order_is_forced_high_custom_normal_low,
    within_a_class_the_oldest_run_goes_first,
    one_part_per_run_per_agent_at_a_time,
    a_long_poll_held_back_by_its_own_part_wakes_at_its_result,
    a_new_part_reaches_the_one_waiting_agent_that_may_take_it,
    targeting_by_network_gives_parts_to_the_agent_holding_them,
    targeting_by_agent_list_ignores_networks,
    each_agent_gives_every_listed_agent_its_copy,
    parts_no_agent_can_take_are_reported,
    agents_only_get_plugins_they_accept,
    heartbeat_extends_a_lease_and_expiry_retries_with_backoff,
    retries_spent_fail_the_part_and_the_run,
    a_failed_attempt_is_retried_after_backoff,
    the_next_lease_a_result_brings_follows_the_targeting_rules,
    parts_back_to_waiting_go_first_however_far_the_run_has_gone,
);

async fn priority_order_is_forced_high_custom_normal_low(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("solo", &["10.0.0.0/8"]).await;
    let mut expected = Vec::new();
    for (name, priority) in
        [("low", "low"), ("normal", "normal"), ("c5", "5"), ("c1", "1"), ("high", "high")]
    {
        let mut spec = h.spec(name, Harness::labels(1));
        spec.priority = prio(priority);
        h.task(&spec).await;
        expected.push(name);
    }
    h.sched.tick().await.unwrap();
    // A forced run of the Low task goes before everything.
    let low = h.store.task_by_name("low").await.unwrap().unwrap();
    let forced = h.sched.force_run(&low).await.unwrap();
    let mut order = Vec::new();
    while let Some(lease) = h.sched.lease(&agent).await.unwrap() {
        let task = h.store.task(lease.task_id).await.unwrap().unwrap();
        let tag = if lease.run_id == forced.id { "forced".to_string() } else { task.spec.name };
        order.push(tag);
        h.sched.submit(&agent, &finished(&lease)).await.unwrap();
    }
    assert_eq!(order, ["forced", "high", "c1", "c5", "normal", "low"]);
}

async fn within_a_class_the_oldest_run_goes_first(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("solo", &[]).await;
    for name in ["first", "second", "third"] {
        h.task(&h.spec(name, Harness::labels(2))).await;
        h.advance(Duration::from_secs(1));
    }
    h.sched.tick().await.unwrap();
    let mut order = Vec::new();
    while let Some(lease) = h.sched.lease(&agent).await.unwrap() {
        let task = h.store.task(lease.task_id).await.unwrap().unwrap();
        order.push(format!("{}/{}", task.spec.name, lease.part.label));
        h.sched.submit(&agent, &finished(&lease)).await.unwrap();
    }
    assert_eq!(order, ["first/p0", "first/p1", "second/p0", "second/p1", "third/p0", "third/p1"]);
}

async fn one_part_per_run_per_agent_at_a_time(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("solo", &[]).await;
    h.run_of(&h.spec("big", Harness::labels(3))).await;
    let first = h.lease(&agent).await;
    // Holding a part of the run: nothing else from it.
    h.lease_none(&agent).await;
    // Another run is fine.
    h.run_of(&h.spec("other", Harness::labels(1))).await;
    let other = h.lease(&agent).await;
    assert_ne!(other.run_id, first.run_id);
    // Once the first part is done, the next part of the run.
    h.sched.submit(&agent, &finished(&first)).await.unwrap();
    let next = h.lease(&agent).await;
    assert_eq!((next.run_id, next.part.label.as_str()), (first.run_id, "p1"));
}

/// The lease a spawned long-poll answers; fails saying `what` was expected
/// when it does not answer within 30 s.
async fn woken(poll: LongPoll, what: &str) -> Lease {
    tokio::time::timeout(Duration::from_secs(30), poll)
        .await
        .expect(what)
        .expect("the long-poll's task")
        .expect("lease")
        .expect("a part")
}

/// An agent with several slots long-polls for its next part while it still
/// holds one of the only run: its own result must wake that long-poll (not
/// the recheck, here longer than the test's patience).
async fn a_long_poll_held_back_by_its_own_part_wakes_at_its_result(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("solo", &[]).await;
    h.run_of(&h.spec("two", Harness::labels(2))).await;
    let first = h.lease(&agent).await;
    let long = Duration::from_secs(600);
    let waiting = tokio::spawn({
        let (sched, agent) = (h.sched.clone(), agent.clone());
        async move { sched.lease_waiting(&agent, long, long).await }
    });
    let ack = h.sched.submit(&agent, &finished(&first)).await.unwrap();
    assert_eq!(ack, ResultAck::Applied);
    let second = woken(waiting, "the long-poll was not woken by the agent's result").await;
    assert_eq!(second.part.label, "p1");
}

/// A one-part run wakes one long-poll, not all; the part is for the agent
/// that may take it, wherever it is in the line of waiting agents: the wake
/// goes on from those that find nothing (not the recheck, here longer than
/// the test's patience).
async fn a_new_part_reaches_the_one_waiting_agent_that_may_take_it(backend: Backend) {
    let h = Harness::new(backend).await;
    let long = Duration::from_secs(600);
    let mut polls = Vec::new();
    for name in ["first", "second", "chosen"] {
        let agent = h.agent(name, &[]).await;
        let sched = h.sched.clone();
        polls.push(tokio::spawn(async move { sched.lease_waiting(&agent, long, long).await }));
    }
    tokio::time::timeout(Duration::from_secs(30), async {
        while h.sched.work_signal().waiting() < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("three long-polls waiting");
    let mut spec = h.spec("pinned", Harness::labels(1));
    spec.targeting = Targeting { agents: vec!["chosen".into()], each_agent: false };
    h.run_of(&spec).await;
    let chosen = polls.pop().unwrap();
    let lease = woken(chosen, "the wake reached the chosen agent").await;
    assert_eq!(lease.part.label, "p0");
    for other in polls {
        assert!(!other.is_finished(), "the others found nothing to take");
        other.abort();
    }
}

/// Agents `office` (192.168.0.0/24) and `lab` (10.1.0.0/16), and a run
/// `scan` of parts `lab-a`, `office-a`, `office-b` (targeted at their
/// networks) and `anywhere` (untargeted).
async fn office_and_lab_scan(h: &Harness) -> (Agent, Agent) {
    let office = h.agent("office", &["192.168.0.0/24"]).await;
    let lab = h.agent("lab", &["10.1.0.0/16"]).await;
    let parts = serde_json::json!([
        { "label": "lab-a", "targets": ["10.1.2.0/28"] },
        { "label": "office-a", "targets": ["192.168.0.0/28"] },
        { "label": "office-b", "targets": ["192.168.0.16-192.168.0.31"] },
        { "label": "anywhere", "targets": [] },
    ]);
    h.run_of(&h.spec("scan", parts)).await;
    (office, lab)
}

async fn targeting_by_network_gives_parts_to_the_agent_holding_them(backend: Backend) {
    let h = Harness::new(backend).await;
    let (office, lab) = office_and_lab_scan(&h).await;
    let l = h.lease(&lab).await;
    assert_eq!(l.part.label, "lab-a");
    let o = h.lease(&office).await;
    assert_eq!(o.part.label, "office-a");
    h.sched.submit(&office, &finished(&o)).await.unwrap();
    assert_eq!(h.lease(&office).await.part.label, "office-b");
    h.sched.submit(&lab, &finished(&l)).await.unwrap();
    // The lab agent never gets office parts, but may take the untargeted one.
    assert_eq!(h.lease(&lab).await.part.label, "anywhere");
}

async fn targeting_by_agent_list_ignores_networks(backend: Backend) {
    let h = Harness::new(backend).await;
    let chosen = h.agent("chosen", &[]).await;
    let other = h.agent("other", &["0.0.0.0/0"]).await;
    let mut spec = h.spec("listed", serde_json::json!([{ "label": "x", "targets": ["10.0.0.1"] }]));
    spec.targeting = Targeting { agents: vec!["chosen".into()], each_agent: false };
    h.run_of(&spec).await;
    h.lease_none(&other).await;
    assert_eq!(h.lease(&chosen).await.part.label, "x");
}

async fn each_agent_gives_every_listed_agent_its_copy(backend: Backend) {
    let h = Harness::new(backend).await;
    let [web1, web2, db] = h.agents(["web1", "web2", "db"]).await;
    let mut spec = h.spec("deploy", Harness::labels(1));
    spec.targeting = Targeting { agents: vec!["web1".into(), "web2".into()], each_agent: true };
    let run = h.run_of(&spec).await;
    assert_eq!(run.parts.waiting, 2);
    h.lease_none(&db).await;
    let l1 = h.lease(&web1).await;
    h.sched.submit(&web1, &finished(&l1)).await.unwrap();
    // web1 got its copy; the other copy is web2's.
    h.lease_none(&web1).await;
    let l2 = h.lease(&web2).await;
    assert_ne!(l1.part_id, l2.part_id);
    h.sched.submit(&web2, &finished(&l2)).await.unwrap();
    assert_eq!(h.run_state(run.id).await, State::Finished);
}

async fn parts_no_agent_can_take_are_reported(backend: Backend) {
    let h = Harness::new(backend).await;
    h.agent("office", &["192.168.0.0/24"]).await;
    let parts = serde_json::json!([
        { "label": "office", "targets": ["192.168.0.5"] },
        { "label": "nowhere", "targets": ["172.16.0.0/28"] },
    ]);
    let run = h.run_of(&h.spec("scan", parts)).await;
    let stuck = h.sched.unassignable_parts(run.id).await.unwrap();
    let labels: Vec<_> = stuck.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, ["nowhere"]);
    assert_eq!(
        stuck[0].unassignable.as_deref(),
        Some("no registered agent's networks contain 172.16.0.0/28")
    );
    let parts = h.sched.parts(run.id).await.unwrap();
    assert_eq!(parts.iter().filter(|p| p.unassignable.is_some()).count(), 1);
    // A named agent that never registered cannot take anything either.
    let mut spec = h.spec("listed", Harness::labels(1));
    spec.targeting.agents = vec!["ghost".into()];
    let listed = h.run_of(&spec).await;
    let stuck = h.sched.unassignable_parts(listed.id).await.unwrap();
    assert_eq!(
        stuck.iter().map(|p| p.unassignable.as_deref()).collect::<Vec<_>>(),
        [Some("none of the agents the task names (ghost) is registered and accepts plugin test")]
    );
}

async fn agents_only_get_plugins_they_accept(backend: Backend) {
    let h = Harness::new(backend).await;
    let mut reg = h.agent("picky", &[]).await.registration;
    reg.plugins = vec!["snmp".into()];
    let picky = h.store.register_agent(&reg, "token-of-picky", h.sched.now()).await.unwrap();
    h.run_of(&h.spec("scan", Harness::labels(1))).await;
    h.lease_none(&picky).await;
    let mut snmp = h.spec("inventory", Harness::labels(1));
    snmp.plugin = "snmp".into();
    h.run_of(&snmp).await;
    assert_eq!(h.lease(&picky).await.plugin, "snmp");
}

async fn heartbeat_extends_a_lease_and_expiry_retries_with_backoff(backend: Backend) {
    let h = Harness::new(backend).await;
    let [agent, other] = h.agents(["a", "b"]).await;
    let run = h.run_of(&h.spec("job", Harness::labels(1))).await;
    let lease = h.lease(&agent).await;
    // TTL = 60 s timeout + 30 s grace. Heartbeats keep it alive past that.
    for _ in 0..3 {
        h.advance(Duration::from_secs(60));
        let ack = h.sched.heartbeat(&agent, &[lease.lease_ref()]).await.unwrap();
        assert_eq!(ack.extended, vec![lease.lease_ref()]);
        assert!(h.sched.tick().await.unwrap().expired.is_empty());
    }
    // Silence: expired after the TTL, back to waiting with a 5 s backoff.
    h.advance(Duration::from_secs(91));
    let expired = h.sched.tick().await.unwrap().expired;
    assert_eq!(expired, vec![lease.lease_ref()]);
    let part = h.store.part(lease.part_id).await.unwrap().unwrap();
    assert_eq!((part.state, part.owner), (State::Waiting, None));
    h.lease_none(&other).await;
    h.advance(Duration::from_secs(5));
    let again = h.lease(&other).await;
    assert_eq!((again.part_id, again.attempt), (lease.part_id, 2));
    // The expired holder's heartbeat now learns it lost the lease, but the
    // part is still open: superseded (finish it if you can), not revoked.
    let ack = h.sched.heartbeat(&agent, &[lease.lease_ref()]).await.unwrap();
    assert_eq!(ack.superseded, vec![lease.lease_ref()]);
    assert!(ack.revoked.is_empty() && ack.extended.is_empty(), "{ack:?}");
    assert_eq!(h.run_state(run.id).await, State::Running);
    // A heartbeat naming another agent's live lease is refused: it was never
    // this agent's work to finish.
    let ack = h.sched.heartbeat(&agent, &[again.lease_ref()]).await.unwrap();
    assert_eq!(ack.revoked, vec![again.lease_ref()], "{ack:?}");
    assert!(ack.superseded.is_empty() && ack.extended.is_empty(), "{ack:?}");
}

async fn retries_spent_fail_the_part_and_the_run(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("a", &[]).await;
    let mut spec = h.spec("flaky", Harness::labels(1));
    spec.retries = 1;
    let run = h.run_of(&spec).await;
    let first = h.lease(&agent).await;
    h.advance(Duration::from_secs(91));
    h.sched.tick().await.unwrap();
    h.advance(Duration::from_secs(5));
    let second = h.lease(&agent).await;
    assert_eq!(second.attempt, 2);
    h.advance(Duration::from_secs(91));
    h.sched.tick().await.unwrap();
    let part = h.store.part(first.part_id).await.unwrap().unwrap();
    assert_eq!(part.state, State::Failed);
    let run = h.store.run(run.id).await.unwrap().unwrap();
    assert_eq!(run.state, State::Failed);
    assert!(run.ended_at.is_some());
    h.lease_none(&agent).await;
}

async fn a_failed_attempt_is_retried_after_backoff(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("a", &[]).await;
    let mut spec = h.spec("flaky", Harness::labels(1));
    spec.retries = 2;
    h.run_of(&spec).await;
    let mut attempts = Vec::new();
    // Backoff doubles: 5 s after the first failure, 10 s after the second.
    for wait in [5u64, 10] {
        let lease = h.lease(&agent).await;
        attempts.push(lease.attempt);
        let ack = h.sched.submit(&agent, &result(&lease, ResultStatus::Failed)).await.unwrap();
        assert_eq!(ack, ResultAck::Applied);
        h.advance(Duration::from_secs(wait - 1));
        h.lease_none(&agent).await;
        h.advance(Duration::from_secs(1));
    }
    let last = h.lease(&agent).await;
    attempts.push(last.attempt);
    h.sched.submit(&agent, &result(&last, ResultStatus::Timeout)).await.unwrap();
    assert_eq!(attempts, [1, 2, 3]);
    let part = h.store.part(last.part_id).await.unwrap().unwrap();
    assert_eq!(part.state, State::Failed);
    assert!(part.error.unwrap().contains("attempt 3: timeout"));
}

/// The next lease a result brings follows the rules of a lease alone (on
/// PostgreSQL it is made by another SQL function, for several agents at once:
/// `store::postgres::finish_batch`): networks, then copies pinned to their
/// agent; the two agents' results arrive together.
async fn the_next_lease_a_result_brings_follows_the_targeting_rules(backend: Backend) {
    let h = Harness::new(backend).await;
    let (office, lab) = office_and_lab_scan(&h).await;
    let mut deploy = h.spec("deploy", Harness::labels(1));
    deploy.targeting = Targeting { agents: vec!["office".into(), "lab".into()], each_agent: true };
    h.run_of(&deploy).await;
    let l = h.lease(&lab).await;
    let o = h.lease(&office).await;
    assert_eq!((l.part.label.as_str(), o.part.label.as_str()), ("lab-a", "office-a"));

    let (lab_done, office_done) = (finished(&l), finished(&o));
    let (lab_next, office_next) = tokio::join!(
        h.sched.submit_and_lease(&lab, &lab_done),
        h.sched.submit_and_lease(&office, &office_done),
    );
    let (lab_ack, lab_next) = lab_next.unwrap();
    let (office_ack, office_next) = office_next.unwrap();
    assert_eq!((lab_ack, office_ack), (ResultAck::Applied, ResultAck::Applied));
    let (lab_next, office_next) = (lab_next.expect("a part"), office_next.expect("a part"));
    // The lab never gets the office's part; it takes the untargeted one.
    assert_eq!(office_next.part.label, "office-b");
    assert_eq!(lab_next.part.label, "anywhere");

    // The scan is done; each agent's next result brings its own copy.
    let (lab_done, office_done) = (finished(&lab_next), finished(&office_next));
    let (lab_copy, office_copy) = tokio::join!(
        h.sched.submit_and_lease(&lab, &lab_done),
        h.sched.submit_and_lease(&office, &office_done),
    );
    for (agent, copy) in [("lab", lab_copy), ("office", office_copy)] {
        let (ack, copy) = copy.unwrap();
        assert_eq!(ack, ResultAck::Applied);
        let copy = copy.expect("its copy");
        let part = h.store.part(copy.part_id).await.unwrap().unwrap();
        assert_eq!(part.pinned_agent.as_deref(), Some(agent));
    }
}

/// Split order holds for parts that come back: after a thousand leases (on
/// PostgreSQL each walk then starts at a mark past the leased parts:
/// `lease_marks`), a part that failed and one whose lease expired are
/// leased before every later part, by a lease alone and by the lease a
/// result brings, once their backoff is over.
async fn parts_back_to_waiting_go_first_however_far_the_run_has_gone(backend: Backend) {
    let h = Harness::new(backend).await;
    let [slow, flaky, fast] = h.agents(["slow", "flaky", "fast"]).await;
    let mut spec = h.spec("long", Harness::labels(1_500));
    spec.retries = 2;
    h.run_of(&spec).await;
    let lost = h.lease(&slow).await;
    let failing = h.lease(&flaky).await;
    let mut held = h.lease(&fast).await;
    assert_eq!([&lost, &failing, &held].map(|l| l.part.label.as_str()), ["p0", "p1", "p2"]);
    // 1,200 parts finished, each result bringing the next lease.
    for _ in 0..1_200 {
        held = h
            .sched
            .submit_and_lease(&fast, &finished(&held))
            .await
            .unwrap()
            .1
            .expect("a part for the fast agent");
    }
    assert_eq!(held.part.label, "p1202");
    // p1 fails (retried after 5 s); p0's lease expires (retried after 5 s).
    let ack = h.sched.submit(&flaky, &result(&failing, ResultStatus::Failed)).await.unwrap();
    assert_eq!(ack, ResultAck::Applied);
    h.advance(Duration::from_secs(60));
    h.sched.heartbeat(&fast, &[held.lease_ref()]).await.unwrap();
    h.advance(Duration::from_secs(31));
    assert_eq!(h.sched.tick().await.unwrap().expired, vec![lost.lease_ref()]);
    h.advance(Duration::from_secs(5));
    let again = h.lease(&slow).await;
    assert_eq!((again.part.label.as_str(), again.attempt), ("p0", 2));
    let mut order = Vec::new();
    for _ in 0..2 {
        let (ack, next) = h.sched.submit_and_lease(&fast, &finished(&held)).await.unwrap();
        assert_eq!(ack, ResultAck::Applied);
        held = next.expect("a part for the fast agent");
        order.push((held.part.label.clone(), held.attempt));
    }
    assert_eq!(order, [("p1".to_string(), 2), ("p1203".to_string(), 1)]);
}
