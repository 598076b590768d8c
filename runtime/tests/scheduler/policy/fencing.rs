//! What a result may change: one table through `fencing::judge` and each
//! backend's compare-and-sets.

use std::time::Duration;

use jobstack::scheduler::fencing::{self, Claim, PartNow, Verdict};
use jobstack::scheduler::{
    Agent, ResultAck, ResultStatus, SchedulerError, State, Submission, retry,
};
use jobstack::store::StoreError;

use crate::harness::{Backend, Harness, finished, result};
use crate::store_tests;

use super::{check_table, end};

store_tests!(fencing_is_one_rule_in_every_copy);

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
    PartNow { state, attempt, held_by_submitter }
}

/// A claim for `attempt`, given to the submitter, not recorded yet.
const fn claim(attempt: u32, success: bool) -> Claim {
    Claim {
        attempt,
        was_leased_to_submitter: true,
        already_recorded: false,
        success,
        lease_expired: false,
    }
}

/// The claim's lease expired (the sweep ended it).
const fn of_expired_lease(mut c: Claim) -> Claim {
    c.lease_expired = true;
    c
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
    After { state, attempt, owner }
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
        claim: of_expired_lease(claim(1, true)),
        verdict: Verdict::AcceptLate { revokes_current: false },
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
        claim: of_expired_lease(claim(1, true)),
        verdict: Verdict::AcceptLate { revokes_current: true },
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
        claim: of_expired_lease(claim(1, true)),
        verdict: Verdict::AcceptLate { revokes_current: true },
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
        claim: of_expired_lease(claim(1, true)),
        verdict: Verdict::AcceptLate { revokes_current: false },
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
        claim: of_expired_lease(claim(1, false)),
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
        claim: of_expired_lease(claim(1, false)),
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
        claim: of_expired_lease(claim(1, false)),
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
        name: "the revoked holder's success after a late success finished the part: recorded, not applied",
        retries: 2,
        before: Before::LateSuccessAccepted,
        from: "b",
        part: part(State::Finished, 2, false),
        claim: claim(2, true),
        verdict: Verdict::RecordOnly,
        ack: Some(ResultAck::Recorded),
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
        verdict: Verdict::RecordOnly,
        ack: Some(ResultAck::Recorded),
        after: after(State::Finished, 2, Some("b")),
        results: (2, 1),
    },
    Fencing {
        name: "late success of the expired lease that failed the part (retries 0): accepted",
        retries: 0,
        before: Before::Expired,
        from: "a",
        part: part(State::Failed, 1, false),
        claim: of_expired_lease(claim(1, true)),
        verdict: Verdict::AcceptLate { revokes_current: false },
        ack: Some(ResultAck::AcceptedLate),
        after: after(State::Finished, 1, Some("a")),
        results: (1, 1),
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
    h.advance(retry::backoff(1, retry::DEFAULT_BACKOFF).to_std().unwrap());
}

/// Run `case` through every copy, on a fresh store with agents `a`, `b`
/// and `c`; the disagreements found.
async fn fencing_row(backend: Backend, case: &Fencing) -> Vec<String> {
    let h = Harness::new(backend).await;
    let agents = [h.agent("a", &[]).await, h.agent("b", &[]).await, h.agent("c", &[]).await];
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
    h: &Harness, [a, b, c]: &[Agent; 3], backend: Backend, case: &Fencing, via: Via,
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
            assert_eq!((lease.part_id, lease.attempt), (part_id, 1), "{}", setup("a's lease"));
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
    assert_eq!(now, case.part, "{}", setup("the part as the result finds it"));
    let results = h.store.results(run.id).await.unwrap();
    let already = results
        .iter()
        .any(|r| r.submission.part_id == part_id && r.submission.attempt == case.claim.attempt);
    assert_eq!(already, case.claim.already_recorded, "{}", setup("a result of the attempt stored"));

    // The store's copy.
    let status = if case.claim.success { ResultStatus::Finished } else { ResultStatus::Failed };
    let submission = Submission {
        part_id,
        attempt: case.claim.attempt,
        status,
        output: case.claim.success.then(|| serde_json::json!({ "from": case.from })),
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
                disagree(&copy, format!("leased part {} after the result", lease.part_id));
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
    let of_part: Vec<_> = results.iter().filter(|r| r.submission.part_id == part_id).collect();
    let counts = (of_part.len(), of_part.iter().filter(|r| r.applied).count());
    if counts != case.results {
        disagree(
            &copy,
            format!("results stored (all, applied): {counts:?}, the row says {:?}", case.results),
        );
    }
    end(h, run.id).await;
    wrong
}

async fn fencing_is_one_rule_in_every_copy(backend: Backend) {
    check_table(FENCING, "the fencing rule", |case| fencing_row(backend, case)).await;
}
