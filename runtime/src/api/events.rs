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
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Start after this event id (default: only new events).
    after: Option<i64>,
}

/// The stream.
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
    let events =
        stream::unfold((store, after, Vec::new()), |(store, mut after, mut pending)| async move {
            loop {
                if let Some(event) = pending.pop() {
                    let event: crate::scheduler::Event = event;
                    let sse = SseEvent::default()
                        .id(event.id.to_string())
                        .event(format!("{}.{}", event.entity, event.kind))
                        .json_data(&event)
                        .unwrap_or_else(|_| SseEvent::default().comment("unserializable event"));
                    return Some((Ok(sse), (store, after, pending)));
                }
                match store.events(after, BATCH).await {
                    Ok(batch) if !batch.is_empty() => {
                        after = batch.last().map(|e| e.id).unwrap_or(after);
                        pending = batch.into_iter().rev().collect();
                    }
                    Ok(_) => tokio::time::sleep(POLL).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream: store unavailable");
                        tokio::time::sleep(POLL * 4).await;
                    }
                }
            }
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
