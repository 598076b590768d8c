//! Leases handed to agents, and what agents send back: heartbeats, progress and
//! results.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ExecMode, NewPart, TaskGrants};

/// A lease: the part an agent now owns, with everything needed to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lease {
    /// The part.
    pub part_id: i64,
    /// Its run.
    pub run_id: i64,
    /// The task.
    pub task_id: i64,
    /// The fencing token: the result must name it.
    pub attempt: u32,
    /// When the lease ends unless a heartbeat extends it.
    pub expires_at: DateTime<Utc>,
    /// The plugin name.
    pub plugin: String,
    /// The plugin module to execute.
    pub plugin_sha256: String,
    /// Task parameters (JSON).
    pub params: serde_json::Value,
    /// Task secrets (JSON). Only ever sent to the owning agent.
    pub secrets: serde_json::Value,
    /// The part as `split` made it.
    pub part: NewPart,
    /// Execution deadline in milliseconds.
    pub timeout_ms: u64,
    /// Pooled or dedicated.
    pub mode: ExecMode,
    /// Capabilities granted beyond the part's targets.
    pub grants: TaskGrants,
}

/// When a lease given or extended at `now` for `ttl_ms` ends; the end of time
/// rather than a panic for a lifetime no date can hold.
pub fn lease_expiry(now: DateTime<Utc>, ttl_ms: i64) -> DateTime<Utc> {
    chrono::TimeDelta::try_milliseconds(ttl_ms)
        .and_then(|ttl| now.checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Lease {
    /// The lease as the agent names it in heartbeats and results.
    pub fn lease_ref(&self) -> LeaseRef {
        LeaseRef { part_id: self.part_id, attempt: self.attempt }
    }
}

/// A lease as an agent names it: part and attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseRef {
    /// The part.
    pub part_id: i64,
    /// The attempt.
    pub attempt: u32,
}

/// Progress of a leased part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProgressReport {
    /// The part.
    pub part_id: i64,
    /// The attempt (lease) it belongs to.
    pub attempt: u32,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

impl ProgressReport {
    /// The lease it reports on.
    pub fn lease_ref(&self) -> LeaseRef {
        LeaseRef { part_id: self.part_id, attempt: self.attempt }
    }

    /// The units done and in all, as stored (bounded to `i64`).
    pub fn stored(&self) -> (i64, i64) {
        let bound = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        (bound(self.done), bound(self.total))
    }
}

/// How an execution ended, as the agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    /// The plugin returned its output.
    Finished,
    /// The plugin returned an error, trapped or exceeded a limit.
    Failed,
    /// The fuel budget or the deadline ended it.
    Timeout,
    /// It was canceled on the agent.
    Canceled,
}

impl ResultStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Finished => "finished",
            ResultStatus::Failed => "failed",
            ResultStatus::Timeout => "timeout",
            ResultStatus::Canceled => "canceled",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "finished" => Some(ResultStatus::Finished),
            "failed" => Some(ResultStatus::Failed),
            "timeout" => Some(ResultStatus::Timeout),
            "canceled" => Some(ResultStatus::Canceled),
            _ => None,
        }
    }
}

/// A result sent by an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Submission {
    /// The part.
    pub part_id: i64,
    /// The attempt it ran (the lease's fencing token).
    pub attempt: u32,
    /// How it ended.
    pub status: ResultStatus,
    /// The plugin's output (JSON), when finished.
    #[serde(default)]
    pub output: Option<serde_json::Value>,
    /// Why it did not finish.
    #[serde(default)]
    pub error: Option<String>,
    /// Records the plugin emitted, in order.
    #[serde(default)]
    pub emitted: Vec<serde_json::Value>,
    /// Log lines of the execution.
    #[serde(default)]
    pub logs: Vec<serde_json::Value>,
    /// When the execution started on the agent.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// How long it ran, in milliseconds.
    #[serde(default)]
    pub duration_ms: u64,
}

/// What the store did with a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResultAck {
    /// Applied to the current attempt: the part finished, or will be retried, or failed.
    Applied,
    /// A late result accepted: the part finished; a newer lease was revoked.
    AcceptedLate,
    /// A result of this attempt was stored already: nothing stored, nothing changed.
    Duplicate,
    /// Recorded, not applied: kept for the record and changed nothing (a late
    /// failure, a canceled run, a part another result finished first).
    Recorded,
}

impl ResultAck {
    /// What happened to the result, in the words an agent's log shows.
    pub fn describe(self) -> &'static str {
        match self {
            ResultAck::Applied => "result applied",
            ResultAck::AcceptedLate => "late result accepted: the part finished with it",
            ResultAck::Duplicate => "result already stored: nothing changed",
            ResultAck::Recorded => "result recorded, not applied: the part ended otherwise",
        }
    }
}

/// A stored result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredResult {
    /// Its run.
    pub run_id: i64,
    /// The agent that sent it.
    pub agent: String,
    /// What the agent sent (part and attempt included).
    #[serde(flatten)]
    pub submission: Submission,
    /// Whether it changed the part (`false`: recorded only).
    pub applied: bool,
    /// When the server received it.
    pub received_at: DateTime<Utc>,
}

/// What a heartbeat answers: which leases were extended, which to stop, and
/// which were lost but still worth finishing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatAck {
    /// Leases extended.
    pub extended: Vec<LeaseRef>,
    /// Leases no longer wanted (part finished, failed, canceled or
    /// suspended): stop working on them.
    pub revoked: Vec<LeaseRef>,
    /// Leases that expired while the part is still open (waiting again, or
    /// leased anew to another agent): the work may be finished and its result
    /// sent; a success is accepted once if it arrives before the part finishes.
    #[serde(default)]
    #[schema(required = true)]
    pub superseded: Vec<LeaseRef>,
}
