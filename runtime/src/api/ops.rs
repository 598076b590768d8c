//! Operations endpoints: liveness, readiness and metrics (the OpenAPI
//! document is [`super::openapi`]'s).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;
use super::error::{ApiError, ApiResult};
use crate::protocol::ErrorBody;
use crate::scheduler::targeting;

/// Liveness: the process answers.
#[utoipa::path(
    get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")),
)]
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: the database answers and the background sweep's passes complete.
///
/// Else 503: a load balancer should send agents elsewhere.
#[utoipa::path(
    get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "`ready`", body = String, content_type = "text/plain"),
        (status = 503, description = "The database does not answer, or the sweep's passes fail", body = ErrorBody),
    ),
)]
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

/// Metrics in Prometheus' text format.
#[utoipa::path(
    get, path = "/metrics", tag = "operations", security(()),
    responses(
        (status = 200, description = "The metrics", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ),
)]
pub async fn metrics(State(state): State<ApiState>) -> ApiResult<impl IntoResponse> {
    let store = state.scheduler.store();
    let runs = store.runs(None).await?;
    state.metrics.set_parts(&runs);
    let agents = store.agents().await?;
    state.metrics.agents.set(agents.len() as i64);
    state.metrics.agents_down.set(agents.iter().filter(|a| a.down_since.is_some()).count() as i64);
    // The runs and agents read above; only the parts of runs with waiting ones.
    let mut unassignable = 0;
    for run in runs.iter().filter(|r| r.parts.waiting + r.parts.suspended > 0) {
        let mut parts = store.parts(run.id).await?;
        targeting::explain_waiting(&agents, run, &mut parts);
        unassignable += parts.iter().filter(|p| p.unassignable.is_some()).count();
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

/// Fallback: an unknown route.
pub async fn not_found() -> impl IntoResponse {
    ApiError::NotFound("no such route: see /api/v1/openapi.json".into()).into_response()
}
