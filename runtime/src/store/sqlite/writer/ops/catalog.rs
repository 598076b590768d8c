//! The catalog on the writer: plugins, their modules, tasks and their
//! next-run marks. Each change that an admin would look for is an event.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::statements::WriterConn;
use super::transition;
use crate::scheduler::TaskSpec;
use crate::store::{PluginRecord, StoreError, StoreResult, TaskWrite, ms, retire, version_taken};

/// Store a plugin's record; whether it is new (an upload of a known sha256
/// changes nothing).
pub fn put_plugin(conn: &WriterConn<'_>, plugin: &PluginRecord) -> StoreResult<bool> {
    let taken: Option<String> = conn
        .prepare_cached(
            "SELECT sha256 FROM plugins WHERE name = ?1 AND version = ?2 AND sha256 <> ?3 LIMIT 1",
        )?
        .query_row(params![plugin.name, plugin.version, plugin.sha256], |row| row.get(0))
        .optional()?;
    if let Some(sha256) = taken {
        return Err(version_taken(plugin, sha256));
    }
    let id: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO plugins (sha256, name, version, manifest, size, uploaded_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (sha256) DO NOTHING RETURNING id",
        )?
        .query_row(
            params![
                plugin.sha256,
                plugin.name,
                plugin.version,
                plugin.manifest.to_string(),
                plugin.size as i64,
                ms(plugin.uploaded_at)
            ],
            |row| row.get(0),
        )
        .optional()?;
    let Some(id) = id else {
        restore(conn, plugin)?;
        return Ok(false);
    };
    let detail = retire::version_detail(&plugin.name, &plugin.version, &plugin.sha256);
    transition::event(conn, plugin.uploaded_at, ("plugin", id), "uploaded", None, &detail)?;
    Ok(true)
}

/// A retired version uploaded again is back in service.
fn restore(conn: &WriterConn<'_>, plugin: &PluginRecord) -> StoreResult<()> {
    if conn.prepare_cached(retire::RESTORE)?.execute([&plugin.sha256])? == 1 {
        let (id, _, _) = find_version(conn, &plugin.name, &plugin.version)?;
        let detail = retire::version_detail(&plugin.name, &plugin.version, &plugin.sha256);
        transition::event(conn, plugin.uploaded_at, ("plugin", id), "restored", None, &detail)?;
    }
    Ok(())
}

/// Plugin `name` `version`: its id, sha256 and whether it is retired.
fn find_version(
    conn: &WriterConn<'_>, name: &str, version: &str,
) -> StoreResult<(i64, String, bool)> {
    conn.prepare_cached(retire::FIND_VERSION)?
        .query_row(params![name, version], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound {
            what: "plugin version",
            id: format!("{name} {version}"),
        })
}

/// Retire plugin `name` `version` unless something still uses it (the rule
/// of [`retire::check`]); its sha256.
pub fn retire_plugin(
    conn: &WriterConn<'_>, name: &str, version: &str, now: DateTime<Utc>,
) -> StoreResult<String> {
    let (id, sha256, retired) = find_version(conn, name, version)?;
    if retired {
        return Ok(sha256);
    }
    let live_run =
        conn.prepare_cached(retire::LIVE_RUN)?.query_row([&sha256], |r| r.get(0)).optional()?;
    let other_version = conn
        .prepare_cached(retire::OTHER_VERSION_IN_SERVICE)?
        .query_row(params![name, sha256], |r| r.get(0))?;
    let tasks = conn
        .prepare_cached(retire::TASK_SPECS)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
    retire::check(&retire::Usage { name, version, live_run, other_version, tasks: &tasks })?;
    conn.prepare_cached(retire::RETIRE)?.execute(params![ms(now), sha256])?;
    let detail = retire::version_detail(name, version, &sha256);
    transition::event(conn, now, ("plugin", id), "retired", None, &detail)?;
    Ok(sha256)
}

/// Store a plugin's module (its bytes), once per sha256.
pub fn put_module(conn: &WriterConn<'_>, sha256: &str, bytes: &[u8]) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO modules (sha256, bytes) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING",
    )?
    .execute(params![sha256, bytes])?;
    Ok(())
}

/// A task's name taken by another task, as the store reports it.
fn name_taken(spec: &TaskSpec) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |e| match &e {
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
        {
            StoreError::Conflict { what: "task", name: spec.name.clone() }
        }
        _ => e.into(),
    }
}

/// Create a task; its id.
pub fn create_task(
    conn: &WriterConn<'_>, task: &TaskWrite, now: DateTime<Utc>,
) -> StoreResult<i64> {
    let spec = &task.spec;
    let spec_json = serde_json::to_string(spec).expect("task spec serializes");
    let secrets = task.secrets_text().unwrap_or_else(|| "{}".into());
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO tasks (name, spec, secrets, next_run_at, created_at, updated_at, \
             chained_since) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6) RETURNING id",
        )?
        .query_row(
            params![
                spec.name,
                spec_json,
                secrets,
                task.next_run_at.map(ms),
                ms(now),
                task.chained_since.map(ms)
            ],
            |row| row.get(0),
        )
        .map_err(name_taken(spec))?;
    transition::event(conn, now, ("task", id), "created", None, &task.event_detail())?;
    Ok(id)
}

/// Change task `id`'s definition (and its secrets, when given).
pub fn update_task(
    conn: &WriterConn<'_>, id: i64, task: &TaskWrite, now: DateTime<Utc>,
) -> StoreResult<()> {
    let spec = &task.spec;
    let spec_json = serde_json::to_string(spec).expect("task spec serializes");
    let updated = conn
        .prepare_cached(
            "UPDATE tasks SET name = ?1, spec = ?2, secrets = COALESCE(?3, secrets), \
             next_run_at = ?4, updated_at = ?5, chained_since = ?7 WHERE id = ?6",
        )?
        .execute(params![
            spec.name,
            spec_json,
            task.secrets_text(),
            task.next_run_at.map(ms),
            ms(now),
            id,
            task.chained_since.map(ms)
        ])
        .map_err(name_taken(spec))?;
    if updated == 0 {
        return Err(StoreError::NotFound { what: "task", id: id.to_string() });
    }
    transition::event(conn, now, ("task", id), "updated", None, &task.event_detail())
}

/// Move task `task_id`'s next run from `expected` to `next`; whether it was
/// still `expected` (else another daemon or sweep moved it first).
pub fn set_next_run(
    conn: &WriterConn<'_>, task_id: i64, expected: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
) -> StoreResult<bool> {
    let changed = conn
        .prepare_cached("UPDATE tasks SET next_run_at = ?1 WHERE id = ?2 AND next_run_at IS ?3")?
        .execute(params![next.map(ms), task_id, expected.map(ms)])?;
    Ok(changed == 1)
}
