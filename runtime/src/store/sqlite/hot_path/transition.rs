//! State changes made by the hot path: the synchronous twin of
//! `sqlite::transition` for the leases and results applied on the writer
//! thread. The rules are not repeated here: the transition table
//! ([`State::check`]) and how a run follows its parts
//! ([`run_state_from_parts`]) are the scheduler's; this module only writes
//! them with rusqlite, inside the batch's transaction.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ToSql, params};

use super::super::ms;
use super::super::transition::{INSERT_EVENT, RUN_STATE, counter};
use crate::scheduler::{Entity, PartCounts, State, run_state_from_parts};
use crate::store::{StoreError, StoreResult};

/// Write one event.
pub fn event(
    conn: &Connection,
    now: DateTime<Utc>,
    entity: &str,
    entity_id: i64,
    change: (State, State),
    detail: &serde_json::Value,
) -> StoreResult<()> {
    conn.prepare_cached(INSERT_EVENT)?.execute(params![
        ms(now),
        entity,
        entity_id,
        "state",
        change.0.as_str(),
        change.1.as_str(),
        detail.to_string()
    ])?;
    Ok(())
}

/// Move part `part_id` of run `run_id` from `from` to `to` with the caller's
/// `update` statement and its parameters (which set the part's owner,
/// attempt, expiry... in the same statement). `update` must set `state` to
/// `to` and match only a row in `from`; the move is checked against the
/// transition table first, the run's counters and state follow, and an event
/// is written.
#[allow(clippy::too_many_arguments)]
pub fn move_part_with(
    conn: &Connection,
    update: &str,
    update_params: &[&dyn ToSql],
    run_id: i64,
    part_id: i64,
    (from, to): (State, State),
    now: DateTime<Utc>,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    from.check(Entity::Part, to)?;
    let moved = conn.prepare_cached(update)?.execute(update_params)?;
    if moved != 1 {
        return Err(StoreError::Corrupt(format!(
            "part {part_id} was expected in state {from}"
        )));
    }
    let sql = if counter(from) != counter(to) {
        // The counters and the run's state in one statement.
        format!(
            "UPDATE runs SET {f} = {f} - 1, {t} = {t} + 1 WHERE id = ?1 RETURNING {RUN_STATE}",
            f = counter(from),
            t = counter(to)
        )
    } else {
        format!("SELECT {RUN_STATE} FROM runs WHERE id = ?1")
    };
    let (current, counts) = conn
        .prepare_cached(&sql)?
        .query_row([run_id], run_state_of)?;
    let current: State = current
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("runs.state: {e}")))?;
    event(conn, now, "part", part_id, (from, to), detail)?;
    if let Some(next) = run_state_from_parts(current, &counts) {
        move_run(conn, run_id, current, next, now)?;
    }
    Ok(())
}

/// The run's state and counters, from the columns [`RUN_STATE`].
fn run_state_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, PartCounts)> {
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(i)?.max(0) as u64) };
    Ok((
        row.get(0)?,
        PartCounts {
            waiting: n(1)?,
            running: n(2)?,
            suspended: n(3)?,
            finished: n(4)?,
            failed: n(5)?,
            canceled: n(6)?,
        },
    ))
}

/// Move run `run_id` from `from` to `to` as its parts demand, checked against
/// the table.
fn move_run(
    conn: &Connection,
    run_id: i64,
    from: State,
    to: State,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    from.check(Entity::Run, to)?;
    let ended = to.is_terminal().then(|| ms(now));
    let moved = conn
        .prepare_cached(
            "UPDATE runs SET state = ?1, ended_at = COALESCE(?2, ended_at) \
             WHERE id = ?3 AND state = ?4",
        )?
        .execute(params![to.as_str(), ended, run_id, from.as_str()])?;
    if moved != 1 {
        return Err(StoreError::Corrupt(format!(
            "run {run_id} was expected in state {from}"
        )));
    }
    event(conn, now, "run", run_id, (from, to), &serde_json::json!({}))
}
