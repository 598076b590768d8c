//! Operations endpoints: liveness, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;
use super::error::{ApiError, ApiResult};
use crate::protocol::API_PREFIX;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: the database answers and the background sweep's passes
/// complete (else 503: a load balancer should send agents elsewhere).
pub async fn readyz(State(state): State<ApiState>) -> ApiResult<&'static str> {
    state.scheduler.store().events(i64::MAX, 1).await?;
    if state.sweep.is_failing() {
        return Err(ApiError::Unavailable(
            "the background sweep is failing (lease expiry and recurring runs are stopped): \
             see the daemon's log"
                .into(),
        ));
    }
    Ok("ready\n")
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<ApiState>) -> ApiResult<impl IntoResponse> {
    let store = state.scheduler.store();
    let runs = store.runs(None).await?;
    state.metrics.set_parts(&runs);
    let agents = store.agents().await?;
    state.metrics.agents.set(agents.len() as i64);
    state.metrics.agents_down.set(agents.iter().filter(|a| a.down_since.is_some()).count() as i64);
    let mut unassignable = 0;
    for run in runs.iter().filter(|r| r.parts.waiting + r.parts.suspended > 0) {
        unassignable += state.scheduler.unassignable_parts(run.id).await?.len();
    }
    state.metrics.parts_unassignable.set(unassignable as i64);
    state.metrics.assets_disappeared.set(state.inventory.disappeared_count().await? as i64);
    let dead = state.webhooks.outbox.dead_letter_count().await?;
    state.metrics.webhook_dead_letters.set(dead as i64);
    let waiting = state.scheduler.work_signal().waiting();
    state.metrics.long_polls.set(waiting as i64);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.metrics.render(),
    ))
}

