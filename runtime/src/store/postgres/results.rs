//! Results in PostgreSQL: the fencing rule applied as a compare-and-set, so
//! that several daemons receiving results for one part apply at most one, and
//! the answer an agent gets is durable (flushed) before it gets it.
//!
//! The part is read and [`fencing::judge`] decides; the `jobstack_submit`
//! function (migration 0001) then, in one round trip and one transaction,
//! locks the part, checks it is still in the state, attempt and owner judged
//! (else the result is judged again on the new state), records the result
//! (a second copy of the same attempt's result finds it recorded: duplicate),
//! ends the lease(s), moves the part and writes the event. The run's own state
//! follows in a short transaction of its own when no part of it is waiting.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::{rows, transition};
use crate::scheduler::{
    Agent, Entity, ResultAck, ResultStatus, State, StoredResult, Submission,
    fencing::{self, Claim, PartNow, Verdict},
    retry,
};
use crate::store::sqlite::ms;
use crate::store::{StoreError, StoreResult};

/// The part as the verdict needs it (no lock: `jobstack_submit` re-checks it).
const READ_PART: &str = "\
SELECT p.run_id, p.state, p.attempt, p.owner, r.retries,
  (SELECT l.agent FROM leases l WHERE l.part_id = p.id AND l.attempt = $2) AS lessee,
  EXISTS (SELECT 1 FROM results x WHERE x.part_id = p.id AND x.attempt = $2) AS recorded
FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = $1";

const SUBMIT: &str = "SELECT jobstack_submit($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
     $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25)";

/// How many times a result is judged again when its part changed between the
/// read and the write (another result or an expiry got there first); each
/// retry sees a newer state, so a few always suffice.
const MAX_JUDGEMENTS: usize = 10;

