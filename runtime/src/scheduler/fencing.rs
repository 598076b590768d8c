//! The fencing rule: what a result does, given the attempt it names.
//!
//! Every lease carries an attempt number, the fencing token. A result names the
//! attempt it belongs to, and [`judge`] decides, from the part as it is now,
//! what the result may change:
//!
//! 1. A result for an attempt the agent never held is refused (`NotLeased`).
//! 2. A second result for the same attempt is a `Duplicate`: acknowledged,
//!    nothing changes (an agent re-sending from its spool).
//! 3. A result for the **current** attempt of a part the agent still holds is
//!    applied (`Apply`): success finishes the part; a failure retries it with
//!    backoff or, retries spent, fails it.
//! 4. A **late** success (an earlier attempt, or the current one after its lease
//!    expired) for a part not yet finished is accepted once (`AcceptLate`): the
//!    part finishes and the current lease, if any, is revoked. This is the
//!    FusionInventory scenario: agent B comes back with the job it did. It
//!    holds too for a part that failed when that very lease expired, its
//!    retries spent (`retries: 0`): the work was done after all.
//! 5. Everything else (a late failure, whose attempt was already counted when
//!    its lease expired; any result for a part that is finished, failed or
//!    canceled) is recorded for the record and changes nothing (`RecordOnly`).
//!
//! No result is applied twice (2), and none overwrites a newer one (4, 5).
//!
//! # Where this rule is restated
//!
//! Every store judges a result with this module and restates, in SQL, the
//! check that the part is still as judged and what each verdict writes:
//!
//! - SQLite: `submit` in `runtime/src/store/sqlite/writer/ops/submit.rs` reads
//!   the part with `RESULT_TARGET`, judges it here, and writes the verdict
//!   with `APPLY_RESULT` (rule 3, only on a running part) and
//!   `ACCEPT_LATE_RESULT` (rule 4, only on the state judged), statements of
//!   `runtime/src/store/sqlite/writer/ops/statements.rs`.
//! - PostgreSQL: `runtime/src/store/postgres/results.rs` judges the result
//!   here, first on the part as it is while the submitter holds the lease,
//!   then on the part as read, and writes the verdict as a compare-and-set on
//!   the state, attempt and owner judged: the SQL function `jobstack_submit`
//!   (`runtime/migrations/postgres/functions/jobstack_submit.sql`; also the
//!   first half of `jobstack_submit_and_lease`). A success with the next lease
//!   goes to `runtime/src/store/postgres/finish_batch.rs`, whose SQL function
//!   `jobstack_finish_and_lease`
//!   (`runtime/migrations/postgres/functions/jobstack_finish_and_lease.sql`)
//!   restates rule 3 for successes without this module: it applies the result
//!   when the part is running, at the attempt named, owned by the submitter,
//!   and hands every other result back to `results.rs`.
//!
//! tests/scheduler/policy/ runs one table of cases through each copy.

use chrono::{DateTime, TimeDelta, Utc};

use super::{ResultStatus, State, Submission, retry};

/// A part as a store reads it when a result arrives.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    /// Its state.
    pub state: State,
    /// Its latest attempt number.
    pub attempt: u32,
    /// The agent holding its current lease, if any.
    pub owner: Option<&'a str>,
    /// The agent the attempt the result names was leased to, if any.
    pub lessee: Option<&'a str>,
    /// Whether a result of that attempt is stored already.
    pub recorded: bool,
    /// Whether the lease of that attempt ended by expiring.
    pub lease_expired: bool,
}

/// [`judge`] the result `s` sent by agent `submitter`, for the part as stored.
pub fn judge_result(part: Stored<'_>, submitter: &str, s: &Submission) -> Verdict {
    judge(
        PartNow {
            state: part.state,
            attempt: part.attempt,
            held_by_submitter: part.owner == Some(submitter),
        },
        Claim {
            attempt: s.attempt,
            was_leased_to_submitter: part.lessee == Some(submitter),
            already_recorded: part.recorded,
            success: s.status == ResultStatus::Finished,
            lease_expired: part.lease_expired,
        },
    )
}

