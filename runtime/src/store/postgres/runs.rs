//! Runs and their parts in PostgreSQL: creation from a snapshot, the parts of a
//! split (one `INSERT ... SELECT FROM unnest(...)` however many), and the admin
//! actions on a whole run (suspend, resume, cancel), each under the run's row
//! lock so that they serialize with the end of the run (see `transition`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::{rows, transition};
use crate::scheduler::{Entity, NewPart, NewRun, Run, State, targeting::span_of_targets};
use crate::store::sqlite::ms;
use crate::store::{Recurrence, StoreError, StoreResult};

fn not_found(id: i64) -> StoreError {
    StoreError::NotFound { what: "run", id: id.to_string() }
}

/// Insert a run in state Created; returns its id.
pub async fn insert_run(
    tx: &mut Transaction<'_, Postgres>, run: &NewRun, now: DateTime<Utc>,
) -> StoreResult<i64> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO runs (task_id, spec, secrets, plugin_sha256, state, cause, rerun_of, \
         created_at, plugin, rank, lease_ttl_ms, retries, explicit_agents, caused_by, \
         retry_backoff_ms) \
         VALUES ($1, $2, $3, $4, 'created', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         RETURNING id",
    )
    .bind(run.task_id)
    .bind(serde_json::to_string(&run.spec).expect("task spec serializes"))
    .bind(run.secrets.to_string())
    .bind(&run.plugin_sha256)
    .bind(run.cause.as_str())
    .bind(run.rerun_of)
    .bind(ms(now))
    .bind(&run.spec.plugin)
    .bind(run.rank())
    .bind(run.lease_ttl_ms())
    .bind(i64::from(run.spec.retries))
    .bind(!run.spec.targeting.agents.is_empty())
    .bind(run.caused_by)
    .bind(run.retry_backoff_ms())
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| {
        if super::catalog::is_unique_violation(&e) {
            crate::store::chained_twice(run)
        } else {
            e.into()
        }
    })?;
    for agent in &run.spec.targeting.agents {
        sqlx::query(
            "INSERT INTO run_agents (run_id, agent_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(agent)
        .execute(&mut **tx)
        .await?;
    }
    transition::event(tx, now, "run", id, "created", None, run.event_detail()).await?;
    Ok(id)
}

/// Read a run inside a transaction.
pub async fn load_run(conn: &mut PgConnection, id: i64) -> StoreResult<Run> {
    let sql = format!("{} WHERE r.id = $1", rows::RUN_SELECT);
    let row =
        sqlx::query(&sql).bind(id).fetch_optional(conn).await?.ok_or_else(|| not_found(id))?;
    rows::run(&row)
}

pub async fn claim_recurrence(
    pool: &PgPool, recurrence: &Recurrence, run: &NewRun, now: DateTime<Utc>,
) -> StoreResult<Option<Run>> {
    let mut tx = pool.begin().await?;
    let claimed =
        sqlx::query("UPDATE tasks SET next_run_at = $1 WHERE id = $2 AND next_run_at = $3")
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

pub async fn add_parts(
    pool: &PgPool, run_id: i64, parts: &[NewPart], now: DateTime<Utc>,
) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    transition::lock_run(&mut tx, run_id).await?;
    let stored = store_parts(&mut tx, run_id, parts, now).await?;
    tx.commit().await?;
    Ok(stored)
}

/// A run with its parts, split before it was stored, in one transaction.
pub async fn create_run_with_parts(
    pool: &PgPool, run: &NewRun, parts: &[NewPart], now: DateTime<Utc>,
) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    let id = insert_run(&mut tx, run, now).await?;
    let stored = store_parts(&mut tx, id, parts, now).await?;
    tx.commit().await?;
    Ok(stored)
}

