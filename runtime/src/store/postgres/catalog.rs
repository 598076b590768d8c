//! Plugins, agents, tasks and the event log in PostgreSQL: the rows that are
//! not part of a run's life cycle.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};

use super::transition;
use crate::scheduler::{Agent, AgentRegistration, TaskSpec, targeting::AddressSpan};
use crate::store::ms;
use crate::store::{
    AgentChanges, PluginRecord, StoreError, StoreResult, TaskWrite, monitor_sql, retire,
};

pub async fn put_plugin(pool: &PgPool, plugin: &PluginRecord) -> StoreResult<bool> {
    let mut tx = pool.begin().await?;
    // Uploads one at a time (every daemon of the database), so two different
    // modules cannot both take a name and version.
    sqlx::query("LOCK TABLE plugins IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
    let taken: Option<String> = sqlx::query_scalar(
        "SELECT sha256 FROM plugins WHERE name = $1 AND version = $2 AND sha256 <> $3 LIMIT 1",
    )
    .bind(&plugin.name)
    .bind(&plugin.version)
    .bind(&plugin.sha256)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(sha256) = taken {
        return Err(crate::store::version_taken(plugin, sha256));
    }
    let inserted = sqlx::query(
        "INSERT INTO plugins (sha256, name, version, manifest, size, uploaded_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(&plugin.sha256)
    .bind(&plugin.name)
    .bind(&plugin.version)
    .bind(plugin.manifest.to_string())
    .bind(plugin.size as i64)
    .bind(ms(plugin.uploaded_at))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let restored = !inserted
        && sqlx::query(retire::RESTORE)
            .bind(&plugin.sha256)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if inserted || restored {
        let (id, _, _) = find_version(&mut tx, &plugin.name, &plugin.version).await?;
        let detail = retire::version_detail(&plugin.name, &plugin.version, &plugin.sha256);
        let kind = if inserted { "uploaded" } else { "restored" };
        transition::event(&mut tx, plugin.uploaded_at, "plugin", id, kind, None, detail).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// Plugin `name` `version`: its id, sha256 and whether it is retired.
async fn find_version(
    tx: &mut Transaction<'_, Postgres>, name: &str, version: &str,
) -> StoreResult<(i64, String, bool)> {
    sqlx::query_as(retire::FIND_VERSION)
        .bind(name)
        .bind(version)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "plugin version",
            id: format!("{name} {version}"),
        })
}

/// Retire plugin `name` `version` unless something still uses it (the rule
/// of [`retire::check`]); its sha256.
pub async fn retire_plugin(
    pool: &PgPool, name: &str, version: &str, now: DateTime<Utc>,
) -> StoreResult<String> {
    let mut tx = pool.begin().await?;
    // One plugin change at a time, as uploads.
    sqlx::query("LOCK TABLE plugins IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
    let (id, sha256, retired) = find_version(&mut tx, name, version).await?;
    if retired {
        return Ok(sha256);
    }
    let live_run: Option<i64> =
        sqlx::query_scalar(retire::LIVE_RUN).bind(&sha256).fetch_optional(&mut *tx).await?;
    let other_version: bool = sqlx::query_scalar(retire::OTHER_VERSION_IN_SERVICE)
        .bind(name)
        .bind(&sha256)
        .fetch_one(&mut *tx)
        .await?;
    let tasks: Vec<(String, String)> =
        sqlx::query_as(retire::TASK_SPECS).fetch_all(&mut *tx).await?;
    retire::check(&retire::Usage { name, version, live_run, other_version, tasks: &tasks })?;
    sqlx::query(retire::RETIRE).bind(ms(now)).bind(&sha256).execute(&mut *tx).await?;
    let detail = retire::version_detail(name, version, &sha256);
    transition::event(&mut tx, now, "plugin", id, "retired", None, detail).await?;
    tx.commit().await?;
    Ok(sha256)
}

pub async fn register_agent(
    pool: &PgPool, reg: &AgentRegistration, token_hash: &str, now: DateTime<Utc>,
) -> StoreResult<Agent> {
    let mut tx = pool.begin().await?;
    let networks = serde_json::to_string(&reg.networks).expect("networks serialize");
    let plugins = serde_json::to_string(&reg.plugins).expect("plugin names serialize");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO agents (name, token_hash, networks, plugins, pooled_slots, dedicated_slots, \
         registered_at, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, \
         networks = excluded.networks, plugins = excluded.plugins, \
         pooled_slots = excluded.pooled_slots, dedicated_slots = excluded.dedicated_slots, \
         last_seen = excluded.last_seen RETURNING id",
    )
    .bind(&reg.name)
    .bind(token_hash)
    .bind(networks)
    .bind(plugins)
    .bind(i64::from(reg.pooled_slots))
    .bind(i64::from(reg.dedicated_slots))
    .bind(ms(now))
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM agent_networks WHERE agent_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for net in &reg.networks {
        let span = AddressSpan::of_net(&net.trunc());
        sqlx::query("INSERT INTO agent_networks (agent_id, lo, hi) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(span.lo_hex())
            .bind(span.hi_hex())
            .execute(&mut *tx)
            .await?;
    }
    let detail = serde_json::json!({ "name": reg.name, "networks": reg.networks });
    transition::event(&mut tx, now, "agent", id, "registered", None, detail).await?;
    tx.commit().await?;
    Ok(Agent { id, registration: reg.clone(), last_seen: now, down_since: None })
}

pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// A write of `spec` refused because another task has its name.
fn name_taken(spec: &TaskSpec) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict { what: "task", name: spec.name.clone() }
        } else {
            e.into()
        }
    }
}

/// Create a task; its id.
pub async fn create_task(pool: &PgPool, task: &TaskWrite, now: DateTime<Utc>) -> StoreResult<i64> {
    let spec = &task.spec;
    let mut tx = pool.begin().await?;
    let spec_json = serde_json::to_string(spec).expect("task spec serializes");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (name, spec, secrets, next_run_at, created_at, updated_at, \
         chained_since) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(&spec.name)
    .bind(spec_json)
    .bind(task.secrets_text().unwrap_or_else(|| "{}".into()))
    .bind(task.next_run_at.map(ms))
    .bind(ms(now))
    .bind(ms(now))
    .bind(task.chained_since.map(ms))
    .fetch_one(&mut *tx)
    .await
    .map_err(name_taken(spec))?;
    transition::event(&mut tx, now, "task", id, "created", None, task.event_detail()).await?;
    tx.commit().await?;
    Ok(id)
}

/// Change task `id`'s definition (and its secrets, when given).
pub async fn update_task(
    pool: &PgPool, id: i64, task: &TaskWrite, now: DateTime<Utc>,
) -> StoreResult<()> {
    let spec = &task.spec;
    let mut tx = pool.begin().await?;
    let spec_json = serde_json::to_string(spec).expect("task spec serializes");
    let updated = sqlx::query(
        "UPDATE tasks SET name = $1, spec = $2, secrets = COALESCE($3, secrets), next_run_at = $4, \
         updated_at = $5, chained_since = $7 WHERE id = $6",
    )
    .bind(&spec.name)
    .bind(spec_json)
    .bind(task.secrets_text())
    .bind(task.next_run_at.map(ms))
    .bind(ms(now))
    .bind(id)
    .bind(task.chained_since.map(ms))
    .execute(&mut *tx)
    .await
    .map_err(name_taken(spec))?
    .rows_affected();
    if updated == 0 {
        return Err(StoreError::NotFound { what: "task", id: id.to_string() });
    }
    transition::event(&mut tx, now, "task", id, "updated", None, task.event_detail()).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_next_run(
    pool: &PgPool, task_id: i64, expected: Option<DateTime<Utc>>, next: Option<DateTime<Utc>>,
) -> StoreResult<bool> {
    let changed = sqlx::query(
        "UPDATE tasks SET next_run_at = $1 WHERE id = $2 AND next_run_at IS NOT DISTINCT FROM $3",
    )
    .bind(next.map(ms))
    .bind(task_id)
    .bind(expected.map(ms))
    .execute(pool)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

pub async fn put_module(pool: &PgPool, sha256: &str, bytes: &[u8]) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO modules (sha256, bytes) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(sha256)
    .bind(bytes)
    .execute(pool)
    .await?;
    Ok(())
}

/// Mark agents down and up again ([`crate::store::monitor_sql`]), each with
/// its event, in one transaction.
pub async fn monitor_agents(
    pool: &PgPool, cutoff: DateTime<Utc>, now: DateTime<Utc>,
) -> StoreResult<AgentChanges> {
    let mut tx = pool.begin().await?;
    let down: Vec<(i64, String)> = sqlx::query_as(monitor_sql::MARK_DOWN)
        .bind(ms(now))
        .bind(ms(cutoff))
        .fetch_all(&mut *tx)
        .await?;
    let up: Vec<(i64, String)> = sqlx::query_as(monitor_sql::MARK_UP).fetch_all(&mut *tx).await?;
    let mut changes = AgentChanges::default();
    for ((id, name), kind) in
        down.into_iter().map(|a| (a, "down")).chain(up.into_iter().map(|a| (a, "up")))
    {
        let detail = serde_json::json!({ "name": name });
        transition::event(&mut tx, now, "agent", id, kind, None, detail).await?;
        if kind == "down" { changes.down.push(name) } else { changes.up.push(name) }
    }
    tx.commit().await?;
    Ok(changes)
}
