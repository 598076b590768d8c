//! `GET /api/v1/events`: the event log as server-sent events. Each SSE message
//! is one [`Event`](crate::scheduler::Event) with its id, so a client that
//! reconnects with `?after=<last id>` (or `Last-Event-ID`) misses nothing.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

use super::ApiState;
use super::auth::Admin;
use super::error::ApiResult;

/// How often the stream looks for new events.
const POLL: Duration = Duration::from_millis(250);

/// Events read per look.
const BATCH: u32 = 500;

/// Query of the events stream.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this event id (default: only new events).
    after: Option<i64>,
}

/// Server-sent events of every state change.
///
/// One event per change (named `<entity>.<kind>`, data: an `Event`), from
/// after event `after` (default: only new ones; `Last-Event-ID` too).
#[utoipa::path(
    get, path = "/events", tag = "events", security(("adminToken" = [])),
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Start after this event id (reconnection)"),
    ),
    responses((status = 200, description = "The stream", body = String, content_type = "text/event-stream")),
)]
pub async fn stream_events(
    State(state): State<ApiState>, _: Admin, headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let Query(query) = query?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let after = match query.after.or(last_event_id) {
        Some(after) => after,
        // Only new events: start at the newest.
        None => {
            let mut newest = 0;
            loop {
                let batch = state.scheduler.store().events(newest, BATCH).await?;
                match batch.last() {
                    Some(e) => newest = e.id,
                    None => break,
                }
            }
            newest
        }
    };
    let store = state.scheduler.store().clone();
    let events = polled(
        after,
        move |after| {
            let store = store.clone();
            async move { store.events(after, BATCH).await }
        },
        |event: &crate::scheduler::Event| (event.id, format!("{}.{}", event.entity, event.kind)),
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// Server-sent events of what `fetch(after)` answers, each with its id and
/// name (`named`), oldest first; when nothing is new, it looks again every
/// [`POLL`].
pub(super) fn polled<T, E, F, Fut>(
    after: i64, fetch: F, named: fn(&T) -> (i64, String),
) -> impl Stream<Item = Result<SseEvent, Infallible>>
where
    T: serde::Serialize,
    E: std::fmt::Display,
    F: Fn(i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, E>>,
{
    stream::unfold((fetch, after, Vec::new()), move |(fetch, mut after, mut pending)| async move {
        loop {
            if let Some(item) = pending.pop() {
                let (id, name) = named(&item);
                let sse = SseEvent::default()
                    .id(id.to_string())
                    .event(name)
                    .json_data(&item)
                    .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"));
                return Some((Ok(sse), (fetch, after, pending)));
            }
            match fetch(after).await {
                Ok(batch) if !batch.is_empty() => {
                    after = batch.last().map(|item| named(item).0).unwrap_or(after);
                    pending = batch.into_iter().rev().collect();
                }
                Ok(_) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: store unavailable");
                    tokio::time::sleep(POLL * 4).await;
                }
            }
        }
    })
}
