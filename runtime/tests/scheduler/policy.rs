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

use std::time::Duration;

use futures_util::{StreamExt, stream};
use jobstack::scheduler::fencing::{self, Claim, PartNow, Verdict};
use jobstack::scheduler::{
    Agent, AgentRegistration, Part, ResultAck, ResultStatus, SchedulerError, State, Submission,
    Targeting, retry,
};
use jobstack::store::StoreError;

use crate::harness::{Backend, Harness, finished, result};
use crate::store_tests;

store_tests!(
    leasing_eligibility_is_one_rule_in_every_copy,
    fencing_is_one_rule_in_every_copy,
);

/// Rows run at once, each on a fresh store of its own.
const AT_ONCE: usize = 2;

// ---- eligibility -------------------------------------------------------------

/// What surrounds the part under test when the agent asks for work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Around {
    /// Nothing: the part waits, due, in a waiting run.
    Nothing,
    /// The agent holds another part of the same run (one part per run per
    /// agent at a time).
    HeldPartOfItsRun,
    /// `each_agent`: the agent leased and finished its own copy first.
    OwnCopyDone,
    /// The agent's attempt at the part failed; the retry's backoff runs.
    InBackoff,
    /// The same, once the backoff is over.
    BackoffOver,
    /// The run is suspended.
    RunSuspended,
    /// The run was suspended, then resumed.
    RunResumed,
}

/// One case of the leasing rule: the agent `me`, a run, and the part under
/// test.
#[derive(Debug, Clone, Copy)]
struct Eligibility {
    name: &'static str,
    /// The agent's networks (CIDR).
    networks: &'static [&'static str],
    /// The plugins the agent accepts; empty: every plugin.
    plugins: &'static [&'static str],
    /// The run's plugin.
    plugin: &'static str,
    /// The run's targeting by agent names; empty: automatic, by networks.
    listed: &'static [&'static str],
    /// `each_agent`: a copy of the part per listed agent, pinned to it.
    each_agent: bool,
    /// With `each_agent`: the part under test is the copy pinned to this agent.
    copy_of: Option<&'static str>,
    /// The part's targets.
    targets: &'static [&'static str],
    around: Around,
    /// What the Rust rule answers (it judges who may take what, not the
    /// part's moment: holds, backoff and suspension are the leases' own).
    rule_allows: bool,
    /// Whether every backend leases the part to the agent.
    leased: bool,
}

/// The common case: an agent of one /24 that accepts every plugin, a run of
/// plugin `test` targeted automatically, an untargeted part.
const AUTO: Eligibility = Eligibility {
    name: "",
    networks: &["192.168.0.0/24"],
    plugins: &[],
    plugin: "test",
    listed: &[],
    each_agent: false,
    copy_of: None,
    targets: &[],
    around: Around::Nothing,
    rule_allows: true,
    leased: true,
};

