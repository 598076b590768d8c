//! Results in PostgreSQL: the fencing rule applied as a compare-and-set, so
//! that several daemons receiving results for one part apply at most one, and
//! the answer an agent gets is durable (flushed) before it gets it.
//!
//! [`fencing::judge`] decides on the part as read (or, for a success, first on
//! the part as it is when the agent still holds the lease: the common case in
//! one round trip); the `jobstack_submit` function then, in one round trip and
//! one transaction, applies the verdict as a compare-and-set on the state,
//! attempt and owner judged (else the part is read and the result judged again
//! on its new state), records the result (a second copy of the same attempt's
//! result finds it recorded: duplicate), ends the lease(s), moves the part and
//! writes the event. The run's own state follows in a short transaction of its
//! own when no part of it is waiting.
//!
//! An agent's result usually comes with a request for its next part
//! ([`submit_and_lease`]): `jobstack_submit_and_lease` is `jobstack_submit`
//! then the lease, in the same round trip and transaction (whose commit then
//! waits for the flush, as the result's must). Finished
//! results with the next lease, the common request, go in batches of several
//! agents (`finish_batch`); this module answers the rest, and the items a
//! batch could not apply as it assumed.

use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgConnection, PgPool, Row};

use super::{leasing, transition};
use crate::scheduler::{
    Agent, Entity, Lease, ResultAck, ResultStatus, State, Submission,
    fencing::{self, Applied, Stored, Verdict},
    late_result_detail,
};
use crate::store::ms;
use crate::store::{StoreError, StoreResult};

/// The part as the verdict needs it (no lock: `jobstack_submit` re-checks it).
const READ_PART: &str = "\
SELECT p.state, p.attempt, p.owner, r.retries, r.retry_backoff_ms,
  (SELECT l.agent FROM leases l WHERE l.part_id = p.id AND l.attempt = $2) AS lessee,
  COALESCE((SELECT l.end_reason = 'expired' FROM leases l
            WHERE l.part_id = p.id AND l.attempt = $2), false) AS lease_expired,
  EXISTS (SELECT 1 FROM results x
          WHERE x.run_id = p.run_id AND x.part_id = p.id AND x.attempt = $2) AS recorded
FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = $1";

const SUBMIT: &str = "SELECT outcome, run_id FROM jobstack_submit($1, $2, $3, $4, $5, $6, $7, \
     $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)";

/// [`SUBMIT`] and the agent's next lease: the same parameters, then the
/// lease's two (any plugin, the plugins); the lease's columns follow the
/// result's two ([`leasing::lease_from_row`]).
const SUBMIT_AND_LEASE: &str = "SELECT * FROM jobstack_submit_and_lease($1, $2, $3, $4, $5, \
     $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, \
     $25, $26)";

/// The column of [`SUBMIT_AND_LEASE`] where the lease's begin.
const LEASE_COLUMNS: usize = 2;

/// The SQLSTATE `jobstack_submit` raises when the result is already stored.
const ALREADY_RECORDED: &str = "JS001";

/// How many times a result is judged again when its part changed between the
/// read and the write (another result or an expiry got there first); each
/// retry sees a newer state, so a few always suffice.
const MAX_JUDGEMENTS: usize = 10;

/// The part as read for the verdict.
struct PartRead {
    state: State,
    attempt: u32,
    owner: Option<String>,
    retries: u32,
    retry_backoff: chrono::TimeDelta,
    lessee: Option<String>,
    lease_expired: bool,
    recorded: bool,
}

impl PartRead {
    /// The part as it is while `agent` holds the lease `s` reports on.
    fn held(agent: &Agent, s: &Submission) -> Self {
        let name = &agent.registration.name;
        Self {
            state: State::Running,
            attempt: s.attempt,
            owner: Some(name.clone()),
            retries: 0,
            retry_backoff: chrono::TimeDelta::zero(),
            lessee: Some(name.clone()),
            lease_expired: false,
            recorded: false,
        }
    }
}

/// Whether the write of a result also leased the agent's next part.
// Not boxed: returned once per call, never stored.
#[allow(clippy::large_enum_variant)]
enum Leased {
    /// Not asked for, or the result was not stored.
    No,
    /// The lease, or `None`: no part the agent may take.
    Yes(Option<Lease>),
}

/// What a verdict changes besides recording the result.
struct Change {
    to: State,
    /// `None`: the owner stays; `Some(x)`: the owner becomes `x`.
    owner: Option<Option<String>>,
    available_at: Option<DateTime<Utc>>,
    error: Option<String>,
}

