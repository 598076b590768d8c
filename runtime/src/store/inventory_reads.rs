//! The inventory's reads, written once for both stores (as [`super::reads`]
//! for the scheduler's, with [`super::inventory_sql`]'s placeholders):
//! [`inventory_reads!`] implements
//! [`InventoryReads`](crate::inventory::InventoryReads) for a backend's store
//! through its read pool. What differs between the dialects is one
//! predicate, given by the backend: which results wait for processing, in
//! the words of its partial index (SQLite compares `applied` to 1).

use super::inventory_sql::{
    Bind, Built, contains_pattern, list_item_patterns, starts_with_pattern,
};

/// The `WHERE` of an asset listing, with its binds.
pub(crate) fn asset_filter(q: &crate::inventory::AssetQuery) -> Built {
    use crate::inventory::view::AttributeFilter;
    use crate::store::ms;
    let mut b = Built::default();
    b.push("a.id > $?", Bind::Int(q.after));
    if let Some(kind) = &q.kind {
        b.push(" AND a.kind = $?", Bind::Text(kind.clone()));
    }
    if let Some(span) = &q.within {
        b.push(
            " AND a.id IN (SELECT k.asset_id FROM asset_keys k WHERE k.address >= $?",
            Bind::Text(span.lo_hex()),
        );
        b.push(" AND k.address <= $?)", Bind::Text(span.hi_hex()));
    }
    for filter in &q.attributes {
        let (AttributeFilter::Equals(name, _)
        | AttributeFilter::Contains(name, _)
        | AttributeFilter::StartsWith(name, _)
        | AttributeFilter::Has(name, _)) = filter;
        b.push(
            " AND a.id IN (SELECT t.asset_id FROM asset_attributes t WHERE t.name = $?",
            Bind::Text(name.clone()),
        );
        let like = " ESCAPE '\\'";
        match filter {
            AttributeFilter::Equals(_, value) => {
                b.push(" AND t.value = $?)", Bind::Text(value.to_string()))
            }
            AttributeFilter::Contains(_, text) => {
                b.push(&format!(" AND t.value LIKE $?{like})"), Bind::Text(contains_pattern(text)))
            }
            AttributeFilter::StartsWith(_, text) => b.push(
                &format!(" AND t.value LIKE $?{like})"),
                Bind::Text(starts_with_pattern(text)),
            ),
            AttributeFilter::Has(_, item) => {
                // Stored lists are compact JSON (serde_json's form).
                b.push(" AND (t.value = $?", Bind::Text(format!("[{item}]")));
                for pattern in list_item_patterns(item) {
                    b.push(&format!(" OR t.value LIKE $?{like}"), Bind::Text(pattern));
                }
                b.sql.push_str("))");
            }
        }
    }
    if let Some(since) = q.seen_since {
        b.push(" AND a.last_seen >= $?", Bind::Int(ms(since)));
    }
    if let Some(before) = q.not_seen_since {
        b.push(" AND a.last_seen < $?", Bind::Int(ms(before)));
    }
    if let Some(text) = &q.text {
        let pattern = contains_pattern(text);
        b.push(" AND (a.name LIKE $? ESCAPE '\\'", Bind::Text(pattern.clone()));
        b.push(
            " OR a.id IN (SELECT s.asset_id FROM asset_keys s WHERE s.value LIKE $? ESCAPE '\\'))",
            Bind::Text(pattern),
        );
    }
    b
}

