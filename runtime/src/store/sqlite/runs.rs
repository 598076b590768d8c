//! Runs and their parts: creation from a snapshot, the parts of a split, and
//! the admin actions on a whole run (suspend, resume, cancel).

use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::{ms, rows, transition};
use crate::scheduler::{
    Entity, FORCED_RANK, LEASE_GRACE, NewPart, NewRun, Part, Run, RunCause, State,
    targeting::span_of_targets,
};
use crate::store::{Recurrence, StoreError, StoreResult};

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        what: "run",
        id: id.to_string(),
    }
}

/// Insert a run in state Created; returns its id.
pub async fn insert_run(
    tx: &mut Transaction<'_, Sqlite>,
    run: &NewRun,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let rank = if run.cause == RunCause::Forced {
        FORCED_RANK
    } else {
        run.spec.priority.rank()
    };
    let ttl_ms = run
        .spec
        .timeout_ms
        .saturating_add(LEASE_GRACE.as_millis() as u64);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (task_id, spec, secrets, plugin_sha256, state, cause, rerun_of, \
         created_at, plugin, rank, lease_ttl_ms, retries, explicit_agents) \
         VALUES (?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(run.task_id)
    .bind(serde_json::to_string(&run.spec).expect("task spec serializes"))
    .bind(run.secrets.to_string())
    .bind(&run.plugin_sha256)
    .bind(run.cause.as_str())
    .bind(run.rerun_of)
    .bind(ms(now))
    .bind(&run.spec.plugin)
    .bind(rank)
    .bind(i64::try_from(ttl_ms).unwrap_or(i64::MAX))
    .bind(i64::from(run.spec.retries))
    .bind(!run.spec.targeting.agents.is_empty())
    .fetch_one(&mut **tx)
    .await?;
    for agent in &run.spec.targeting.agents {
        sqlx::query("INSERT OR IGNORE INTO run_agents (run_id, agent_name) VALUES (?, ?)")
            .bind(id)
            .bind(agent)
            .execute(&mut **tx)
            .await?;
    }
    let detail = serde_json::json!({
        "task_id": run.task_id, "cause": run.cause.as_str(), "plugin_sha256": run.plugin_sha256,
    });
    transition::event(tx, now, "run", id, "created", None, detail).await?;
    Ok(id)
}

/// Read a run inside a transaction.
pub async fn load_run(conn: &mut SqliteConnection, id: i64) -> StoreResult<Run> {
    let sql = format!("SELECT {} FROM runs WHERE id = ?", rows::RUN_COLUMNS);
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| not_found(id))?;
    rows::run(&row)
}

pub async fn claim_recurrence(
    pool: &SqlitePool,
    recurrence: &Recurrence,
    run: &NewRun,
    now: DateTime<Utc>,
) -> StoreResult<Option<Run>> {
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query("UPDATE tasks SET next_run_at = ? WHERE id = ? AND next_run_at = ?")
        .bind(recurrence.next.map(ms))
        .bind(recurrence.task_id)
        .bind(ms(recurrence.due))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if claimed != 1 {
        return Ok(None);
    }
    let id = insert_run(&mut tx, run, now).await?;
    let created = load_run(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Some(created))
}

/// Parts stored per statement when a run's parts are added.
const INSERT_CHUNK: usize = 10_000;

pub async fn add_parts(
    pool: &SqlitePool,
    run_id: i64,
    parts: &[NewPart],
    now: DateTime<Utc>,
) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    let stored = store_parts(&mut tx, run_id, parts, now).await?;
    tx.commit().await?;
    Ok(stored)
}

/// A run with its parts, split before it was stored, in one transaction.
pub async fn create_run_with_parts(
    pool: &SqlitePool,
    run: &NewRun,
    parts: &[NewPart],
    now: DateTime<Utc>,
) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    let id = insert_run(&mut tx, run, now).await?;
    let stored = store_parts(&mut tx, id, parts, now).await?;
    tx.commit().await?;
    Ok(stored)
}

