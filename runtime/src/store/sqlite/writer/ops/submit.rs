//! Results on the writer thread: the fencing rule ([`fencing::judge`])
//! applied inside the batch's transaction, so that the answer an agent gets
//! is durable before it gets it.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::statements::{Hot, WriterConn};
use super::transition::{self, RunBefore};
use crate::scheduler::{
    Agent, PartCounts, ResultAck, State, Submission,
    fencing::{self, Applied, Stored, Verdict},
    late_result_detail,
};
use crate::store::{StoreError, StoreResult, ms};

/// The part as a result finds it.
struct Target {
    run_id: i64,
    state: String,
    attempt: i64,
    owner: Option<String>,
    retries: i64,
    /// The run's first retry backoff, ms.
    retry_backoff_ms: i64,
    /// Who the attempt the result names was leased to.
    lessee: Option<String>,
    /// Whether that attempt's lease ended by expiring.
    lease_expired: bool,
    /// Whether a result of that attempt is stored already.
    recorded: bool,
    /// The run's state and counters.
    run: (String, PartCounts),
}

fn insert_result(
    conn: &WriterConn<'_>, run_id: i64, agent: &Agent, s: &Submission, applied: bool,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let json = |v: &[serde_json::Value]| serde_json::to_string(v).expect("JSON serializes");
    conn.prepared(Hot::InsertResult)?.execute(params![
        s.part_id,
        i64::from(s.attempt),
        run_id,
        agent.registration.name,
        s.status.as_str(),
        s.output.as_ref().map(|o| o.to_string()),
        s.error,
        json(&s.emitted),
        json(&s.logs),
        s.started_at.map(ms),
        i64::try_from(s.duration_ms).unwrap_or(i64::MAX),
        applied,
        ms(now),
    ])?;
    Ok(())
}

fn end_lease(
    conn: &WriterConn<'_>, part_id: i64, attempt: u32, reason: &str, now: DateTime<Utc>,
) -> StoreResult<()> {
    conn.prepared(Hot::EndLease)?.execute(params![ms(now), reason, part_id, i64::from(attempt)])?;
    Ok(())
}

/// Apply a result under the fencing rule, inside the batch's transaction
/// (the caller marks the agent seen: once per operation).
pub fn submit(
    conn: &WriterConn<'_>, agent: &Agent, s: &Submission, now: DateTime<Utc>,
) -> StoreResult<ResultAck> {
    let name = agent.registration.name.as_str();
    let not_leased = || StoreError::NotLeased {
        part_id: s.part_id,
        attempt: s.attempt,
        agent: name.to_string(),
    };
    let part = conn
        .prepared(Hot::ResultTarget)?
        .query_row(params![i64::from(s.attempt), s.part_id], |row| {
            Ok(Target {
                run_id: row.get(0)?,
                state: row.get(1)?,
                attempt: row.get(2)?,
                owner: row.get(3)?,
                retries: row.get(4)?,
                retry_backoff_ms: row.get(5)?,
                lessee: row.get(6)?,
                lease_expired: row.get(7)?,
                recorded: row.get(8)?,
                run: transition::run_state_at(row, 9)?,
            })
        })
        .optional()?
        .ok_or_else(not_leased)?;
    let run_id = part.run_id;
    let run = RunBefore::new(conn, run_id, part.run)?;
    let state: State =
        part.state.parse().map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
    let attempt = part.attempt as u32;
    let backoff = chrono::TimeDelta::milliseconds(part.retry_backoff_ms);
    let verdict = fencing::judge_result(
        Stored {
            state,
            attempt,
            owner: part.owner.as_deref(),
            lessee: part.lessee.as_deref(),
            recorded: part.recorded,
            lease_expired: part.lease_expired,
        },
        name,
        s,
    );
    let detail = transition::PartDetail { agent: name, attempt: s.attempt, status: Some(s.status) };
    let ack = match verdict {
        Verdict::NotLeased => return Err(not_leased()),
        Verdict::Duplicate => ResultAck::Duplicate,
        Verdict::RecordOnly => {
            insert_result(conn, run_id, agent, s, false, now)?;
            end_lease(conn, s.part_id, s.attempt, "result", now)?;
            ResultAck::Recorded
        }
        Verdict::Apply => {
            insert_result(conn, run_id, agent, s, true, now)?;
            end_lease(conn, s.part_id, s.attempt, "result", now)?;
            let Applied { to, available_at, error } =
                fencing::applied(s, attempt, part.retries as u32, backoff, now);
            transition::move_part_with(
                conn,
                Hot::ApplyResult,
                params![to.as_str(), to == State::Finished, ms(available_at), error, s.part_id],
                &run,
                s.part_id,
                (State::Running, to),
                now,
                &detail,
            )?;
            ResultAck::Applied
        }
        Verdict::AcceptLate { revokes_current } => {
            insert_result(conn, run_id, agent, s, true, now)?;
            end_lease(conn, s.part_id, s.attempt, "late-result", now)?;
            if revokes_current {
                end_lease(conn, s.part_id, attempt, "revoked", now)?;
            }
            let revoked = revokes_current.then(|| (part.owner.as_deref().unwrap_or(""), attempt));
            transition::move_part_with(
                conn,
                Hot::AcceptLateResult,
                params![name, s.part_id, state.as_str()],
                &run,
                s.part_id,
                (state, State::Finished),
                now,
                &late_result_detail(name, s.attempt, s.status, revoked),
            )?;
            ResultAck::AcceptedLate
        }
    };
    Ok(ack)
}