/// Implement `InventoryReads` for `$store`, reading through its pool field
/// `$pool` of database `$db`; `$pending` is the predicate (on results `x`) of
/// a result waiting for processing.
macro_rules! inventory_reads {
    ($store:ty, $pool:ident, $db:ty, $pending:expr) => {
        use std::collections::BTreeMap;

        use sqlx::Row as _;

        use crate::inventory::merge::Source;
        use crate::inventory::view::{Provenance, Relation};
        use crate::inventory::{
            Asset, AssetDetail, AssetQuery, Change, ChangeQuery, InventoryReads, PendingResult,
        };
        use crate::store::inventory_reads::asset_filter;
        use crate::store::inventory_sql::{Bind, Built};
        use crate::store::{StoreError, StoreResult, from_ms, ms};

        fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
            StoreError::Corrupt(format!("{what}: {e}"))
        }

        fn json_column(text: Option<String>, what: &str) -> StoreResult<Option<serde_json::Value>> {
            text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(what, e))).transpose()
        }

        type Db = $db;

        /// `sql` with `binds` bound to its placeholders.
        fn bound<'q>(
            sql: &'q str,
            binds: &'q [Bind],
        ) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>> {
            let mut query = sqlx::query(sql);
            for value in binds {
                query = match value {
                    Bind::Int(i) => query.bind(*i),
                    Bind::Text(t) => query.bind(t.as_str()),
                    Bind::MaybeInt(i) => query.bind(*i),
                    Bind::MaybeText(t) => query.bind(t.as_deref()),
                };
            }
            query
        }

        /// Keys and attributes of the assets with ids in `[first, last]`.
        async fn keys_and_attributes(
            pool: &sqlx::Pool<Db>,
            first: i64,
            last: i64,
        ) -> StoreResult<(
            BTreeMap<i64, BTreeMap<String, Vec<String>>>,
            BTreeMap<i64, BTreeMap<String, serde_json::Value>>,
        )> {
            let mut keys: BTreeMap<i64, BTreeMap<String, Vec<String>>> = BTreeMap::new();
            let sql = "SELECT asset_id, name, value FROM asset_keys \
                       WHERE asset_id >= $1 AND asset_id <= $2 ORDER BY asset_id, name, value";
            for row in sqlx::query(sql).bind(first).bind(last).fetch_all(pool).await? {
                let id: i64 = row.try_get(0)?;
                keys.entry(id).or_default().entry(row.try_get(1)?).or_default().push(row.try_get(2)?);
            }
            let mut attributes: BTreeMap<i64, BTreeMap<String, serde_json::Value>> =
                BTreeMap::new();
            let sql = "SELECT asset_id, name, value FROM asset_attributes \
                       WHERE asset_id >= $1 AND asset_id <= $2";
            for row in sqlx::query(sql).bind(first).bind(last).fetch_all(pool).await? {
                let id: i64 = row.try_get(0)?;
                let text: String = row.try_get(2)?;
                let value = serde_json::from_str(&text).map_err(|e| corrupt("asset attribute", e))?;
                attributes.entry(id).or_default().insert(row.try_get(1)?, value);
            }
            Ok((keys, attributes))
        }

        /// The source in `row`'s columns of plugin, task, run, part, agent
        /// and time (without a scope).
        fn source_at(row: &<Db as sqlx::Database>::Row, at: [usize; 6]) -> StoreResult<Source> {
            Ok(Source {
                plugin: row.try_get(at[0])?,
                task_id: row.try_get(at[1])?,
                run_id: row.try_get(at[2])?,
                part_id: row.try_get(at[3])?,
                agent: row.try_get(at[4])?,
                observed_at: from_ms(row.try_get(at[5])?),
                scope: Vec::new(),
            })
        }

        const ASSET_COLUMNS: &str =
            "a.id, a.kind, a.name, a.first_seen, a.last_seen, a.disappeared_at";

        fn asset_row(row: &<Db as sqlx::Database>::Row) -> StoreResult<Asset> {
            Ok(Asset {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                name: row.try_get("name")?,
                keys: BTreeMap::new(),
                attributes: BTreeMap::new(),
                first_seen: from_ms(row.try_get("first_seen")?),
                last_seen: from_ms(row.try_get("last_seen")?),
                disappeared_at: row.try_get::<Option<i64>, _>("disappeared_at")?.map(from_ms),
            })
        }

        #[async_trait::async_trait]
        impl InventoryReads for $store {
            async fn pending_results(&self, limit: u32) -> StoreResult<Vec<PendingResult>> {
                let sql = format!(
                    "SELECT x.part_id, x.attempt, x.run_id, r.task_id, r.plugin_sha256, \
                     COALESCE(pl.name, ''), x.agent, x.emitted, x.output, x.received_at, \
                     p.targets FROM results x JOIN runs r ON r.id = x.run_id \
                     JOIN parts p ON p.id = x.part_id \
                     LEFT JOIN plugins pl ON pl.sha256 = r.plugin_sha256 \
                     WHERE {} ORDER BY x.received_at, x.part_id, x.attempt LIMIT $1",
                    $pending
                );
                let rows = sqlx::query(&sql).bind(i64::from(limit)).fetch_all(&self.$pool).await?;
                rows.iter()
                    .map(|row| {
                        let emitted: String = row.try_get(7)?;
                        let records: Vec<serde_json::Value> =
                            serde_json::from_str(&emitted).map_err(|e| corrupt("results.emitted", e))?;
                        let targets: String = row.try_get(10)?;
                        let scope: Vec<String> =
                            serde_json::from_str(&targets).map_err(|e| corrupt("parts.targets", e))?;
                        let attempt: i64 = row.try_get(1)?;
                        Ok(PendingResult {
                            part_id: row.try_get(0)?,
                            attempt: u32::try_from(attempt).map_err(|e| corrupt("results.attempt", e))?,
                            plugin_sha256: row.try_get(4)?,
                            source: Source { scope, ..source_at(row, [5, 3, 2, 0, 6, 9])? },
                            records: records.iter().map(|r| r.to_string()).collect(),
                            output: row.try_get(8)?,
                        })
                    })
                    .collect()
            }

            async fn runs_to_sweep(&self, limit: u32) -> StoreResult<Vec<i64>> {
                let sql = format!(
                    "SELECT s.run_id FROM inventory_sweeps s JOIN runs r ON r.id = s.run_id \
                     WHERE s.swept_at IS NULL AND r.state IN ('finished', 'failed', 'canceled') \
                     AND NOT EXISTS (SELECT 1 FROM results x WHERE x.run_id = s.run_id \
                     AND ({} OR x.processing = 'failed')) ORDER BY s.run_id LIMIT $1",
                    $pending
                );
                Ok(sqlx::query_scalar(&sql).bind(i64::from(limit)).fetch_all(&self.$pool).await?)
            }

            async fn processing_failures(
                &self,
                run_id: i64,
            ) -> StoreResult<Vec<(i64, u32, String)>> {
                let sql = "SELECT part_id, attempt, COALESCE(processing_error, '') FROM results \
                           WHERE run_id = $1 AND processing = 'failed' ORDER BY part_id, attempt";
                let rows = sqlx::query(sql).bind(run_id).fetch_all(&self.$pool).await?;
                rows.iter()
                    .map(|row| {
                        let attempt: i64 = row.try_get(1)?;
                        let attempt = u32::try_from(attempt).map_err(|e| corrupt("results.attempt", e))?;
                        Ok((row.try_get(0)?, attempt, row.try_get(2)?))
                    })
                    .collect()
            }

            async fn assets(&self, query: &AssetQuery) -> StoreResult<Vec<Asset>> {
                let mut built = asset_filter(query);
                built.sql = format!("SELECT {ASSET_COLUMNS} FROM assets a WHERE {}", built.sql);
                let limit = i64::from(query.limit.clamp(1, crate::inventory::view::MAX_PAGE));
                built.push(" ORDER BY a.id LIMIT $?", Bind::Int(limit));
                let rows = bound(&built.sql, &built.binds).fetch_all(&self.$pool).await?;
                let mut assets: Vec<Asset> = rows.iter().map(asset_row).collect::<StoreResult<_>>()?;
                let (Some(first), Some(last)) = (assets.first(), assets.last()) else {
                    return Ok(assets);
                };
                let (mut keys, mut attributes) =
                    keys_and_attributes(&self.$pool, first.id, last.id).await?;
                for asset in &mut assets {
                    asset.keys = keys.remove(&asset.id).unwrap_or_default();
                    asset.attributes = attributes.remove(&asset.id).unwrap_or_default();
                }
                Ok(assets)
            }

            async fn asset(&self, id: i64) -> StoreResult<Option<AssetDetail>> {
                let sql = format!("SELECT {ASSET_COLUMNS} FROM assets a WHERE a.id = $1");
                let Some(row) = sqlx::query(&sql).bind(id).fetch_optional(&self.$pool).await? else {
                    return Ok(None);
                };
                let mut asset = asset_row(&row)?;
                let (mut keys, mut attributes) = keys_and_attributes(&self.$pool, id, id).await?;
                asset.keys = keys.remove(&id).unwrap_or_default();
                asset.attributes = attributes.remove(&id).unwrap_or_default();
                let sql = "SELECT name, plugin, task_id, run_id, part_id, agent, observed_at \
                           FROM asset_attributes WHERE asset_id = $1 ORDER BY name";
                let sources = sqlx::query(sql)
                    .bind(id)
                    .fetch_all(&self.$pool)
                    .await?
                    .iter()
                    .map(|row| {
                        let source = source_at(row, [1, 2, 3, 4, 5, 6])?;
                        Ok(Provenance { attribute: row.try_get(0)?, source })
                    })
                    .collect::<StoreResult<_>>()?;
                let sql = "SELECT r.relation, r.asset_id, r.to_id, COALESCE(o.name, o.kind) \
                           FROM asset_relations r JOIN assets o ON o.id = r.to_id \
                           WHERE r.asset_id = $1 \
                           UNION ALL SELECT r.relation, r.asset_id, r.to_id, COALESCE(o.name, o.kind) \
                           FROM asset_relations r JOIN assets o ON o.id = r.asset_id \
                           WHERE r.to_id = $1 ORDER BY 1, 2, 3";
                let relations = sqlx::query(sql)
                    .bind(id)
                    .fetch_all(&self.$pool)
                    .await?
                    .iter()
                    .map(|row| {
                        Ok(Relation {
                            relation: row.try_get(0)?,
                            from_id: row.try_get(1)?,
                            to_id: row.try_get(2)?,
                            other: row.try_get(3)?,
                        })
                    })
                    .collect::<StoreResult<_>>()?;
                let history = self
                    .changes(&ChangeQuery {
                        asset_id: Some(id),
                        limit: crate::inventory::view::MAX_PAGE,
                        ..ChangeQuery::default()
                    })
                    .await?;
                Ok(Some(AssetDetail { asset, sources, relations, history }))
            }

            async fn disappeared_count(&self) -> StoreResult<u64> {
                let sql = "SELECT COUNT(*) FROM assets WHERE disappeared_at IS NOT NULL";
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&self.$pool).await?;
                Ok(n.max(0) as u64)
            }

            async fn changes(&self, query: &ChangeQuery) -> StoreResult<Vec<Change>> {
                let mut b = Built::default();
                b.push(
                    "SELECT id, asset_id, at, kind, subject, old, new, run_id FROM asset_changes \
                     WHERE id > $?",
                    Bind::Int(query.after),
                );
                if let Some(asset_id) = query.asset_id {
                    b.push(" AND asset_id = $?", Bind::Int(asset_id));
                }
                if let Some(run_id) = query.run_id {
                    b.push(" AND run_id = $?", Bind::Int(run_id));
                }
                if let Some(since) = query.since {
                    b.push(" AND at >= $?", Bind::Int(ms(since)));
                }
                let limit = i64::from(query.limit.clamp(1, crate::inventory::view::MAX_PAGE));
                b.push(" ORDER BY id LIMIT $?", Bind::Int(limit));
                let rows = bound(&b.sql, &b.binds).fetch_all(&self.$pool).await?;
                rows.iter()
                    .map(|row| {
                        let kind: String = row.try_get(3)?;
                        Ok(Change {
                            id: row.try_get(0)?,
                            asset_id: row.try_get(1)?,
                            at: from_ms(row.try_get(2)?),
                            kind: kind.parse().map_err(|e| corrupt("asset_changes.kind", e))?,
                            subject: row.try_get(4)?,
                            old: json_column(row.try_get(5)?, "asset_changes.old")?,
                            new: json_column(row.try_get(6)?, "asset_changes.new")?,
                            run_id: row.try_get(7)?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use inventory_reads;
