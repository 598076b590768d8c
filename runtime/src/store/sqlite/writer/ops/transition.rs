//! Every change of a part's or a run's state in SQLite goes through here,
//! inside the writer's transaction: the move is checked against the
//! scheduler's transition table ([`State::check`]), the run's part counters
//! follow, the run's own state follows its parts ([`run_state_from_parts`]),
//! and an event is written. The rules are the scheduler's; this module only
//! writes them.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, ToSql, params};

use super::counts::Deltas;
use super::statements::{Hot, WriterConn};
use crate::scheduler::{Entity, PartCounts, ResultStatus, State, run_state_from_parts};
use crate::store::{StoreError, StoreResult, ms};

/// The counter column of `state` in `runs`.
fn counter(state: State) -> &'static str {
    match state {
        State::Created | State::Waiting => "n_waiting",
        State::Running => "n_running",
        State::Suspended => "n_suspended",
        State::Finished => "n_finished",
        State::Failed => "n_failed",
        State::Canceled => "n_canceled",
    }
}

/// The part counters of `runs`, in the order [`COUNT_MOVE`] adds to them.
const COUNTERS: [&str; 6] =
    ["n_waiting", "n_running", "n_suspended", "n_finished", "n_failed", "n_canceled"];

/// The changes [`COUNT_MOVE`] makes when a part moves from `from` to `to`.
fn counter_deltas(from: State, to: State) -> Deltas {
    let at = |state| {
        COUNTERS.iter().position(|c| *c == counter(state)).expect("every counter is listed")
    };
    let mut deltas = [0; 6];
    deltas[at(from)] -= 1;
    deltas[at(to)] += 1;
    deltas
}

/// The detail of a part's state change made by an agent: who, which attempt
/// and, for a result, its status. Serialized as the JSON object the other
/// writers build with `serde_json::json!`, without building it.
#[derive(Debug, serde::Serialize)]
pub struct PartDetail<'a> {
    /// The agent's name.
    pub agent: &'a str,
    /// The attempt leased, or the one the result names.
    pub attempt: u32,
    /// The result's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ResultStatus>,
}

/// Write one event: `kind` is `state` for a state change.
pub fn event(
    conn: &WriterConn<'_>, now: DateTime<Utc>, (entity, entity_id): (&str, i64), kind: &str,
    change: Option<(State, State)>, detail: &impl serde::Serialize,
) -> StoreResult<()> {
    conn.prepared(Hot::InsertEvent)?.execute(params![
        ms(now),
        entity,
        entity_id,
        kind,
        change.map(|(from, _)| from.as_str()),
        change.map(|(_, to)| to.as_str()),
        serde_json::to_string(detail).expect("an event's detail serializes")
    ])?;
    Ok(())
}

/// A part's run as the statement that found the part read it, in the same
/// transaction, just before the part moves: the counters and state after the
/// move follow from it, without reading the run again.
#[derive(Debug, Clone)]
pub struct RunBefore {
    /// The run.
    pub id: i64,
    /// Its state.
    pub state: State,
    /// Its part counters.
    pub counts: PartCounts,
}

impl RunBefore {
    /// Run `id` from its state and stored counters as read by
    /// [`run_state_at`], with the batch's changes not yet written.
    pub fn new(
        conn: &WriterConn<'_>, id: i64, (state, stored): (String, PartCounts),
    ) -> StoreResult<Self> {
        Ok(Self {
            id,
            state: parse_state(&state)?,
            counts: with_deltas(&stored, conn.counts.of(id)),
        })
    }
}

/// `counts` changed by `deltas` (in the order of [`COUNTERS`]).
fn with_deltas(counts: &PartCounts, [w, r, s, f, x, c]: Deltas) -> PartCounts {
    let add = |n: u64, d: i64| n.saturating_add_signed(d);
    PartCounts {
        waiting: add(counts.waiting, w),
        running: add(counts.running, r),
        suspended: add(counts.suspended, s),
        finished: add(counts.finished, f),
        failed: add(counts.failed, x),
        canceled: add(counts.canceled, c),
    }
}

/// Move part `part_id` of `run` from `from` to `to` with the caller's
/// `update` statement (one of [`Hot`]) and its parameters (which set the part's owner,
/// attempt, expiry... in the same statement). `update` must set `state` to
/// `to` and match only a row in `from`; the move is checked against the
/// transition table first, the run's counters and state follow, and an event
/// is written.
#[allow(clippy::too_many_arguments)]
pub fn move_part_with(
    conn: &WriterConn<'_>, update: Hot, update_params: &[&dyn ToSql], run: &RunBefore,
    part_id: i64, (from, to): (State, State), now: DateTime<Utc>, detail: &impl serde::Serialize,
) -> StoreResult<()> {
    from.check(Entity::Part, to)?;
    let moved = conn.prepared(update)?.execute(update_params)?;
    if moved != 1 {
        return Err(StoreError::Corrupt(format!("part {part_id} was expected in state {from}")));
    }
    let deltas = counter_deltas(from, to);
    conn.counts.add(run.id, deltas);
    let counts = with_deltas(&run.counts, deltas);
    event(conn, now, ("part", part_id), "state", Some((from, to)), detail)?;
    follow_parts(conn, run.id, run.state, &counts, now)
}

/// Let run `run_id`, in state `current` with these part counters, follow
/// its parts ([`run_state_from_parts`]).
fn follow_parts(
    conn: &WriterConn<'_>, run_id: i64, current: State, counts: &PartCounts, now: DateTime<Utc>,
) -> StoreResult<()> {
    match run_state_from_parts(current, counts) {
        Some(next) => move_run(conn, run_id, current, next, now, &serde_json::json!({})),
        None => Ok(()),
    }
}