/// Where an applied result (rule 3) sends its part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Finished on success; Waiting again for a retry; Failed, retries spent.
    pub to: State,
    /// When the part may be leased again (its backoff, for a retry).
    pub available_at: DateTime<Utc>,
    /// The error kept on the part for a failure.
    pub error: Option<String>,
}

/// What applying `s` does to a part at `attempt` with `retries` allowed, each
/// after a backoff starting at `first_backoff`.
pub fn applied(
    s: &Submission, attempt: u32, retries: u32, first_backoff: TimeDelta, now: DateTime<Utc>,
) -> Applied {
    let (to, available_at) = if s.status == ResultStatus::Finished {
        (State::Finished, now)
    } else {
        retry::after_failure(attempt, retries, first_backoff, now)
    };
    let error = (to != State::Finished).then(|| {
        format!(
            "attempt {}: {}: {}",
            s.attempt,
            s.status.as_str(),
            s.error.as_deref().unwrap_or("no reason given")
        )
    });
    Applied { to, available_at, error }
}

/// The part as the store holds it when a result arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartNow {
    /// Its state.
    pub state: State,
    /// Its latest attempt number (0 before the first lease).
    pub attempt: u32,
    /// Whether the submitting agent holds the current lease.
    pub held_by_submitter: bool,
}

/// What the result names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The attempt the result belongs to.
    pub attempt: u32,
    /// Whether the submitting agent was given that attempt.
    pub was_leased_to_submitter: bool,
    /// Whether a result for that attempt is already stored.
    pub already_recorded: bool,
    /// Whether the execution finished with success.
    pub success: bool,
    /// Whether the lease of that attempt ended by expiring.
    pub lease_expired: bool,
}

/// What to do with a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The agent never held this attempt: refuse, change nothing.
    NotLeased,
    /// A result of this attempt is stored already: acknowledge, store nothing.
    Duplicate,
    /// The current attempt: finish, retry or fail the part.
    Apply,
    /// A late success: finish the part; revoke the current lease if the part is
    /// leased to someone.
    AcceptLate {
        /// The part is running under a newer lease that must be revoked.
        revokes_current: bool,
    },
    /// Store the result as recorded, not applied; change no state.
    RecordOnly,
}