/// Every route: method, path (OpenAPI template), who may call it, summary.
#[rustfmt::skip]
pub const ROUTES: &[(&str, &str, Auth, &str)] = &[
    ("post", "/agent/register", Auth::Enrollment, "Register an agent; returns its token"),
    ("post", "/agent/lease", Auth::Agent, "Lease a part (long-poll); 204 when there is none"),
    ("post", "/agent/heartbeat", Auth::Agent, "Extend the leases in progress; lists revoked ones"),
    ("post", "/agent/progress", Auth::Agent, "Report progress of a leased part"),
    ("post", "/agent/results", Auth::Agent, "Send the result of a leased part (names its attempt); with ?lease_next=true the answer also carries the agent's next lease, if any"),
    ("get", "/agent/modules/{sha256}", Auth::Agent, "Download a plugin module by sha256"),
    ("get", "/agent/artifacts/{sha256}", Auth::Agent, "Download an artifact by sha256 (streamed; verify the hash)"),
    ("post", "/artifacts", Auth::Admin, "Upload an artifact (body: the file, at most 512 MiB); answers {sha256, size, created}"),
    ("get", "/artifacts", Auth::Admin, "List stored artifacts"),
    ("post", "/plugins", Auth::Admin, "Upload a plugin component (body: .wasm bytes)"),
    ("get", "/plugins", Auth::Admin, "List plugins and versions"),
    ("post", "/plugins/{name}/{version}/retire", Auth::Admin, "Retire a plugin version: no new run uses it; 409 while a run that has not ended, or a task with no other version, uses it"),
    ("post", "/tasks", Auth::Admin, "Create a task"),
    ("get", "/tasks", Auth::Admin, "List tasks with their latest run"),
    ("get", "/tasks/{task}", Auth::Admin, "Show a task (by id or name)"),
    ("put", "/tasks/{task}", Auth::Admin, "Edit a task; runs already created keep their snapshot"),
    ("post", "/tasks/{task}/run", Auth::Admin, "Force a run above every priority"),
    ("get", "/tasks/{task}/chain", Auth::Admin, "The task it follows and those that follow it, each with its newest run"),
    ("get", "/tasks/{task}/results", Auth::Admin, "Results of the task's latest run"),
    ("get", "/runs", Auth::Admin, "List runs (?task= to filter)"),
    ("get", "/runs/{run}", Auth::Admin, "Show a run"),
    ("get", "/runs/{run}/parts", Auth::Admin, "Parts with owners, attempts, progress, errors"),
    ("get", "/runs/{run}/results", Auth::Admin, "Results of a run"),
    ("post", "/runs/{run}/suspend", Auth::Admin, "Suspend a run"),
    ("post", "/runs/{run}/resume", Auth::Admin, "Resume a suspended run"),
    ("post", "/runs/{run}/cancel", Auth::Admin, "Cancel a run"),
    ("post", "/runs/{run}/rerun", Auth::Admin, "Re-run a run, or only its failed parts"),
    ("get", "/runs/{run}/processing", Auth::Admin, "The run's results whose processing (the plugin's stage) failed, with the reason"),
    ("post", "/runs/{run}/reprocess", Auth::Admin, "Process the run's failed results again"),
    ("get", "/assets", Auth::Admin, "List inventory assets (?kind= &cidr= &attr=name=value|name~text &seen_since= &not_seen_since= &q= &after= &limit=)"),
    ("get", "/assets/{id}", Auth::Admin, "An asset with its attributes' sources, relations and history"),
    ("get", "/assets/{id}/glpi", Auth::Admin, "The asset as GLPI's native inventory document (network devices, hypervisors, discovered hosts)"),
    ("get", "/changes/stream", Auth::Admin, "Inventory changes as server-sent events (?after=, Last-Event-ID)"),
    ("get", "/changes", Auth::Admin, "Inventory changes, oldest first (?asset= &run= &since= &after= &limit=)"),
    ("get", "/agents", Auth::Admin, "List agents (down_since: the monitor finds one down)"),
    ("get", "/webhooks", Auth::Admin, "List webhook subscriptions with how far delivery got"),
    ("post", "/webhooks", Auth::Admin, "Subscribe a URL on an allowed host to event kinds; answers the signing secret once"),
    ("delete", "/webhooks/{id}", Auth::Admin, "Delete a subscription and its dead letters"),
    ("get", "/webhooks/dead-letters", Auth::Admin, "Events delivery gave up on (?subscription=)"),
    ("post", "/webhooks/{id}/dead-letters/{event}/resend", Auth::Admin, "Post a dead letter again now; 502 when refused again"),
    ("get", "/events", Auth::Admin, "Server-sent events of every state change"),
    ("get", "/openapi.json", Auth::None, "This document"),
];

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No token.
    None,
    /// An admin token.
    Admin,
    /// An agent token.
    Agent,
    /// The enrollment secret.
    Enrollment,
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Result<Json<serde_json::Value>, ApiError> {
    let mut paths = serde_json::Map::new();
    for (method, path, auth, summary) in ROUTES {
        let security = match auth {
            Auth::None => serde_json::json!([]),
            Auth::Admin => serde_json::json!([{ "adminToken": [] }]),
            Auth::Agent => serde_json::json!([{ "agentToken": [] }]),
            Auth::Enrollment => serde_json::json!([{ "enrollmentSecret": [] }]),
        };
        let parameters: Vec<serde_json::Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| serde_json::json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let entry =
            paths.entry(format!("{API_PREFIX}{path}")).or_insert_with(|| serde_json::json!({}));
        entry[*method] = serde_json::json!({
            "summary": summary,
            "security": security,
            "parameters": parameters,
            "responses": {
                "2XX": { "description": "success" },
                "4XX": { "description": "refused: {\"error\": {\"code\", \"message\"}}" }
            }
        });
    }
    Ok(Json(serde_json::json!({
        "openapi": "3.1.0",
        "info": { "title": "jobstack", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": { "securitySchemes": {
            "adminToken": { "type": "http", "scheme": "bearer" },
            "agentToken": { "type": "http", "scheme": "bearer" },
            "enrollmentSecret": { "type": "http", "scheme": "bearer" }
        }}
    })))
}

/// Fallback: an unknown route.
pub async fn not_found() -> impl IntoResponse {
    ApiError::NotFound("no such route: see /api/v1/openapi.json".into()).into_response()
}
