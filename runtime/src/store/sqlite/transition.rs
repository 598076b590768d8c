//! Every change of a part's or a run's state in SQLite goes through here: the
//! transition is checked against [`State::check`], the run's part counters are
//! kept in step, the run's own state follows its parts, and an event is written,
//! all inside the caller's transaction. The hot path's leases and results
//! do the same with rusqlite (`hot_path::transition`), with this module's
//! columns and statements.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::ms;
use crate::scheduler::{Entity, PartCounts, State, run_state_from_parts};
use crate::store::{StoreError, StoreResult};

/// The counter column of `state` in `runs`.
pub(super) fn counter(state: State) -> &'static str {
    match state {
        State::Created | State::Waiting => "n_waiting",
        State::Running => "n_running",
        State::Suspended => "n_suspended",
        State::Finished => "n_finished",
        State::Failed => "n_failed",
        State::Canceled => "n_canceled",
    }
}

/// Insert an event: at (ms), entity, entity id, kind, from state, to state,
/// detail (JSON). Shared with the hot path.
pub(super) const INSERT_EVENT: &str = "INSERT INTO events (at, entity, entity_id, kind, from_state, to_state, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Write one event.
pub async fn event(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    entity: &str,
    entity_id: i64,
    kind: &str,
    change: Option<(State, State)>,
    detail: serde_json::Value,
) -> StoreResult<()> {
    sqlx::query(INSERT_EVENT)
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
    conn: &mut SqliteConnection,
    run_id: i64,
    part_id: i64,
    from: State,
    to: State,
    now: DateTime<Utc>,
    detail: serde_json::Value,
) -> StoreResult<()> {
    from.check(Entity::Part, to)?;
    let moved = sqlx::query("UPDATE parts SET state = ? WHERE id = ? AND state = ?")
        .bind(to.as_str())
        .bind(part_id)
        .bind(from.as_str())
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if moved != 1 {
        return Err(StoreError::Corrupt(format!(
            "part {part_id} was expected in state {from}"
        )));
    }
    if counter(from) != counter(to) {
        let sql = format!(
            "UPDATE runs SET {f} = {f} - 1, {t} = {t} + 1 WHERE id = ?",
            f = counter(from),
            t = counter(to)
        );
        sqlx::query(&sql).bind(run_id).execute(&mut *conn).await?;
    }
    event(
        conn,
        now,
        "part",
        part_id,
        "state",
        Some((from, to)),
        detail,
    )
    .await?;
    refresh_run(conn, run_id, now).await
}

/// Recount a run's parts from the parts table (after a bulk change).
pub async fn recount(conn: &mut SqliteConnection, run_id: i64) -> StoreResult<()> {
    let rows =
        sqlx::query("SELECT state, COUNT(*) AS n FROM parts WHERE run_id = ? GROUP BY state")
            .bind(run_id)
            .fetch_all(&mut *conn)
            .await?;
    let mut counts = PartCounts::default();
    for row in rows {
        let state: String = row.try_get("state")?;
        let state: State = state
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
        counts.add(state, row.try_get::<i64, _>("n")? as u64);
    }
    sqlx::query(
        "UPDATE runs SET n_waiting = ?, n_running = ?, n_suspended = ?, n_finished = ?, \
         n_failed = ?, n_canceled = ? WHERE id = ?",
    )
    .bind(counts.waiting as i64)
    .bind(counts.running as i64)
    .bind(counts.suspended as i64)
    .bind(counts.finished as i64)
    .bind(counts.failed as i64)
    .bind(counts.canceled as i64)
    .bind(run_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// A run's state and part counters by id: what [`run_state_of`] reads (and
/// the hot path's twin).
pub(super) const READ_RUN_STATE: &str = "SELECT state, n_waiting, n_running, n_suspended, \
     n_finished, n_failed, n_canceled FROM runs WHERE id = ?1";

/// The run's state and part counters.
pub async fn run_state(
    conn: &mut SqliteConnection,
    run_id: i64,
) -> StoreResult<(State, PartCounts)> {
    let row = sqlx::query(READ_RUN_STATE)
        .bind(run_id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: "run",
            id: run_id.to_string(),
        })?;
    run_state_of(&row)
}

fn run_state_of(row: &SqliteRow) -> StoreResult<(State, PartCounts)> {
    let state: String = row.try_get("state")?;
    let state: State = state
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("runs.state: {e}")))?;
    let n = |c: &str| -> StoreResult<u64> { Ok(row.try_get::<i64, _>(c)?.max(0) as u64) };
    let counts = PartCounts {
        waiting: n("n_waiting")?,
        running: n("n_running")?,
        suspended: n("n_suspended")?,
        finished: n("n_finished")?,
        failed: n("n_failed")?,
        canceled: n("n_canceled")?,
    };
    Ok((state, counts))
}

/// Let the run's state follow its parts (see [`run_state_from_parts`]).
pub async fn refresh_run(
    conn: &mut SqliteConnection,
    run_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let (current, counts) = run_state(conn, run_id).await?;
    if let Some(next) = run_state_from_parts(current, &counts) {
        move_run(conn, run_id, current, next, now, serde_json::json!({})).await?;
    }
    Ok(())
}

/// Move run `run_id` from `from` to `to`, checked against the table.
pub async fn move_run(
    conn: &mut SqliteConnection,
    run_id: i64,
    from: State,
    to: State,
    now: DateTime<Utc>,
    detail: serde_json::Value,
) -> StoreResult<()> {
    from.check(Entity::Run, to)?;
    let ended = to.is_terminal().then(|| ms(now));
    let moved = sqlx::query(
        "UPDATE runs SET state = ?, ended_at = COALESCE(?, ended_at) WHERE id = ? AND state = ?",
    )
    .bind(to.as_str())
    .bind(ended)
    .bind(run_id)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if moved != 1 {
        return Err(StoreError::Corrupt(format!(
            "run {run_id} was expected in state {from}"
        )));
    }
    event(conn, now, "run", run_id, "state", Some((from, to)), detail).await
}
