//! The event log: every change of state, in order, for listings, the SSE stream
//! and audits. Events never carry secrets.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ResultStatus, State};

/// One change of state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Increasing id: read the log from where you stopped.
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What changed: `task`, `run`, `part`, `agent`, `plugin`.
    pub entity: String,
    /// Its id.
    pub entity_id: i64,
    /// What happened:
    /// - `state`: a run or part changed state (`from`, `to`). A part's detail
    ///   names the `agent` and `attempt` (a lease, a result with its `status`,
    ///   an expiry with `reason: "expired"`); a late success that finished
    ///   the part adds `late: true` and, when it revoked a newer lease,
    ///   `revoked: {agent, attempt}`;
    /// - `created`: a task or run; `updated`: a task;
    /// - `registered`, `down`, `up`: an agent;
    /// - `uploaded`, `retired`, `restored` (uploaded again once retired): a
    ///   plugin version.
    pub kind: String,
    /// The state before, for state changes.
    #[schema(required = true)]
    pub from: Option<State>,
    /// The state after, for state changes.
    #[schema(required = true)]
    pub to: Option<State>,
    /// Details (JSON), e.g. the agent and attempt of a lease.
    pub detail: serde_json::Value,
}

/// The detail of the state event of a part finished by a late result (every
/// store writes this shape): the result's agent and attempt, and the newer
/// lease it revoked, if any.
pub fn late_result_detail(
    agent: &str, attempt: u32, status: ResultStatus, revoked: Option<(&str, u32)>,
) -> serde_json::Value {
    let mut detail =
        serde_json::json!({ "agent": agent, "attempt": attempt, "status": status, "late": true });
    if let Some((holder, held)) = revoked {
        detail["revoked"] = serde_json::json!({ "agent": holder, "attempt": held });
    }
    detail
}