const ELIGIBILITY: &[Eligibility] = &[
    Eligibility {
        name: "untargeted part, agent without networks",
        networks: &[],
        ..AUTO
    },
    Eligibility {
        name: "address inside the agent's network",
        targets: &["192.168.0.7"],
        ..AUTO
    },
    Eligibility {
        name: "address outside the agent's networks",
        targets: &["10.0.0.7"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "address target, agent without networks",
        networks: &[],
        targets: &["192.168.0.7"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "address with a port inside the agent's network",
        targets: &["192.168.0.7:161"],
        ..AUTO
    },
    Eligibility {
        name: "block inside the agent's network",
        targets: &["192.168.0.16/28"],
        ..AUTO
    },
    Eligibility {
        name: "range inside the agent's network",
        targets: &["192.168.0.16-192.168.0.31"],
        ..AUTO
    },
    Eligibility {
        name: "block straddling two of the agent's networks",
        networks: &["192.168.0.0/24", "192.168.1.0/24"],
        targets: &["192.168.0.0/23"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "addresses in two of the agent's networks: their one span fits neither",
        networks: &["192.168.0.0/24", "192.168.1.0/24"],
        targets: &["192.168.0.5", "192.168.1.5"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "addresses in the second of the agent's networks",
        networks: &["10.0.0.0/8", "192.168.0.0/16"],
        targets: &["192.168.0.5", "192.168.1.5"],
        ..AUTO
    },
    Eligibility {
        name: "host name only: any agent",
        networks: &["10.0.0.0/8"],
        targets: &["esx1.example.org"],
        ..AUTO
    },
    Eligibility {
        name: "host name beside an address outside the agent's networks",
        targets: &["esx1.example.org", "10.0.0.1"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "IPv6 address inside the agent's IPv6 network",
        networks: &["2001:db8::/64"],
        targets: &["2001:db8::5"],
        ..AUTO
    },
    Eligibility {
        name: "IPv6 address outside the agent's IPv6 network",
        networks: &["2001:db8::/64"],
        targets: &["2001:db8:1::5"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "IPv4 address, agent of all IPv6 (::/0 holds IPv4-mapped addresses)",
        networks: &["::/0"],
        targets: &["10.0.0.7"],
        ..AUTO
    },
    Eligibility {
        name: "IPv6 address, agent of all IPv4",
        networks: &["0.0.0.0/0"],
        targets: &["2001:db8::5"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "agent listed by name, target outside its networks",
        listed: &["other", "me"],
        targets: &["10.0.0.7"],
        ..AUTO
    },
    Eligibility {
        name: "agent not listed, target inside its networks",
        listed: &["other"],
        targets: &["192.168.0.7"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "each_agent: the copy pinned to the agent",
        listed: &["other", "me"],
        each_agent: true,
        copy_of: Some("me"),
        targets: &["10.0.0.7"],
        ..AUTO
    },
    Eligibility {
        name: "each_agent: the copy pinned to another listed agent, own copy done",
        listed: &["me", "other"],
        each_agent: true,
        copy_of: Some("other"),
        around: Around::OwnCopyDone,
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "each_agent: agent not listed",
        listed: &["other"],
        each_agent: true,
        copy_of: Some("other"),
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "agent accepting other plugins only",
        plugins: &["snmp"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "agent accepting the run's plugin among others",
        plugins: &["snmp", "test"],
        ..AUTO
    },
    Eligibility {
        name: "agent listed by name but not accepting the plugin",
        plugins: &["snmp"],
        listed: &["me"],
        rule_allows: false,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "agent already holding another part of the run",
        targets: &["192.168.0.7"],
        around: Around::HeldPartOfItsRun,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "part waiting for the backoff of its failed attempt",
        around: Around::InBackoff,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "part whose backoff is over",
        around: Around::BackoffOver,
        ..AUTO
    },
    Eligibility {
        name: "part of a suspended run",
        around: Around::RunSuspended,
        leased: false,
        ..AUTO
    },
    Eligibility {
        name: "part of a resumed run",
        around: Around::RunResumed,
        ..AUTO
    },
];

/// How the store is asked for the agent's next part.
#[derive(Debug, Clone, Copy)]
enum Ask {
    /// `lease` alone (SQLite's lease; PostgreSQL's `jobstack_lease_in`).
    Lease,
    /// With a finished result for another part the agent holds
    /// (`submit_and_lease`: SQLite's combined operation; PostgreSQL's
    /// `jobstack_finish_and_lease`).
    WithFinishedResult,
    /// With a failed result for another part (PostgreSQL: the result, then
    /// `jobstack_lease_in`).
    WithFailedResult,
}

const ASKS: [Ask; 3] = [Ask::Lease, Ask::WithFinishedResult, Ask::WithFailedResult];

/// Register `name` with `networks` and `plugins`.
async fn register(h: &Harness, name: &str, networks: &[&str], plugins: &[&str]) -> Agent {
    let registration = AgentRegistration {
        name: name.to_string(),
        networks: networks.iter().map(|n| n.parse().expect("CIDR")).collect(),
        plugins: plugins.iter().map(|p| p.to_string()).collect(),
        pooled_slots: 4,
        dedicated_slots: 1,
    };
    h.store
        .register_agent(&registration, &format!("token-of-{name}"), h.sched.now())
        .await
        .expect("register agent")
}

/// The part `case` is about in `parts`.
fn part_under_test<'p>(case: &Eligibility, parts: &'p [Part]) -> &'p Part {
    parts
        .iter()
        .find(|p| p.label == "case" && p.pinned_agent.as_deref() == case.copy_of)
        .unwrap_or_else(|| panic!("{}: no part under test in {parts:?}", case.name))
}

/// Cancel run `run_id` unless it ended: its parts leave the cases after it
/// on the same store alone.
async fn end(h: &Harness, run_id: i64) {
    let run = h.store.run(run_id).await.unwrap().unwrap();
    if !run.state.is_terminal() {
        h.sched.cancel(run_id).await.unwrap();
    }
}

/// Run `case` through every copy, on a fresh store whose only agent is the
/// case's (the Rust rule's "no agent may take it" is then "this agent may
/// not take it"); the disagreements found.
async fn eligibility_row(backend: Backend, case: &Eligibility) -> Vec<String> {
    let h = Harness::new(backend).await;
    let me = register(&h, "me", case.networks, case.plugins).await;
    let mut wrong = Vec::new();
    for ask in ASKS {
        wrong.extend(eligibility_case(&h, &me, backend, case, ask).await);
    }
    wrong
}

/// Run `case` through the Rust rule and through the store asked by `ask`,
/// with runs of its own; the disagreements found.
async fn eligibility_case(
    h: &Harness,
    me: &Agent,
    backend: Backend,
    case: &Eligibility,
    ask: Ask,
) -> Vec<String> {
    let name = case.name;
    // Asked with a result: first a part of another run to report on, which
    // the agent may take whatever the case.
    let carrier = match ask {
        Ask::Lease => None,
        Ask::WithFinishedResult | Ask::WithFailedResult => {
            let mut spec = h.spec(&format!("carrier-{ask:?}"), Harness::labels(1));
            spec.plugin = case.plugins.first().unwrap_or(&"test").to_string();
            spec.retries = 0;
            let run = h.run_of(&spec).await;
            let lease = h.lease(me).await;
            assert_eq!(lease.run_id, run.id, "{name}: the carrier part");
            Some(lease)
        }
    };

    let part = serde_json::json!({ "label": "case", "targets": case.targets });
    let parts = if case.around == Around::HeldPartOfItsRun {
        serde_json::json!([{ "label": "held", "targets": case.targets }, part])
    } else {
        serde_json::json!([part])
    };
    let mut spec = h.spec(&format!("case-{ask:?}"), parts);
    spec.plugin = case.plugin.to_string();
    spec.targeting = Targeting {
        agents: case.listed.iter().map(|a| a.to_string()).collect(),
        each_agent: case.each_agent,
    };
    let run = h.run_of(&spec).await;
    match case.around {
        Around::Nothing => {}
        Around::HeldPartOfItsRun => {
            let held = h.lease(me).await;
            assert_eq!(held.part.label, "held", "{name}: set-up");
        }
        Around::OwnCopyDone => {
            let own = h.lease(me).await;
            let stored = h.store.part(own.part_id).await.unwrap().unwrap();
            assert_eq!(stored.pinned_agent.as_deref(), Some("me"), "{name}: set-up");
            let ack = h.sched.submit(me, &finished(&own)).await.unwrap();
            assert_eq!(ack, ResultAck::Applied, "{name}: set-up");
        }
        Around::InBackoff | Around::BackoffOver => {
            let first = h.lease(me).await;
            assert_eq!(first.part.label, "case", "{name}: set-up");
            let failed = result(&first, ResultStatus::Failed);
            let ack = h.sched.submit(me, &failed).await.unwrap();
            assert_eq!(ack, ResultAck::Applied, "{name}: set-up");
            if case.around == Around::BackoffOver {
                h.advance(retry::backoff(1).to_std().unwrap());
            }
        }
        Around::RunSuspended => {
            h.sched.suspend(run.id).await.unwrap();
        }
        Around::RunResumed => {
            h.sched.suspend(run.id).await.unwrap();
            h.sched.resume(run.id).await.unwrap();
        }
    }
    let parts = h.store.parts(run.id).await.unwrap();
    let part = part_under_test(case, &parts);
    assert!(
        matches!(part.state, State::Waiting | State::Suspended),
        "{name}: set-up left the part {:?}",
        part.state
    );

    let mut wrong = Vec::new();
    // The Rust rule: `agent_may_take`, for the one agent registered.
    let unassignable = h.sched.unassignable_parts(run.id).await.unwrap();
    let rule_allows = !unassignable.iter().any(|p| p.id == part.id);
    if rule_allows != case.rule_allows {
        wrong.push(format!(
            "{backend:?} / Rust rule (agent_may_take), run of {ask:?}: {name}: allows {rule_allows}, the row says {}",
            case.rule_allows
        ));
    }

    // The store's copy, asked as `ask` says.
    let lease = match (ask, &carrier) {
        (Ask::Lease, _) => h.sched.lease(me).await.unwrap(),
        (Ask::WithFinishedResult | Ask::WithFailedResult, Some(carrier)) => {
            let status = match ask {
                Ask::WithFinishedResult => ResultStatus::Finished,
                _ => ResultStatus::Failed,
            };
            let (ack, lease) = h
                .sched
                .submit_and_lease(me, &result(carrier, status))
                .await
                .unwrap();
            assert_eq!(ack, ResultAck::Applied, "{name}: the carrier's result");
            lease
        }
        _ => unreachable!("a carrier for every result"),
    };
    match lease {
        Some(lease) if lease.part_id != part.id => wrong.push(format!(
            "{backend:?} / {ask:?}: {name}: leased another part ({}, run {})",
            lease.part.label, lease.run_id
        )),
        lease => {
            let leased = lease.is_some();
            if leased != case.leased {
                wrong.push(format!(
                    "{backend:?} / {ask:?}: {name}: leased {leased}, the row says {}",
                    case.leased
                ));
            }
        }
    }
    end(h, run.id).await;
    if let Some(carrier) = carrier {
        end(h, carrier.run_id).await;
    }
    wrong
}

async fn leasing_eligibility_is_one_rule_in_every_copy(backend: Backend) {
    let wrong: Vec<String> = stream::iter(ELIGIBILITY)
        .map(|case| eligibility_row(backend, case))
        .buffered(AT_ONCE)
        .concat()
        .await;
    assert!(
        wrong.is_empty(),
        "the leasing rule's copies disagree with the table:\n{}",
        wrong.join("\n")
    );
}

// ---- fencing -----------------------------------------------------------------

/// How the one part of a fresh run (retries as the row says) stands when the
/// result arrives. Agent `a` leases it first (attempt 1), unless it is never
/// leased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// `a` holds attempt 1.
    Held,
    /// `a` holds attempt 1, past its expiry, not swept yet.
    HeldPastExpiry,
    /// `a` sent a result of this status for attempt 1, applied.
    Sent(ResultStatus),
    /// `a`'s lease expired (swept); the retry's backoff runs.
    Expired,
    /// `a`'s lease expired; `b` holds attempt 2.
    TakenOverByB,
    /// `a`'s lease expired; `a` holds attempt 2.
    TakenBackByA,
    /// `b` holds attempt 2; `a`'s late success for attempt 1 was accepted.
    LateSuccessAccepted,
    /// `b` held attempt 2 and finished the part.
    NewerAttemptFinished,
    /// `a` holds attempt 1; the run is canceled.
    RunCanceled,
    /// `a` holds attempt 1; the run is suspended (the lease runs on).
    RunSuspended,
    /// `a`'s lease expired; the run is suspended.
    ExpiredThenSuspended,
    /// Nobody ever leased the part.
    NeverLeased,
}

/// The part after the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct After {
    state: State,
    attempt: u32,
    owner: Option<&'static str>,
}

/// One case of the fencing rule: a part, a result for it from `from`.
#[derive(Debug, Clone, Copy)]
struct Fencing {
    name: &'static str,
    /// The task's retries.
    retries: u32,
    before: Before,
    /// Who sends the result: `a`, `b` or `c` (never leased anything).
    from: &'static str,
    /// The part as the result finds it (checked against the store).
    part: PartNow,
    /// What the result names: its attempt, success or failure (checked
    /// against the store where the API shows it).
    claim: Claim,
    /// What [`fencing::judge`] decides.
    verdict: Verdict,
    /// What every backend answers; `None`: refused as not leased.
    ack: Option<ResultAck>,
    /// The part after the result.
    after: After,
    /// Results stored for the part after it: all, and those applied.
    results: (usize, usize),
}

const fn part(state: State, attempt: u32, held_by_submitter: bool) -> PartNow {
    PartNow {
        state,
        attempt,
        held_by_submitter,
    }
}

/// A claim for `attempt`, given to the submitter, not recorded yet.
const fn claim(attempt: u32, success: bool) -> Claim {
    Claim {
        attempt,
        was_leased_to_submitter: true,
        already_recorded: false,
        success,
    }
}

const fn recorded(mut c: Claim) -> Claim {
    c.already_recorded = true;
    c
}

const fn not_given(mut c: Claim) -> Claim {
    c.was_leased_to_submitter = false;
    c
}

const fn after(state: State, attempt: u32, owner: Option<&'static str>) -> After {
    After {
        state,
        attempt,
        owner,
    }
}

const FENCING: &[Fencing] = &[
    Fencing {
        name: "current attempt held by the submitter: a success finishes the part",
        retries: 2,
        before: Before::Held,
        from: "a",
        part: part(State::Running, 1, true),
        claim: claim(1, true),
        verdict: Verdict::Apply,
        ack: Some(ResultAck::Applied),
        after: after(State::Finished, 1, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "current attempt held: a failure with retries left retries the part",
        retries: 2,
        before: Before::Held,
        from: "a",
        part: part(State::Running, 1, true),
        claim: claim(1, false),
        verdict: Verdict::Apply,
        ack: Some(ResultAck::Applied),
        after: after(State::Waiting, 1, None),
        results: (1, 1),
    },
    Fencing {
        name: "current attempt held: a failure with retries spent fails the part",
        retries: 0,
        before: Before::Held,
        from: "a",
        part: part(State::Running, 1, true),
        claim: claim(1, false),
        verdict: Verdict::Apply,
        ack: Some(ResultAck::Applied),
        after: after(State::Failed, 1, None),
        results: (1, 1),
    },
    Fencing {
        name: "lease past its expiry, not swept yet: still the holder's",
        retries: 2,
        before: Before::HeldPastExpiry,
        from: "a",
        part: part(State::Running, 1, true),
        claim: claim(1, true),
        verdict: Verdict::Apply,
        ack: Some(ResultAck::Applied),
        after: after(State::Finished, 1, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "running part of a suspended run: its result applies",
        retries: 2,
        before: Before::RunSuspended,
        from: "a",
        part: part(State::Running, 1, true),
        claim: claim(1, true),
        verdict: Verdict::Apply,
        ack: Some(ResultAck::Applied),
        after: after(State::Finished, 1, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "the same success sent twice",
        retries: 2,
        before: Before::Sent(ResultStatus::Finished),
        from: "a",
        part: part(State::Finished, 1, true),
        claim: recorded(claim(1, true)),
        verdict: Verdict::Duplicate,
        ack: Some(ResultAck::Duplicate),
        after: after(State::Finished, 1, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "a failure after the same attempt's success",
        retries: 2,
        before: Before::Sent(ResultStatus::Finished),
        from: "a",
        part: part(State::Finished, 1, true),
        claim: recorded(claim(1, false)),
        verdict: Verdict::Duplicate,
        ack: Some(ResultAck::Duplicate),
        after: after(State::Finished, 1, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "the same failure sent twice",
        retries: 2,
        before: Before::Sent(ResultStatus::Failed),
        from: "a",
        part: part(State::Waiting, 1, false),
        claim: recorded(claim(1, false)),
        verdict: Verdict::Duplicate,
        ack: Some(ResultAck::Duplicate),
        after: after(State::Waiting, 1, None),
        results: (1, 1),
    },
    Fencing {
        name: "a success after the same attempt's failure was applied",
        retries: 2,
        before: Before::Sent(ResultStatus::Failed),
        from: "a",
        part: part(State::Waiting, 1, false),
        claim: recorded(claim(1, true)),
        verdict: Verdict::Duplicate,
        ack: Some(ResultAck::Duplicate),
        after: after(State::Waiting, 1, None),
        results: (1, 1),
    },
    Fencing {
        name: "late success after expiry, not leased again: accepted, finishes the part",
        retries: 2,
        before: Before::Expired,
        from: "a",
        part: part(State::Waiting, 1, false),
        claim: claim(1, true),
        verdict: Verdict::AcceptLate {
            revokes_current: false,
        },
        ack: Some(ResultAck::AcceptedLate),
        after: after(State::Finished, 1, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "late success after expiry, re-leased to another agent: accepted, revokes",
        retries: 2,
        before: Before::TakenOverByB,
        from: "a",
        part: part(State::Running, 2, false),
        claim: claim(1, true),
        verdict: Verdict::AcceptLate {
            revokes_current: true,
        },
        ack: Some(ResultAck::AcceptedLate),
        after: after(State::Finished, 2, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "late success for an earlier attempt while the submitter holds the newer one",
        retries: 2,
        before: Before::TakenBackByA,
        from: "a",
        part: part(State::Running, 2, true),
        claim: claim(1, true),
        verdict: Verdict::AcceptLate {
            revokes_current: true,
        },
        ack: Some(ResultAck::AcceptedLate),
        after: after(State::Finished, 2, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "late success for a part suspended after its lease expired",
        retries: 2,
        before: Before::ExpiredThenSuspended,
        from: "a",
        part: part(State::Suspended, 1, false),
        claim: claim(1, true),
        verdict: Verdict::AcceptLate {
            revokes_current: false,
        },
        ack: Some(ResultAck::AcceptedLate),
        after: after(State::Finished, 1, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "late failure after expiry, re-leased: recorded only",
        retries: 2,
        before: Before::TakenOverByB,
        from: "a",
        part: part(State::Running, 2, false),
        claim: claim(1, false),
        verdict: Verdict::RecordOnly,
        ack: Some(ResultAck::Recorded),
        after: after(State::Running, 2, Some("b")),
        results: (1, 0),
    },
    Fencing {
        name: "late failure after expiry, not leased again: recorded only",
        retries: 2,
        before: Before::Expired,
        from: "a",
        part: part(State::Waiting, 1, false),
        claim: claim(1, false),
        verdict: Verdict::RecordOnly,
        ack: Some(ResultAck::Recorded),
        after: after(State::Waiting, 1, None),
        results: (1, 0),
    },
    Fencing {
        name: "late failure for a part suspended after its lease expired: recorded only",
        retries: 2,
        before: Before::ExpiredThenSuspended,
        from: "a",
        part: part(State::Suspended, 1, false),
        claim: claim(1, false),
        verdict: Verdict::RecordOnly,
        ack: Some(ResultAck::Recorded),
        after: after(State::Suspended, 1, None),
        results: (1, 0),
    },
    Fencing {
        name: "a second late success after the first was accepted",
        retries: 2,
        before: Before::LateSuccessAccepted,
        from: "a",
        part: part(State::Finished, 2, true),
        claim: recorded(claim(1, true)),
        verdict: Verdict::Duplicate,
        ack: Some(ResultAck::Duplicate),
        after: after(State::Finished, 2, Some("a")),
        results: (1, 1),
    },
    Fencing {
        name: "the revoked holder's success after a late success finished the part",
        retries: 2,
        before: Before::LateSuccessAccepted,
        from: "b",
        part: part(State::Finished, 2, false),
        claim: claim(2, true),
        verdict: Verdict::Duplicate,
        ack: Some(ResultAck::Duplicate),
        after: after(State::Finished, 2, Some("a")),
        results: (2, 1),
    },
    Fencing {
        name: "late success after the newer attempt finished the part",
        retries: 2,
        before: Before::NewerAttemptFinished,
        from: "a",
        part: part(State::Finished, 2, false),
        claim: claim(1, true),
        verdict: Verdict::Duplicate,
        ack: Some(ResultAck::Duplicate),
        after: after(State::Finished, 2, Some("b")),
        results: (2, 1),
    },
    Fencing {
        name: "late success for a part failed when its last lease expired",
        retries: 0,
        before: Before::Expired,
        from: "a",
        part: part(State::Failed, 1, false),
        claim: claim(1, true),
        verdict: Verdict::RecordOnly,
        ack: Some(ResultAck::Recorded),
        after: after(State::Failed, 1, None),
        results: (1, 0),
    },
    Fencing {
        name: "success for a part of a canceled run",
        retries: 2,
        before: Before::RunCanceled,
        from: "a",
        part: part(State::Canceled, 1, false),
        claim: claim(1, true),
        verdict: Verdict::RecordOnly,
        ack: Some(ResultAck::Recorded),
        after: after(State::Canceled, 1, None),
        results: (1, 0),
    },
    Fencing {
        name: "failure for a part of a canceled run",
        retries: 2,
        before: Before::RunCanceled,
        from: "a",
        part: part(State::Canceled, 1, false),
        claim: claim(1, false),
        verdict: Verdict::RecordOnly,
        ack: Some(ResultAck::Recorded),
        after: after(State::Canceled, 1, None),
        results: (1, 0),
    },
    Fencing {
        name: "result from an agent never given the attempt",
        retries: 2,
        before: Before::Held,
        from: "c",
        part: part(State::Running, 1, false),
        claim: not_given(claim(1, true)),
        verdict: Verdict::NotLeased,
        ack: None,
        after: after(State::Running, 1, Some("a")),
        results: (0, 0),
    },
    Fencing {
        name: "result from the expired holder's successor for the expired attempt",
        retries: 2,
        before: Before::TakenOverByB,
        from: "b",
        part: part(State::Running, 2, true),
        claim: not_given(claim(1, true)),
        verdict: Verdict::NotLeased,
        ack: None,
        after: after(State::Running, 2, Some("b")),
        results: (0, 0),
    },
    Fencing {
        name: "result naming an attempt not leased yet",
        retries: 2,
        before: Before::Held,
        from: "a",
        part: part(State::Running, 1, true),
        claim: not_given(claim(2, true)),
        verdict: Verdict::NotLeased,
        ack: None,
        after: after(State::Running, 1, Some("a")),
        results: (0, 0),
    },
    Fencing {
        name: "result naming attempt 0",
        retries: 2,
        before: Before::Held,
        from: "a",
        part: part(State::Running, 1, true),
        claim: not_given(claim(0, true)),
        verdict: Verdict::NotLeased,
        ack: None,
        after: after(State::Running, 1, Some("a")),
        results: (0, 0),
    },
    Fencing {
        name: "result for a part never leased",
        retries: 2,
        before: Before::NeverLeased,
        from: "a",
        part: part(State::Waiting, 0, false),
        claim: not_given(claim(1, true)),
        verdict: Verdict::NotLeased,
        ack: None,
        after: after(State::Waiting, 0, None),
        results: (0, 0),
    },
];

/// How the result reaches the store.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// `submit` (SQLite's `submit`; PostgreSQL's `jobstack_submit`).
    Alone,
    /// `submit_and_lease` (SQLite's combined operation; PostgreSQL: a success
    /// goes to `jobstack_finish_and_lease`, which hands what its
    /// compare-and-set does not apply to `jobstack_submit_and_lease` and
    /// `jobstack_submit`; a failure goes to `jobstack_submit`, then the lease).
    WithLease,
}

const VIAS: [Via; 2] = [Via::Alone, Via::WithLease];

/// Expire every lease: past the expiry, then the sweep.
async fn expire(h: &Harness) {
    h.advance(Duration::from_secs(91));
    let expired = h.sched.tick().await.unwrap().expired;
    assert_eq!(expired.len(), 1, "one lease expired: {expired:?}");
}

/// Past the backoff after a first failed attempt.
fn past_backoff(h: &Harness) {
    h.advance(retry::backoff(1).to_std().unwrap());
}

/// Run `case` through every copy, on a fresh store with agents `a`, `b`
/// and `c`; the disagreements found.
async fn fencing_row(backend: Backend, case: &Fencing) -> Vec<String> {
    let h = Harness::new(backend).await;
    let agents = [
        h.agent("a", &[]).await,
        h.agent("b", &[]).await,
        h.agent("c", &[]).await,
    ];
    let mut wrong = Vec::new();
    // The Rust rule, on the part and claim the row states (each store's
    // situation is checked against them below).
    let verdict = fencing::judge(case.part, case.claim);
    if verdict != case.verdict {
        wrong.push(format!(
            "fencing::judge: {}: {verdict:?}, the row says {:?}",
            case.name, case.verdict
        ));
    }
    for via in VIAS {
        wrong.extend(fencing_case(&h, &agents, backend, case, via).await);
    }
    wrong
}

/// Run `case` through the store sent as `via`, with a run of its own; the
/// disagreements found.
async fn fencing_case(
    h: &Harness,
    [a, b, c]: &[Agent; 3],
    backend: Backend,
    case: &Fencing,
    via: Via,
) -> Vec<String> {
    let name = case.name;
    let mut spec = h.spec(&format!("job-{via:?}"), Harness::labels(1));
    spec.retries = case.retries;
    let run = h.run_of(&spec).await;
    let part_id = h.store.parts(run.id).await.unwrap()[0].id;
    let setup = |what: &str| format!("{name}: set-up: {what}");

    let first = match case.before {
        Before::NeverLeased => None,
        _ => {
            let lease = h.lease(a).await;
            assert_eq!(
                (lease.part_id, lease.attempt),
                (part_id, 1),
                "{}",
                setup("a's lease")
            );
            Some(lease)
        }
    };
    let take_over = |by: &Agent| {
        let by = by.clone();
        async move {
            expire(h).await;
            past_backoff(h);
            let lease = h.lease(&by).await;
            assert_eq!((lease.part_id, lease.attempt), (part_id, 2));
            lease
        }
    };
    match case.before {
        Before::Held | Before::NeverLeased => {}
        Before::HeldPastExpiry => h.advance(Duration::from_secs(91)),
        Before::Sent(status) => {
            let sent = result(first.as_ref().unwrap(), status);
            let ack = h.sched.submit(a, &sent).await.unwrap();
            assert_eq!(ack, ResultAck::Applied, "{}", setup("a's result"));
        }
        Before::Expired => expire(h).await,
        Before::TakenOverByB => {
            take_over(b).await;
        }
        Before::TakenBackByA => {
            take_over(a).await;
        }
        Before::LateSuccessAccepted => {
            take_over(b).await;
            let late = finished(first.as_ref().unwrap());
            let ack = h.sched.submit(a, &late).await.unwrap();
            assert_eq!(ack, ResultAck::AcceptedLate, "{}", setup("a's late result"));
        }
        Before::NewerAttemptFinished => {
            let second = take_over(b).await;
            let ack = h.sched.submit(b, &finished(&second)).await.unwrap();
            assert_eq!(ack, ResultAck::Applied, "{}", setup("b's result"));
        }
        Before::RunCanceled => {
            h.sched.cancel(run.id).await.unwrap();
        }
        Before::RunSuspended => {
            h.sched.suspend(run.id).await.unwrap();
        }
        Before::ExpiredThenSuspended => {
            expire(h).await;
            h.sched.suspend(run.id).await.unwrap();
        }
    }
    let from = match case.from {
        "a" => a,
        "b" => b,
        "c" => c,
        other => panic!("{name}: no agent {other}"),
    };

    let mut wrong = Vec::new();
    let mut disagree = |copy: &str, what: String| {
        wrong.push(format!("{backend:?} / {copy}: {name}: {what}"));
    };

    // The situation is the row's: the part as the result finds it, and
    // whether a result of the attempt is stored.
    let stored = h.store.part(part_id).await.unwrap().unwrap();
    let now = PartNow {
        state: stored.state,
        attempt: stored.attempt,
        held_by_submitter: stored.owner.as_deref() == Some(case.from),
    };
    assert_eq!(
        now,
        case.part,
        "{}",
        setup("the part as the result finds it")
    );
    let results = h.store.results(run.id).await.unwrap();
    let already = results
        .iter()
        .any(|r| r.submission.part_id == part_id && r.submission.attempt == case.claim.attempt);
    assert_eq!(
        already,
        case.claim.already_recorded,
        "{}",
        setup("a result of the attempt stored")
    );

    // The store's copy.
    let status = if case.claim.success {
        ResultStatus::Finished
    } else {
        ResultStatus::Failed
    };
    let submission = Submission {
        part_id,
        attempt: case.claim.attempt,
        status,
        output: case
            .claim
            .success
            .then(|| serde_json::json!({ "from": case.from })),
        error: (!case.claim.success).then(|| "it broke".to_string()),
        emitted: Vec::new(),
        logs: Vec::new(),
        started_at: None,
        duration_ms: 5,
    };
    let copy = format!("{via:?}");
    let answer = match via {
        Via::Alone => h.sched.submit(from, &submission).await,
        Via::WithLease => match h.sched.submit_and_lease(from, &submission).await {
            Ok((ack, None)) => Ok(ack),
            Ok((ack, Some(lease))) => {
                disagree(
                    &copy,
                    format!("leased part {} after the result", lease.part_id),
                );
                Ok(ack)
            }
            Err(e) => Err(e),
        },
    };
    match (answer, case.ack) {
        (Ok(ack), Some(expected)) if ack == expected => {}
        (Err(SchedulerError::Store(StoreError::NotLeased { .. })), None) => {}
        (answer, expected) => disagree(
            &copy,
            format!(
                "answered {answer:?}, the row says {}",
                expected.map_or("refused (not leased)".to_string(), |a| format!("{a:?}"))
            ),
        ),
    }
    let stored = h.store.part(part_id).await.unwrap().unwrap();
    let got = (stored.state, stored.attempt, stored.owner.as_deref());
    let want = (case.after.state, case.after.attempt, case.after.owner);
    if got != want {
        disagree(&copy, format!("part after: {got:?}, the row says {want:?}"));
    }
    let results = h.store.results(run.id).await.unwrap();
    let of_part: Vec<_> = results
        .iter()
        .filter(|r| r.submission.part_id == part_id)
        .collect();
    let counts = (of_part.len(), of_part.iter().filter(|r| r.applied).count());
    if counts != case.results {
        disagree(
            &copy,
            format!(
                "results stored (all, applied): {counts:?}, the row says {:?}",
                case.results
            ),
        );
    }
    end(h, run.id).await;
    wrong
}

async fn fencing_is_one_rule_in_every_copy(backend: Backend) {
    let wrong: Vec<String> = stream::iter(FENCING)
        .map(|case| fencing_row(backend, case))
        .buffered(AT_ONCE)
        .concat()
        .await;
    assert!(
        wrong.is_empty(),
        "the fencing rule's copies disagree with the table:\n{}",
        wrong.join("\n")
    );
}
