//! The protocol of the REST API (`/api/v1`): its routes and JSON bodies,
//! shared by the daemon's API ([`crate::api`]), the agent, the HTTP client and
//! the admin CLI so that they cannot disagree. Plain data only: it depends on
//! none of them.
//!
//! # Routes
//!
//! Agent API (header `Authorization: Bearer <agent token>`, except register,
//! which takes the enrollment secret):
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `POST /api/v1/agent/register` | [`AgentRegistration`] | [`Registered`] |
//! | `POST /api/v1/agent/lease` | [`LeaseRequest`] | [`Lease`] (200) or nothing (204) |
//! | `POST /api/v1/agent/heartbeat` | [`HeartbeatRequest`] | [`HeartbeatAck`] |
//! | `POST /api/v1/agent/progress` | [`ProgressReport`] | 204 |
//! | `POST /api/v1/agent/results[?lease_next=true]` | [`Submission`] | [`ResultAnswer`] (with the next [`Lease`] if asked for and there is one) |
//! | `GET /api/v1/agent/modules/{sha256}` | | the module (`application/wasm`) |
//! | `GET /api/v1/agent/artifacts/{sha256}` | | the artifact (`application/octet-stream`) |
//!
//! Admin API (header `Authorization: Bearer <admin token>`):
//!
//! | method and path | body | answer |
//! | --- | --- | --- |
//! | `POST /api/v1/plugins` | the `.wasm` bytes | [`PluginUploaded`] |
//! | `GET /api/v1/plugins` | | `[PluginRecord]` |
//! | `POST /api/v1/artifacts` | the file's bytes | [`ArtifactInfo`] (201, or 200 if already stored) |
//! | `GET /api/v1/artifacts` | | `[ArtifactInfo]` |
//! | `POST /api/v1/tasks` | [`TaskInput`] | [`Task`] (201) |
//! | `GET /api/v1/tasks` | | `[TaskView]` |
//! | `GET /api/v1/tasks/{id or name}` | | [`TaskView`] |
//! | `PUT /api/v1/tasks/{id or name}` | [`TaskInput`] | [`Task`] |
//! | `POST /api/v1/tasks/{id or name}/run` | | [`Run`] (force-run) |
//! | `GET /api/v1/tasks/{id or name}/results` | | [`RunResults`] of the latest run |
//! | `GET /api/v1/runs?task={id}` | | `[Run]` |
//! | `GET /api/v1/runs/{id}` | | [`Run`] |
//! | `GET /api/v1/runs/{id}/parts` | | `[Part]` |
//! | `GET /api/v1/runs/{id}/results` | | [`RunResults`] |
//! | `POST /api/v1/runs/{id}/suspend`, `/resume`, `/cancel` | | [`Run`] |
//! | `POST /api/v1/runs/{id}/rerun` | [`RerunRequest`] | [`Run`] |
//! | `GET /api/v1/runs/{id}/processing` | | `[ProcessingFailure]` |
//! | `POST /api/v1/runs/{id}/reprocess` | | [`Reprocessed`] |
//! | `GET /api/v1/assets?kind=&cidr=&attr=&seen_since=&not_seen_since=&q=&after=&limit=` | | [`AssetPage`] |
//! | `GET /api/v1/assets/{id}` | | [`AssetDetail`] |
//! | `GET /api/v1/assets/{id}/glpi` | | GLPI's native inventory document |
//! | `GET /api/v1/changes?asset=&run=&since=&after=&limit=` | | [`ChangePage`] |
//! | `GET /api/v1/changes/stream?after={id}` | | server-sent events, one [`Change`] each |
//! | `GET /api/v1/agents` | | `[Agent]` |
//! | `GET /api/v1/events?after={id}` | | server-sent events, one [`Event`] each |
//!
//! Operations (no token): `GET /healthz`, `GET /readyz`, `GET /metrics`,
//! `GET /api/v1/openapi.json`. The management UI's static files (no token, no
//! data): `GET /` and `GET /ui/{file}` ([`crate::web`]).
//!
//! Errors are `{"error": {"code": "...", "message": "..."}}` ([`ErrorBody`]).

use serde::{Deserialize, Serialize};

