//! The feeder: from the event log and the inventory's changes into the
//! outbox, in order, once.
//!
//! Each feed reads from the stored position, keeps what a subscription
//! wants, and appends it with the new position in one transaction that
//! moves the position by compare-and-set ([`OutboxStore::append`]).
//!
//! # Holes in the event log
//!
//! PostgreSQL numbers events when they are inserted, so a transaction that
//! commits later may hold a smaller id than one already visible, and a
//! rolled-back one leaves a hole for good. The feeder therefore reads only
//! up to the first hole, and steps over a hole once it has stayed open for
//! [`HOLE_WAIT`] (far longer than any of the stores' transactions). SQLite's
//! single writer numbers events in commit order, without holes.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use super::{EventKind, FeedPosition, OutboxEvent, OutboxStore};
use crate::inventory::view::MAX_PAGE;
use crate::inventory::{Change, ChangeQuery, InventoryReads};
use crate::scheduler::store::{Store, StoreResult};
use crate::scheduler::{Clock, Event};

/// Event ids looked at per feed.
const FEED_BATCH: u32 = 5_000;

/// How long a hole in the event log is waited for before it is stepped over.
pub const HOLE_WAIT: TimeDelta = TimeDelta::seconds(10);

/// The feeder (one per daemon; the position's compare-and-set keeps two
/// daemons from feeding the same events).
pub struct Feeder {
    store: Arc<dyn Store>,
    inventory: Arc<dyn InventoryReads>,
    outbox: Arc<dyn OutboxStore>,
    clock: Arc<dyn Clock>,
    holes: HoleWatch,
}

/// The first missing id of the event log, and when it was first missed.
#[derive(Debug, Default)]
struct HoleWatch {
    hole: Option<(i64, DateTime<Utc>)>,
}

/// What one feed did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fed {
    /// Outbox events appended.
    pub appended: usize,
    /// Whether a source had more than one feed reads (feed again at once).
    pub more: bool,
}

impl Feeder {
    /// A feeder from `store`'s event log and `inventory`'s changes into `outbox`.
    pub fn new(
        store: Arc<dyn Store>, inventory: Arc<dyn InventoryReads>, outbox: Arc<dyn OutboxStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, inventory, outbox, clock, holes: HoleWatch::default() }
    }

    /// One feed.
    pub async fn feed(&mut self) -> StoreResult<Fed> {
        let from = self.outbox.feed_position().await?;
        let wanted: BTreeSet<EventKind> =
            self.outbox.subscriptions().await?.into_iter().flat_map(|s| s.events).collect();
        if wanted.is_empty() {
            // Nobody listens: what happened so far is nobody's.
            let (events_end, changes_end) = self.outbox.source_ends().await?;
            let to = FeedPosition {
                events_after: events_end.max(from.events_after),
                changes_after: changes_end.max(from.changes_after),
                ..from
            };
            if to != from {
                self.outbox.append(from, to, &[]).await?;
            }
            return Ok(Fed::default());
        }
        let ids = self.outbox.event_ids(from.events_after, FEED_BATCH).await?;
        let upto = self.holes.committed_upto(from.events_after, &ids, self.clock.now());
        let events = self.outbox.notable_events(from.events_after, upto).await?;
        let query =
            ChangeQuery { after: from.changes_after, limit: MAX_PAGE, ..ChangeQuery::default() };
        let changes = self.inventory.changes(&query).await?;

        let mut appended = Vec::new();
        let mut next_id = from.next_id;
        for event in &events {
            let Some(kind) = EventKind::of_event(event).filter(|k| wanted.contains(k)) else {
                continue;
            };
            let data = self.event_data(kind, event).await?;
            appended.push(outbox_event(next_id, kind, event.at, data));
            next_id += 1;
        }
        for change in &changes {
            let kind = EventKind::of_change(change);
            if wanted.contains(&kind) {
                appended.push(outbox_event(next_id, kind, change.at, change_data(change)));
                next_id += 1;
            }
        }
        let to = FeedPosition {
            events_after: upto,
            changes_after: changes.last().map_or(from.changes_after, |c| c.id),
            next_id,
        };
        let more = ids.len() == FEED_BATCH as usize || changes.len() == MAX_PAGE as usize;
        if to == from || !self.outbox.append(from, to, &appended).await? {
            return Ok(Fed { appended: 0, more });
        }
        Ok(Fed { appended: appended.len(), more })
    }
}

