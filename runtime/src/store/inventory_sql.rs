//! The inventory's SQL, written once for both stores.
//!
//! Every statement below uses `$n` placeholders, which PostgreSQL, sqlx's
//! SQLite driver and rusqlite all read (SQLite numbers `$1`, `$2`, … in order
//! of first appearance), and only what both dialects say. A merge's writes
//! become a list of [`Stmt`]s ([`statements`]) that each backend runs in its
//! own transaction, in order: the writer's rusqlite connection, or a sqlx
//! transaction under [`MERGE_LOCK`]. New assets get their ids here (the next
//! after the largest), which is safe because merges never run at once: SQLite
//! has one writer, PostgreSQL's merges take the lock.

use chrono::{DateTime, Utc};

use crate::inventory::merge::{AssetId, AssetState, Book, ChangeValue, Source, Write};
use crate::inventory::observation::Observation;
use crate::inventory::store::Processed;
use crate::store::ms;

/// The advisory lock a PostgreSQL merge or sweep holds for its transaction
/// (beside the store's other locks, 27252 and 27253).
pub const MERGE_LOCK: (i32, i32) = (27254, 0);

/// One value bound to a statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Bind {
    Int(i64),
    Text(String),
    MaybeInt(Option<i64>),
    MaybeText(Option<String>),
}

/// rusqlite binds a [`Bind`] as itself (sqlx's binds are each backend's).
impl rusqlite::ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Bind::Int(i) => i.to_sql(),
            Bind::Text(t) => t.to_sql(),
            Bind::MaybeInt(i) => i.to_sql(),
            Bind::MaybeText(t) => t.to_sql(),
        }
    }
}

/// A statement and the values of its placeholders, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stmt {
    pub sql: &'static str,
    pub binds: Vec<Bind>,
}

/// SQL built at run time with `$n` placeholders and the values they bind.
#[derive(Debug, Default)]
pub(crate) struct Built {
    pub sql: String,
    pub binds: Vec<Bind>,
}

impl Built {
    /// Append `sql`, whose `$?` is replaced by the next placeholder for `value`.
    pub fn push(&mut self, sql: &str, value: Bind) {
        self.binds.push(value);
        self.sql.push_str(&sql.replace("$?", &format!("${}", self.binds.len())));
    }
}

/// Record a result's processing, if it still waits (else 0 rows).
pub const CLAIM_RESULT: &str = "UPDATE results SET processing = $1, processing_error = $2 \
     WHERE part_id = $3 AND attempt = $4 AND processing IS NULL";

/// Note a run to sweep once it ended.
pub const NOTE_SWEEP: &str =
    "INSERT INTO inventory_sweeps (run_id) VALUES ($1) ON CONFLICT DO NOTHING";

/// The asset holding a key.
pub const KEY_OWNER: &str =
    "SELECT asset_id FROM asset_keys WHERE family = $1 AND name = $2 AND value = $3";

/// An asset's row.
pub const ASSET_ROW: &str = "SELECT kind, name, disappeared_at FROM assets WHERE id = $1";

/// An asset's keys.
pub const ASSET_KEYS: &str = "SELECT name, value FROM asset_keys WHERE asset_id = $1";

/// An asset's attributes.
pub const ASSET_ATTRIBUTES: &str = "SELECT name, value FROM asset_attributes WHERE asset_id = $1";

/// An asset's relations.
pub const ASSET_RELATIONS: &str = "SELECT relation, to_id FROM asset_relations WHERE asset_id = $1";

/// The id the next new asset gets.
pub const NEXT_ASSET_ID: &str = "SELECT COALESCE(MAX(id), 0) + 1 FROM assets";

/// Mark a run swept, if it was not (else 0 rows).
pub const MARK_SWEPT: &str =
    "UPDATE inventory_sweeps SET swept_at = $1 WHERE run_id = $2 AND swept_at IS NULL";

/// A run's task.
pub const RUN_TASK: &str = "SELECT task_id FROM runs WHERE id = $1";

/// The targets of a run's finished parts.
pub const FINISHED_SCOPES: &str =
    "SELECT targets FROM parts WHERE run_id = $1 AND state = 'finished'";

/// What a task's earlier runs saw and has not disappeared: asset, run, scope.
pub const EARLIER_SIGHTINGS: &str = "SELECT s.asset_id, s.run_id, s.scope FROM asset_sightings s \
     JOIN assets a ON a.id = s.asset_id \
     WHERE s.task_id = $1 AND s.run_id < $2 AND a.disappeared_at IS NULL";

/// An asset's addresses.
pub const ASSET_IPS: &str = "SELECT value FROM asset_keys WHERE asset_id = $1 AND name = 'ip'";

/// Make a run's failed processing wait again.
pub const RETRY_PROCESSING: &str = "UPDATE results SET processing = NULL, \
     processing_error = NULL WHERE run_id = $1 AND processing = 'failed'";