/// Store the parts of a Created run inside `tx`; the run becomes Waiting
/// (Finished with no parts).
async fn store_parts(
    tx: &mut Transaction<'_, Sqlite>,
    run_id: i64,
    parts: &[NewPart],
    now: DateTime<Utc>,
) -> StoreResult<Run> {
    let run = load_run(tx, run_id).await?;
    run.state.check(Entity::Run, State::Waiting)?;
    if run.state != State::Created {
        return Err(StoreError::Invalid(format!(
            "run {run_id} already has its parts"
        )));
    }
    let rank: i64 = sqlx::query_scalar("SELECT rank FROM runs WHERE id = ?")
        .bind(run_id)
        .fetch_one(&mut **tx)
        .await?;
    // `each_agent`: every listed agent gets its own copy of every part.
    let pins: Vec<Option<&str>> = if run.spec.targeting.each_agent {
        run.spec
            .targeting
            .agents
            .iter()
            .map(|a| Some(a.as_str()))
            .collect()
    } else {
        vec![None]
    };
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
    let mut seq = 0i64;
    for chunk in rows.chunks(INSERT_CHUNK) {
        sqlx::query(
            "INSERT INTO parts (run_id, seq, label, targets, payload, span_lo, span_hi, \
             pinned_agent, state, rank, available_at) \
             SELECT ?1, ?2 + CAST(j.key AS INTEGER), json_extract(j.value, '$[0]'), \
             json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), \
             json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), \
             json_extract(j.value, '$[5]'), 'waiting', ?3, ?4 \
             FROM json_each(?5) AS j ORDER BY CAST(j.key AS INTEGER)",
        )
        .bind(run_id)
        .bind(seq)
        .bind(rank)
        .bind(ms(now))
        .bind(serde_json::Value::from(chunk.to_vec()).to_string())
        .execute(&mut **tx)
        .await?;
        seq += chunk.len() as i64;
    }
    sqlx::query("UPDATE runs SET n_waiting = ? WHERE id = ?")
        .bind(seq)
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    let detail = serde_json::json!({ "parts": seq });
    transition::move_run(tx, run_id, State::Created, State::Waiting, now, detail).await?;
    transition::refresh_run(tx, run_id, now).await?;
    load_run(tx, run_id).await
}

pub async fn fail_run(
    pool: &SqlitePool,
    run_id: i64,
    error: &str,
    now: DateTime<Utc>,
) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    let run = load_run(&mut tx, run_id).await?;
    if run.state != State::Created {
        return Err(StoreError::Invalid(format!(
            "run {run_id} is {}: only a run waiting for its split can fail this way",
            run.state
        )));
    }
    sqlx::query("UPDATE runs SET error = ? WHERE id = ?")
        .bind(error)
        .bind(run_id)
        .execute(&mut *tx)
        .await?;
    let detail = serde_json::json!({ "error": error });
    transition::move_run(&mut tx, run_id, State::Created, State::Failed, now, detail).await?;
    let stored = load_run(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(stored)
}

pub async fn run(pool: &SqlitePool, id: i64) -> StoreResult<Option<Run>> {
    let sql = format!("SELECT {} FROM runs WHERE id = ?", rows::RUN_COLUMNS);
    sqlx::query(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::run)
        .transpose()
}

pub async fn runs(pool: &SqlitePool, task_id: Option<i64>) -> StoreResult<Vec<Run>> {
    let sql = format!(
        "SELECT {} FROM runs WHERE ?1 IS NULL OR task_id = ?1 ORDER BY id DESC",
        rows::RUN_COLUMNS
    );
    sqlx::query(&sql)
        .bind(task_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::run)
        .collect()
}

pub async fn active_runs(pool: &SqlitePool, task_id: i64) -> StoreResult<Vec<Run>> {
    let sql = format!(
        "SELECT {} FROM runs WHERE task_id = ? \
         AND state NOT IN ('finished', 'failed', 'canceled') ORDER BY id",
        rows::RUN_COLUMNS
    );
    sqlx::query(&sql)
        .bind(task_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::run)
        .collect()
}

pub async fn created_runs(pool: &SqlitePool) -> StoreResult<Vec<Run>> {
    let sql = format!(
        "SELECT {} FROM runs WHERE state = 'created' ORDER BY id",
        rows::RUN_COLUMNS
    );
    sqlx::query(&sql)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::run)
        .collect()
}

