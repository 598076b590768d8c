//! The webhooks' durable state, written once for both stores:
//! [`outbox_store!`] implements [`OutboxStore`](crate::notify::OutboxStore)
//! for a backend's store, reading through its read pool and writing each
//! [`Plan`](super::outbox_sql::Plan) through the backend's own
//! `run_outbox_plan` (the writer on SQLite, a transaction on PostgreSQL).

/// Implement `OutboxStore` for `$store`, reading through its pool field
/// `$pool` of database `$db`; `rows` must be in scope (the backend's row
/// mappers), and `$store` must have `run_outbox_plan(Plan) -> Done`.
macro_rules! outbox_store {
    ($store:ty, $pool:ident, $db:ty) => {
        use async_trait::async_trait;
        use chrono::{DateTime, Utc};
        use sqlx::Row as _;

        use crate::notify::store::DeliveryRecord;
        use crate::notify::{
            DeadLetter, EventKind, FeedPosition, OutboxEvent, OutboxStore, Subscription,
        };
        use crate::scheduler::Event;
        use crate::store::outbox_sql::{self as sql, Plan};
        use crate::store::{StoreError, StoreResult, from_ms};

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn kind_of(text: &str) -> StoreResult<EventKind> {
            EventKind::parse(text).map_err(|e| corrupt("webhook event kind", e))
        }

        fn subscription(row: &<$db as sqlx::Database>::Row) -> StoreResult<Subscription> {
            let kinds: String = row.try_get("kinds")?;
            Ok(Subscription {
                id: row.try_get("id")?,
                url: row.try_get("url")?,
                events: serde_json::from_str(&kinds).map_err(|e| corrupt("kinds", e))?,
                cursor: row.try_get("cursor")?,
                attempts: row.try_get::<i64, _>("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
                next_attempt_at: row.try_get::<Option<i64>, _>("next_attempt_at")?.map(from_ms),
                last_error: row.try_get("last_error")?,
                delivered: row.try_get::<i64, _>("delivered")?.max(0) as u64,
                created_at: from_ms(row.try_get("created_at")?),
            })
        }

        fn outbox_event(row: &<$db as sqlx::Database>::Row) -> StoreResult<OutboxEvent> {
            let kind: String = row.try_get("kind")?;
            Ok(OutboxEvent {
                id: row.try_get("id")?,
                kind: kind_of(&kind)?,
                at: from_ms(row.try_get("at")?),
                body: row.try_get("body")?,
            })
        }

        #[async_trait]
        impl OutboxStore for $store {
            async fn subscriptions(&self) -> StoreResult<Vec<Subscription>> {
                let sql = format!(
                    "SELECT {} FROM webhook_subscriptions ORDER BY id",
                    sql::SUBSCRIPTION_COLUMNS
                );
                let rows = sqlx::query(&sql).fetch_all(&self.$pool).await?;
                rows.iter().map(subscription).collect()
            }

            async fn create_subscription(
                &self, url: &str, kinds: &[EventKind], secret: &str, now: DateTime<Utc>,
            ) -> StoreResult<Subscription> {
                let id = self
                    .run_outbox_plan(sql::create_subscription(url, kinds, secret, now))
                    .await?
                    .last;
                let found = self.subscriptions().await?.into_iter().find(|s| s.id == id);
                found.ok_or_else(|| StoreError::NotFound {
                    what: "webhook subscription",
                    id: id.to_string(),
                })
            }

            async fn delete_subscription(&self, id: i64) -> StoreResult<bool> {
                Ok(self.run_outbox_plan(sql::delete_subscription(id)).await?.last > 0)
            }

            async fn subscription_secret(&self, id: i64) -> StoreResult<Option<String>> {
                let sql = "SELECT secret FROM webhook_subscriptions WHERE id = $1";
                Ok(sqlx::query_scalar(sql).bind(id).fetch_optional(&self.$pool).await?)
            }

            async fn feed_position(&self) -> StoreResult<FeedPosition> {
                let row = sqlx::query(sql::FEED_POSITION).fetch_one(&self.$pool).await?;
                Ok(FeedPosition {
                    events_after: row.try_get(0)?,
                    changes_after: row.try_get(1)?,
                    next_id: row.try_get(2)?,
                })
            }

            async fn event_ids(&self, after: i64, limit: u32) -> StoreResult<Vec<i64>> {
                Ok(sqlx::query_scalar(sql::EVENT_IDS)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.$pool)
                    .await?)
            }

            async fn notable_events(&self, after: i64, upto: i64) -> StoreResult<Vec<Event>> {
                let sql =
                    format!("SELECT {} FROM events {}", rows::EVENT_COLUMNS, sql::NOTABLE_EVENTS);
                let found = sqlx::query(&sql).bind(after).bind(upto).fetch_all(&self.$pool).await?;
                found.iter().map(rows::event).collect()
            }

            async fn source_ends(&self) -> StoreResult<(i64, i64)> {
                let row = sqlx::query(sql::SOURCE_ENDS).fetch_one(&self.$pool).await?;
                Ok((row.try_get(0)?, row.try_get(1)?))
            }

            async fn append(
                &self, from: FeedPosition, to: FeedPosition, events: &[OutboxEvent],
            ) -> StoreResult<bool> {
                Ok(self.run_outbox_plan(sql::append(from, to, events)).await?.written)
            }

            async fn outbox(&self, after: i64, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
                let rows = sqlx::query(sql::OUTBOX)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter().map(outbox_event).collect()
            }

            async fn outbox_event(&self, id: i64) -> StoreResult<Option<OutboxEvent>> {
                let row =
                    sqlx::query(sql::OUTBOX_EVENT).bind(id).fetch_optional(&self.$pool).await?;
                row.as_ref().map(outbox_event).transpose()
            }

            async fn claim_subscription(
                &self, id: i64, owner: &str, until: DateTime<Utc>, now: DateTime<Utc>,
            ) -> StoreResult<bool> {
                Ok(self.run_outbox_plan(sql::claim(id, owner, until, now)).await?.written)
            }

            async fn record_delivery(
                &self, id: i64, owner: &str, record: &DeliveryRecord,
            ) -> StoreResult<()> {
                self.run_outbox_plan(sql::record(id, owner, record)).await?;
                Ok(())
            }

            async fn dead_letters(
                &self, subscription: Option<i64>,
            ) -> StoreResult<Vec<DeadLetter>> {
                let rows = sqlx::query(sql::DEAD_LETTERS)
                    .bind(subscription)
                    .fetch_all(&self.$pool)
                    .await?;
                rows.iter()
                    .map(|row| {
                        Ok(DeadLetter {
                            subscription_id: row.try_get("subscription_id")?,
                            event: outbox_event(row)?,
                            attempts: row.try_get::<i64, _>("attempts")?.max(0) as u32,
                            error: row.try_get("error")?,
                            at: from_ms(row.try_get("dead_at")?),
                        })
                    })
                    .collect()
            }

            async fn dead_letter_count(&self) -> StoreResult<u64> {
                let sql = "SELECT COUNT(*) FROM webhook_dead_letters";
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&self.$pool).await?;
                Ok(n.max(0) as u64)
            }

            async fn remove_dead_letter(&self, subscription: i64, event: i64) -> StoreResult<bool> {
                Ok(self.run_outbox_plan(sql::remove_dead_letter(subscription, event)).await?.last
                    > 0)
            }
        }
    };
}

pub(crate) use outbox_store;
