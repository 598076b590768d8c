//! State changes made on the writer thread: the synchronous twin of
//! `sqlite::transition` for the leases, results and new runs applied there.
//! The rules are not repeated here: the transition table ([`State::check`])
//! and how a run follows its parts ([`run_state_from_parts`]) are the
//! scheduler's; this module only writes them with rusqlite, inside the
//! batch's transaction.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, ToSql, params};

use super::super::ms;
use super::super::transition::{INSERT_EVENT, READ_RUN_STATE, counter};
use crate::scheduler::{Entity, PartCounts, State, run_state_from_parts};
use crate::store::{StoreError, StoreResult};

/// Write one event: `kind` is `state` for a state change.
pub fn event(
    conn: &Connection,
    now: DateTime<Utc>,
    (entity, entity_id): (&str, i64),
    kind: &str,
    change: Option<(State, State)>,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    conn.prepare_cached(INSERT_EVENT)?.execute(params![
        ms(now),
        entity,
        entity_id,
        kind,
        change.map(|(from, _)| from.as_str()),
        change.map(|(_, to)| to.as_str()),
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
    if counter(from) != counter(to) {
        // Not `RETURNING`: SQLite answers it from a temporary table built
        // for each execution, which cost more than the read below.
        let sql = format!(
            "UPDATE runs SET {f} = {f} - 1, {t} = {t} + 1 WHERE id = ?1",
            f = counter(from),
            t = counter(to)
        );
        conn.prepare_cached(&sql)?.execute([run_id])?;
    }
    let (current, counts) = conn
        .prepare_cached(READ_RUN_STATE)?
        .query_row([run_id], run_state_of)?;
    let current = parse_state(&current)?;
    event(
        conn,
        now,
        ("part", part_id),
        "state",
        Some((from, to)),
        detail,
    )?;
    follow_parts(conn, run_id, current, &counts, now)
}

/// Let run `run_id`, in state `current` with these part counters, follow
/// its parts ([`run_state_from_parts`]).
fn follow_parts(
    conn: &Connection,
    run_id: i64,
    current: State,
    counts: &PartCounts,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    match run_state_from_parts(current, counts) {
        Some(next) => move_run(conn, run_id, current, next, now, &serde_json::json!({})),
        None => Ok(()),
    }
}

/// Let run `run_id` follow its parts, as they are stored now.
pub fn refresh_run(conn: &Connection, run_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    let (current, counts) = conn
        .prepare_cached(READ_RUN_STATE)?
        .query_row([run_id], run_state_of)?;
    let current = parse_state(&current)?;
    follow_parts(conn, run_id, current, &counts, now)
}

/// A run's stored state.
pub fn parse_state(state: &str) -> StoreResult<State> {
    state
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("runs.state: {e}")))
}

/// The run's state and counters, from the columns of [`READ_RUN_STATE`].
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

/// Move run `run_id` from `from` to `to`, checked against the table.
pub fn move_run(
    conn: &Connection,
    run_id: i64,
    from: State,
    to: State,
    now: DateTime<Utc>,
    detail: &serde_json::Value,
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
    event(
        conn,
        now,
        ("run", run_id),
        "state",
        Some((from, to)),
        detail,
    )
}
