//! Leasing, heartbeats, progress and lease expiry in SQLite.
//!
//! Leasing walks the runs the agent may take from in leasing order (rank,
//! oldest run) and in each the `parts_to_lease` index in split order, and
//! stops at the first part the agent may take: pinned to it or to nobody; its
//! run targets it by name, or targets automatically and one of its networks
//! holds the part's address span; the agent accepts the plugin; and the agent
//! holds no other part of that run.

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{from_ms, ms, transition};
use crate::scheduler::{Agent, HeartbeatAck, Lease, LeaseRef, NewPart, State, TaskSpec, retry};
use crate::store::{StoreError, StoreResult};

/// The runs an agent may take from, in leasing order (rank: forced, priority;
/// then oldest): it targets the agent by name or automatically, the agent
/// accepts the plugin, and the agent holds no part of it yet. Runs are few;
/// walking them first skips a run the agent already holds a part of whole,
/// instead of part by part (a million-part run, an agent with several slots).
const RUNS_TO_LEASE: &str = "\
SELECT r.id, r.rank, r.explicit_agents, r.lease_ttl_ms FROM runs r
WHERE r.state IN ('waiting', 'running')
  AND (r.explicit_agents = 0
       OR EXISTS (SELECT 1 FROM run_agents ra WHERE ra.run_id = r.id AND ra.agent_name = ?1))
  AND (?2 OR r.plugin IN (SELECT value FROM json_each(?3)))
  AND r.id NOT IN (SELECT q.run_id FROM parts q WHERE q.state = 'running' AND q.owner = ?1)
ORDER BY r.rank, r.id";

/// The first part of a run (index `parts_to_lease`) the agent may take: due,
/// pinned to it or to nobody, and for automatic targeting, inside one of its
/// networks. With what the lease hands out of the part and of its run (read
/// for the part found only, not for every run walked).
const PART_TO_LEASE: &str = "\
SELECT p.id, p.attempt, p.label, p.targets, p.payload,
       r.task_id, r.spec, r.secrets, r.plugin_sha256
FROM parts p JOIN runs r ON r.id = p.run_id
WHERE p.rank = ?1 AND p.run_id = ?2 AND p.state = 'waiting' AND p.available_at <= ?3
  AND (p.pinned_agent IS NULL OR p.pinned_agent = ?4)
  AND (p.span_lo IS NULL OR ?5
       OR EXISTS (SELECT 1 FROM agent_networks n
                  WHERE n.agent_id = ?6 AND n.lo <= p.span_lo AND p.span_hi <= n.hi))
ORDER BY p.rank, p.run_id, p.seq
LIMIT 1";

