//! Every change of a part's or a run's state in PostgreSQL goes through here:
//! the transition is checked against [`State::check`], the run's own state
//! follows its parts, and an event is written, all inside the caller's
//! transaction.
//!
//! Runs keep no part counters (see `runs` in the migration), so a run's state
//! is derived from "which states do its parts have", read through
//! `parts_by_run_state`.
//! While a run still has a waiting part, no part change can end it, and the
//! run's row is not touched: agents of one run never queue on its lock. Once
//! none is waiting, the run's row is locked before its parts are read, so that
//! two daemons finishing the last two parts at once cannot both miss the end
//! (the second waits for the first's commit, then sees both parts finished).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::scheduler::{Entity, PartCounts, State, run_state_from_parts};
use crate::store::sqlite::ms;
use crate::store::{StoreError, StoreResult};

/// Write one event.
pub async fn event(
    conn: &mut PgConnection, now: DateTime<Utc>, entity: &str, entity_id: i64, kind: &str,
    change: Option<(State, State)>, detail: serde_json::Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(ms(now))
    .bind(entity)
    .bind(entity_id)
    .bind(kind)
    .bind(change.map(|(from, _)| from.as_str()))
    .bind(change.map(|(_, to)| to.as_str()))
    .bind(detail.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

/// Move part `part_id` of run `run_id` from `from` to `to`. Fails without
/// change if the table forbids it or the part is no longer in `from`.
pub async fn move_part(
    conn: &mut PgConnection, run_id: i64, part_id: i64, from: State, to: State, now: DateTime<Utc>,
    detail: serde_json::Value,
) -> StoreResult<()> {
    from.check(Entity::Part, to)?;
    let moved = sqlx::query("UPDATE parts SET state = $1 WHERE id = $2 AND state = $3")
        .bind(to.as_str())
        .bind(part_id)
        .bind(from.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if moved != 1 {
        return Err(StoreError::Corrupt(format!("part {part_id} was expected in state {from}")));
    }
    event(conn, now, "part", part_id, "state", Some((from, to)), detail).await?;
    refresh_run(conn, run_id, now).await
}

/// Which states a run's parts are in, as counts of 0 or 1 (enough for
/// [`run_state_from_parts`], which only asks "any?").
async fn part_states(conn: &mut PgConnection, run_id: i64) -> StoreResult<PartCounts> {
    let states: Vec<String> = sqlx::query_scalar(
        "SELECT s FROM unnest(ARRAY['waiting', 'running', 'suspended', 'finished', 'failed', \
         'canceled']) AS s WHERE EXISTS (SELECT 1 FROM parts WHERE run_id = $1 AND state = s)",
    )
    .bind(run_id)
    .fetch_all(conn)
    .await?;
    let mut counts = PartCounts::default();
    for state in states {
        let state: State =
            state.parse().map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
        counts.add(state, 1);
    }
    Ok(counts)
}

/// Let the run's state follow its parts (see [`run_state_from_parts`] and the
/// module documentation for the locking).
pub async fn refresh_run(
    conn: &mut PgConnection, run_id: i64, now: DateTime<Utc>,
) -> StoreResult<()> {
    let waiting: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM parts WHERE run_id = $1 AND state = 'waiting')",
    )
    .bind(run_id)
    .fetch_one(&mut *conn)
    .await?;
    if waiting {
        // The run cannot end; at most it starts (its first lease).
        return start_run(conn, run_id, now).await;
    }
    let current = lock_run(conn, run_id).await?;
    let counts = part_states(conn, run_id).await?;
    if let Some(next) = run_state_from_parts(current, &counts) {
        move_run(conn, run_id, current, next, now, serde_json::json!({})).await?;
    }
    Ok(())
}

/// [`refresh_run`] in a transaction of its own: after a result's or a
/// batch's commit found the run with no waiting part, and in the sweep.
pub async fn refresh_run_alone(pool: &PgPool, run_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    refresh_run(&mut tx, run_id, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Waiting -> Running when a part of the run was leased or ended; touches the
/// run's row only the first time.
pub async fn start_run(
    conn: &mut PgConnection, run_id: i64, now: DateTime<Utc>,
) -> StoreResult<()> {
    let started = sqlx::query(
        "UPDATE runs SET state = 'running' WHERE id = $1 AND state = 'waiting' \
         AND EXISTS (SELECT 1 FROM parts WHERE run_id = $1 \
                     AND state IN ('running', 'finished', 'failed'))",
    )
    .bind(run_id)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if started == 1 {
        let change = Some((State::Waiting, State::Running));
        event(conn, now, "run", run_id, "state", change, serde_json::json!({})).await?;
    }
    Ok(())
}

/// Lock the run's row until the end of the transaction; returns its state.
///
/// `NO KEY UPDATE`, the lock an `UPDATE` of non-key columns takes: it does not
/// conflict with the `KEY SHARE` locks that inserts referencing the run (its
/// parts) take, which would otherwise deadlock two transactions that both
/// inserted such a row and then lock the run.
pub async fn lock_run(conn: &mut PgConnection, run_id: i64) -> StoreResult<State> {
    let row = sqlx::query("SELECT state FROM runs WHERE id = $1 FOR NO KEY UPDATE")
        .bind(run_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "run", id: run_id.to_string() })?;
    row.try_get::<String, _>("state")?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("runs.state: {e}")))
}

/// Move run `run_id` from `from` to `to`, checked against the table.
pub async fn move_run(
    conn: &mut PgConnection, run_id: i64, from: State, to: State, now: DateTime<Utc>,
    detail: serde_json::Value,
) -> StoreResult<()> {
    from.check(Entity::Run, to)?;
    let ended = to.is_terminal().then(|| ms(now));
    let moved = sqlx::query(
        "UPDATE runs SET state = $1, ended_at = COALESCE($2, ended_at) WHERE id = $3 AND state = $4",
    )
    .bind(to.as_str())
    .bind(ended)
    .bind(run_id)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if moved != 1 {
        return Err(StoreError::Corrupt(format!("run {run_id} was expected in state {from}")));
    }
    event(conn, now, "run", run_id, "state", Some((from, to)), detail).await
}