/// Decide what a result may change. See the module documentation.
pub fn judge(part: PartNow, claim: Claim) -> Verdict {
    if !claim.was_leased_to_submitter || claim.attempt == 0 || claim.attempt > part.attempt {
        return Verdict::NotLeased;
    }
    if claim.already_recorded {
        return Verdict::Duplicate;
    }
    if part.state.is_terminal() {
        // Failed when this very lease expired, retries spent: its success
        // is the part's.
        let failed_by_this_expiry =
            part.state == State::Failed && claim.lease_expired && claim.attempt == part.attempt;
        return if claim.success && failed_by_this_expiry {
            Verdict::AcceptLate { revokes_current: false }
        } else {
            Verdict::RecordOnly
        };
    }
    let current = claim.attempt == part.attempt;
    if current && part.state == State::Running && part.held_by_submitter {
        return Verdict::Apply;
    }
    if claim.success {
        Verdict::AcceptLate { revokes_current: part.state == State::Running }
    } else {
        Verdict::RecordOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(status: ResultStatus, attempt: u32) -> Submission {
        Submission {
            part_id: 1,
            attempt,
            status,
            output: None,
            error: Some("boom".into()),
            emitted: vec![],
            logs: vec![],
            started_at: None,
            duration_ms: 0,
        }
    }

    #[test]
    fn an_applied_result_finishes_retries_or_fails_its_part() {
        let now = DateTime::UNIX_EPOCH;
        let first = retry::DEFAULT_BACKOFF;
        let done = applied(&submission(ResultStatus::Finished, 1), 1, 0, first, now);
        assert_eq!((done.to, done.available_at, done.error), (State::Finished, now, None));
        let retry = applied(&submission(ResultStatus::Failed, 1), 1, 2, first, now);
        assert_eq!(retry.to, State::Waiting);
        assert_eq!(retry.available_at, now + retry::backoff(1, first));
        assert_eq!(retry.error.as_deref(), Some("attempt 1: failed: boom"));
        let spent = applied(&submission(ResultStatus::Timeout, 3), 3, 2, first, now);
        assert_eq!((spent.to, spent.available_at), (State::Failed, now));
        assert_eq!(spent.error.as_deref(), Some("attempt 3: timeout: boom"));
    }

    fn part(state: State, attempt: u32, held: bool) -> PartNow {
        PartNow { state, attempt, held_by_submitter: held }
    }

    fn claim(attempt: u32, success: bool) -> Claim {
        Claim {
            attempt,
            was_leased_to_submitter: true,
            already_recorded: false,
            success,
            lease_expired: false,
        }
    }

    #[test]
    fn current_attempt_applies() {
        let p = part(State::Running, 1, true);
        assert_eq!(judge(p, claim(1, true)), Verdict::Apply);
        assert_eq!(judge(p, claim(1, false)), Verdict::Apply);
    }

    #[test]
    fn never_leased_is_refused() {
        let p = part(State::Running, 1, false);
        let mut c = claim(1, true);
        c.was_leased_to_submitter = false;
        assert_eq!(judge(p, c), Verdict::NotLeased);
        assert_eq!(judge(p, claim(2, true)), Verdict::NotLeased);
        assert_eq!(judge(p, claim(0, true)), Verdict::NotLeased);
    }

    #[test]
    fn late_success_is_accepted_once_and_revokes() {
        // B held attempt 1, expired; A holds attempt 2.
        let p = part(State::Running, 2, false);
        assert_eq!(judge(p, claim(1, true)), Verdict::AcceptLate { revokes_current: true });
        // Expired and not leased again yet.
        let p = part(State::Waiting, 1, false);
        assert_eq!(judge(p, claim(1, true)), Verdict::AcceptLate { revokes_current: false });
        // The same result again.
        let mut again = claim(1, true);
        again.already_recorded = true;
        assert_eq!(judge(part(State::Finished, 2, false), again), Verdict::Duplicate);
    }

    #[test]
    fn a_result_that_lost_the_race_is_recorded_not_applied() {
        // A's result for attempt 2 after B's late result finished the part.
        assert_eq!(judge(part(State::Finished, 2, false), claim(2, true)), Verdict::RecordOnly);
        // B's late result for attempt 1 after A finished attempt 2.
        assert_eq!(judge(part(State::Finished, 2, false), claim(1, true)), Verdict::RecordOnly);
    }

    #[test]
    fn late_failure_changes_nothing() {
        assert_eq!(judge(part(State::Running, 2, false), claim(1, false)), Verdict::RecordOnly);
        assert_eq!(judge(part(State::Waiting, 1, false), claim(1, false)), Verdict::RecordOnly);
    }

    #[test]
    fn canceled_or_failed_parts_only_record() {
        assert_eq!(judge(part(State::Canceled, 1, false), claim(1, true)), Verdict::RecordOnly);
        assert_eq!(judge(part(State::Failed, 3, false), claim(3, true)), Verdict::RecordOnly);
    }

    #[test]
    fn the_late_success_of_the_expiry_that_failed_a_part_is_accepted() {
        let expired = |attempt, success| Claim { lease_expired: true, ..claim(attempt, success) };
        let failed = part(State::Failed, 1, false);
        assert_eq!(judge(failed, expired(1, true)), Verdict::AcceptLate { revokes_current: false });
        assert_eq!(judge(failed, expired(1, false)), Verdict::RecordOnly);
        // An earlier attempt's expiry did not fail the part.
        assert_eq!(judge(part(State::Failed, 2, false), expired(1, true)), Verdict::RecordOnly);
    }
}
