//! The agent protocol: register, lease (long-poll), heartbeat, progress,
//! results, module download. An agent sees and reports only the parts it
//! leased: anything else is a 403 and changes nothing.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use super::ApiState;
use super::auth::{AgentCaller, Enrollment, hash_token, new_token};
use super::error::{ApiError, ApiResult};
use super::metrics::AckLabel;
use super::state::{LEASE_RECHECK, MAX_LEASE_WAIT};
use crate::engine::Sha256;
use crate::module_catalog::CatalogError;
use crate::protocol::{
    AgentRegistration, HeartbeatAck, HeartbeatRequest, Lease, LeaseRequest, ProgressReport,
    Registered, ResultAnswer, ResultQuery, Submission,
};
use crate::scheduler::LOCAL_AGENT_NAME;

/// The longest agent name: a host name is at most 253 characters.
const MAX_AGENT_NAME: usize = 253;

/// The most networks or accepted plugins one agent may declare: far above a
/// real host's, low enough that one registration cannot hold the writer.
const MAX_AGENT_LIST: usize = 1024;

/// The most execution slots of each kind one agent may declare.
const MAX_AGENT_SLOTS: u32 = 1024;

/// The most leases one heartbeat may name: an agent holds one per slot.
const MAX_HEARTBEAT_LEASES: usize = 2 * MAX_AGENT_SLOTS as usize;

/// Register an agent; answers its token (shown once).
#[utoipa::path(
    post, path = "/agent/register", tag = "agent", security(("enrollmentSecret" = [])),
    request_body = AgentRegistration,
    responses((status = 200, description = "Registered", body = Registered)),
)]
pub async fn register(
    State(state): State<ApiState>, _: Enrollment,
    body: Result<Json<AgentRegistration>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Registered>> {
    let Json(registration) = body?;
    let name = registration.name.trim();
    if name.is_empty() || name.len() > MAX_AGENT_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_agent",
            "agent name must be 1 to 253 printable characters",
        ));
    }
    let lists = registration.networks.len().max(registration.plugins.len());
    let slots = registration.pooled_slots.max(registration.dedicated_slots);
    if lists > MAX_AGENT_LIST || slots > MAX_AGENT_SLOTS {
        return Err(ApiError::bad_request(
            "invalid_agent",
            format!(
                "an agent declares at most {MAX_AGENT_LIST} networks and {MAX_AGENT_LIST} \
                 plugins, and at most {MAX_AGENT_SLOTS} slots of each kind"
            ),
        ));
    }
    if name == LOCAL_AGENT_NAME {
        return Err(ApiError::bad_request(
            "invalid_agent",
            format!("the agent name {LOCAL_AGENT_NAME:?} is reserved for the daemon's own agent"),
        ));
    }
    let token = new_token();
    let agent = state
        .scheduler
        .store()
        .register_agent(&registration, &hash_token(&token), state.scheduler.now())
        .await?;
    state.agents.forget_agent(agent.id);
    tracing::info!(agent = %agent.registration.name, id = agent.id, "agent registered");
    Ok(Json(Registered {
        agent_id: agent.id,
        token,
        heartbeat_interval_ms: state.scheduler.heartbeat_interval().as_millis() as u64,
        max_lease_wait_ms: MAX_LEASE_WAIT.as_millis() as u64,
    }))
}