/// Store the parts of a Created run inside `tx` (the caller created or
/// locked the run); the run becomes Waiting (Finished with no parts).
async fn store_parts(
    tx: &mut Transaction<'_, Postgres>, run_id: i64, parts: &[NewPart], now: DateTime<Utc>,
) -> StoreResult<Run> {
    let run = load_run(tx, run_id).await?;
    run.state.check(Entity::Run, State::Waiting)?;
    if run.state != State::Created {
        return Err(StoreError::Invalid(format!("run {run_id} already has its parts")));
    }
    let rank: i64 = sqlx::query_scalar("SELECT rank FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(&mut **tx)
        .await?;
    let pins = run.spec.targeting.pins();
    // One statement for the whole split: a /16 network is 65,536 parts.
    let mut labels = Vec::new();
    let mut targets = Vec::new();
    let mut payloads = Vec::new();
    let mut span_lo = Vec::new();
    let mut span_hi = Vec::new();
    let mut pinned = Vec::new();
    for part in parts {
        let span = span_of_targets(&part.targets);
        let targets_json = serde_json::to_string(&part.targets).expect("targets serialize");
        for pin in &pins {
            labels.push(part.label.as_str());
            targets.push(targets_json.clone());
            payloads.push(part.payload.as_str());
            span_lo.push(span.map(|s| s.lo_hex()));
            span_hi.push(span.map(|s| s.hi_hex()));
            pinned.push(*pin);
        }
    }
    let seq = labels.len() as i64;
    sqlx::query(
        "INSERT INTO parts (run_id, seq, label, targets, payload, span_lo, span_hi, \
         pinned_agent, state, rank, available_at) \
         SELECT $1, t.ord - 1, t.label, t.targets, t.payload, t.span_lo, t.span_hi, t.pinned, \
         'waiting', $2, $3 \
         FROM unnest($4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::TEXT[], $9::TEXT[]) \
         WITH ORDINALITY AS t (label, targets, payload, span_lo, span_hi, pinned, ord)",
    )
    .bind(run_id)
    .bind(rank)
    .bind(ms(now))
    .bind(&labels)
    .bind(&targets)
    .bind(&payloads)
    .bind(&span_lo)
    .bind(&span_hi)
    .bind(&pinned)
    .execute(&mut **tx)
    .await?;
    super::notify_work(tx, seq as u64).await?;
    let detail = serde_json::json!({ "parts": seq });
    transition::move_run(tx, run_id, State::Created, State::Waiting, now, detail).await?;
    transition::refresh_run(tx, run_id, now).await?;
    load_run(tx, run_id).await
}

pub async fn fail_run(
    pool: &PgPool, run_id: i64, error: &str, now: DateTime<Utc>,
) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    transition::lock_run(&mut tx, run_id).await?;
    let run = load_run(&mut tx, run_id).await?;
    if run.state != State::Created {
        return Err(StoreError::Invalid(format!(
            "run {run_id} is {}: only a run waiting for its split can fail this way",
            run.state
        )));
    }
    sqlx::query("UPDATE runs SET error = $1 WHERE id = $2")
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

/// Move every part of `run_id` that may go to `to` (per the transition table)
/// there; returns how many moved.
async fn move_all_parts(
    conn: &mut PgConnection, run_id: i64, from: &[State], to: State,
) -> StoreResult<u64> {
    if from.is_empty() {
        return Ok(0);
    }
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let query = sqlx::query("UPDATE parts SET state = $1 WHERE run_id = $2 AND state = ANY($3)")
        .bind(to.as_str())
        .bind(run_id)
        .bind(from);
    Ok(query.execute(&mut *conn).await?.rows_affected())
}

pub async fn suspend_run(pool: &PgPool, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    transition::lock_run(&mut tx, run_id).await?;
    let run = load_run(&mut tx, run_id).await?;
    run.state.check(Entity::Run, State::Suspended)?;
    let from = State::sources(Entity::Part, State::Suspended);
    let moved = move_all_parts(&mut tx, run_id, &from, State::Suspended).await?;
    let detail = serde_json::json!({ "parts_suspended": moved });
    transition::move_run(&mut tx, run_id, run.state, State::Suspended, now, detail).await?;
    transition::refresh_run(&mut tx, run_id, now).await?;
    let stored = load_run(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(stored)
}

pub async fn resume_run(pool: &PgPool, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    transition::lock_run(&mut tx, run_id).await?;
    let run = load_run(&mut tx, run_id).await?;
    if run.state != State::Suspended {
        return Err(StoreError::Invalid(format!("run {run_id} is {}, not suspended", run.state)));
    }
    let moved = move_all_parts(&mut tx, run_id, &[State::Suspended], State::Waiting).await?;
    super::notify_work(&mut tx, moved).await?;
    let detail = serde_json::json!({ "parts_resumed": moved });
    transition::move_run(&mut tx, run_id, State::Suspended, State::Waiting, now, detail).await?;
    transition::refresh_run(&mut tx, run_id, now).await?;
    let stored = load_run(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(stored)
}

pub async fn cancel_run(pool: &PgPool, run_id: i64, now: DateTime<Utc>) -> StoreResult<Run> {
    let mut tx = pool.begin().await?;
    transition::lock_run(&mut tx, run_id).await?;
    let run = load_run(&mut tx, run_id).await?;
    run.state.check(Entity::Run, State::Canceled)?;
    // Revoke the leases of running parts first: their late results are then
    // recorded and change nothing.
    sqlx::query(
        "UPDATE leases SET ended_at = $1, end_reason = 'canceled' WHERE ended_at IS NULL \
         AND part_id IN (SELECT id FROM parts WHERE run_id = $2 AND state = 'running')",
    )
    .bind(ms(now))
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
    let from = State::sources(Entity::Part, State::Canceled);
    let moved = move_all_parts(&mut tx, run_id, &from, State::Canceled).await?;
    sqlx::query(
        "UPDATE parts SET owner = NULL, lease_expires_at = NULL \
         WHERE run_id = $1 AND state = 'canceled'",
    )
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
    let detail = serde_json::json!({ "parts_canceled": moved });
    transition::move_run(&mut tx, run_id, run.state, State::Canceled, now, detail).await?;
    let stored = load_run(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(stored)
}
