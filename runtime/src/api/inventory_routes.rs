//! The inventory's API: assets, their history, and each run's processing.
//! Every route needs an admin token.

use axum::Json;
use axum::extract::{Path, Query, State};

use super::ApiState;
use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use crate::inventory::{AssetQuery, ChangeQuery};
use crate::protocol::{AssetDetail, AssetPage, ChangePage, ProcessingFailure};

/// `GET /api/v1/assets`: filtered (`kind`, `cidr`, `attr`, `seen_since`,
/// `not_seen_since`, `q`), one page at a time (`after`, `limit`).
pub async fn list_assets(
    State(state): State<ApiState>,
    _: Admin,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<AssetPage>> {
    let query = AssetQuery::from_params(&params, state.scheduler.now())
        .map_err(|e| ApiError::bad_request("invalid_query", e))?;
    let assets = state.inventory.assets(&query).await?;
    let next =
        (assets.len() == query.limit as usize).then(|| assets.last().map(|a| a.id)).flatten();
    Ok(Json(AssetPage { assets, next }))
}

/// `GET /api/v1/assets/{id}`: the asset with its sources, relations and history.
pub async fn show_asset(
    State(state): State<ApiState>,
    _: Admin,
    Path(id): Path<i64>,
) -> ApiResult<Json<AssetDetail>> {
    let asset = state.inventory.asset(id).await?;
    Ok(Json(asset.ok_or_else(|| ApiError::NotFound(format!("asset {id} not found")))?))
}

/// `GET /api/v1/changes`: the inventory's changes (`asset`, `run`, `since`),
/// oldest first, one page at a time (`after`, `limit`).
pub async fn list_changes(
    State(state): State<ApiState>,
    _: Admin,
    Query(params): Query<Vec<(String, String)>>,
) -> ApiResult<Json<ChangePage>> {
    let query = ChangeQuery::from_params(&params, state.scheduler.now())
        .map_err(|e| ApiError::bad_request("invalid_query", e))?;
    let changes = state.inventory.changes(&query).await?;
    let next =
        (changes.len() == query.limit as usize).then(|| changes.last().map(|c| c.id)).flatten();
    Ok(Json(ChangePage { changes, next }))
}

/// `GET /api/v1/runs/{run}/processing`: the run's results whose stage failed.
pub async fn processing_failures(
    State(state): State<ApiState>,
    _: Admin,
    Path(run_id): Path<i64>,
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
    State(state): State<ApiState>,
    _: Admin,
    Path(run_id): Path<i64>,
) -> ApiResult<Json<serde_json::Value>> {
    state.scheduler.store().existing_run(run_id).await?;
    let retried = state.inventory.retry_processing(run_id).await?;
    Ok(Json(serde_json::json!({ "retried": retried })))
}
