//! The port the feeder and the deliverer need of the durable state: the
//! [`OutboxStore`] trait, implemented by both backends in [`crate::store`].

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{EventKind, Subscription};
use crate::scheduler::Event;
use crate::scheduler::store::StoreResult;

/// How far the feeder read its sources, and the id the next outbox event gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedPosition {
    /// The last event of the event log read.
    pub events_after: i64,
    /// The last change of the inventory read.
    pub changes_after: i64,
    /// The id of the next outbox event.
    pub next_id: i64,
}

/// One event in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutboxEvent {
    /// Its id: the order of delivery, and the receiver's idempotency key.
    pub id: i64,
    /// Its kind.
    pub kind: EventKind,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The JSON delivered (signed as is).
    pub body: String,
}

/// An event a subscription gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The subscription.
    pub subscription_id: i64,
    /// The event.
    pub event: OutboxEvent,
    /// The attempts made.
    pub attempts: u32,
    /// Why the last one failed.
    pub error: String,
    /// When it was given up.
    pub at: DateTime<Utc>,
}

/// What one delivery pass of a subscription ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The new cursor: the last event delivered or dead-lettered.
    pub cursor: i64,
    /// Events delivered in the pass.
    pub delivered: u64,
    /// Failed attempts at the event after the cursor (0: none).
    pub attempts: u32,
    /// When to try it again.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// An event given up in the pass (the cursor is past it).
    pub dead: Option<DeadLetter>,
}

/// The webhooks' durable state. Each write is one transaction.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Every subscription, by id.
    async fn subscriptions(&self) -> StoreResult<Vec<Subscription>>;
    /// Store a subscription of `kinds` (its cursor at the outbox's end:
    /// it receives what happens from now on).
    async fn create_subscription(
        &self, url: &str, kinds: &[EventKind], secret: &str, now: DateTime<Utc>,
    ) -> StoreResult<Subscription>;
    /// Delete a subscription and its dead letters; whether it existed.
    async fn delete_subscription(&self, id: i64) -> StoreResult<bool>;
    /// A subscription's signing secret.
    async fn subscription_secret(&self, id: i64) -> StoreResult<Option<String>>;

    /// Where the feeder stopped.
    async fn feed_position(&self) -> StoreResult<FeedPosition>;
    /// The ids of the event log after `after`, in order, at most `limit`
    /// (to see which are committed without a hole before them).
    async fn event_ids(&self, after: i64, limit: u32) -> StoreResult<Vec<i64>>;
    /// The events in `(after, upto]` a subscriber may want (see
    /// [`EventKind::of_event`]), in order.
    async fn notable_events(&self, after: i64, upto: i64) -> StoreResult<Vec<Event>>;
    /// The ends of the event log and of the inventory's changes.
    async fn source_ends(&self) -> StoreResult<(i64, i64)>;
    /// Append `events` (numbered from `from.next_id`) and move the feed from
    /// `from` to `to`, if it is still at `from`; `false` (nothing written)
    /// when another feeder moved it first.
    async fn append(
        &self, from: FeedPosition, to: FeedPosition, events: &[OutboxEvent],
    ) -> StoreResult<bool>;
    /// Outbox events after `after`, in order, at most `limit`.
    async fn outbox(&self, after: i64, limit: u32) -> StoreResult<Vec<OutboxEvent>>;
    /// One outbox event.
    async fn outbox_event(&self, id: i64) -> StoreResult<Option<OutboxEvent>>;

    /// Take subscription `id` for delivery by `owner` until `until`, unless
    /// another daemon holds it; whether taken.
    async fn claim_subscription(
        &self, id: i64, owner: &str, until: DateTime<Utc>, now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Record a delivery pass of subscription `id` held by `owner`.
    async fn record_delivery(
        &self, id: i64, owner: &str, record: &DeliveryRecord,
    ) -> StoreResult<()>;
    /// Dead letters, of one subscription or all, oldest first.
    async fn dead_letters(&self, subscription: Option<i64>) -> StoreResult<Vec<DeadLetter>>;
    /// How many dead letters there are (without reading them).
    async fn dead_letter_count(&self) -> StoreResult<u64>;
    /// Forget a dead letter (re-sent); whether it existed.
    async fn remove_dead_letter(&self, subscription: i64, event: i64) -> StoreResult<bool>;
}
