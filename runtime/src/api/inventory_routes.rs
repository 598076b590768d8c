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
use crate::protocol::{AssetDetail, AssetPage, ChangePage, ProcessingFailure, Reprocessed};

/// List inventory assets, filtered, one page at a time.
#[utoipa::path(
    get, path = "/assets", tag = "inventory", security(("adminToken" = [])),
    params(
        ("kind" = Option<String>, Query, description = "Assets of this kind, e.g. `host`"),
        ("cidr" = Option<String>, Query, description = "With an address in this network"),
        ("attr" = Option<Vec<String>>, Query, explode,
            description = "Attribute predicates (repeatable): `name=value`, `name~text`, `name^=text`, `name[]=value`"),
        ("seen_since" = Option<String>, Query, description = "Seen since: a time (RFC 3339) or a duration ago (`7d`)"),
        ("not_seen_since" = Option<String>, Query, description = "Not seen since: a time (RFC 3339) or a duration ago"),
        ("q" = Option<String>, Query, description = "Whose name or a key contains this text"),
        ("after" = Option<i64>, Query, description = "The cursor: after this asset id"),
        ("limit" = Option<u32>, Query, description = "At most this many (up to 1000)"),
    ),
    responses((status = 200, description = "A page of assets", body = AssetPage)),
)]
pub async fn list_assets(
    State(state): State<ApiState>, _: Admin, Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<AssetPage>> {
    let query = AssetQuery::from_params(&params, state.scheduler.now()).map_err(invalid)?;
    let assets = state.inventory.assets(&query).await?;
    let next = next_page(&assets, query.limit, |a| a.id);
    Ok(Json(AssetPage { assets, next }))
}

/// An asset with its attributes' sources, relations and history.
#[utoipa::path(
    get, path = "/assets/{id}", tag = "inventory", security(("adminToken" = [])),
    params(("id" = i64, Path, description = "The asset's id")),
    responses((status = 200, description = "The asset", body = AssetDetail)),
)]
pub async fn show_asset(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<Json<AssetDetail>> {
    let asset = state.inventory.asset(id).await?;
    Ok(Json(asset.ok_or_else(|| ApiError::NotFound(format!("asset {id} not found")))?))
}

/// The asset as GLPI's native inventory document, with its interfaces or VMs.
#[utoipa::path(
    get, path = "/assets/{id}/glpi", tag = "inventory", security(("adminToken" = [])),
    params(("id" = i64, Path, description = "The asset's id")),
    responses((status = 200, description = "GLPI's native inventory document (its own JSON Schema)", body = Object)),
)]
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

/// List inventory changes, oldest first, one page at a time.
#[utoipa::path(
    get, path = "/changes", tag = "inventory", security(("adminToken" = [])),
    params(
        ("asset" = Option<i64>, Query, description = "Of this asset"),
        ("run" = Option<i64>, Query, description = "Made by this run"),
        ("since" = Option<String>, Query, description = "Recorded since: a time (RFC 3339) or a duration ago (`1d`)"),
        ("after" = Option<i64>, Query, description = "The cursor: after this change id"),
        ("limit" = Option<u32>, Query, description = "At most this many (up to 1000)"),
    ),
    responses((status = 200, description = "A page of changes", body = ChangePage)),
)]
pub async fn list_changes(
    State(state): State<ApiState>, _: Admin, Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<ChangePage>> {
    let query = ChangeQuery::from_params(&params, state.scheduler.now()).map_err(invalid)?;
    let changes = state.inventory.changes(&query).await?;
    let next = next_page(&changes, query.limit, |c| c.id);
    Ok(Json(ChangePage { changes, next }))
}

/// Inventory changes as server-sent events.
///
/// One event per change (named `asset.<kind>`, data: a `Change`), from after
/// change `after` (default: only new ones; `Last-Event-ID` too), so a client
/// that reconnects misses none.
#[utoipa::path(
    get, path = "/changes/stream", tag = "inventory", security(("adminToken" = [])),
    params(
        ("after" = Option<i64>, Query, description = "Start after this change id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Start after this change id (reconnection)"),
    ),
    responses((status = 200, description = "The stream", body = String, content_type = "text/event-stream")),
)]
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

/// The run's results whose processing (the plugin's stage) failed, with the reason.
#[utoipa::path(
    get, path = "/runs/{run}/processing", tag = "inventory", security(("adminToken" = [])),
    params(("run" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "The failures", body = Vec<ProcessingFailure>)),
)]
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

/// Process the run's failed results again; answers how many.
#[utoipa::path(
    post, path = "/runs/{run}/reprocess", tag = "inventory", security(("adminToken" = [])),
    params(("run" = i64, Path, description = "The run's id")),
    responses((status = 200, description = "How many results wait again", body = Reprocessed)),
)]
pub async fn reprocess(
    State(state): State<ApiState>, _: Admin, Path(run_id): Path<i64>,
) -> ApiResult<Json<Reprocessed>> {
    state.scheduler.store().existing_run(run_id).await?;
    let retried = state.inventory.retry_processing(run_id).await?;
    Ok(Json(Reprocessed { retried }))
}

fn invalid(reason: String) -> ApiError {
    ApiError::bad_request("invalid_query", reason)
}

/// The cursor of the next page: the last id of a full page.
fn next_page<T>(page: &[T], limit: u32, id: impl Fn(&T) -> i64) -> Option<i64> {
    page.last().filter(|_| page.len() == limit as usize).map(id)
}
