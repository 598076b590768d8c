//! The inventory's writes on the writer thread, with the SQL both stores
//! share ([`crate::store::inventory_sql`]): a batch of processed results
//! merged ([`crate::inventory::merge`]) and recorded as processed in the
//! batch's transaction, a run's sweep, and retries of failed processing.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::statements::WriterConn;
use crate::inventory::keys::Key;
use crate::inventory::merge::{AssetId, AssetState, Book};
use crate::inventory::store::{IngestReport, Processed, ProcessedResult};
use crate::inventory::sweep::{self, Sighting};
use crate::scheduler::targeting::parse_target;
use crate::store::inventory_sql::{self as sql, Stmt, parse_targets};
use crate::store::{StoreError, StoreResult, ms};

/// Record each result's processing (skipping those no longer waiting) and
/// merge the observations of those that were.
pub fn ingest(conn: &WriterConn<'_>, processed: &[ProcessedResult]) -> StoreResult<IngestReport> {
    let mut report = IngestReport::default();
    let mut claimed = Vec::new();
    let mut runs = BTreeSet::new();
    for p in processed {
        let (state, error) = sql::recorded(&p.outcome);
        let (part, attempt) = (p.result.part_id, p.result.attempt);
        if conn.prepare_cached(sql::CLAIM_RESULT)?.execute(params![state, error, part, attempt])?
            == 0
        {
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
        conn.prepare_cached(sql::NOTE_SWEEP)?.execute([run_id])?;
    }
    let stored = load(conn, &Book::keys_named(claimed.iter().flat_map(|(o, _)| o.iter())))?;
    let first_id: i64 = conn.prepare_cached(sql::NEXT_ASSET_ID)?.query_row([], |row| row.get(0))?;
    let merged = sql::merge(stored, &claimed, first_id);
    run(conn, &merged.statements)?;
    report.observations = merged.observations;
    report.changes = merged.changes;
    Ok(report)
}

/// The stored assets holding any of `keys`.
fn load(conn: &WriterConn<'_>, keys: &BTreeSet<(String, Key)>) -> StoreResult<Vec<AssetState>> {
    let mut ids = BTreeSet::new();
    let mut owner = conn.prepare_cached(sql::KEY_OWNER)?;
    for (family, key) in keys {
        let found: Option<i64> = owner
            .query_row(params![family, key.name.as_str(), key.value], |row| row.get(0))
            .optional()?;
        ids.extend(found);
    }
    ids.into_iter().map(|id| load_asset(conn, id)).collect()
}

fn load_asset(conn: &WriterConn<'_>, id: AssetId) -> StoreResult<AssetState> {
    let (kind, name, disappeared): (String, Option<String>, Option<i64>) = conn
        .prepare_cached(sql::ASSET_ROW)?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    let mut asset =
        AssetState { id, kind, name, disappeared: disappeared.is_some(), ..Default::default() };
    for (name, value) in pairs::<String>(conn, sql::ASSET_KEYS, id)? {
        asset.keys.extend(Key::new(&name, &value).map_err(StoreError::Corrupt)?);
    }
    for (name, text) in pairs::<String>(conn, sql::ASSET_ATTRIBUTES, id)? {
        let value = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("asset_attributes.value: {e}")))?;
        asset.attributes.insert(name, value);
    }
    asset.relations.extend(pairs::<i64>(conn, sql::ASSET_RELATIONS, id)?);
    Ok(asset)
}

/// The (text, `T`) rows of `query` for asset `id`.
fn pairs<T: rusqlite::types::FromSql>(
    conn: &WriterConn<'_>, query: &str, id: AssetId,
) -> StoreResult<Vec<(String, T)>> {
    let mut statement = conn.prepare_cached(query)?;
    let rows = statement.query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Run `statements` in order.
fn run(conn: &WriterConn<'_>, statements: &[Stmt]) -> StoreResult<()> {
    for s in statements {
        conn.prepare_cached(s.sql)?.execute(params_from_iter(&s.binds))?;
    }
    Ok(())
}

/// Sweep run `run_id` once: the assets it proves gone disappear.
pub fn sweep(conn: &WriterConn<'_>, run_id: i64, now: DateTime<Utc>) -> StoreResult<usize> {
    if conn.prepare_cached(sql::MARK_SWEPT)?.execute(params![ms(now), run_id])? == 0 {
        return Ok(0);
    }
    let task_id: i64 = conn.prepare_cached(sql::RUN_TASK)?.query_row([run_id], |row| row.get(0))?;
    let mut scopes = Vec::new();
    let mut parts = conn.prepare_cached(sql::FINISHED_SCOPES)?;
    for targets in parts.query_map([run_id], |row| row.get::<_, String>(0))? {
        scopes.push(parse_targets(&targets?)?);
    }
    let mut sightings = Vec::new();
    let mut earlier = conn.prepare_cached(sql::EARLIER_SIGHTINGS)?;
    let rows = earlier.query_map(params![task_id, run_id], |row| {
        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?))
    })?;
    for row in rows {
        let (asset_id, seen_by, scope) = row?;
        let mut ips = conn.prepare_cached(sql::ASSET_IPS)?;
        let addresses = ips
            .query_map([asset_id], |row| row.get::<_, String>(0))?
            .filter_map(|ip| ip.ok().as_deref().and_then(parse_target))
            .collect();
        sightings.push(Sighting {
            asset_id,
            run_id: seen_by,
            scope: parse_targets(&scope)?,
            addresses,
        });
    }
    let gone = sweep::gone(run_id, &scopes, &sightings);
    run(conn, &sql::disappearances(&gone, run_id, now))?;
    Ok(gone.len())
}

/// Make run `run_id`'s failed processing wait again.
pub fn retry_processing(conn: &WriterConn<'_>, run_id: i64) -> StoreResult<u64> {
    Ok(conn.prepare_cached(sql::RETRY_PROCESSING)?.execute([run_id])? as u64)
}