pub async fn run_secrets(pool: &SqlitePool, run_id: i64) -> StoreResult<serde_json::Value> {
    let text: Option<String> = sqlx::query_scalar("SELECT secrets FROM runs WHERE id = ?")
        .bind(run_id)
        .fetch_optional(pool)
        .await?;
    let text = text.ok_or_else(|| not_found(run_id))?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("runs.secrets: {e}")))
}

pub async fn parts(pool: &SqlitePool, run_id: i64) -> StoreResult<Vec<Part>> {
    let sql = format!(
        "SELECT {} FROM parts WHERE run_id = ? ORDER BY seq",
        rows::PART_COLUMNS
    );
    sqlx::query(&sql)
        .bind(run_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::part)
        .collect()
}

pub async fn part(pool: &SqlitePool, part_id: i64) -> StoreResult<Option<Part>> {
    let sql = format!("SELECT {} FROM parts WHERE id = ?", rows::PART_COLUMNS);
    sqlx::query(&sql)
        .bind(part_id)
        .fetch_optional(pool)
        .await?
        .as_ref()
        .map(rows::part)
        .transpose()
}

/// Move every part of `run_id` that may go to `to` (per the transition table)
/// there; returns how many moved.
async fn move_all_parts(
    conn: &mut SqliteConnection,
    run_id: i64,
    from: &[State],
    to: State,
) -> StoreResult<u64> {
    if from.is_empty() {
        return Ok(0);
    }
    let placeholders = vec!["?"; from.len()].join(", ");
    let sql = format!("UPDATE parts SET state = ? WHERE run_id = ? AND state IN ({placeholders})");
    let mut query = sqlx::query(&sql).bind(to.as_str()).bind(run_id);
    for state in from {
        query = query.bind(state.as_str());
    }
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

pub async fn suspend_run(pool: &SqlitePool, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    let run = load_run(&mut tx, run_id).await?;
    run.state.check(Entity::Run, State::Suspended)?;
    let from = State::sources(Entity::Part, State::Suspended);
    let moved = move_all_parts(&mut tx, run_id, &from, State::Suspended).await?;
    transition::recount(&mut tx, run_id).await?;
    let detail = serde_json::json!({ "parts_suspended": moved });
    transition::move_run(&mut tx, run_id, run.state, State::Suspended, now, detail).await?;
    transition::refresh_run(&mut tx, run_id, now).await?;
    let stored = load_run(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(stored)
}

pub async fn resume_run(pool: &SqlitePool, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    let run = load_run(&mut tx, run_id).await?;
    if run.state != State::Suspended {
        return Err(StoreError::Invalid(format!(
            "run {run_id} is {}, not suspended",
            run.state
        )));
    }
    let moved = move_all_parts(&mut tx, run_id, &[State::Suspended], State::Waiting).await?;
    transition::recount(&mut tx, run_id).await?;
    let detail = serde_json::json!({ "parts_resumed": moved });
    transition::move_run(
        &mut tx,
        run_id,
        State::Suspended,
        State::Waiting,
        now,
        detail,
    )
    .await?;
    transition::refresh_run(&mut tx, run_id, now).await?;
    let stored = load_run(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(stored)
}

pub async fn cancel_run(pool: &SqlitePool, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    let run = load_run(&mut tx, run_id).await?;
    run.state.check(Entity::Run, State::Canceled)?;
    // Revoke the leases of running parts first: their late results are then
    // recorded and change nothing.
    sqlx::query(
        "UPDATE leases SET ended_at = ?, end_reason = 'canceled' WHERE ended_at IS NULL \
         AND part_id IN (SELECT id FROM parts WHERE run_id = ? AND state = 'running')",
    )
    .bind(ms(now))
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
    let from = State::sources(Entity::Part, State::Canceled);
    let moved = move_all_parts(&mut tx, run_id, &from, State::Canceled).await?;
    sqlx::query(
        "UPDATE parts SET owner = NULL, lease_expires_at = NULL \
         WHERE run_id = ? AND state = 'canceled'",
    )
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
    transition::recount(&mut tx, run_id).await?;
    let detail = serde_json::json!({ "parts_canceled": moved });
    transition::move_run(&mut tx, run_id, run.state, State::Canceled, now, detail).await?;
    let stored = load_run(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(stored)
}
