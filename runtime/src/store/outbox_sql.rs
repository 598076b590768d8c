//! The webhooks' SQL, written once for both stores (`$n` placeholders, each
//! first used in order, read by rusqlite and sqlx alike). Reads run on each
//! store's read pool ([`super::outbox_store`]); each write is a [`Plan`] that
//! the backend runs in one transaction.

use chrono::{DateTime, Utc};

use super::inventory_sql::{Bind, Stmt};
use crate::notify::store::DeliveryRecord;
use crate::notify::{EventKind, FeedPosition, OutboxEvent};
use crate::store::ms;

/// Columns of a subscription, as listed.
pub const SUBSCRIPTION_COLUMNS: &str = "id, url, kinds, cursor, attempts, next_attempt_at, \
     last_error, delivered, created_at";

/// Where the feeder stopped, and the next outbox id.
pub const FEED_POSITION: &str = "SELECT events_after, changes_after, \
     (SELECT COALESCE(MAX(id), 0) + 1 FROM webhook_events) FROM webhook_feed WHERE id = 1";

/// The event log's ids after `$1`, at most `$2`.
pub const EVENT_IDS: &str = "SELECT id FROM events WHERE id > $1 ORDER BY id LIMIT $2";

/// The entries of the event log a subscriber may want, in `($1, $2]`: the
/// ends of runs and parts, the agents' and plugins' events
/// ([`EventKind::of_event`] decides).
pub const NOTABLE_EVENTS: &str = "WHERE id > $1 AND id <= $2 AND ((entity IN ('run', 'part') \
     AND to_state IN ('finished', 'failed')) OR entity IN ('agent', 'plugin')) ORDER BY id";

/// The ends of the event log and of the inventory's changes.
pub const SOURCE_ENDS: &str = "SELECT COALESCE((SELECT MAX(id) FROM events), 0), \
     COALESCE((SELECT MAX(id) FROM asset_changes), 0)";

/// Outbox events after `$1`, at most `$2`.
pub const OUTBOX: &str = "SELECT id, kind, at, body FROM webhook_events WHERE id > $1 \
     ORDER BY id LIMIT $2";

/// One outbox event.
pub const OUTBOX_EVENT: &str = "SELECT id, kind, at, body FROM webhook_events WHERE id = $1";

/// Dead letters, of subscription `$1` or all.
pub const DEAD_LETTERS: &str = "SELECT d.subscription_id, d.attempts, d.error, d.at AS dead_at, \
     e.id, e.kind, e.at, e.body FROM webhook_dead_letters d \
     JOIN webhook_events e ON e.id = d.event_id \
     WHERE CAST($1 AS BIGINT) IS NULL OR d.subscription_id = $1 ORDER BY d.at, d.event_id";

/// A write, as the statements of one transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The statements, in order.
    pub stmts: Vec<Stmt>,
    /// The first statement is a compare-and-set: when it changes no row,
    /// nothing is written.
    pub guarded: bool,
    /// The last statement returns one id (`RETURNING id`).
    pub returns_id: bool,
}

/// What a [`Plan`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Done {
    /// Whether it was written (a guarded plan whose guard held, or any other).
    pub written: bool,
    /// The rows the last statement changed, or the id it returned.
    pub last: i64,
}

fn stmt(sql: &'static str, binds: Vec<Bind>) -> Stmt {
    Stmt { sql, binds }
}

/// A new subscription, its cursor at the outbox's end; returns its id.
pub(crate) fn create_subscription(
    url: &str, kinds: &[EventKind], secret: &str, now: DateTime<Utc>,
) -> Plan {
    let kinds = serde_json::to_string(kinds).expect("kinds serialize");
    Plan {
        stmts: vec![stmt(
            "INSERT INTO webhook_subscriptions (url, kinds, secret, cursor, created_at) \
             VALUES ($1, $2, $3, (SELECT COALESCE(MAX(id), 0) FROM webhook_events), $4) \
             RETURNING id",
            vec![
                Bind::Text(url.into()),
                Bind::Text(kinds),
                Bind::Text(secret.into()),
                Bind::Int(ms(now)),
            ],
        )],
        guarded: false,
        returns_id: true,
    }
}

