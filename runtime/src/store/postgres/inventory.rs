//! The PostgreSQL store's inventory: the portable reads on the pool, and the
//! writes with the SQL both stores share ([`crate::store::inventory_sql`]),
//! each in a transaction holding [`MERGE_LOCK`]: merges and sweeps of
//! several daemons never run at once, so keys stay unique per family and new
//! asset ids are free.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::PostgresStore;
use crate::inventory::keys::Key;
use crate::inventory::merge::{AssetId, AssetState, Book};
use crate::inventory::store::{IngestReport, InventoryStore, Processed, ProcessedResult};
use crate::inventory::sweep::{self, Sighting};
use crate::scheduler::targeting::parse_target;
use crate::store::inventory_sql::{self as sql, MERGE_LOCK, Stmt, parse_targets};
use crate::store::{StoreError, StoreResult, ms};

#[async_trait]
impl InventoryStore for PostgresStore {
    async fn ingest(&self, processed: Vec<ProcessedResult>) -> StoreResult<IngestReport> {
        let mut tx = locked(self).await?;
        let mut report = IngestReport::default();
        let mut merged = Vec::new();
        for p in &processed {
            let (state, error) = match &p.outcome {
                Processed::Observed(_) => ("done", None),
                Processed::Failed(reason) => ("failed", Some(reason.as_str())),
            };
            let claimed = sqlx::query(sql::CLAIM_RESULT)
                .bind(state)
                .bind(error)
                .bind(p.result.part_id)
                .bind(i64::from(p.result.attempt))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                report.skipped += 1;
                continue;
            }
            report.results += 1;
            sqlx::query(sql::NOTE_SWEEP).bind(p.result.source.run_id).execute(&mut *tx).await?;
            if let Processed::Observed(observations) = &p.outcome {
                merged.push((observations, &p.result.source));
            }
        }
        let named = Book::keys_named(merged.iter().flat_map(|(o, _)| o.iter()));
        let mut book = Book::new(load(&mut tx, &named).await?);
        for (observations, source) in merged {
            for o in observations {
                book.observe(o, source);
                report.observations += 1;
            }
        }
        let (writes, sources) = book.into_writes();
        let first_id: i64 = sqlx::query_scalar(sql::NEXT_ASSET_ID).fetch_one(&mut *tx).await?;
        let (statements, changes) = sql::statements(writes, &sources, first_id);
        run(&mut tx, &statements).await?;
        tx.commit().await?;
        report.changes = changes;
        Ok(report)
    }

    async fn sweep(&self, run_id: i64, now: DateTime<Utc>) -> StoreResult<usize> {
        let mut tx = locked(self).await?;
        let marked =
            sqlx::query(sql::MARK_SWEPT).bind(ms(now)).bind(run_id).execute(&mut *tx).await?;
        if marked.rows_affected() == 0 {
            return Ok(0);
        }
        let task_id: i64 =
            sqlx::query_scalar(sql::RUN_TASK).bind(run_id).fetch_one(&mut *tx).await?;
        let scopes: Vec<String> =
            sqlx::query_scalar(sql::FINISHED_SCOPES).bind(run_id).fetch_all(&mut *tx).await?;
        let scopes = scopes.iter().map(|s| parse_targets(s)).collect::<StoreResult<Vec<_>>>()?;
        let earlier = sqlx::query(sql::EARLIER_SIGHTINGS)
            .bind(task_id)
            .bind(run_id)
            .fetch_all(&mut *tx)
            .await?;
        let mut sightings = Vec::with_capacity(earlier.len());
        for row in earlier {
            let asset_id: i64 = row.try_get(0)?;
            let ips: Vec<String> =
                sqlx::query_scalar(sql::ASSET_IPS).bind(asset_id).fetch_all(&mut *tx).await?;
            let scope: String = row.try_get(2)?;
            sightings.push(Sighting {
                asset_id,
                run_id: row.try_get(1)?,
                scope: parse_targets(&scope)?,
                addresses: ips.iter().filter_map(|ip| parse_target(ip)).collect(),
            });
        }
        let gone = sweep::gone(run_id, &scopes, &sightings);
        run(&mut tx, &sql::disappearances(&gone, run_id, now)).await?;
        tx.commit().await?;
        Ok(gone.len())
    }

    async fn retry_processing(&self, run_id: i64) -> StoreResult<u64> {
        let retried = sqlx::query(sql::RETRY_PROCESSING).bind(run_id).execute(&self.pool).await?;
        Ok(retried.rows_affected())
    }
}

/// A transaction holding the merge lock.
async fn locked(store: &PostgresStore) -> StoreResult<Transaction<'static, Postgres>> {
    let mut tx = store.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(MERGE_LOCK.0)
        .bind(MERGE_LOCK.1)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// The stored assets holding any of `keys`.
async fn load(
    conn: &mut PgConnection, keys: &BTreeSet<(String, Key)>,
) -> StoreResult<Vec<AssetState>> {
    let mut ids = BTreeSet::new();
    for (family, key) in keys {
        let found: Option<i64> = sqlx::query_scalar(sql::KEY_OWNER)
            .bind(family)
            .bind(key.name.as_str())
            .bind(&key.value)
            .fetch_optional(&mut *conn)
            .await?;
        ids.extend(found);
    }
    let mut assets = Vec::with_capacity(ids.len());
    for id in ids {
        assets.push(load_asset(conn, id).await?);
    }
    Ok(assets)
}

async fn load_asset(conn: &mut PgConnection, id: AssetId) -> StoreResult<AssetState> {
    let row = sqlx::query(sql::ASSET_ROW).bind(id).fetch_one(&mut *conn).await?;
    let disappeared: Option<i64> = row.try_get(2)?;
    let mut asset = AssetState {
        id,
        kind: row.try_get(0)?,
        name: row.try_get(1)?,
        disappeared: disappeared.is_some(),
        ..Default::default()
    };
    let keys: Vec<(String, String)> =
        sqlx::query_as(sql::ASSET_KEYS).bind(id).fetch_all(&mut *conn).await?;
    for (name, value) in keys {
        asset.keys.extend(Key::new(&name, &value).map_err(StoreError::Corrupt)?);
    }
    let attributes: Vec<(String, String)> =
        sqlx::query_as(sql::ASSET_ATTRIBUTES).bind(id).fetch_all(&mut *conn).await?;
    for (name, text) in attributes {
        let value = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("asset_attributes.value: {e}")))?;
        asset.attributes.insert(name, value);
    }
    let relations: Vec<(String, i64)> =
        sqlx::query_as(sql::ASSET_RELATIONS).bind(id).fetch_all(&mut *conn).await?;
    asset.relations.extend(relations);
    Ok(asset)
}

/// Run `statements` in order.
async fn run(conn: &mut PgConnection, statements: &[Stmt]) -> StoreResult<()> {
    for s in statements {
        super::inventory_reads::bound(s.sql, &s.binds).execute(&mut *conn).await?;
    }
    Ok(())
}