const INSERT_ASSET: &str = "INSERT INTO assets (id, kind, name, first_seen, last_seen) \
     VALUES ($1, $2, $3, $4, $4)";
const SET_KIND: &str = "UPDATE assets SET kind = $1 WHERE id = $2";
const SET_NAME: &str = "UPDATE assets SET name = $1 WHERE id = $2";
const ADD_KEY: &str = "INSERT INTO asset_keys (family, name, value, asset_id, address) \
     VALUES ($1, $2, $3, $4, $5)";
const REMOVE_KEY: &str =
    "DELETE FROM asset_keys WHERE family = $1 AND name = $2 AND value = $3 AND asset_id = $4";
const SET_ATTRIBUTE: &str = "INSERT INTO asset_attributes (asset_id, name, value, plugin, \
     task_id, run_id, part_id, agent, observed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
     ON CONFLICT (asset_id, name) DO UPDATE SET value = excluded.value, plugin = excluded.plugin, \
     task_id = excluded.task_id, run_id = excluded.run_id, part_id = excluded.part_id, \
     agent = excluded.agent, observed_at = excluded.observed_at";
const SET_RELATION: &str = "INSERT INTO asset_relations (asset_id, relation, to_id) \
     VALUES ($1, $2, $3) ON CONFLICT (asset_id, relation) DO UPDATE SET to_id = excluded.to_id";
const SEEN: &str = "UPDATE assets SET last_seen = CASE WHEN $1 > last_seen THEN $1 \
     ELSE last_seen END, disappeared_at = NULL WHERE id = $2";
const SIGHTING: &str = "INSERT INTO asset_sightings (task_id, asset_id, run_id, scope, seen_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (task_id, asset_id) DO UPDATE SET \
     scope = CASE WHEN excluded.run_id >= asset_sightings.run_id THEN excluded.scope \
     ELSE asset_sightings.scope END, \
     seen_at = CASE WHEN excluded.seen_at > asset_sightings.seen_at THEN excluded.seen_at \
     ELSE asset_sightings.seen_at END, \
     run_id = CASE WHEN excluded.run_id > asset_sightings.run_id THEN excluded.run_id \
     ELSE asset_sightings.run_id END";
const INSERT_CHANGE: &str = "INSERT INTO asset_changes (asset_id, at, kind, subject, old, new, \
     run_id) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const DISAPPEAR: &str = "UPDATE assets SET disappeared_at = $1 WHERE id = $2";

/// What [`CLAIM_RESULT`] records of a result's processing: its state and,
/// when it failed, the reason.
pub(crate) fn recorded(outcome: &Processed) -> (&'static str, Option<&str>) {
    match outcome {
        Processed::Observed(_) => ("done", None),
        Processed::Failed(reason) => ("failed", Some(reason)),
    }
}

/// A batch's merge, ready to write.
pub(crate) struct Merged {
    /// The statements that write it, in order.
    pub statements: Vec<Stmt>,
    /// Observations merged.
    pub observations: usize,
    /// Changes recorded.
    pub changes: usize,
}

/// Merge `claimed` (each result's observations and source, in order) into
/// `stored` (the assets their keys name, [`Book::keys_named`]), new assets
/// numbered from `first_id`.
pub(crate) fn merge(
    stored: Vec<AssetState>, claimed: &[(&[Observation], &Source)], first_id: i64,
) -> Merged {
    let mut book = Book::new(stored);
    let mut observations = 0;
    for (seen, source) in claimed {
        for o in seen.iter() {
            book.observe(o, source);
            observations += 1;
        }
    }
    let (writes, sources) = book.into_writes();
    let (statements, changes) = statements(writes, &sources, first_id);
    Merged { statements, observations, changes }
}

