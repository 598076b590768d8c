//! The inventory's API: assets, their history, and each run's processing.
//! Every route needs an admin token.

use axum::Json;
use axum::extract::{Path, Query, State};

use std::convert::Infallible;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;

use super::ApiState;
use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use super::events;
use crate::inventory::view::MAX_PAGE;
use crate::inventory::{AssetQuery, Change, ChangeQuery, glpi};
use crate::protocol::{AssetDetail, AssetPage, ChangePage, ProcessingFailure};

/// `GET /api/v1/assets`: filtered (`kind`, `cidr`, `attr`, `seen_since`,
/// `not_seen_since`, `q`), one page at a time (`after`, `limit`).
pub async fn list_assets(
    State(state): State<ApiState>, _: Admin, Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<AssetPage>> {
    let query = AssetQuery::from_params(&params, state.scheduler.now()).map_err(invalid)?;
    let assets = state.inventory.assets(&query).await?;
    let next = next_page(&assets, query.limit, |a| a.id);
    Ok(Json(AssetPage { assets, next }))
}

/// `GET /api/v1/assets/{id}`: the asset with its sources, relations and history.
pub async fn show_asset(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<AssetDetail>> {
    let asset = state.inventory.asset(id).await?;
    Ok(Json(asset.ok_or_else(|| ApiError::NotFound(format!("asset {id} not found")))?))
}

/// `GET /api/v1/assets/{id}/glpi`: the asset as GLPI's native inventory
/// document, with its interfaces or VMs.
pub async fn asset_glpi(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    let detail = state.inventory.asset(id).await?;
    let detail = detail.ok_or_else(|| ApiError::NotFound(format!("asset {id} not found")))?;
    let mut related = Vec::new();
    for relation in detail.relations.iter().filter(|r| r.to_id == id) {
        if let Some(other) = state.inventory.asset(relation.from_id).await? {
            related.push(other.asset);
        }
    }
    let document = glpi::document(&detail.asset, &related).ok_or_else(|| {
        ApiError::bad_request(
            "no_glpi_form",
            format!(
                "asset {id} is a {}: GLPI documents are for network devices, hypervisors and \
                 discovered hosts (interfaces and VMs travel inside theirs)",
                detail.asset.kind
            ),
        )
    })?;
    Ok(Json(document))
}

/// `GET /api/v1/changes`: the inventory's changes (`asset`, `run`, `since`),
/// oldest first, one page at a time (`after`, `limit`).
pub async fn list_changes(
    State(state): State<ApiState>, _: Admin, Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<ChangePage>> {
    let query = ChangeQuery::from_params(&params, state.scheduler.now()).map_err(invalid)?;
    let changes = state.inventory.changes(&query).await?;
    let next = next_page(&changes, query.limit, |c| c.id);
    Ok(Json(ChangePage { changes, next }))
}

/// `GET /api/v1/changes/stream?after=ID`: the inventory's changes as
/// server-sent events (`asset.<kind>`), from after change `ID` (default: only
/// new ones; `Last-Event-ID` too), so a client that reconnects misses none.
pub async fn stream_changes(
    State(state): State<ApiState>, _: Admin, headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let asked = params.iter().find(|(name, _)| name == "after").map(|(_, v)| v.as_str());
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let after = match asked.or(last_event_id) {
        Some(text) => {
            text.parse().map_err(|_| invalid(format!("after: {text:?} is not a change id")))?
        }
        None => newest_change(&state).await?,
    };
    let inventory = state.inventory.clone();
    let changes = events::polled(
        after,
        move |after| {
            let inventory = inventory.clone();
            async move {
                let query = ChangeQuery { after, limit: MAX_PAGE, ..ChangeQuery::default() };
                inventory.changes(&query).await
            }
        },
        |change: &Change| (change.id, format!("asset.{}", change.kind.as_str())),
    );
    Ok(Sse::new(changes).keep_alive(KeepAlive::default()))
}

/// The id of the newest change (0 when there is none).
async fn newest_change(state: &ApiState) -> ApiResult<i64> {
    let mut newest = 0;
    loop {
        let query = ChangeQuery { after: newest, limit: MAX_PAGE, ..ChangeQuery::default() };
        match state.inventory.changes(&query).await?.last() {
            Some(change) => newest = change.id,
            None => return Ok(newest),
        }
    }
}

/// `GET /api/v1/runs/{run}/processing`: the run's results whose stage failed.
pub async fn processing_failures(
    State(state): State<ApiState>, _: Admin, Path(run_id): Path<i64>,
) -> ApiResult<Json<Vec<ProcessingFailure>>> {
    state.scheduler.store().existing_run(run_id).await?;
    let failures = state.inventory.processing_failures(run_id).await?;
    Ok(Json(
        failures
            .into_iter()
            .map(|(part_id, attempt, reason)| ProcessingFailure { part_id, attempt, reason })
            .collect(),
    ))
}

/// `POST /api/v1/runs/{run}/reprocess`: the run's failed processing waits
/// again; answers how many results.
pub async fn reprocess(
    State(state): State<ApiState>, _: Admin, Path(run_id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    state.scheduler.store().existing_run(run_id).await?;
    let retried = state.inventory.retry_processing(run_id).await?;
    Ok(Json(serde_json::json!({ "retried": retried })))
}

fn invalid(reason: String) -> ApiError {
    ApiError::bad_request("invalid_query", reason)
}

/// The cursor of the next page: the last id of a full page.
fn next_page<T>(page: &[T], limit: u32, id: impl Fn(&T) -> i64) -> Option<i64> {
    page.last().filter(|_| page.len() == limit as usize).map(id)
}