pub async fn submit(
    pool: &PgPool, agent: &Agent, s: &Submission, now: DateTime<Utc>,
) -> StoreResult<ResultAck> {
    let mut conn = pool.acquire().await?;
    // The common case first, in one round trip: a success for the lease the
    // agent holds. The verdict is the rule's, on the part as it must then be;
    // the compare-and-set checks that it is, else the part is read and judged.
    if s.status == ResultStatus::Finished {
        let assumed = PartRead::held(agent, s);
        if let Some((ack, _)) = judge_and_write(&mut conn, agent, s, &assumed, now, false).await? {
            return Ok(ack);
        }
    }
    judge_until_written(&mut conn, agent, s, now).await
}

/// A result, then the agent's next lease: for the common case (a success for
/// the lease the agent holds, as in [`submit`]) both in one round trip and
/// one transaction (`jobstack_submit_and_lease`); otherwise, or if that call
/// fails, [`submit`] then a lease of its own.
pub async fn submit_and_lease(
    pool: &PgPool, agent: &Agent, s: &Submission, now: DateTime<Utc>,
) -> StoreResult<(ResultAck, Option<Lease>)> {
    let mut conn = pool.acquire().await?;
    let mut ack = None;
    if s.status == ResultStatus::Finished {
        let assumed = PartRead::held(agent, s);
        match judge_and_write(&mut conn, agent, s, &assumed, now, true).await {
            Ok(Some((written, Leased::Yes(lease)))) => return Ok((written, lease)),
            Ok(Some((written, Leased::No))) => ack = Some(written),
            Ok(None) => {}
            Err(error @ StoreError::NotLeased { .. }) => return Err(error),
            // Nothing of the call was kept (its transaction is undone): the
            // result is applied alone, so that a lease that keeps failing
            // cannot keep it out.
            Err(error) => {
                tracing::warn!(%error, part = s.part_id, "a result with the next lease failed; applying the result alone");
            }
        }
    }
    let ack = match ack {
        Some(ack) => ack,
        None => judge_until_written(&mut conn, agent, s, now).await?,
    };
    drop(conn);
    let lease = leasing::lease(pool, agent, now).await;
    Ok((ack, crate::store::lease_after_result(lease)))
}

/// Read the part and judge the result on it until the write finds the part
/// as read (another result or an expiry may change it in between).
async fn judge_until_written(
    conn: &mut PgConnection, agent: &Agent, s: &Submission, now: DateTime<Utc>,
) -> StoreResult<ResultAck> {
    for _ in 0..MAX_JUDGEMENTS {
        let part = read_part(conn, agent, s).await?;
        if let Some((ack, _)) = judge_and_write(conn, agent, s, &part, now, false).await? {
            return Ok(ack);
        }
    }
    Err(StoreError::Invalid(format!(
        "part {} changed {MAX_JUDGEMENTS} times while its result was applied; send it again",
        s.part_id
    )))
}

fn not_leased(agent: &Agent, s: &Submission) -> StoreError {
    StoreError::NotLeased {
        part_id: s.part_id,
        attempt: s.attempt,
        agent: agent.registration.name.clone(),
    }
}

async fn read_part(
    conn: &mut PgConnection, agent: &Agent, s: &Submission,
) -> StoreResult<PartRead> {
    let row = sqlx::query(READ_PART)
        .bind(s.part_id)
        .bind(i64::from(s.attempt))
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| not_leased(agent, s))?;
    Ok(PartRead {
        state: row
            .try_get::<String, _>("state")?
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?,
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        owner: row.try_get("owner")?,
        retries: row.try_get::<i64, _>("retries")? as u32,
        retry_backoff: chrono::TimeDelta::milliseconds(row.try_get("retry_backoff_ms")?),
        lessee: row.try_get("lessee")?,
        lease_expired: row.try_get("lease_expired")?,
        recorded: row.try_get("recorded")?,
    })
}