/// Delete a subscription and its dead letters.
pub(crate) fn delete_subscription(id: i64) -> Plan {
    Plan {
        stmts: vec![
            stmt(
                "DELETE FROM webhook_dead_letters WHERE subscription_id = $1",
                vec![Bind::Int(id)],
            ),
            stmt("DELETE FROM webhook_subscriptions WHERE id = $1", vec![Bind::Int(id)]),
        ],
        guarded: false,
        returns_id: false,
    }
}

/// Move the feed from `from` to `to` (compare-and-set) and append `events`.
pub(crate) fn append(from: FeedPosition, to: FeedPosition, events: &[OutboxEvent]) -> Plan {
    let mut stmts = vec![stmt(
        "UPDATE webhook_feed SET events_after = $1, changes_after = $2 \
         WHERE id = 1 AND events_after = $3 AND changes_after = $4",
        vec![
            Bind::Int(to.events_after),
            Bind::Int(to.changes_after),
            Bind::Int(from.events_after),
            Bind::Int(from.changes_after),
        ],
    )];
    for event in events {
        stmts.push(stmt(
            "INSERT INTO webhook_events (id, kind, at, body) VALUES ($1, $2, $3, $4)",
            vec![
                Bind::Int(event.id),
                Bind::Text(event.kind.as_str().into()),
                Bind::Int(ms(event.at)),
                Bind::Text(event.body.clone()),
            ],
        ));
    }
    Plan { stmts, guarded: true, returns_id: false }
}

/// Take subscription `id` for `owner` until `until`, unless another holds it.
pub(crate) fn claim(id: i64, owner: &str, until: DateTime<Utc>, now: DateTime<Utc>) -> Plan {
    Plan {
        stmts: vec![stmt(
            "UPDATE webhook_subscriptions SET claimed_by = $1, claimed_until = $2 \
             WHERE id = $3 AND (claimed_by IS NULL OR claimed_by = $1 OR claimed_until < $4)",
            vec![Bind::Text(owner.into()), Bind::Int(ms(until)), Bind::Int(id), Bind::Int(ms(now))],
        )],
        guarded: true,
        returns_id: false,
    }
}

/// Record a delivery pass, if `owner` still holds the subscription.
pub(crate) fn record(id: i64, owner: &str, r: &DeliveryRecord) -> Plan {
    let mut stmts = vec![stmt(
        "UPDATE webhook_subscriptions SET cursor = $1, attempts = $2, next_attempt_at = $3, \
         last_error = $4, delivered = delivered + $5 WHERE id = $6 AND claimed_by = $7",
        vec![
            Bind::Int(r.cursor),
            Bind::Int(i64::from(r.attempts)),
            Bind::MaybeInt(r.next_attempt_at.map(ms)),
            Bind::MaybeText(r.last_error.clone()),
            Bind::Int(r.delivered as i64),
            Bind::Int(id),
            Bind::Text(owner.into()),
        ],
    )];
    if let Some(dead) = &r.dead {
        stmts.push(stmt(
            "INSERT INTO webhook_dead_letters (subscription_id, event_id, attempts, error, at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            vec![
                Bind::Int(id),
                Bind::Int(dead.event.id),
                Bind::Int(i64::from(dead.attempts)),
                Bind::Text(dead.error.clone()),
                Bind::Int(ms(dead.at)),
            ],
        ));
    }
    Plan { stmts, guarded: true, returns_id: false }
}

/// Forget a dead letter.
pub(crate) fn remove_dead_letter(subscription: i64, event: i64) -> Plan {
    Plan {
        stmts: vec![stmt(
            "DELETE FROM webhook_dead_letters WHERE subscription_id = $1 AND event_id = $2",
            vec![Bind::Int(subscription), Bind::Int(event)],
        )],
        guarded: false,
        returns_id: false,
    }
}
