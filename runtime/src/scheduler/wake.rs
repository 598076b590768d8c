//! [`WorkSignal`]: what wakes agents waiting for work (lease long-polls).
//!
//! Two reasons to look again for a part:
//! - there may be new work for anyone ([`WorkSignal::notify`]): a new run, a
//!   resume, a re-run, a retried part, work another daemon announced;
//! - one agent may now take more ([`WorkSignal::notify_agent`]): a result ended
//!   a part it held, and "one part per run per agent" may be all that held its
//!   other slots back. Waking only that agent keeps a stream of results from
//!   waking every waiting agent for nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Wakes agents waiting for work. Cheap to clone; clones share the signal.
#[derive(Debug, Clone)]
pub struct WorkSignal {
    tx: Arc<watch::Sender<u64>>,
    /// One generation counter per agent that ever waited on this daemon
    /// (bounded by the registered agents).
    agents: Arc<Mutex<HashMap<i64, watch::Sender<u64>>>>,
}

impl WorkSignal {
    pub(crate) fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(0).0),
            agents: Arc::default(),
        }
    }

    /// Say that there may be new work.
    pub fn notify(&self) {
        self.tx.send_modify(|generation| *generation += 1);
    }

    /// A receiver whose `changed()` resolves at the next [`notify`](Self::notify).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// Say that agent `agent_id` may take more work than when it last looked.
    pub fn notify_agent(&self, agent_id: i64) {
        if let Some(tx) = self.lock_agents().get(&agent_id) {
            tx.send_modify(|generation| *generation += 1);
        }
    }

    /// A receiver whose `changed()` resolves at the next
    /// [`notify_agent`](Self::notify_agent) for this agent.
    pub fn subscribe_agent(&self, agent_id: i64) -> watch::Receiver<u64> {
        self.lock_agents()
            .entry(agent_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn lock_agents(&self) -> std::sync::MutexGuard<'_, HashMap<i64, watch::Sender<u64>>> {
        // The map holds no invariant a panicking holder could break.
        self.agents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_agent_wakeup_reaches_only_that_agent() {
        let signal = WorkSignal::new();
        let mut all = signal.subscribe();
        let mut one = signal.subscribe_agent(1);
        let mut other = signal.subscribe_agent(2);
        all.borrow_and_update();
        one.borrow_and_update();
        other.borrow_and_update();

        signal.notify_agent(1);
        assert!(one.has_changed().unwrap());
        assert!(!other.has_changed().unwrap());
        assert!(!all.has_changed().unwrap());

        signal.notify();
        assert!(all.has_changed().unwrap());
        // An agent nobody waits for is not an error.
        signal.notify_agent(3);
    }
}
