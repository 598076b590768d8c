//! Retries with exponential backoff after a failed or expired attempt.

use chrono::TimeDelta;

/// The delay before the first retry.
pub const BACKOFF_BASE: TimeDelta = TimeDelta::seconds(5);

/// The longest delay between two attempts, however many have failed.
pub const BACKOFF_MAX: TimeDelta = TimeDelta::minutes(10);

/// The wait before attempt `failed_attempts + 1`: `BACKOFF_BASE * 2^(n-1)`,
/// capped at [`BACKOFF_MAX`].
pub fn backoff(failed_attempts: u32) -> TimeDelta {
    let exponent = failed_attempts.saturating_sub(1).min(20);
    let delay = BACKOFF_BASE * (1i32 << exponent);
    delay.min(BACKOFF_MAX)
}

/// Whether a part that has used `attempts` attempts may have another, given the
/// task's `retries` (retries = attempts beyond the first).
pub fn may_retry(attempts: u32, retries: u32) -> bool {
    attempts <= retries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        assert_eq!(backoff(1), TimeDelta::seconds(5));
        assert_eq!(backoff(2), TimeDelta::seconds(10));
        assert_eq!(backoff(3), TimeDelta::seconds(20));
        assert_eq!(backoff(10), BACKOFF_MAX);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }

    #[test]
    fn retries_count_attempts_beyond_the_first() {
        assert!(!may_retry(1, 0));
        assert!(may_retry(1, 2));
        assert!(may_retry(2, 2));
        assert!(!may_retry(3, 2));
    }
}
