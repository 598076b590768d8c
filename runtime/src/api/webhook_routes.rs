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

/// `GET /api/v1/webhooks`: every subscription, with how far its delivery got.
pub async fn list(State(state): State<ApiState>, _: Admin) -> ApiResult<Json<Vec<Subscription>>> {
    Ok(Json(state.webhooks.outbox.subscriptions().await?))
}

/// `POST /api/v1/webhooks`: subscribe a URL on an allowed host to event
/// kinds; answers the signing secret, once.
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

/// `DELETE /api/v1/webhooks/{id}`: unsubscribe (its dead letters go too).
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// Of this subscription only.
    subscription: Option<i64>,
}

/// `GET /api/v1/webhooks/dead-letters`: the events delivery gave up on.
pub async fn dead_letters(
    State(state): State<ApiState>, _: Admin,
    query: Result<Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<DeadLetter>>> {
    let Query(query) = query?;
    Ok(Json(state.webhooks.outbox.dead_letters(query.subscription).await?))
}

/// `POST /api/v1/webhooks/{id}/dead-letters/{event}/resend`: post it again
/// now; forgotten once delivered, kept (502) when refused again.
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