/// Judge the result on `part` and write it if the part is still so; `None` if
/// it is not (judge again on a fresh read). With `lease`, the write also
/// leases the agent's next part if the result is stored.
async fn judge_and_write(
    conn: &mut PgConnection, agent: &Agent, s: &Submission, part: &PartRead, now: DateTime<Utc>,
    lease: bool,
) -> StoreResult<Option<(ResultAck, Leased)>> {
    let name = agent.registration.name.as_str();
    let verdict = fencing::judge_result(
        Stored {
            state: part.state,
            attempt: part.attempt,
            owner: part.owner.as_deref(),
            lessee: part.lessee.as_deref(),
            recorded: part.recorded,
            lease_expired: part.lease_expired,
        },
        name,
        s,
    );
    let (ack, applied, reason, revoke, change) = match verdict {
        Verdict::NotLeased => return Err(not_leased(agent, s)),
        Verdict::Duplicate => return Ok(Some((ResultAck::Duplicate, Leased::No))),
        Verdict::RecordOnly => (ResultAck::Recorded, false, "result", None, None),
        Verdict::Apply => {
            let Applied { to, available_at, error } =
                fencing::applied(s, part.attempt, part.retries, part.retry_backoff, now);
            let owner = (to != State::Finished).then_some(None);
            let change = Change { to, owner, available_at: Some(available_at), error };
            (ResultAck::Applied, true, "result", None, Some(change))
        }
        Verdict::AcceptLate { revokes_current } => {
            let change = Change {
                to: State::Finished,
                owner: Some(Some(name.to_string())),
                available_at: None,
                error: None,
            };
            let revoke = revokes_current.then_some(i64::from(part.attempt));
            (ResultAck::AcceptedLate, true, "late-result", revoke, Some(change))
        }
    };
    if let Some(change) = &change {
        part.state.check(Entity::Part, change.to)?;
    }
    let detail = if matches!(verdict, Verdict::AcceptLate { .. }) {
        let revoked = revoke.map(|held| (part.owner.as_deref().unwrap_or(""), held as u32));
        late_result_detail(name, s.attempt, s.status, revoked)
    } else {
        event_detail(name, s)
    };
    let mut write = sqlx::query(if lease { SUBMIT_AND_LEASE } else { SUBMIT })
        .bind(s.part_id)
        .bind(i64::from(s.attempt))
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
        .bind(part.state.as_str())
        .bind(i64::from(part.attempt))
        .bind(&part.owner)
        .bind(change.as_ref().map(|c| c.to.as_str()))
        .bind(change.as_ref().is_none_or(|c| c.owner.is_none()))
        .bind(change.as_ref().and_then(|c| c.owner.clone().flatten()))
        .bind(change.as_ref().and_then(|c| c.available_at.map(ms)))
        .bind(change.as_ref().and_then(|c| c.error.clone()))
        .bind(detail.to_string());
    if lease {
        write = write.bind(agent.registration.plugins.is_empty()).bind(&agent.registration.plugins);
    }
    let row = match write.fetch_optional(&mut *conn).await {
        // The compare-and-set matched but this attempt's result was already
        // stored (a copy racing this one): nothing was changed.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(ALREADY_RECORDED) => {
            return Ok(Some((ResultAck::Duplicate, Leased::No)));
        }
        other => other?,
    };
    // No row: the part does not exist.
    let Some(row) = row else {
        return Err(not_leased(agent, s));
    };
    let outcome: Option<String> = row.try_get("outcome")?;
    let run_id: Option<i64> = row.try_get("run_id")?;
    let stored = |ack| -> StoreResult<Option<(ResultAck, Leased)>> {
        let leased = if lease {
            Leased::Yes(leasing::lease_from_row(&row, LEASE_COLUMNS).unwrap_or_else(|error| {
                tracing::warn!(%error, "the lease after a result could not be read; it will expire");
                None
            }))
        } else {
            Leased::No
        };
        Ok(Some((ack, leased)))
    };
    match (outcome.as_deref(), run_id) {
        (Some("conflict"), Some(_)) => Ok(None),
        (Some("conflict"), None) => Err(not_leased(agent, s)),
        // The same result, racing this one, was stored first.
        (Some("duplicate"), _) => Ok(Some((ResultAck::Duplicate, Leased::No))),
        (Some("recorded" | "changed"), _) => stored(ack),
        (Some("refresh"), Some(run_id)) => {
            // No part is waiting: the run may have ended. Its state is derived
            // under its lock (see `transition`); should this daemon die first,
            // the sweep's `settle_runs` does it.
            let mut tx = conn.begin().await?;
            transition::refresh_run(&mut tx, run_id, now).await?;
            tx.commit().await?;
            stored(ack)
        }
        // No row from `jobstack_submit` (`jobstack_submit_and_lease` then
        // answers NULL): the part does not exist.
        (None, None) => Err(not_leased(agent, s)),
        (other, _) => Err(StoreError::Corrupt(format!("jobstack_submit answered {other:?}"))),
    }
}

/// The detail of the event a result's part move writes.
pub(super) fn event_detail(agent: &str, s: &Submission) -> serde_json::Value {
    serde_json::json!({ "agent": agent, "attempt": s.attempt, "status": s.status })
}
