//! The PostgreSQL store's inventory: the portable reads on the pool, and the
//! writes with the SQL both stores share ([`crate::store::inventory_sql`]),
//! each in a transaction holding [`MERGE_LOCK`]: merges and sweeps of
//! several daemons never run at once, so keys stay unique per family and new
//! asset ids are free.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::{Executor, PgConnection, Postgres, Row, Transaction};

use super::PostgresStore;
use crate::inventory::keys::Key;
use crate::inventory::merge::{AssetState, Book};
use crate::inventory::store::{IngestReport, InventoryStore, Processed, ProcessedResult};
use crate::inventory::sweep::{self, Sighting};
use crate::scheduler::targeting::parse_target;
use crate::store::inventory_sql::{self as sql, Bind, MERGE_LOCK, Stmt, parse_targets};
use crate::store::{StoreError, StoreResult, ms};

#[async_trait]
impl InventoryStore for PostgresStore {
    async fn ingest(&self, processed: Vec<ProcessedResult>) -> StoreResult<IngestReport> {
        let mut tx = locked(self).await?;
        let mut report = IngestReport::default();
        let mut claimed = Vec::new();
        let mut runs = BTreeSet::new();
        for p in &processed {
            let (state, error) = sql::recorded(&p.outcome);
            let claim = sqlx::query(sql::CLAIM_RESULT)
                .bind(state)
                .bind(error)
                .bind(p.result.part_id)
                .bind(i64::from(p.result.attempt));
            if claim.execute(&mut *tx).await?.rows_affected() == 0 {
                report.skipped += 1;
                continue;
            }
            report.results += 1;
            runs.insert(p.result.source.run_id);
            if let Processed::Observed(observations) = &p.outcome {
                claimed.push((observations.as_slice(), &p.result.source));
            }
        }
        for run_id in runs {
            sqlx::query(sql::NOTE_SWEEP).bind(run_id).execute(&mut *tx).await?;
        }
        let named = Book::keys_named(claimed.iter().flat_map(|(o, _)| o.iter()));
        let stored = load(&mut tx, &named).await?;
        let first_id: i64 = sqlx::query_scalar(sql::NEXT_ASSET_ID).fetch_one(&mut *tx).await?;
        let merged = sql::merge(stored, &claimed, first_id);
        run(&mut tx, &merged.statements).await?;
        tx.commit().await?;
        report.observations = merged.observations;
        report.changes = merged.changes;
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

/// The stored assets holding any of `keys`: five round trips whatever their
/// number (arrays; SQLite's writer reads them one by one, in process).
async fn load(
    conn: &mut PgConnection, keys: &BTreeSet<(String, Key)>,
) -> StoreResult<Vec<AssetState>> {
    let mut columns: [Vec<&str>; 3] = Default::default();
    for (family, key) in keys {
        columns[0].push(family);
        columns[1].push(key.name.as_str());
        columns[2].push(&key.value);
    }
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT k.asset_id FROM asset_keys k \
         JOIN UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[]) AS w (family, name, value) \
         ON k.family = w.family AND k.name = w.name AND k.value = w.value",
    )
    .bind(&columns[0])
    .bind(&columns[1])
    .bind(&columns[2])
    .fetch_all(&mut *conn)
    .await?;
    let mut assets: BTreeMap<i64, AssetState> = BTreeMap::new();
    let rows = sqlx::query("SELECT id, kind, name, disappeared_at FROM assets WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let disappeared: Option<i64> = row.try_get(3)?;
        let (kind, name) = (row.try_get(1)?, row.try_get(2)?);
        let asset =
            AssetState { id, kind, name, disappeared: disappeared.is_some(), ..Default::default() };
        assets.insert(id, asset);
    }
    let of = |table: &str| format!("SELECT asset_id, {table} WHERE asset_id = ANY($1)");
    let keys: Vec<(i64, String, String)> =
        sqlx::query_as(&of("name, value FROM asset_keys")).bind(&ids).fetch_all(&mut *conn).await?;
    for (id, name, value) in keys {
        let key = Key::new(&name, &value).map_err(StoreError::Corrupt)?;
        if let Some(asset) = assets.get_mut(&id) {
            asset.keys.extend(key);
        }
    }
    let attributes: Vec<(i64, String, String)> =
        sqlx::query_as(&of("name, value FROM asset_attributes"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    for (id, name, text) in attributes {
        let value = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("asset_attributes.value: {e}")))?;
        if let Some(asset) = assets.get_mut(&id) {
            asset.attributes.insert(name, value);
        }
    }
    let relations: Vec<(i64, String, i64)> =
        sqlx::query_as(&of("relation, to_id FROM asset_relations"))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    for (id, relation, to) in relations {
        if let Some(asset) = assets.get_mut(&id) {
            asset.relations.insert(relation, to);
        }
    }
    Ok(assets.into_values().collect())
}

/// Run `statements` in order, in one round trip: their values are written
/// into the text as literals ([`literal`]), since a prepared statement is one
/// message each.
async fn run(conn: &mut PgConnection, statements: &[Stmt]) -> StoreResult<()> {
    if statements.is_empty() {
        return Ok(());
    }
    // The quoting below relies on it (the default since PostgreSQL 9.1).
    let mut script = String::from("SET LOCAL standard_conforming_strings = on;\n");
    for s in statements {
        script.push_str(&inline(s.sql, &s.binds));
        script.push_str(";\n");
    }
    conn.execute(sqlx::raw_sql(&script)).await?;
    Ok(())
}

/// `sql` with each `$n` replaced by the literal of `binds[n - 1]`.
fn inline(sql: &str, binds: &[Bind]) -> String {
    let mut out = String::with_capacity(sql.len() + binds.len() * 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[at + 1..at + 1 + digits].parse().expect("placeholders are $n");
        out.push_str(&literal(&binds[n - 1]));
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

/// A value as an SQL literal: numbers as they are, text in single quotes with
/// each quote doubled (all that standard-conforming strings need).
fn literal(bind: &Bind) -> String {
    let text = |t: &str| format!("'{}'", t.replace('\'', "''"));
    match bind {
        Bind::Int(i) | Bind::MaybeInt(Some(i)) => i.to_string(),
        Bind::Text(t) | Bind::MaybeText(Some(t)) => text(t),
        Bind::MaybeInt(None) | Bind::MaybeText(None) => "NULL".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_inlined_as_literals_with_quotes_doubled() {
        let binds = [
            Bind::Int(7),
            Bind::Text(r"it's $1 \ 'quoted'".into()),
            Bind::MaybeText(None),
            Bind::MaybeInt(Some(-2)),
        ];
        assert_eq!(
            inline("INSERT INTO t VALUES ($1, $2, $3, $4, $1)", &binds),
            r"INSERT INTO t VALUES (7, 'it''s $1 \ ''quoted''', NULL, -2, 7)"
        );
    }
}
