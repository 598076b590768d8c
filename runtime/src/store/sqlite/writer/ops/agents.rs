//! Agents on the writer: registration, heartbeats and progress. A heartbeat
//! or a progress report counts only from the agent holding the lease it
//! names (state Running, the same attempt, the agent as owner).

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::lease::touch_agent;
use super::statements::WriterConn;
use super::transition;
use crate::scheduler::{
    Agent, AgentRegistration, HeartbeatAck, LeaseRef, ProgressReport, State, lease_expiry,
    targeting::AddressSpan,
};
use crate::store::{AgentChanges, StoreError, StoreResult, monitor_sql, ms};

/// Mark agents down and up again ([`crate::store::monitor_sql`]), each with
/// its event.
pub fn monitor_agents(
    conn: &WriterConn<'_>, cutoff: DateTime<Utc>, now: DateTime<Utc>,
) -> StoreResult<AgentChanges> {
    let mut changes = AgentChanges::default();
    for (sql, kind) in [(monitor_sql::MARK_DOWN, "down"), (monitor_sql::MARK_UP, "up")] {
        let mut statement = conn.prepare_cached(sql)?;
        let binds: Vec<i64> = if kind == "down" { vec![ms(now), ms(cutoff)] } else { vec![] };
        let marked: Vec<(i64, String)> = statement
            .query_map(rusqlite::params_from_iter(binds), |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?;
        drop(statement);
        for (id, name) in marked {
            let detail = serde_json::json!({ "name": name });
            transition::event(conn, now, ("agent", id), kind, None, &detail)?;
            if kind == "down" { changes.down.push(name) } else { changes.up.push(name) }
        }
    }
    Ok(changes)
}

/// Register `reg` (or register it again, under the same name, with a new
/// token); its networks are stored as address spans for leasing.
pub fn register_agent(
    conn: &WriterConn<'_>, reg: &AgentRegistration, token_hash: &str, now: DateTime<Utc>,
) -> StoreResult<Agent> {
    let networks = serde_json::to_string(&reg.networks).expect("networks serialize");
    let plugins = serde_json::to_string(&reg.plugins).expect("plugin names serialize");
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO agents (name, token_hash, networks, plugins, pooled_slots, \
             dedicated_slots, registered_at, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) \
             ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, \
             networks = excluded.networks, plugins = excluded.plugins, \
             pooled_slots = excluded.pooled_slots, dedicated_slots = excluded.dedicated_slots, \
             last_seen = excluded.last_seen RETURNING id",
        )?
        .query_row(
            params![
                reg.name,
                token_hash,
                networks,
                plugins,
                i64::from(reg.pooled_slots),
                i64::from(reg.dedicated_slots),
                ms(now)
            ],
            |row| row.get(0),
        )?;
    conn.prepare_cached("DELETE FROM agent_networks WHERE agent_id = ?1")?.execute([id])?;
    let mut insert_network =
        conn.prepare_cached("INSERT INTO agent_networks (agent_id, lo, hi) VALUES (?1, ?2, ?3)")?;
    for net in &reg.networks {
        let span = AddressSpan::of_net(&net.trunc());
        insert_network.execute(params![id, span.lo_hex(), span.hi_hex()])?;
    }
    let detail = serde_json::json!({ "name": reg.name, "networks": reg.networks });
    transition::event(conn, now, ("agent", id), "registered", None, &detail)?;
    Ok(Agent { id, registration: reg.clone(), last_seen: now, down_since: None })
}

/// A part's state, attempt and owner, and its run's lease length (ms).
type LeaseState = (State, u32, Option<String>, i64);

/// Part `part_id`'s [`LeaseState`].
fn lease_state(conn: &WriterConn<'_>, part_id: i64) -> StoreResult<Option<LeaseState>> {
    let row = conn
        .prepare_cached(
            "SELECT p.state, p.attempt, p.owner, r.lease_ttl_ms \
             FROM parts p JOIN runs r ON r.id = p.run_id WHERE p.id = ?1",
        )?
        .query_row([part_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)? as u32,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    let Some((state, attempt, owner, ttl)) = row else {
        return Ok(None);
    };
    let state = state.parse().map_err(|e| StoreError::Corrupt(format!("parts.state: {e}")))?;
    Ok(Some((state, attempt, owner, ttl)))
}

/// Whether `agent` holds `lease` on a part found as `state`, `attempt`, `owner`.
fn holds(
    (state, attempt, owner): (State, u32, &Option<String>), agent: &Agent, lease: LeaseRef,
) -> bool {
    state == State::Running
        && attempt == lease.attempt
        && owner.as_deref() == Some(agent.registration.name.as_str())
}

/// Extend the leases `agent` still holds by their run's lease length; the
/// others are revoked (the agent stops their work).
pub fn heartbeat(
    conn: &WriterConn<'_>, agent: &Agent, held: &[LeaseRef], now: DateTime<Utc>,
) -> StoreResult<HeartbeatAck> {
    touch_agent(conn, agent, now)?;
    let mut ack = HeartbeatAck::default();
    for lease in held {
        match lease_state(conn, lease.part_id)? {
            Some((state, attempt, owner, ttl))
                if holds((state, attempt, &owner), agent, *lease) =>
            {
                conn.prepare_cached("UPDATE parts SET lease_expires_at = ?1 WHERE id = ?2")?
                    .execute(params![ms(lease_expiry(now, ttl)), lease.part_id])?;
                ack.extended.push(*lease);
            }
            _ => ack.revoked.push(*lease),
        }
    }
    Ok(ack)
}

/// Record the progress `agent` reports on a part it holds.
pub fn progress(
    conn: &WriterConn<'_>, agent: &Agent, report: &ProgressReport, now: DateTime<Utc>,
) -> StoreResult<()> {
    let (lease, (done, total)) = (report.lease_ref(), report.stored());
    touch_agent(conn, agent, now)?;
    match lease_state(conn, lease.part_id)? {
        Some((state, attempt, owner, _)) if holds((state, attempt, &owner), agent, lease) => {
            conn.prepare_cached(
                "UPDATE parts SET progress_done = ?1, progress_total = ?2 WHERE id = ?3",
            )?
            .execute(params![done, total, lease.part_id])?;
            Ok(())
        }
        _ => Err(StoreError::NotLeased {
            part_id: lease.part_id,
            attempt: lease.attempt,
            agent: agent.registration.name.clone(),
        }),
    }
}