/// Mark the agent seen (not more than once a second: it is the agent's row,
/// and without writing it a lease that finds nothing writes nothing).
pub(super) async fn touch_agent(
    conn: &mut SqliteConnection,
    agent: &Agent,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("UPDATE agents SET last_seen = ?1 WHERE id = ?2 AND last_seen < ?1 - 1000")
        .bind(ms(now))
        .bind(agent.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Lease the best part `agent` may take, inside the caller's transaction
/// (the group commit's batch).
pub async fn lease(
    tx: &mut SqliteConnection,
    agent: &Agent,
    now: DateTime<Utc>,
) -> StoreResult<Option<Lease>> {
    touch_agent(tx, agent, now).await?;
    let name = &agent.registration.name;
    let plugins = serde_json::to_string(&agent.registration.plugins).expect("names serialize");
    let runs = sqlx::query(RUNS_TO_LEASE)
        .bind(name)
        .bind(agent.registration.plugins.is_empty())
        .bind(plugins)
        .fetch_all(&mut *tx)
        .await?;
    let mut picked = None;
    for run in &runs {
        let part = sqlx::query(PART_TO_LEASE)
            .bind(run.try_get::<i64, _>("rank")?)
            .bind(run.try_get::<i64, _>("id")?)
            .bind(ms(now))
            .bind(name)
            .bind(run.try_get::<bool, _>("explicit_agents")?)
            .bind(agent.id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(part) = part {
            picked = Some((run, part));
            break;
        }
    }
    let Some((run, part)) = picked else {
        return Ok(None);
    };
    let part_id: i64 = part.try_get("id")?;
    let run_id: i64 = run.try_get("id")?;
    let attempt = part.try_get::<i64, _>("attempt")? as u32 + 1;
    let expires_at = now + TimeDelta::milliseconds(run.try_get("lease_ttl_ms")?);
    let detail = serde_json::json!({ "agent": name, "attempt": attempt });
    let update = sqlx::query(
        "UPDATE parts SET state = ?, attempt = ?, owner = ?, lease_expires_at = ?, \
         progress_done = NULL, progress_total = NULL WHERE id = ? AND state = ?",
    )
    .bind(State::Running.as_str())
    .bind(i64::from(attempt))
    .bind(name)
    .bind(ms(expires_at))
    .bind(part_id)
    .bind(State::Waiting.as_str());
    transition::move_part_with(
        tx,
        update,
        run_id,
        part_id,
        State::Waiting,
        State::Running,
        now,
        detail,
    )
    .await?;
    sqlx::query("INSERT INTO leases (part_id, attempt, agent, leased_at) VALUES (?, ?, ?, ?)")
        .bind(part_id)
        .bind(i64::from(attempt))
        .bind(name)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    let spec: TaskSpec = parse(&part, "spec")?;
    let lease = Lease {
        part_id,
        run_id,
        task_id: part.try_get("task_id")?,
        attempt,
        expires_at,
        plugin: spec.plugin.clone(),
        plugin_sha256: part.try_get("plugin_sha256")?,
        params: spec.params.clone(),
        secrets: parse(&part, "secrets")?,
        part: NewPart {
            label: part.try_get("label")?,
            targets: parse(&part, "targets")?,
            payload: part.try_get("payload")?,
        },
        timeout_ms: spec.timeout_ms,
        mode: spec.mode,
        grants: spec.grants,
    };
    Ok(Some(lease))
}

fn parse<T: serde::de::DeserializeOwned>(
    row: &sqlx::sqlite::SqliteRow,
    column: &str,
) -> StoreResult<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// The part's run, state, attempt and owner.
async fn lease_state(
    conn: &mut SqliteConnection,
    part_id: i64,
) -> StoreResult<Option<(i64, State, u32, Option<String>, i64)>> {
    let row = sqlx::query(
        "SELECT p.run_id, p.state, p.attempt, p.owner, r.lease_ttl_ms \
         FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = ?",
    )
    .bind(part_id)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("state")?;
    let state = state
        .parse()
        .map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
    Ok(Some((
        row.try_get("run_id")?,
        state,
        row.try_get::<i64, _>("attempt")? as u32,
        row.try_get("owner")?,
        row.try_get("lease_ttl_ms")?,
    )))
}

fn holds(
    state: State,
    attempt: u32,
    owner: &Option<String>,
    agent: &Agent,
    lease: LeaseRef,
) -> bool {
    state == State::Running
        && attempt == lease.attempt
        && owner.as_deref() == Some(agent.registration.name.as_str())
}

pub async fn heartbeat(
    pool: &SqlitePool,
    agent: &Agent,
    held: &[LeaseRef],
    now: DateTime<Utc>,
) -> StoreResult<HeartbeatAck> {
    let mut tx = pool.begin().await?;
    touch_agent(&mut tx, agent, now).await?;
    let mut ack = HeartbeatAck::default();
    for lease in held {
        match lease_state(&mut tx, lease.part_id).await? {
            Some((_, state, attempt, owner, ttl))
                if holds(state, attempt, &owner, agent, *lease) =>
            {
                sqlx::query("UPDATE parts SET lease_expires_at = ? WHERE id = ?")
                    .bind(ms(now + TimeDelta::milliseconds(ttl)))
                    .bind(lease.part_id)
                    .execute(&mut *tx)
                    .await?;
                ack.extended.push(*lease);
            }
            _ => ack.revoked.push(*lease),
        }
    }
    tx.commit().await?;
    Ok(ack)
}

pub async fn progress(
    pool: &SqlitePool,
    agent: &Agent,
    lease: LeaseRef,
    done: u64,
    total: u64,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    touch_agent(&mut tx, agent, now).await?;
    match lease_state(&mut tx, lease.part_id).await? {
        Some((_, state, attempt, owner, _)) if holds(state, attempt, &owner, agent, lease) => {
            sqlx::query("UPDATE parts SET progress_done = ?, progress_total = ? WHERE id = ?")
                .bind(done.min(i64::MAX as u64) as i64)
                .bind(total.min(i64::MAX as u64) as i64)
                .bind(lease.part_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        }
        _ => Err(StoreError::NotLeased {
            part_id: lease.part_id,
            attempt: lease.attempt,
            agent: agent.registration.name.clone(),
        }),
    }
}

pub async fn expire_leases(pool: &SqlitePool, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT p.id, p.run_id, p.attempt, p.owner, p.lease_expires_at, r.retries \
         FROM parts p JOIN runs r ON r.id = p.run_id \
         WHERE p.state = 'running' AND p.lease_expires_at < ? ORDER BY p.lease_expires_at",
    )
    .bind(ms(now))
    .fetch_all(&mut *tx)
    .await?;
    let mut expired = Vec::with_capacity(rows.len());
    for row in rows {
        let part_id: i64 = row.try_get("id")?;
        let run_id: i64 = row.try_get("run_id")?;
        let attempt = row.try_get::<i64, _>("attempt")? as u32;
        let owner: Option<String> = row.try_get("owner")?;
        let retries = row.try_get::<i64, _>("retries")? as u32;
        let expired_at = from_ms(row.try_get("lease_expires_at")?);
        sqlx::query(
            "UPDATE leases SET ended_at = ?, end_reason = 'expired' \
             WHERE part_id = ? AND attempt = ? AND ended_at IS NULL",
        )
        .bind(ms(now))
        .bind(part_id)
        .bind(i64::from(attempt))
        .execute(&mut *tx)
        .await?;
        let error = format!(
            "attempt {attempt}: lease of agent {} expired at {expired_at}",
            owner.as_deref().unwrap_or("?")
        );
        let (to, available_at) = if retry::may_retry(attempt, retries) {
            (State::Waiting, now + retry::backoff(attempt))
        } else {
            (State::Failed, now)
        };
        let detail = serde_json::json!({ "agent": owner, "attempt": attempt, "reason": "expired" });
        transition::move_part(&mut tx, run_id, part_id, State::Running, to, now, detail).await?;
        sqlx::query(
            "UPDATE parts SET owner = NULL, lease_expires_at = NULL, available_at = ?, error = ? \
             WHERE id = ?",
        )
        .bind(ms(available_at))
        .bind(&error)
        .bind(part_id)
        .execute(&mut *tx)
        .await?;
        expired.push(LeaseRef { part_id, attempt });
    }
    tx.commit().await?;
    Ok(expired)
}
