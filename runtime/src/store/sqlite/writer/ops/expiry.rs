//! Lease expiry: a lease past its expiry is a timed-out attempt; its part
//! waits again (after the retry backoff) or, its retries spent, fails.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::statements::{Hot, WriterConn};
use super::transition;
use crate::scheduler::{LeaseRef, State, retry};
use crate::store::{StoreResult, from_ms, ms};

/// Expire every lease past its expiry at `now`; the leases expired.
pub fn expire_leases(conn: &WriterConn<'_>, now: DateTime<Utc>) -> StoreResult<Vec<LeaseRef>> {
    let expired_parts = conn
        .prepare_cached(
            "SELECT p.id, p.run_id, p.attempt, p.owner, p.lease_expires_at, r.retries, \
             r.retry_backoff_ms \
             FROM parts p JOIN runs r ON r.id = p.run_id \
             WHERE p.state = 'running' AND p.lease_expires_at < ?1 ORDER BY p.lease_expires_at",
        )?
        .query_map([ms(now)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)? as u32,
                row.get::<_, Option<String>>(3)?,
                from_ms(row.get(4)?),
                row.get::<_, i64>(5)? as u32,
                chrono::TimeDelta::milliseconds(row.get(6)?),
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut expired = Vec::with_capacity(expired_parts.len());
    for (part_id, run_id, attempt, owner, expired_at, retries, backoff) in expired_parts {
        conn.prepared(Hot::EndLease)?.execute(params![
            ms(now),
            "expired",
            part_id,
            i64::from(attempt)
        ])?;
        let error = format!(
            "attempt {attempt}: lease of agent {} expired at {expired_at}",
            owner.as_deref().unwrap_or("?")
        );
        let (to, available_at) = retry::after_failure(attempt, retries, backoff, now);
        let detail = serde_json::json!({ "agent": owner, "attempt": attempt, "reason": "expired" });
        let run = transition::read_run(conn, run_id)?;
        transition::move_part_with(
            conn,
            Hot::ExpirePart,
            params![to.as_str(), error, ms(available_at), part_id],
            &run,
            part_id,
            (State::Running, to),
            now,
            &detail,
        )?;
        expired.push(LeaseRef { part_id, attempt });
    }
    Ok(expired)
}
