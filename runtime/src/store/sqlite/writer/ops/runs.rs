//! New runs on the writer: a run from its snapshot, the parts of its split,
//! a recurring run claimed at its due time. The store reads the run it made
//! afterwards, through its readers.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::statements::WriterConn;
use super::transition;
use crate::scheduler::{Entity, NewPart, NewRun, State, TaskSpec, targeting::span_of_targets};
use crate::store::{Recurrence, StoreError, StoreResult, chained_twice, ms};

/// Parts stored per statement when a run's parts are added.
const INSERT_CHUNK: usize = 10_000;

/// Insert a run in state Created; returns its id.
pub fn insert_run(conn: &WriterConn<'_>, run: &NewRun, now: DateTime<Utc>) -> StoreResult<i64> {
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO runs (task_id, spec, secrets, plugin_sha256, state, cause, rerun_of, \
             created_at, plugin, rank, lease_ttl_ms, retries, explicit_agents, caused_by, \
             retry_backoff_ms) \
             VALUES (?1, ?2, ?3, ?4, 'created', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             RETURNING id",
        )?
        .query_row(
            params![
                run.task_id,
                serde_json::to_string(&run.spec).expect("task spec serializes"),
                run.secrets.to_string(),
                run.plugin_sha256,
                run.cause.as_str(),
                run.rerun_of,
                ms(now),
                run.spec.plugin,
                run.rank(),
                run.lease_ttl_ms(),
                i64::from(run.spec.retries),
                !run.spec.targeting.agents.is_empty(),
                run.caused_by,
                run.retry_backoff_ms(),
            ],
            |row| row.get(0),
        )
        .map_err(|e| match &e {
            rusqlite::Error::SqliteFailure(failure, _)
                if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                chained_twice(run)
            }
            _ => e.into(),
        })?;
    let mut listed = conn
        .prepare_cached("INSERT OR IGNORE INTO run_agents (run_id, agent_name) VALUES (?1, ?2)")?;
    for agent in &run.spec.targeting.agents {
        listed.execute(params![id, agent])?;
    }
    transition::event(conn, now, ("run", id), "created", None, &run.event_detail())?;
    Ok(id)
}

/// A run and its parts, split before it was stored; returns its id.
pub fn create_run_with_parts(
    conn: &WriterConn<'_>, run: &NewRun, parts: &[NewPart], now: DateTime<Utc>,
) -> StoreResult<i64> {
    let id = insert_run(conn, run, now)?;
    store_parts(conn, id, parts, now)?;
    Ok(id)
}

/// Claim a recurring task's due time (a compare-and-set on its next run
/// time: one daemon wins each occurrence) and insert its run; the run's id,
/// or `None` if the occurrence was claimed already.
pub fn claim_recurrence(
    conn: &WriterConn<'_>, recurrence: &Recurrence, run: &NewRun, now: DateTime<Utc>,
) -> StoreResult<Option<i64>> {
    let claimed = conn
        .prepare_cached("UPDATE tasks SET next_run_at = ?1 WHERE id = ?2 AND next_run_at = ?3")?
        .execute(params![recurrence.next.map(ms), recurrence.task_id, ms(recurrence.due)])?;
    if claimed != 1 {
        return Ok(None);
    }
    insert_run(conn, run, now).map(Some)
}

/// Store the parts of Created run `run_id`; the run becomes Waiting
/// (Finished with no parts).
pub fn store_parts(
    conn: &WriterConn<'_>, run_id: i64, parts: &[NewPart], now: DateTime<Utc>,
) -> StoreResult<()> {
    let (state, spec, rank) = conn
        .prepare_cached("SELECT state, spec, rank FROM runs WHERE id = ?1")?
        .query_row([run_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, i64>(2)?))
        })
        .optional()?
        .ok_or_else(|| StoreError::NotFound { what: "run", id: run_id.to_string() })?;
    let state = transition::parse_state(&state)?;
    state.check(Entity::Run, State::Waiting)?;
    if state != State::Created {
        return Err(StoreError::Invalid(format!("run {run_id} already has its parts")));
    }
    let spec: TaskSpec =
        serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt(format!("runs.spec: {e}")))?;
    let pins = spec.targeting.pins();
    // A few statements for the whole split, not one per part (a /16 network is
    // 65,536 parts): the rows travel as one JSON array per chunk, which
    // SQLite unpacks itself.
    let mut rows = Vec::with_capacity(parts.len() * pins.len());
    for part in parts {
        let span = span_of_targets(&part.targets);
        let targets = serde_json::to_string(&part.targets).expect("targets serialize");
        for pin in &pins {
            rows.push(serde_json::json!([
                part.label,
                targets,
                part.payload,
                span.map(|s| s.lo_hex()),
                span.map(|s| s.hi_hex()),
                pin,
            ]));
        }
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO parts (run_id, seq, label, targets, payload, span_lo, span_hi, \
         pinned_agent, state, rank, available_at) \
         SELECT ?1, ?2 + CAST(j.key AS INTEGER), json_extract(j.value, '$[0]'), \
         json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), \
         json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), \
         json_extract(j.value, '$[5]'), 'waiting', ?3, ?4 \
         FROM json_each(?5) AS j ORDER BY CAST(j.key AS INTEGER)",
    )?;
    let mut seq = 0i64;
    for chunk in rows.chunks(INSERT_CHUNK) {
        let json = serde_json::to_string(chunk).expect("JSON serializes");
        insert.execute(params![run_id, seq, rank, ms(now), json])?;
        seq += chunk.len() as i64;
    }
    drop(insert);
    conn.prepare_cached("UPDATE runs SET n_waiting = ?1 WHERE id = ?2")?
        .execute(params![seq, run_id])?;
    let detail = serde_json::json!({ "parts": seq });
    transition::move_run(conn, run_id, State::Created, State::Waiting, now, &detail)?;
    transition::refresh_run(conn, run_id, now)
}