/// What a verdict changes besides recording the result.
struct Change {
    to: State,
    /// `None`: the owner stays; `Some(x)`: the owner becomes `x`.
    owner: Option<Option<String>>,
    available_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

pub async fn submit(
    pool: &PgPool,
    agent: &Agent,
    s: &Submission,
    now: DateTime<Utc>,
) -> StoreResult<ResultAck> {
    for _ in 0..MAX_JUDGEMENTS {
        if let Some(ack) = judge_and_write(pool, agent, s, now).await? {
            return Ok(ack);
        }
    }
    Err(StoreError::Invalid(format!(
        "part {} changed {MAX_JUDGEMENTS} times while its result was applied; send it again",
        s.part_id
    )))
}

/// Read the part, judge the result, write it if the part is still as read;
/// `None` if it changed meanwhile.
async fn judge_and_write(
    pool: &PgPool,
    agent: &Agent,
    s: &Submission,
    now: DateTime<Utc>,
) -> StoreResult<Option<ResultAck>> {
    let name = agent.registration.name.as_str();
    let not_leased = || StoreError::NotLeased {
        part_id: s.part_id,
        attempt: s.attempt,
        agent: name.to_string(),
    };
    let row = sqlx::query(READ_PART)
        .bind(s.part_id)
        .bind(i64::from(s.attempt))
        .fetch_optional(pool)
        .await?
        .ok_or_else(not_leased)?;
    let run_id: i64 = row.try_get("run_id")?;
    let state: State = row
        .try_get::<String, _>("state")?
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
    let attempt = row.try_get::<i64, _>("attempt")? as u32;
    let owner: Option<String> = row.try_get("owner")?;
    let retries = row.try_get::<i64, _>("retries")? as u32;
    let lessee: Option<String> = row.try_get("lessee")?;
    let recorded: bool = row.try_get("recorded")?;
    let verdict = fencing::judge(
        PartNow {
            state,
            attempt,
            held_by_submitter: owner.as_deref() == Some(name),
        },
        Claim {
            attempt: s.attempt,
            was_leased_to_submitter: lessee.as_deref() == Some(name),
            already_recorded: recorded,
            success: s.status == ResultStatus::Finished,
        },
    );
    let (ack, applied, reason, revoke, change) = match verdict {
        Verdict::NotLeased => return Err(not_leased()),
        Verdict::Duplicate if recorded => return Ok(Some(ResultAck::Duplicate)),
        Verdict::Duplicate => (ResultAck::Duplicate, false, "result", None, None),
        Verdict::RecordOnly => (ResultAck::Recorded, false, "result", None, None),
        Verdict::Apply => {
            let (to, available_at) = if s.status == ResultStatus::Finished {
                (State::Finished, now)
            } else if retry::may_retry(attempt, retries) {
                (State::Waiting, now + retry::backoff(attempt))
            } else {
                (State::Failed, now)
            };
            let error = (to != State::Finished).then(|| {
                format!(
                    "attempt {}: {}: {}",
                    s.attempt,
                    s.status.as_str(),
                    s.error.as_deref().unwrap_or("no reason given")
                )
            });
            let owner = (to != State::Finished).then_some(None);
            let change = Change {
                to,
                owner,
                available_at: Some(available_at),
                error,
            };
            (ResultAck::Applied, true, "result", None, Some(change))
        }
        Verdict::AcceptLate { revokes_current } => {
            let change = Change {
                to: State::Finished,
                owner: Some(Some(name.to_string())),
                available_at: None,
                error: None,
            };
            let revoke = revokes_current.then_some(i64::from(attempt));
            (
                ResultAck::AcceptedLate,
                true,
                "late-result",
                revoke,
                Some(change),
            )
        }
    };
    if let Some(change) = &change {
        state.check(Entity::Part, change.to)?;
    }
    let detail = serde_json::json!({ "agent": name, "attempt": s.attempt, "status": s.status });
    let outcome: String = sqlx::query_scalar(SUBMIT)
        .bind(s.part_id)
        .bind(i64::from(s.attempt))
        .bind(run_id)
        .bind(name)
        .bind(agent.id)
        .bind(ms(now))
        .bind(s.status.as_str())
        .bind(s.output.as_ref().map(|o| o.to_string()))
        .bind(&s.error)
        .bind(serde_json::Value::from(s.emitted.clone()).to_string())
        .bind(serde_json::Value::from(s.logs.clone()).to_string())
        .bind(s.started_at.map(ms))
        .bind(i64::try_from(s.duration_ms).unwrap_or(i64::MAX))
        .bind(applied)
        .bind(reason)
        .bind(revoke)
        .bind(state.as_str())
        .bind(i64::from(attempt))
        .bind(&owner)
        .bind(change.as_ref().map(|c| c.to.as_str()))
        .bind(change.as_ref().is_none_or(|c| c.owner.is_none()))
        .bind(change.as_ref().and_then(|c| c.owner.clone().flatten()))
        .bind(change.as_ref().and_then(|c| c.available_at.map(ms)))
        .bind(change.as_ref().and_then(|c| c.error.clone()))
        .bind(detail.to_string())
        .fetch_one(pool)
        .await?;
    match outcome.as_str() {
        "conflict" => Ok(None),
        // The same result, racing this one, was stored first.
        "duplicate" => Ok(Some(ResultAck::Duplicate)),
        "recorded" | "changed" => Ok(Some(ack)),
        "refresh" => {
            // No part is waiting: the run may have ended. Its state is derived
            // under its lock (see `transition`); should this daemon die first,
            // the sweep's `settle_runs` does it.
            let mut tx = pool.begin().await?;
            transition::refresh_run(&mut tx, run_id, now).await?;
            tx.commit().await?;
            Ok(Some(ack))
        }
        other => Err(StoreError::Corrupt(format!(
            "jobstack_submit answered {other:?}"
        ))),
    }
}

pub async fn results(pool: &PgPool, run_id: i64) -> StoreResult<Vec<StoredResult>> {
    let sql = format!(
        "SELECT {} FROM results WHERE run_id = $1 ORDER BY part_id, attempt",
        rows::RESULT_COLUMNS
    );
    sqlx::query(&sql)
        .bind(run_id)
        .fetch_all(pool)
        .await?
        .iter()
        .map(rows::result)
        .collect()
}
