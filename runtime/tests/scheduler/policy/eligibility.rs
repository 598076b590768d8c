//! Who may lease which part: one table through the Rust rule and each
//! backend's leasing SQL.

use jobstack::scheduler::{Agent, Part, ResultAck, ResultStatus, State, Targeting, retry};

use crate::harness::{Backend, Harness, finished, result};
use crate::store_tests;

use super::{check_table, end};

store_tests!(leasing_eligibility_is_one_rule_in_every_copy);

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
    Eligibility { name: "untargeted part, agent without networks", networks: &[], ..AUTO },
    Eligibility { name: "address inside the agent's network", targets: &["192.168.0.7"], ..AUTO },
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
    Eligibility { name: "block inside the agent's network", targets: &["192.168.0.16/28"], ..AUTO },
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
    Eligibility { name: "part whose backoff is over", around: Around::BackoffOver, ..AUTO },
    Eligibility {
        name: "part of a suspended run",
        around: Around::RunSuspended,
        leased: false,
        ..AUTO
    },
    Eligibility { name: "part of a resumed run", around: Around::RunResumed, ..AUTO },
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

/// The part `case` is about in `parts`.
fn part_under_test<'p>(case: &Eligibility, parts: &'p [Part]) -> &'p Part {
    parts
        .iter()
        .find(|p| p.label == "case" && p.pinned_agent.as_deref() == case.copy_of)
        .unwrap_or_else(|| panic!("{}: no part under test in {parts:?}", case.name))
}

/// Run `case` through every copy, on a fresh store whose only agent is the
/// case's (the Rust rule's "no agent may take it" is then "this agent may
/// not take it"); the disagreements found.
async fn eligibility_row(backend: Backend, case: &Eligibility) -> Vec<String> {
    let h = Harness::new(backend).await;
    let me = h.agent_serving("me", case.networks, case.plugins).await;
    let mut wrong = Vec::new();
    for ask in ASKS {
        wrong.extend(eligibility_case(&h, &me, backend, case, ask).await);
    }
    wrong
}

/// Run `case` through the Rust rule and through the store asked by `ask`,
/// with runs of its own; the disagreements found.
async fn eligibility_case(
    h: &Harness, me: &Agent, backend: Backend, case: &Eligibility, ask: Ask,
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
                h.advance(retry::backoff(1, retry::DEFAULT_BACKOFF).to_std().unwrap());
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
            let (ack, lease) =
                h.sched.submit_and_lease(me, &result(carrier, status)).await.unwrap();
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
    check_table(ELIGIBILITY, "the leasing rule", |case| eligibility_row(backend, case)).await;
}
