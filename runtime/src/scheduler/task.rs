//! Tasks: an admin's definition of work, and the snapshot a run takes of it.

use serde::{Deserialize, Serialize};

use super::{Frequency, Priority, TargetSelector, Trigger, retry};

/// How a part is executed on the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    /// Many executions share a few threads (1:N). The default.
    #[default]
    Pooled,
    /// One OS thread for the execution (1:1), for heavy work.
    Dedicated,
}

/// Which agents may take the parts of a task.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Targeting {
    /// Agent names. Empty: automatic, by the agents' networks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// Give every listed agent its own copy of every part (e.g. deploy the same
    /// software on each machine). Needs `agents`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub each_agent: bool,
}

impl Targeting {
    /// The copies stored of each split part, by the agent each is pinned to:
    /// one per listed agent with `each_agent`, else one pinned to nobody.
    /// Copies of one split part take consecutive `seq`s, in this order.
    pub fn pins(&self) -> Vec<Option<&str>> {
        if self.each_agent {
            self.agents.iter().map(|a| Some(a.as_str())).collect()
        } else {
            vec![None]
        }
    }
}

/// What the task grants its executions beyond the part's own targets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskGrants {
    /// Names of directories the agent's operator configured, e.g. `deploy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    /// Accept a self-signed TLS certificate from the part's hosts (real ESX hosts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_accept_self_signed: bool,
    /// Artifacts (sha256) from the daemon's artifact store the executions may
    /// read: the agent downloads each, verifies it, and shows them read-only at
    /// `/artifacts/<sha256>`. Task create and edit refuse an unknown one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
}

/// The definition of a task, as an admin writes it. Secrets are apart:
/// written with the task, never listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// A unique name, e.g. `scan-office`.
    pub name: String,
    /// The plugin (task type) name, e.g. `netscan`.
    pub plugin: String,
    /// Parameters (JSON), checked against the plugin's schema.
    #[serde(default = "empty_object")]
    pub params: serde_json::Value,
    /// When the task runs.
    #[serde(default)]
    pub frequency: Frequency,
    /// Priority of its runs.
    #[serde(default)]
    pub priority: Priority,
    /// Which agents may take its parts.
    #[serde(default)]
    pub targeting: Targeting,
    /// The longest one part may run, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts beyond the first after a failure or an expired lease.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The wait before the first retry, in milliseconds (0: none); each
    /// further failure doubles it, up to ten minutes.
    #[serde(default = "default_retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// What a lease adds to `timeout_ms` for the agent's start-up and its
    /// result's trip back, in milliseconds; the daemon's `--lease-grace`
    /// when not set (a run records the one it was made with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_grace_ms: Option<u64>,
    /// Pooled or dedicated execution.
    #[serde(default)]
    pub mode: ExecMode,
    /// Start a new run while the previous one is still active.
    #[serde(default)]
    pub allow_overlap: bool,
    /// Capabilities granted beyond the part's targets.
    #[serde(default)]
    pub grants: TaskGrants,
    /// Take the targets from the inventory when a run is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select: Option<TargetSelector>,
    /// Start a run when a run of another task ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Trigger>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// Five minutes: long enough for a block of a network scan, short enough that a
/// vanished agent's part comes back the same hour.
pub const DEFAULT_TIMEOUT_MS: u64 = 300_000;

/// Two retries: a part is tried three times before it fails.
pub const DEFAULT_RETRIES: u32 = 2;

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

fn default_retry_backoff_ms() -> u64 {
    retry::DEFAULT_BACKOFF.num_milliseconds() as u64
}

/// The bounds of a task's `lease_grace_ms` (and of the daemon's `--lease-grace`).
pub const LEASE_GRACE_BOUNDS_MS: std::ops::RangeInclusive<u64> = 1_000..=3_600_000;

/// The longest `timeout_ms`: a week (a lease's expiry must stay a date).
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3_600_000;