/// Let run `run_id` follow its parts, as they are counted now (the stored
/// counters and the batch's changes not yet written).
pub fn refresh_run(conn: &WriterConn<'_>, run_id: i64, now: DateTime<Utc>) -> StoreResult<()> {
    let run = read_run(conn, run_id)?;
    follow_parts(conn, run_id, run.state, &run.counts, now)
}

/// Run `run_id` as it is counted now (see [`RunBefore`]).
pub fn read_run(conn: &WriterConn<'_>, run_id: i64) -> StoreResult<RunBefore> {
    let stored = conn
        .prepared(Hot::ReadRunState)?
        .query_row([run_id], |row| run_state_at(row, 0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound { what: "run", id: run_id.to_string() })?;
    RunBefore::new(conn, run_id, stored)
}

/// Count run `run_id`'s parts anew from the parts table (after a change of
/// many parts at once) and store the counters. Only inside a write
/// ([`Op::Write`](super::super::Op::Write)): the batch's pending changes were
/// written before it, so none is pending to add on top.
pub fn recount(conn: &WriterConn<'_>, run_id: i64) -> StoreResult<()> {
    let mut counts = PartCounts::default();
    let mut by_state =
        conn.prepare_cached("SELECT state, COUNT(*) FROM parts WHERE run_id = ?1 GROUP BY state")?;
    let mut rows = by_state.query([run_id])?;
    while let Some(row) = rows.next()? {
        let state: String = row.get(0)?;
        let state: State =
            state.parse().map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
        counts.add(state, row.get::<_, i64>(1)? as u64);
    }
    conn.prepare_cached(
        "UPDATE runs SET n_waiting = ?1, n_running = ?2, n_suspended = ?3, n_finished = ?4, \
         n_failed = ?5, n_canceled = ?6 WHERE id = ?7",
    )?
    .execute(params![
        counts.waiting as i64,
        counts.running as i64,
        counts.suspended as i64,
        counts.finished as i64,
        counts.failed as i64,
        counts.canceled as i64,
        run_id
    ])?;
    Ok(())
}

/// A run's stored state.
pub fn parse_state(state: &str) -> StoreResult<State> {
    state.parse().map_err(|e| StoreError::Corrupt(format!("runs.state: {e}")))
}

/// A run's state and counters from the columns `state, n_waiting,
/// n_running, n_suspended, n_finished, n_failed, n_canceled` (those of
/// `READ_RUN_STATE`) of `row`, the first at `first`.
pub fn run_state_at(
    row: &rusqlite::Row<'_>, first: usize,
) -> rusqlite::Result<(String, PartCounts)> {
    let n = |i: usize| -> rusqlite::Result<u64> { Ok(row.get::<_, i64>(first + i)?.max(0) as u64) };
    Ok((
        row.get(first)?,
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
    conn: &WriterConn<'_>, run_id: i64, from: State, to: State, now: DateTime<Utc>,
    detail: &serde_json::Value,
) -> StoreResult<()> {
    from.check(Entity::Run, to)?;
    let ended = to.is_terminal().then(|| ms(now));
    let moved =
        conn.prepared(Hot::MoveRun)?.execute(params![to.as_str(), ended, run_id, from.as_str()])?;
    if moved != 1 {
        return Err(StoreError::Corrupt(format!("run {run_id} was expected in state {from}")));
    }
    event(conn, now, ("run", run_id), "state", Some((from, to)), detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::ALL_STATES;

    #[test]
    fn the_run_before_a_move_counts_the_batchs_changes_not_yet_written() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let writer = WriterConn::new(&conn);
        let stored = PartCounts { running: 2, finished: 1, ..PartCounts::default() };
        // An earlier result of the batch finished one of the two running
        // parts; the stored counters do not show it yet.
        writer.counts.add(7, counter_deltas(State::Running, State::Finished));
        let before = RunBefore::new(&writer, 7, ("running".into(), stored)).unwrap();
        assert_eq!((before.counts.running, before.counts.finished), (1, 2));
        // The last open part finishes: the run follows (the scheduler's rule).
        let after = with_deltas(&before.counts, counter_deltas(State::Running, State::Finished));
        assert_eq!(run_state_from_parts(before.state, &after), Some(State::Finished));
        assert!(RunBefore::new(&writer, 7, ("done".into(), stored)).is_err());
    }

    #[test]
    fn a_part_detail_is_the_object_the_other_writers_build() {
        let leased = PartDetail { agent: "a", attempt: 2, status: None };
        assert_eq!(
            serde_json::to_string(&leased).unwrap(),
            serde_json::json!({ "agent": "a", "attempt": 2 }).to_string()
        );
        let result = PartDetail { status: Some(ResultStatus::Failed), ..leased };
        assert_eq!(
            serde_json::to_string(&result).unwrap(),
            serde_json::json!({ "agent": "a", "attempt": 2, "status": ResultStatus::Failed })
                .to_string()
        );
    }

    #[test]
    fn a_move_takes_one_from_the_counter_it_leaves_and_adds_one_to_the_next() {
        for from in ALL_STATES {
            for to in ALL_STATES {
                if counter(from) == counter(to) {
                    continue;
                }
                let deltas = counter_deltas(from, to);
                for (column, delta) in COUNTERS.iter().zip(deltas) {
                    let expected = match *column {
                        c if c == counter(from) => -1,
                        c if c == counter(to) => 1,
                        _ => 0,
                    };
                    assert_eq!(delta, expected, "{from} to {to}: {column}");
                }
            }
        }
    }
}