/// The statements that apply a merge's `writes`, new assets numbered from
/// `first_id`; and how many changes they record.
fn statements(writes: Vec<Write>, sources: &[Source], first_id: i64) -> (Vec<Stmt>, usize) {
    // A new asset's id: the merge numbers them -1, -2, … in order of creation.
    let real = |id: AssetId| if id > 0 { id } else { first_id - 1 - id };
    let mut out = Vec::with_capacity(writes.len());
    let mut changes = 0;
    let stmt = |sql, binds| Stmt { sql, binds };
    for write in writes {
        let next = match write {
            Write::CreateAsset { id, kind, name, source } => stmt(
                INSERT_ASSET,
                vec![
                    Bind::Int(real(id)),
                    Bind::Text(kind),
                    Bind::MaybeText(name),
                    Bind::Int(ms(sources[source].observed_at)),
                ],
            ),
            Write::SetKind { id, kind } => {
                stmt(SET_KIND, vec![Bind::Text(kind), Bind::Int(real(id))])
            }
            Write::SetName { id, name } => {
                stmt(SET_NAME, vec![Bind::Text(name), Bind::Int(real(id))])
            }
            Write::AddKey { id, family, key } => stmt(
                ADD_KEY,
                vec![
                    Bind::Text(family),
                    Bind::Text(key.name.as_str().to_string()),
                    Bind::Text(key.value.clone()),
                    Bind::Int(real(id)),
                    Bind::MaybeText(key.address().map(|a| a.lo_hex())),
                ],
            ),
            Write::RemoveKey { id, family, key } => stmt(
                REMOVE_KEY,
                vec![
                    Bind::Text(family),
                    Bind::Text(key.name.as_str().to_string()),
                    Bind::Text(key.value),
                    Bind::Int(real(id)),
                ],
            ),
            Write::SetAttribute { id, name, value, source } => {
                let s = &sources[source];
                stmt(
                    SET_ATTRIBUTE,
                    vec![
                        Bind::Int(real(id)),
                        Bind::Text(name),
                        Bind::Text(value.to_string()),
                        Bind::Text(s.plugin.clone()),
                        Bind::Int(s.task_id),
                        Bind::Int(s.run_id),
                        Bind::Int(s.part_id),
                        Bind::Text(s.agent.clone()),
                        Bind::Int(ms(s.observed_at)),
                    ],
                )
            }
            Write::SetRelation { id, relation, to } => stmt(
                SET_RELATION,
                vec![Bind::Int(real(id)), Bind::Text(relation), Bind::Int(real(to))],
            ),
            Write::Seen { id, source } => {
                let s = &sources[source];
                let (id, at) = (real(id), ms(s.observed_at));
                out.push(stmt(SEEN, vec![Bind::Int(at), Bind::Int(id)]));
                let scope = serde_json::to_string(&s.scope).expect("targets serialize");
                stmt(
                    SIGHTING,
                    vec![
                        Bind::Int(s.task_id),
                        Bind::Int(id),
                        Bind::Int(s.run_id),
                        Bind::Text(scope),
                        Bind::Int(at),
                    ],
                )
            }
            Write::Change { change, source } => {
                changes += 1;
                let s = &sources[source];
                let text = |v: Option<ChangeValue>| {
                    Bind::MaybeText(v.map(|v| match v {
                        ChangeValue::Json(json) => json.to_string(),
                        ChangeValue::Asset(id) => real(id).to_string(),
                    }))
                };
                stmt(
                    INSERT_CHANGE,
                    vec![
                        Bind::Int(real(change.asset_id)),
                        Bind::Int(ms(s.observed_at)),
                        Bind::Text(change.kind.as_str().to_string()),
                        Bind::MaybeText(change.subject),
                        text(change.old),
                        text(change.new),
                        Bind::MaybeInt(Some(s.run_id)),
                    ],
                )
            }
        };
        out.push(next);
    }
    (out, changes)
}

/// The statements that record `gone` as disappeared by run `run_id`'s sweep.
pub(crate) fn disappearances(gone: &[AssetId], run_id: i64, now: DateTime<Utc>) -> Vec<Stmt> {
    let at = ms(now);
    gone.iter()
        .flat_map(|&id| {
            [
                Stmt { sql: DISAPPEAR, binds: vec![Bind::Int(at), Bind::Int(id)] },
                Stmt {
                    sql: INSERT_CHANGE,
                    binds: vec![
                        Bind::Int(id),
                        Bind::Int(at),
                        Bind::Text("disappeared".into()),
                        Bind::MaybeText(None),
                        Bind::MaybeText(None),
                        Bind::MaybeText(None),
                        Bind::MaybeInt(Some(run_id)),
                    ],
                },
            ]
        })
        .collect()
}

/// `text` with `LIKE`'s wildcards escaped (for `ESCAPE '\'`).
fn like_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// `text` as a `LIKE` pattern matching it anywhere (with `ESCAPE '\'`).
pub(crate) fn contains_pattern(text: &str) -> String {
    format!("%{}%", like_escaped(text))
}

/// The `LIKE` pattern of a stored JSON string starting with `text`.
pub(crate) fn starts_with_pattern(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_string()).to_string();
    format!("{}%", like_escaped(&quoted[..quoted.len() - 1]))
}

/// The `LIKE` patterns of a stored compact JSON list holding `item`
/// (first, in the middle, last); a list of it alone is `[item]`.
pub(crate) fn list_item_patterns(item: &serde_json::Value) -> [String; 3] {
    let item = like_escaped(&item.to_string());
    [format!("[{item},%"), format!("%,{item},%"), format!("%,{item}]")]
}

/// A part's targets as stored (a JSON list).
pub(crate) fn parse_targets(text: &str) -> crate::store::StoreResult<Vec<String>> {
    serde_json::from_str(text)
        .map_err(|e| crate::store::StoreError::Corrupt(format!("targets: {e}")))
}
