//! Runs and their job parts, as stored and as listed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    FORCED_RANK, LEASE_GRACE, LEASE_GRACE_BOUNDS_MS, MAX_TIMEOUT_MS, PartCounts, State, TaskSpec,
};

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunCause {
    /// Created by the task's frequency.
    Scheduled,
    /// Forced by an admin: leased before every other priority.
    Forced,
    /// A re-run of an earlier run (all parts or only the failed ones).
    Rerun,
    /// Started by the end of a run of the task it follows.
    Chained,
}

impl RunCause {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunCause::Scheduled => "scheduled",
            RunCause::Forced => "forced",
            RunCause::Rerun => "rerun",
            RunCause::Chained => "chained",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(RunCause::Scheduled),
            "forced" => Some(RunCause::Forced),
            "rerun" => Some(RunCause::Rerun),
            "chained" => Some(RunCause::Chained),
            _ => None,
        }
    }
}

/// A run to create: the snapshot of its task and plugin.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// The task.
    pub task_id: i64,
    /// The task definition at this moment (later edits do not change the run).
    pub spec: TaskSpec,
    /// The task secrets at this moment (JSON object).
    pub secrets: serde_json::Value,
    /// The plugin module the run executes, fixed for its whole life.
    pub plugin_sha256: String,
    /// Why.
    pub cause: RunCause,
    /// For a re-run, the run it repeats.
    pub rerun_of: Option<i64>,
    /// For a chained run, the upstream run whose end started it.
    pub caused_by: Option<i64>,
}

impl NewRun {
    /// The targets its selector resolved to, when its task has one (they are
    /// in its snapshot of the parameters).
    pub fn selected(&self) -> Option<Vec<String>> {
        selected_targets(&self.spec)
    }

    /// Where the run's parts go in leasing order: a forced run above every
    /// priority, else its task's priority.
    pub fn rank(&self) -> i64 {
        if self.cause == RunCause::Forced { FORCED_RANK } else { self.spec.priority.rank() }
    }

    /// What its creation event says of it.
    pub fn event_detail(&self) -> serde_json::Value {
        let mut detail = serde_json::json!({
            "task_id": self.task_id, "cause": self.cause.as_str(),
            "plugin_sha256": self.plugin_sha256,
        });
        if let Some(upstream) = self.caused_by {
            detail["caused_by"] = upstream.into();
        }
        if let Some(selected) = self.selected() {
            detail["selected"] = selected.len().into();
        }
        detail
    }

    /// How long a lease of one of its parts lasts: the task's timeout and its
    /// lease grace (the scheduler fills in the daemon's when the task has
    /// none; [`LEASE_GRACE`] for a run made without), ms.
    pub fn lease_ttl_ms(&self) -> i64 {
        let grace = self.spec.lease_grace_ms.unwrap_or(LEASE_GRACE.as_millis() as u64);
        let longest = MAX_TIMEOUT_MS + LEASE_GRACE_BOUNDS_MS.end();
        let ttl = self.spec.timeout_ms.saturating_add(grace).min(longest);
        i64::try_from(ttl).unwrap_or(i64::MAX)
    }

    /// The wait before its parts' first retry, ms.
    pub fn retry_backoff_ms(&self) -> i64 {
        i64::try_from(self.spec.retry_backoff_ms).unwrap_or(i64::MAX)
    }
}

/// The targets a run's selector resolved to: the list in the parameter the
/// selector fills, or `None` for a task without a selector.
pub fn selected_targets(spec: &TaskSpec) -> Option<Vec<String>> {
    let select = spec.select.as_ref()?;
    let list = spec.params.get(&select.into).and_then(|v| v.as_array());
    Some(list.into_iter().flatten().filter_map(|v| v.as_str().map(String::from)).collect())
}

/// A stored run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    /// Its id.
    pub id: i64,
    /// The task it belongs to.
    pub task_id: i64,
    /// The task definition snapshotted at creation.
    pub spec: TaskSpec,
    /// The plugin module it executes.
    pub plugin_sha256: String,
    /// Its state.
    pub state: State,
    /// Why it exists.
    pub cause: RunCause,
    /// For a re-run, the run it repeats.
    #[schema(required = true)]
    pub rerun_of: Option<i64>,
    /// For a chained run, the upstream run whose end started it.
    #[schema(required = true)]
    pub caused_by: Option<i64>,
    /// For a task with a selector, the targets it resolved to (none: the
    /// selector matched nothing, and the run finished at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<Vec<String>>,
    /// Why it failed, when `split` failed.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Its parts by state.
    pub parts: PartCounts,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it reached a terminal state.
    #[schema(required = true)]
    pub ended_at: Option<DateTime<Utc>>,
}

/// A part to store, as `split` made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewPart {
    /// Label shown in listings.
    pub label: String,
    /// Addresses, blocks, ranges or host names the work touches.
    pub targets: Vec<String>,
    /// The plugin's description of the work (JSON text).
    pub payload: String,
}

/// A stored part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Part {
    /// Its id.
    pub id: i64,
    /// Its run.
    pub run_id: i64,
    /// Its position in the run (split order).
    pub seq: i64,
    /// Label.
    pub label: String,
    /// Targets.
    pub targets: Vec<String>,
    /// Payload (JSON text).
    pub payload: String,
    /// State.
    pub state: State,
    /// Attempts so far (the current lease's fencing token).
    pub attempt: u32,
    /// The attempt whose result decided the part: the one that finished it
    /// (a late success may finish it after a newer attempt was leased), else
    /// the latest failure applied; `None` while no result was applied.
    #[serde(default)]
    #[schema(required = true)]
    pub result_attempt: Option<u32>,
    /// The agent holding the current lease; for a finished part, the agent
    /// whose result finished it.
    #[schema(required = true)]
    pub owner: Option<String>,
    /// The only agent that may take it (`each_agent` targeting).
    #[schema(required = true)]
    pub pinned_agent: Option<String>,
    /// When the current lease expires.
    #[schema(required = true)]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Not leased before this time (backoff after a failed attempt).
    pub available_at: DateTime<Utc>,
    /// Progress reported by the agent: done of total.
    #[schema(required = true)]
    pub progress: Option<(u64, u64)>,
    /// The last error (failed attempt, expiry); none once the part finished.
    #[schema(required = true)]
    pub error: Option<String>,
    /// Why no registered agent may take this waiting part (a view: listings
    /// of a run's parts fill it in, the store does not keep it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unassignable: Option<String>,
}

impl Part {
    /// The attempt to show: for a finished part, the one whose result finished it.
    pub fn shown_attempt(&self) -> u32 {
        match self.result_attempt {
            Some(decided) if self.state == State::Finished => decided,
            _ => self.attempt,
        }
    }
}