impl TaskSpec {
    /// A task of `plugin` named `name` with every other field at its default.
    pub fn new(name: &str, plugin: &str) -> Self {
        Self {
            name: name.to_string(),
            plugin: plugin.to_string(),
            params: empty_object(),
            frequency: Frequency::default(),
            priority: Priority::default(),
            targeting: Targeting::default(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retries: DEFAULT_RETRIES,
            retry_backoff_ms: default_retry_backoff_ms(),
            lease_grace_ms: None,
            mode: ExecMode::default(),
            allow_overlap: false,
            grants: TaskGrants::default(),
            select: None,
            after: None,
        }
    }

    /// Check what can be checked without the plugin: name, timeout, frequency,
    /// targeting. (The parameters are checked against the plugin's schema by the
    /// caller that knows the plugin.)
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.len() > 128 {
            return Err("task name must be 1 to 128 characters".into());
        }
        if self.plugin.trim().is_empty() {
            return Err("plugin name is empty".into());
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS} (a week)"));
        }
        let max_backoff = retry::BACKOFF_MAX.num_milliseconds() as u64;
        if self.retry_backoff_ms > max_backoff {
            return Err(format!(
                "retry_backoff_ms must be between 0 and {max_backoff} (ten minutes)"
            ));
        }
        if let Some(grace) = self.lease_grace_ms
            && !LEASE_GRACE_BOUNDS_MS.contains(&grace)
        {
            return Err(format!(
                "lease_grace_ms must be between {} and {} (one second to one hour)",
                LEASE_GRACE_BOUNDS_MS.start(),
                LEASE_GRACE_BOUNDS_MS.end()
            ));
        }
        if self.targeting.each_agent && self.targeting.agents.is_empty() {
            return Err("targeting.each_agent needs a list of agents".into());
        }
        if let Some(select) = &self.select {
            select.validate()?;
        }
        if let Some(after) = &self.after {
            if after.task.trim().is_empty() {
                return Err("after.task must name the task to follow".into());
            }
            if self.frequency == Frequency::default() {
                return Err("a task that follows another runs when that one's run ends: \
                            give it frequency manual (or a schedule of its own)"
                    .into());
            }
        }
        self.frequency.validate().map_err(|e| e.to_string())
    }
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// Its id.
    pub id: i64,
    /// Its definition.
    pub spec: TaskSpec,
    /// When the recurrence sweep creates its next run, if ever.
    #[schema(required = true)]
    pub next_run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Since when it follows the task its trigger names: upstream runs that
    /// ended earlier start nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chained_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether secrets are set (their values are never read back).
    pub has_secrets: bool,
    /// Creation time.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Last edit.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(edit: impl FnOnce(&mut TaskSpec)) -> Result<(), String> {
        let mut spec = TaskSpec::new("t", "p");
        edit(&mut spec);
        spec.validate()
    }

    /// Every numeric field at its extremes: what validation accepts, the
    /// scheduler computes with (next runs, lease expiries, backoffs, ranks)
    /// at any time without panicking.
    #[test]
    fn every_value_accepted_computes_without_panicking() {
        use crate::scheduler::{NewRun, Priority, RunCause, lease_expiry, retry};
        use chrono::{DateTime, TimeDelta, Utc};
        let extremes = [
            0,
            1,
            999,
            1_000,
            3_600_000,
            MAX_TIMEOUT_MS,
            MAX_TIMEOUT_MS + 1,
            u64::from(u32::MAX),
            i64::MAX as u64,
            u64::MAX,
        ];
        let times = [
            DateTime::UNIX_EPOCH,
            Utc::now(),
            DateTime::<Utc>::MAX_UTC - TimeDelta::days(1),
            DateTime::<Utc>::MAX_UTC,
        ];
        let narrow = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        for n in extremes {
            let edits: [&dyn Fn(&mut TaskSpec); 6] = [
                &|s| s.timeout_ms = n,
                &|s| s.retries = narrow(n),
                &|s| s.retry_backoff_ms = n,
                &|s| s.lease_grace_ms = Some(n),
                &|s| s.frequency = Frequency::Every { seconds: n },
                &|s| s.priority = Priority::Custom(narrow(n)),
            ];
            for edit in edits {
                let mut spec = TaskSpec::new("t", "p");
                edit(&mut spec);
                if spec.validate().is_err() {
                    continue;
                }
                spec.priority.rank();
                let backoff = TimeDelta::milliseconds(spec.retry_backoff_ms as i64);
                let run = NewRun {
                    task_id: 1,
                    spec: spec.clone(),
                    secrets: serde_json::json!({}),
                    plugin_sha256: String::new(),
                    cause: RunCause::Scheduled,
                    rerun_of: None,
                    caused_by: None,
                };
                for now in times {
                    spec.frequency.first(now).unwrap();
                    for due in times {
                        spec.frequency.after(due, now).unwrap();
                    }
                    lease_expiry(now, run.lease_ttl_ms());
                    for attempt in [1, 2, 30, u32::MAX] {
                        retry::after_failure(attempt, spec.retries, backoff, now);
                    }
                }
            }
        }
    }

    #[test]
    fn timing_values_are_checked_against_their_bounds() {
        assert!(checked(|s| s.retry_backoff_ms = 0).is_ok());
        assert!(checked(|s| s.retry_backoff_ms = 600_000).is_ok());
        let err = checked(|s| s.retry_backoff_ms = 600_001).unwrap_err();
        assert!(err.contains("retry_backoff_ms"), "{err}");
        assert!(checked(|s| s.lease_grace_ms = Some(1_000)).is_ok());
        for grace in [999, 3_600_001, u64::MAX] {
            let err = checked(|s| s.lease_grace_ms = Some(grace)).unwrap_err();
            assert!(err.contains("lease_grace_ms"), "{grace}: {err}");
        }
        for timeout in [0, MAX_TIMEOUT_MS + 1, u64::MAX] {
            let err = checked(|s| s.timeout_ms = timeout).unwrap_err();
            assert!(err.contains("timeout_ms"), "{timeout}: {err}");
        }
    }
}