impl HoleWatch {
    /// The last id of `ids` (read after `after`) before the first hole that
    /// is not yet old enough to step over at `now`.
    fn committed_upto(&mut self, after: i64, ids: &[i64], now: DateTime<Utc>) -> i64 {
        let mut upto = after;
        for &id in ids {
            if id != upto + 1 {
                let missing = upto + 1;
                match self.hole {
                    Some((hole, since)) if hole == missing && now - since >= HOLE_WAIT => {
                        tracing::warn!(
                            from = missing,
                            to = id - 1,
                            "event ids never committed; stepped over"
                        );
                    }
                    Some((hole, _)) if hole == missing => return upto,
                    _ => {
                        self.hole = Some((missing, now));
                        return upto;
                    }
                }
            }
            upto = id;
        }
        if self.hole.is_some_and(|(hole, _)| hole <= upto) {
            self.hole = None;
        }
        upto
    }
}

impl Feeder {
    /// What a subscriber is told of a log entry: the run, part, agent or
    /// plugin it concerns (never a secret: runs are read without theirs).
    async fn event_data(&self, kind: EventKind, event: &Event) -> StoreResult<Value> {
        Ok(match kind {
            EventKind::RunFinished | EventKind::RunFailed => {
                match self.store.run(event.entity_id).await? {
                    Some(run) => json!({
                        "run_id": run.id,
                        "task_id": run.task_id,
                        "task": run.spec.name,
                        "plugin": run.spec.plugin,
                        "state": run.state,
                        "cause": run.cause,
                        "caused_by": run.caused_by,
                        "parts": run.parts,
                        "error": run.error,
                    }),
                    None => json!({ "run_id": event.entity_id }),
                }
            }
            EventKind::PartFailed => match self.store.part(event.entity_id).await? {
                Some(part) => json!({
                    "part_id": part.id,
                    "run_id": part.run_id,
                    "label": part.label,
                    "attempt": part.attempt,
                    "error": part.error,
                }),
                None => json!({ "part_id": event.entity_id }),
            },
            EventKind::AgentDown | EventKind::AgentUp => {
                json!({ "agent_id": event.entity_id, "name": event.detail.get("name") })
            }
            _ => json!({ "id": event.entity_id, "detail": event.detail }),
        })
    }
}

/// What a subscriber is told of a change of the inventory.
fn change_data(change: &Change) -> Value {
    json!({
        "asset_id": change.asset_id,
        "change": change.kind.as_str(),
        "subject": change.subject,
        "old": change.old,
        "new": change.new,
        "run_id": change.run_id,
    })
}

/// An outbox event with its body: `{"id", "kind", "at", "data"}`.
fn outbox_event(id: i64, kind: EventKind, at: DateTime<Utc>, data: Value) -> OutboxEvent {
    let body = json!({ "id": id, "kind": kind, "at": at, "data": data }).to_string();
    OutboxEvent { id, kind, at, body }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feeder_waits_at_a_hole_then_steps_over_it() {
        let start = Utc::now();
        let at = |s: i64| start + TimeDelta::seconds(s);
        let mut holes = HoleWatch::default();
        assert_eq!(holes.committed_upto(10, &[11, 12, 13], at(0)), 13);
        assert_eq!(holes.committed_upto(10, &[11, 13, 14], at(0)), 11, "12 may still commit");
        assert_eq!(holes.committed_upto(11, &[13, 14], at(5)), 11);
        assert_eq!(holes.committed_upto(11, &[12, 13, 14], at(6)), 14, "12 came");
        assert_eq!(holes.committed_upto(14, &[16], at(7)), 14);
        assert_eq!(holes.committed_upto(14, &[16, 17], at(18)), 17, "15 never came");
        assert!(holes.hole.is_none());
    }
}