pub use crate::artifacts::ArtifactInfo;
pub use crate::inventory::{Asset, AssetDetail, Change};
pub use crate::scheduler::store::PluginRecord;
pub use crate::scheduler::{
    Agent, AgentRegistration, Event, HeartbeatAck, Lease, LeaseRef, Part, ProgressReport,
    ResultAck, Run, StoredResult, Submission, Task, TaskSpec,
};

/// The API's version prefix.
pub const API_PREFIX: &str = "/api/v1";

/// What registration answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Registered {
    /// The agent's id.
    pub agent_id: i64,
    /// The agent's own token for every later call. Shown once; the daemon keeps
    /// only its hash.
    pub token: String,
    /// How often the agent should heartbeat while it works, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// The longest long-poll the daemon holds, in milliseconds.
    pub max_lease_wait_ms: u64,
}

/// A lease request: wait up to `wait_ms` for a part (long-poll).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LeaseRequest {
    /// How long to wait for work before answering 204, in milliseconds
    /// (capped by the daemon).
    #[serde(default)]
    pub wait_ms: u64,
}

/// A heartbeat: the leases the agent still works on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeartbeatRequest {
    /// Leases in progress.
    #[serde(default)]
    pub leases: Vec<LeaseRef>,
}

/// The query of `POST /api/v1/agent/results`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
pub struct ResultQuery {
    /// Once the result is applied, lease this agent's next part (without
    /// waiting) and answer it with the acknowledgement: one round trip, and
    /// on SQLite one flush, where a lease request would add another.
    #[serde(default)]
    pub lease_next: bool,
}

/// What a result answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultAnswer {
    /// What the daemon did with it; every variant means "delivered, drop it
    /// from the spool".
    pub ack: ResultAck,
    /// The agent's next part, when asked for with `lease_next` and there was
    /// one. The agent owns it as if it had come from `/agent/lease`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
}

/// What a plugin upload answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginUploaded {
    /// The stored record (sha256, name, version, manifest).
    #[serde(flatten)]
    pub plugin: PluginRecord,
    /// `false` when the same bytes were uploaded before (not an error).
    pub created: bool,
}

/// The body of task create and edit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskInput {
    /// The definition.
    pub task: TaskSpec,
    /// Secrets (JSON object). On edit, absent keeps the stored ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<serde_json::Value>,
}

/// A task as listed: the task and its latest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskView {
    /// The task (secrets never included).
    #[serde(flatten)]
    pub task: Task,
    /// Its newest run, if any.
    #[schema(required = true)]
    pub latest_run: Option<Run>,
}

/// A task's place in its chain: the task it follows and those that follow
/// it, each with its newest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainView {
    /// The task it follows.
    #[schema(required = true)]
    pub upstream: Option<TaskView>,
    /// The tasks that follow it.
    pub downstream: Vec<TaskView>,
}

/// A new webhook subscription, with its signing secret (shown this once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookCreated {
    /// The subscription.
    pub subscription: crate::notify::Subscription,
    /// The secret its deliveries are signed with.
    pub secret: String,
}

/// A re-run request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RerunRequest {
    /// Only the failed and canceled parts.
    #[serde(default)]
    pub failed_only: bool,
}

/// The results of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunResults {
    /// The run.
    pub run: Run,
    /// Every result received, in part order then attempt; `applied` says which
    /// ones count.
    pub results: Vec<StoredResult>,
}

/// A page of assets, and the cursor of the next one (`after=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssetPage {
    /// The assets, by id.
    pub assets: Vec<Asset>,
    /// Set when the page is full: ask again with `after=` this.
    #[schema(required = true)]
    pub next: Option<i64>,
}

/// A page of inventory changes, and the cursor of the next one (`after=`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangePage {
    /// The changes, in the order they were recorded.
    pub changes: Vec<Change>,
    /// Set when the page is full: ask again with `after=` this.
    #[schema(required = true)]
    pub next: Option<i64>,
}

/// A run's results whose processing (its plugin's stage) failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessingFailure {
    /// The part.
    pub part_id: i64,
    /// The attempt.
    pub attempt: u32,
    /// Why.
    pub reason: String,
}

/// What reprocessing a run answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reprocessed {
    /// How many results are processed again.
    pub retried: u64,
}

/// The error body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error: a stable code for programs and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, e.g. `invalid_params`, `not_found`, `unauthorized`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}
