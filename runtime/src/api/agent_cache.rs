//! The agents behind the tokens of recent requests, so that an agent's
//! leases and results do not each read its row from the store first (on
//! SQLite a hand-off to a reader thread and back, on every request).
//!
//! An entry lives [`AGENT_CACHE_TTL`]. A registration through this daemon
//! forgets the agent's entries at once (a re-registered agent's old token
//! stops working here immediately); one through another daemon sharing the
//! database is seen here within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::scheduler::Agent;

/// How long an agent read from the store is trusted.
pub const AGENT_CACHE_TTL: Duration = Duration::from_secs(1);

/// Above this many entries, expired ones are dropped at the next insert.
const PRUNE_ABOVE: usize = 4096;

/// Agents by token hash. Shared by the request handlers.
#[derive(Debug, Default)]
pub struct AgentCache {
    entries: Mutex<HashMap<String, (Agent, Instant)>>,
}

impl AgentCache {
    /// The agent of `token_hash` if read within the TTL before `now`.
    pub fn get(&self, token_hash: &str, now: Instant) -> Option<Agent> {
        let entries = self.entries.lock().expect("agent cache lock");
        let (agent, read_at) = entries.get(token_hash)?;
        (now.saturating_duration_since(*read_at) < AGENT_CACHE_TTL).then(|| agent.clone())
    }

    /// Remember `agent` as the owner of `token_hash`, read from the store at
    /// `now`.
    pub fn insert(&self, token_hash: &str, agent: Agent, now: Instant) {
        let mut entries = self.entries.lock().expect("agent cache lock");
        if entries.len() >= PRUNE_ABOVE {
            entries.retain(|_, (_, read_at)| {
                now.saturating_duration_since(*read_at) < AGENT_CACHE_TTL
            });
        }
        entries.insert(token_hash.to_string(), (agent, now));
    }

    /// Forget every token of agent `agent_id` (it registered again: its
    /// token and its networks or plugins may have changed).
    pub fn forget_agent(&self, agent_id: i64) {
        let mut entries = self.entries.lock().expect("agent cache lock");
        entries.retain(|_, (agent, _)| agent.id != agent_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::AgentRegistration;

    fn agent(id: i64) -> Agent {
        Agent {
            id,
            registration: AgentRegistration {
                name: format!("agent-{id}"),
                networks: vec![],
                plugins: vec![],
                pooled_slots: 1,
                dedicated_slots: 0,
            },
            last_seen: chrono::DateTime::UNIX_EPOCH,
            down_since: None,
        }
    }

    #[test]
    fn an_entry_is_trusted_for_the_ttl_only() {
        let cache = AgentCache::default();
        let t0 = Instant::now();
        cache.insert("h1", agent(1), t0);
        assert_eq!(cache.get("h1", t0 + AGENT_CACHE_TTL / 2).map(|a| a.id), Some(1));
        assert!(cache.get("h1", t0 + AGENT_CACHE_TTL).is_none());
        assert!(cache.get("other", t0).is_none());
    }

    #[test]
    fn registering_again_forgets_every_token_of_the_agent() {
        let cache = AgentCache::default();
        let t0 = Instant::now();
        cache.insert("old", agent(1), t0);
        cache.insert("other", agent(2), t0);
        cache.forget_agent(1);
        assert!(cache.get("old", t0).is_none());
        assert_eq!(cache.get("other", t0).map(|a| a.id), Some(2));
    }

    #[test]
    fn expired_entries_are_pruned_when_the_cache_is_large() {
        let cache = AgentCache::default();
        let t0 = Instant::now();
        for i in 0..PRUNE_ABOVE {
            cache.insert(&format!("h{i}"), agent(i as i64), t0);
        }
        cache.insert("fresh", agent(-1), t0 + AGENT_CACHE_TTL);
        assert_eq!(cache.entries.lock().unwrap().len(), 1);
    }
}
