//! When a task runs: once, every interval, or on a cron schedule.
//!
//! A task stores the time of its next run. The recurrence sweep creates a run
//! when that time has passed and moves the time to the first occurrence *after
//! now*: schedules missed while the daemon was down coalesce into one run.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// How often a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Frequency {
    /// Once, at creation (or at `at`).
    Once {
        /// When to run; now if absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<DateTime<Utc>>,
    },
    /// Every `seconds`, the first run at creation.
    Every {
        /// The interval in seconds (at least 1).
        seconds: u64,
    },
    /// On a cron schedule (5 fields: minute hour day-of-month month day-of-week,
    /// in UTC), e.g. `"0 3 * * *"` for 03:00 every day.
    Cron {
        /// The cron expression.
        expr: String,
    },
    /// Only when forced by an admin.
    Manual,
}

impl Default for Frequency {
    fn default() -> Self {
        Frequency::Once { at: None }
    }
}

/// A frequency that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFrequency {
    /// An interval of zero seconds.
    #[error("an interval must be at least 1 second")]
    ZeroInterval,
    /// An interval longer than [`MAX_INTERVAL_SECONDS`].
    #[error("an interval must be at most {MAX_INTERVAL_SECONDS} seconds (ten years)")]
    IntervalTooLong,
    /// A cron expression that does not parse.
    #[error("invalid cron expression {expr:?}: {reason}")]
    Cron {
        /// The expression.
        expr: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The longest interval of an `every` frequency: ten years.
pub const MAX_INTERVAL_SECONDS: u64 = 10 * 365 * 24 * 3600;

impl Frequency {
    /// Check the frequency without computing anything.
    pub fn validate(&self) -> Result<(), InvalidFrequency> {
        match self {
            Frequency::Every { seconds: 0 } => Err(InvalidFrequency::ZeroInterval),
            Frequency::Every { seconds } if *seconds > MAX_INTERVAL_SECONDS => {
                Err(InvalidFrequency::IntervalTooLong)
            }
            Frequency::Cron { expr } => parse_cron(expr).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The first run of a task created at `now`.
    pub fn first(&self, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, InvalidFrequency> {
        self.validate()?;
        Ok(match self {
            Frequency::Once { at } => Some(at.unwrap_or(now)),
            Frequency::Every { .. } => Some(now),
            Frequency::Cron { expr } => next_cron(expr, now)?,
            Frequency::Manual => None,
        })
    }

    /// The next run after one that was due at `due` and is created at `now`:
    /// the first occurrence strictly after `now`, so missed ones coalesce.
    pub fn after(
        &self, due: DateTime<Utc>, now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, InvalidFrequency> {
        self.validate()?;
        Ok(match self {
            Frequency::Once { .. } | Frequency::Manual => None,
            Frequency::Every { seconds } => {
                // Keep the phase of the schedule: due + k * step > now. The
                // interval is bounded, but a stored task may predate the
                // bound: no arithmetic here may panic.
                let step_ms = i64::try_from(*seconds).unwrap_or(i64::MAX).saturating_mul(1000);
                let behind = now.signed_duration_since(due).num_milliseconds().max(0);
                let k = behind / step_ms.max(1) + 1;
                k.checked_mul(step_ms)
                    .and_then(TimeDelta::try_milliseconds)
                    .and_then(|ahead| due.checked_add_signed(ahead))
            }
            Frequency::Cron { expr } => next_cron(expr, now)?,
        })
    }
}

fn parse_cron(expr: &str) -> Result<croner::Cron, InvalidFrequency> {
    croner::Cron::new(expr)
        .parse()
        .map_err(|e| InvalidFrequency::Cron { expr: expr.to_string(), reason: e.to_string() })
}

fn next_cron(expr: &str, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, InvalidFrequency> {
    let cron = parse_cron(expr)?;
    Ok(cron.find_next_occurrence(&now, false).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn once_runs_at_creation_then_never() {
        let now = t("2026-01-01T00:00:00Z");
        let f = Frequency::Once { at: None };
        assert_eq!(f.first(now).unwrap(), Some(now));
        assert_eq!(f.after(now, now).unwrap(), None);
    }

    #[test]
    fn interval_keeps_its_phase_and_coalesces() {
        let start = t("2026-01-01T00:00:00Z");
        let f = Frequency::Every { seconds: 60 };
        assert_eq!(f.first(start).unwrap(), Some(start));
        assert_eq!(f.after(start, start).unwrap(), Some(t("2026-01-01T00:01:00Z")));
        // Down for 10 and a half minutes: one run now, the next on the minute.
        let late = t("2026-01-01T00:10:30Z");
        assert_eq!(f.after(start, late).unwrap(), Some(t("2026-01-01T00:11:00Z")));
    }

    #[test]
    fn cron_next_occurrence() {
        let f = Frequency::Cron { expr: "0 3 * * *".into() };
        let now = t("2026-01-01T10:00:00Z");
        assert_eq!(f.first(now).unwrap(), Some(t("2026-01-02T03:00:00Z")));
        // Missed three days: the next one after now.
        let due = t("2026-01-02T03:00:00Z");
        let late = t("2026-01-05T12:00:00Z");
        assert_eq!(f.after(due, late).unwrap(), Some(t("2026-01-06T03:00:00Z")));
    }

    #[test]
    fn bad_frequencies_are_refused() {
        assert_eq!(Frequency::Every { seconds: 0 }.validate(), Err(InvalidFrequency::ZeroInterval));
        let err = Frequency::Cron { expr: "every day".into() }.validate().unwrap_err();
        assert!(err.to_string().contains("invalid cron expression"), "{err}");
    }
}
