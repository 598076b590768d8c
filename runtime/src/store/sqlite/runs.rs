//! Runs and their parts: reading them, failing a run's split, and the admin
//! actions on a whole run (suspend, resume, cancel). Runs are created on the
//! hot path's writer (`hot_path::runs`).

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};

use super::{ms, rows, transition};
use crate::scheduler::{Entity, Part, Run, State};
use crate::store::{StoreError, StoreResult};

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound {
        what: "run",
        id: id.to_string(),
    }
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
