//! The webhooks' API: subscriptions, dead letters and their re-sending.
//! Every route needs an admin token; no answer ever holds a secret but the
//! one a subscription's creation returns, once.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::ApiState;
use super::auth::Admin;
use super::error::{ApiError, ApiResult};
use crate::notify::delivery::ResendError;
use crate::notify::{DeadLetter, NewSubscription, Subscription};
use crate::protocol::WebhookCreated;

/// List the webhook subscriptions, with how far delivery got.
#[utoipa::path(
    get, path = "/webhooks", tag = "webhooks", operation_id = "list_webhooks",
    security(("adminToken" = [])),
    responses((status = 200, description = "The subscriptions", body = Vec<Subscription>)),
)]
pub async fn list(State(state): State<ApiState>, _: Admin) -> ApiResult<Json<Vec<Subscription>>> {
    Ok(Json(state.webhooks.outbox.subscriptions().await?))
}

/// Subscribe a URL on an allowed host to event kinds; answers the signing secret once.
#[utoipa::path(
    post, path = "/webhooks", tag = "webhooks", operation_id = "create_webhook",
    security(("adminToken" = [])), request_body = NewSubscription,
    responses((status = 201, description = "Subscribed", body = WebhookCreated)),
)]
pub async fn create(
    State(state): State<ApiState>, _: Admin,
    body: Result<Json<NewSubscription>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<WebhookCreated>)> {
    let Json(new) = body?;
    let kinds = new
        .check(&state.webhooks.allow)
        .map_err(|e| ApiError::bad_request("invalid_webhook", e))?;
    let secret = new.secret.clone().unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()));
    let now = state.scheduler.now();
    let subscription =
        state.webhooks.outbox.create_subscription(&new.url, &kinds, &secret, now).await?;
    Ok((StatusCode::CREATED, Json(WebhookCreated { subscription, secret })))
}

/// Delete a subscription and its dead letters.
#[utoipa::path(
    delete, path = "/webhooks/{id}", tag = "webhooks", operation_id = "delete_webhook",
    security(("adminToken" = [])),
    params(("id" = i64, Path, description = "The subscription's id")),
    responses((status = 204, description = "Deleted")),
)]
pub async fn delete(
    State(state): State<ApiState>, _: Admin, Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    if state.webhooks.outbox.delete_subscription(id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("webhook subscription {id} not found")))
    }
}

/// The filter of a dead-letter listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Of this subscription only.
    subscription: Option<i64>,
}

/// List the events delivery gave up on.
#[utoipa::path(
    get, path = "/webhooks/dead-letters", tag = "webhooks", operation_id = "list_dead_letters",
    security(("adminToken" = [])), params(DeadLetterQuery),
    responses((status = 200, description = "The dead letters", body = Vec<DeadLetter>)),
)]
pub async fn dead_letters(
    State(state): State<ApiState>, _: Admin,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<DeadLetter>>> {
    let Query(query) = query?;
    Ok(Json(state.webhooks.outbox.dead_letters(query.subscription).await?))
}

/// Post a dead letter again now.
///
/// Forgotten once delivered; kept, and answered 502, when refused again.
#[utoipa::path(
    post, path = "/webhooks/{id}/dead-letters/{event}/resend", tag = "webhooks",
    operation_id = "resend_dead_letter", security(("adminToken" = [])),
    params(
        ("id" = i64, Path, description = "The subscription's id"),
        ("event" = i64, Path, description = "The outbox event's id"),
    ),
    responses((status = 204, description = "Delivered")),
)]
pub async fn resend(
    State(state): State<ApiState>, _: Admin, Path((id, event)): Path<(i64, i64)>,
) -> ApiResult<StatusCode> {
    match state.webhooks.deliverer.resend(id, event).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e @ ResendError::NotFound { .. }) => Err(ApiError::NotFound(e.to_string())),
        Err(ResendError::Refused(why)) => Err(ApiError::Upstream(why)),
        Err(ResendError::Store(e)) => Err(e.into()),
    }
}
