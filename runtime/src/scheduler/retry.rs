//! Retries with exponential backoff after a failed or expired attempt.
//!
//! A part whose attempt failed (or whose lease expired) waits out its backoff
//! before any agent may lease it again; meanwhile agents get other parts. A
//! task sets the first wait (`retry_backoff_ms`, 0 for none); each further
//! failure doubles it, up to [`BACKOFF_MAX`].

use chrono::{DateTime, TimeDelta, Utc};

use super::State;

/// The wait before the first retry when the task does not say.
pub const DEFAULT_BACKOFF: TimeDelta = TimeDelta::seconds(5);

/// The longest delay between two attempts, however many have failed, and the
/// longest first wait a task may set.
pub const BACKOFF_MAX: TimeDelta = TimeDelta::minutes(10);

/// The wait before attempt `failed_attempts + 1`: `first * 2^(n-1)`, capped at
/// [`BACKOFF_MAX`].
pub fn backoff(failed_attempts: u32, first: TimeDelta) -> TimeDelta {
    let exponent = failed_attempts.saturating_sub(1).min(20);
    first.checked_mul(1i32 << exponent).unwrap_or(BACKOFF_MAX).min(BACKOFF_MAX)
}

/// Whether a part that has used `attempts` attempts may have another, given the
/// task's `retries` (retries = attempts beyond the first).
pub fn may_retry(attempts: u32, retries: u32) -> bool {
    attempts <= retries
}

/// Where a part goes when its attempt `attempt` failed or expired at `now`:
/// Waiting until its backoff (from `first`) ends, or Failed, retries spent.
pub fn after_failure(
    attempt: u32, retries: u32, first: TimeDelta, now: DateTime<Utc>,
) -> (State, DateTime<Utc>) {
    if may_retry(attempt, retries) {
        (State::Waiting, now.checked_add_signed(backoff(attempt, first)).unwrap_or(now))
    } else {
        (State::Failed, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let first = DEFAULT_BACKOFF;
        assert_eq!(backoff(1, first), TimeDelta::seconds(5));
        assert_eq!(backoff(2, first), TimeDelta::seconds(10));
        assert_eq!(backoff(3, first), TimeDelta::seconds(20));
        assert_eq!(backoff(10, first), BACKOFF_MAX);
        assert_eq!(backoff(1000, first), BACKOFF_MAX);
        assert_eq!(backoff(1000, BACKOFF_MAX), BACKOFF_MAX);
    }

    #[test]
    fn no_backoff_stays_none() {
        assert_eq!(backoff(1, TimeDelta::zero()), TimeDelta::zero());
        assert_eq!(backoff(7, TimeDelta::zero()), TimeDelta::zero());
    }

    #[test]
    fn retries_count_attempts_beyond_the_first() {
        assert!(!may_retry(1, 0));
        assert!(may_retry(1, 2));
        assert!(may_retry(2, 2));
        assert!(!may_retry(3, 2));
    }

    #[test]
    fn a_failure_waits_out_its_backoff_or_fails_the_part() {
        let now = DateTime::UNIX_EPOCH;
        let first = TimeDelta::seconds(2);
        assert_eq!(after_failure(1, 1, first, now), (State::Waiting, now + first));
        assert_eq!(after_failure(2, 1, first, now), (State::Failed, now));
        assert_eq!(after_failure(1, 3, TimeDelta::zero(), now), (State::Waiting, now));
    }
}
