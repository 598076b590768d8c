//! The deliverer: each subscription's outbox events posted in order, signed;
//! retried with backoff, then dead-lettered.
//!
//! A pass takes the subscription for a while ([`CLAIM_FOR`]), so that two
//! daemons never post the same subscription's events at once (that would
//! break the order), posts the events after its cursor until one fails, and
//! records how far it got. The cursor moves only after the receiver
//! answered 2xx, so a daemon killed mid-pass delivers again what it had not
//! recorded: delivery is at least once, and the event id lets the receiver
//! drop what it has seen.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::signature::{EVENT_ID_HEADER, EVENT_KIND_HEADER, SIGNATURE_HEADER, sign};
use super::store::DeliveryRecord;
use super::{AllowList, DeadLetter, OutboxEvent, OutboxStore, Subscription};
use crate::scheduler::Clock;
use crate::scheduler::store::{StoreError, StoreResult};

/// How long a pass holds its subscription (renewed by each pass).
pub const CLAIM_FOR: TimeDelta = TimeDelta::seconds(30);

/// Outbox events posted per subscription and pass.
const PASS_BATCH: u32 = 200;

/// How long a receiver has to answer: well within half a claim, after
/// which a pass stops posting and records.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// When to try a failed event again, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before the event is dead-lettered.
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each next one.
    pub first_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Ten attempts over about thirteen minutes.
    fn default() -> Self {
        Self {
            max_attempts: 10,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts.
    pub fn backoff(&self, attempts: u32) -> TimeDelta {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
        let wait = self.first_backoff.saturating_mul(factor).min(self.max_backoff);
        TimeDelta::from_std(wait).unwrap_or(TimeDelta::MAX)
    }
}

/// Posts the outbox's events to the subscriptions.
#[derive(Clone)]
pub struct Deliverer {
    outbox: Arc<dyn OutboxStore>,
    allow: AllowList,
    clock: Arc<dyn Clock>,
    policy: RetryPolicy,
    http: reqwest::Client,
    /// This daemon, in the subscriptions' claims.
    owner: String,
}

impl Deliverer {
    /// A deliverer to the hosts `allow` permits.
    pub fn new(
        outbox: Arc<dyn OutboxStore>, allow: AllowList, clock: Arc<dyn Clock>, policy: RetryPolicy,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            // A redirect could lead outside the allow-list.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS builds");
        let owner = format!("{:016x}", rand::random::<u64>());
        Self { outbox, allow, clock, policy, http, owner }
    }

    /// One pass over every subscription that is due: the events delivered,
    /// and whether one has more waiting (pass again at once).
    pub async fn deliver(&self) -> StoreResult<Passed> {
        let now = self.clock.now();
        let due: Vec<Subscription> = self
            .outbox
            .subscriptions()
            .await?
            .into_iter()
            .filter(|s| s.next_attempt_at.is_none_or(|at| at <= now))
            .collect();
        let passes = due.iter().map(|s| self.pass(s));
        let mut total = Passed::default();
        for outcome in futures_util::future::join_all(passes).await {
            let passed = outcome?;
            total.delivered += passed.delivered;
            total.more |= passed.more;
        }
        Ok(total)
    }

    /// Post subscription `sub`'s next events in order, until one fails.
    async fn pass(&self, sub: &Subscription) -> StoreResult<Passed> {
        let now = self.clock.now();
        let events = self.outbox.outbox(sub.cursor, PASS_BATCH).await?;
        if events.is_empty()
            || !self.outbox.claim_subscription(sub.id, &self.owner, now + CLAIM_FOR, now).await?
        {
            return Ok(Passed::default());
        }
        let last = events.last().map_or(sub.cursor, |e| e.id);
        let full = events.len() == PASS_BATCH as usize;
        let secret = self.secret(sub.id).await?;
        let mut record = DeliveryRecord {
            cursor: sub.cursor,
            delivered: 0,
            attempts: sub.attempts,
            next_attempt_at: None,
            last_error: sub.last_error.clone(),
            dead: None,
        };
        for event in events {
            // Record before the claim may lapse: another daemon could then
            // post the same events, out of order.
            if self.clock.now() - now > CLAIM_FOR / 2 {
                break;
            }
            if !sub.wants(event.kind) {
                record.cursor = event.id;
                continue;
            }
            match self.post(&sub.url, &secret, &event).await {
                Ok(()) => {
                    record.cursor = event.id;
                    record.delivered += 1;
                    record.attempts = 0;
                    record.last_error = None;
                }
                Err(why) => {
                    record.attempts += 1;
                    let now = self.clock.now();
                    tracing::warn!(subscription = sub.id, event = event.id, attempt = record.attempts, error = %why, "webhook delivery failed");
                    if record.attempts >= self.policy.max_attempts {
                        record.dead = Some(DeadLetter {
                            subscription_id: sub.id,
                            attempts: record.attempts,
                            error: why.clone(),
                            at: now,
                            event: event.clone(),
                        });
                        record.cursor = event.id;
                        record.attempts = 0;
                    } else {
                        record.next_attempt_at = Some(now + self.policy.backoff(record.attempts));
                    }
                    record.last_error = Some(why);
                    break;
                }
            }
        }
        self.outbox.record_delivery(sub.id, &self.owner, &record).await?;
        let failed = record.next_attempt_at.is_some();
        Ok(Passed { delivered: record.delivered, more: !failed && (full || record.cursor < last) })
    }

    /// Post dead letter `event` of subscription `subscription` again, now;
    /// forgotten once delivered. `Err`: why it was not delivered.
    pub async fn resend(&self, subscription: i64, event: i64) -> Result<(), ResendError> {
        let letters = self.outbox.dead_letters(Some(subscription)).await?;
        let letter = letters
            .into_iter()
            .find(|l| l.event.id == event)
            .ok_or(ResendError::NotFound { subscription, event })?;
        let sub = self.outbox.subscriptions().await?.into_iter().find(|s| s.id == subscription);
        let sub = sub.ok_or(ResendError::NotFound { subscription, event })?;
        let secret = self.secret(subscription).await?;
        self.post(&sub.url, &secret, &letter.event).await.map_err(ResendError::Refused)?;
        self.outbox.remove_dead_letter(subscription, event).await?;
        Ok(())
    }

    async fn secret(&self, subscription: i64) -> StoreResult<String> {
        self.outbox.subscription_secret(subscription).await?.ok_or_else(|| StoreError::NotFound {
            what: "webhook subscription",
            id: subscription.to_string(),
        })
    }

    /// Post one event, signed; why it failed.
    async fn post(&self, url: &str, secret: &str, event: &OutboxEvent) -> Result<(), String> {
        self.allow.permits(url)?;
        let sent_at: DateTime<Utc> = self.clock.now();
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_ID_HEADER, event.id.to_string())
            .header(EVENT_KIND_HEADER, event.kind.as_str())
            .header(SIGNATURE_HEADER, sign(secret, sent_at.timestamp(), event.body.as_bytes()))
            .body(event.body.clone())
            .send()
            .await
            .map_err(|e| format!("cannot post to {url}: {e}"))?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(format!("{url} answered {status}")) }
    }
}

/// What a delivery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Passed {
    /// Events delivered.
    pub delivered: u64,
    /// Whether a subscription has more events waiting, not held back by a
    /// retry's backoff.
    pub more: bool,
}

/// Why a dead letter was not re-sent.
#[derive(Debug, thiserror::Error)]
pub enum ResendError {
    /// No such dead letter.
    #[error("no dead letter of event {event} for webhook subscription {subscription}")]
    NotFound {
        /// The subscription.
        subscription: i64,
        /// The event.
        event: i64,
    },
    /// The receiver refused it again or could not be reached.
    #[error("{0}")]
    Refused(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let policy = RetryPolicy::default();
        let waits: Vec<i64> = (1..=11).map(|a| policy.backoff(a).num_seconds()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(policy.backoff(u32::MAX).num_seconds(), 300);
    }
}
