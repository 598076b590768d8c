//! The event log: every change of state, in order, for listings, the SSE stream
//! and audits. Events never carry secrets.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::State;

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
    /// What happened, e.g. `state`, `leased`, `expired`, `result`, `created`.
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