/// Lease a part (long-poll).
///
/// A part (200) or, after waiting up to `wait_ms` for work, nothing (204).
/// New or forced work wakes the wait at once. The body may be empty.
#[utoipa::path(
    post, path = "/agent/lease", tag = "agent", security(("agentToken" = [])),
    request_body(content = Option<LeaseRequest>, description = "How long to wait; may be empty"),
    responses(
        (status = 200, description = "A part to run", body = Lease),
        (status = 204, description = "No work came within the wait"),
    ),
)]
pub async fn lease(
    State(state): State<ApiState>, AgentCaller(agent): AgentCaller, body: axum::body::Bytes,
) -> ApiResult<Response> {
    // Its only field has a default: no body is the default request.
    let request: LeaseRequest = if body.trim_ascii().is_empty() {
        LeaseRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("invalid lease request: {e}"))
        })?
    };
    let wait = Duration::from_millis(request.wait_ms).min(MAX_LEASE_WAIT);
    match state.scheduler.lease_waiting(&agent, wait, LEASE_RECHECK).await? {
        Some(lease) => {
            state.metrics.leases.inc();
            Ok(Json(lease).into_response())
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// Extend the leases in progress; lists the revoked and superseded ones.
#[utoipa::path(
    post, path = "/agent/heartbeat", tag = "agent", security(("agentToken" = [])),
    request_body = HeartbeatRequest,
    responses((status = 200, description = "What became of each lease", body = HeartbeatAck)),
)]
pub async fn heartbeat(
    State(state): State<ApiState>, AgentCaller(agent): AgentCaller,
    body: Result<Json<HeartbeatRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<HeartbeatAck>> {
    let Json(request) = body?;
    if request.leases.len() > MAX_HEARTBEAT_LEASES {
        return Err(ApiError::bad_request(
            "invalid_heartbeat",
            format!("a heartbeat names at most {MAX_HEARTBEAT_LEASES} leases (one per slot)"),
        ));
    }
    Ok(Json(state.scheduler.heartbeat(&agent, &request.leases).await?))
}

/// Report the progress of a leased part.
#[utoipa::path(
    post, path = "/agent/progress", tag = "agent", security(("agentToken" = [])),
    request_body = ProgressReport,
    responses((status = 204, description = "Recorded")),
)]
pub async fn progress(
    State(state): State<ApiState>, AgentCaller(agent): AgentCaller,
    body: Result<Json<ProgressReport>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<StatusCode> {
    let Json(report) = body?;
    state.scheduler.progress(&agent, &report).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send the result of a leased part (naming its attempt).
///
/// Applied under the fencing rule, durable before the answer; with
/// `?lease_next=true`, the answer carries the agent's next lease too, if any.
#[utoipa::path(
    post, path = "/agent/results", tag = "agent", operation_id = "send_result",
    security(("agentToken" = [])), params(ResultQuery), request_body = Submission,
    responses((status = 200, description = "Delivered", body = ResultAnswer)),
)]
pub async fn result(
    State(state): State<ApiState>, AgentCaller(agent): AgentCaller,
    query: Result<Query<ResultQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Json<Submission>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<ResultAnswer>> {
    let Query(query) = query?;
    let Json(submission) = body?;
    let answer = if query.lease_next {
        state.scheduler.submit_and_lease(&agent, &submission).await
    } else {
        state.scheduler.submit(&agent, &submission).await.map(|ack| (ack, None))
    };
    // A refused result is worth a line at the default level: an agent's work
    // was not taken (not its lease, or the store failed).
    let (ack, lease) = answer.inspect_err(|error| {
        tracing::warn!(
            agent = %agent.registration.name,
            part = submission.part_id,
            attempt = submission.attempt,
            %error,
            "result refused"
        );
    })?;
    if lease.is_some() {
        state.metrics.leases.inc();
    }
    let label = serde_json::to_value(ack)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    state.metrics.results.get_or_create(&AckLabel { ack: label }).inc();
    state.metrics.durations.observe(submission.duration_ms as f64 / 1000.0);
    tracing::info!(
        agent = %agent.registration.name,
        part = submission.part_id,
        attempt = submission.attempt,
        status = submission.status.as_str(),
        ?ack,
        "result"
    );
    Ok(Json(ResultAnswer { ack, lease }))
}

/// Download a plugin module by sha256.
#[utoipa::path(
    get, path = "/agent/modules/{sha256}", tag = "agent", operation_id = "download_module",
    security(("agentToken" = [])),
    params(("sha256" = String, Path, description = "The module's sha256 (64 hex digits)")),
    responses((status = 200, description = "The module", body = [u8], content_type = "application/wasm")),
)]
pub async fn module(
    State(state): State<ApiState>, AgentCaller(_agent): AgentCaller, Path(sha): Path<String>,
) -> ApiResult<Response> {
    let sha = Sha256::parse(&sha)
        .ok_or_else(|| ApiError::bad_request("invalid_sha256", "expected 64 hex digits"))?;
    // Only modules of uploaded plugins: the plugin record is written after
    // the bytes, so a module mid-upload is not served yet.
    let known = state.scheduler.store().plugin(sha.as_str()).await?.is_some();
    if !known {
        return Err(ApiError::NotFound(format!("module {sha} not found")));
    }
    let bytes = state.modules.bytes(&sha).await.map_err(|e| match e {
        CatalogError::NotFound(_) => ApiError::NotFound(e.to_string()),
        other => ApiError::Internal(format!("reading module {sha}: {other}")),
    })?;
    Ok(([(header::CONTENT_TYPE, "application/wasm")], Bytes::from(bytes)).into_response())
}
