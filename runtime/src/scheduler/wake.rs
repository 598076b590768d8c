//! [`WorkSignal`]: what wakes agents waiting for work (lease long-polls).
//!
//! Three reasons to look again for a part:
//! - `n` new parts anyone may take ([`WorkSignal::notify_parts`]): a new
//!   run, a re-run, a retried part, an expired lease;
//! - work of unknown size ([`WorkSignal::notify`]): a resumed run, work another
//!   daemon announced without a count, a lost database listener;
//! - one agent may now take more ([`WorkSignal::notify_agent`]): a result ended
//!   a part it held, and "one part per run per agent" may be all that held its
//!   other slots back. Waking only that agent keeps a stream of results from
//!   waking every waiting agent for nothing.
//!
//! `n` new parts wake at most `n` waiters, oldest first, not every waiter:
//! with fifty agents idle, a one-part forced run cost fifty leases, forty-nine
//! of them empty, and the one that found the part waited for the others in the
//! store. Not every waiter may take every part (targeting, plugins), so a
//! wake is passed on: a waiter that was woken, looked and found nothing hands
//! its wake to the next waiter. A wake ends in a lease, or after as many hops
//! as there were waiters when it was sent, so it cannot circle forever. A wake
//! that reaches a waiter on its way out (it got a part from an earlier look,
//! its poll ended, its client went away) is passed on unused. What a wake
//! still misses, the long-poll's recheck finds.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, watch};

/// Wakes agents waiting for work. Cheap to clone; clones share the signal.
#[derive(Debug, Clone, Default)]
pub struct WorkSignal {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    waiters: Mutex<Waiters>,
    /// One generation counter per agent that ever waited on this daemon
    /// (bounded by the registered agents).
    agents: Mutex<HashMap<i64, watch::Sender<u64>>>,
}

/// The long-polls of this daemon, and the wakes each holds.
#[derive(Debug, Default)]
struct Waiters {
    next_id: u64,
    /// Waiters ready for a wake, oldest first.
    queue: VecDeque<u64>,
    slots: HashMap<u64, Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    /// In `queue`.
    queued: bool,
    /// Wakes received and not yet taken, each with the hops it has left.
    wakes: Vec<u32>,
    bell: Arc<Notify>,
}

impl Waiters {
    /// Give a wake with `hops` to each of the `n` oldest queued waiters other
    /// than `except`.
    fn wake(&mut self, n: usize, hops: u32, except: Option<u64>) {
        let mut skipped = None;
        let mut woken = 0;
        while woken < n {
            let Some(id) = self.queue.pop_front() else {
                break;
            };
            if Some(id) == except {
                skipped = Some(id);
                continue;
            }
            let slot = self.slots.get_mut(&id).expect("queued waiters have a slot");
            slot.queued = false;
            slot.wakes.push(hops);
            slot.bell.notify_one();
            woken += 1;
        }
        if let Some(id) = skipped {
            self.queue.push_front(id);
        }
    }

    /// Pass wakes on from waiter `from`: `used` ones (it looked on their
    /// behalf) lose a hop, and end at zero.
    fn pass_on(&mut self, wakes: Vec<u32>, used: bool, from: Option<u64>) {
        for hops in wakes {
            match (used, hops) {
                (true, 0) => {}
                (true, hops) => self.wake(1, hops - 1, from),
                (false, hops) => self.wake(1, hops, from),
            }
        }
    }
}

impl WorkSignal {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Say that there may be new work, of unknown size: wake every waiter.
    pub fn notify(&self) {
        let mut waiters = self.lock_waiters();
        let n = waiters.queue.len();
        waiters.wake(n, 0, None);
    }

    /// Say that `parts` new parts wait: wake as many waiters (see the module
    /// doc for how a wake finds a waiter that may take the part).
    pub fn notify_parts(&self, parts: u64) {
        let mut waiters = self.lock_waiters();
        let hops = u32::try_from(waiters.queue.len()).unwrap_or(u32::MAX);
        let n = usize::try_from(parts).unwrap_or(usize::MAX);
        waiters.wake(n, hops, None);
    }

    /// How many long-polls are ready for a wake now.
    pub fn waiting(&self) -> usize {
        self.lock_waiters().queue.len()
    }

    /// Say that agent `agent_id` may take more work than when it last looked.
    pub fn notify_agent(&self, agent_id: i64) {
        if let Some(tx) = self.lock_agents().get(&agent_id) {
            tx.send_modify(|generation| *generation += 1);
        }
    }

    /// Register a long-poll of agent `agent_id`; it leaves when dropped.
    pub fn waiter(&self, agent_id: i64) -> Waiter {
        let agent =
            self.lock_agents().entry(agent_id).or_insert_with(|| watch::channel(0).0).subscribe();
        let mut waiters = self.lock_waiters();
        let id = waiters.next_id;
        waiters.next_id += 1;
        let bell = Arc::new(Notify::new());
        waiters.slots.insert(id, Slot { bell: bell.clone(), ..Slot::default() });
        Waiter { signal: self.clone(), id, bell, agent }
    }

    fn lock_waiters(&self) -> MutexGuard<'_, Waiters> {
        // Every change to the waiters is complete before it could panic.
        self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_agents(&self) -> MutexGuard<'_, HashMap<i64, watch::Sender<u64>>> {
        // The map holds no invariant a panicking holder could break.
        self.inner.agents.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One long-poll waiting for work: [`look`](Self::look) before each lease,
/// [`woken`](Self::woken) between them.
#[derive(Debug)]
pub struct Waiter {
    signal: WorkSignal,
    id: u64,
    bell: Arc<Notify>,
    agent: watch::Receiver<u64>,
}

impl Waiter {
    /// About to look for a part: take the wakes received so far, and be
    /// ready for the next ones (work added while we look wakes us again).
    /// Say what the look found with [`Look::found`].
    pub fn look(&mut self) -> Look {
        self.agent.borrow_and_update();
        let mut waiters = self.signal.lock_waiters();
        let slot = waiters.slots.get_mut(&self.id).expect("a waiter has a slot");
        let wakes = std::mem::take(&mut slot.wakes);
        if !slot.queued {
            slot.queued = true;
            waiters.queue.push_back(self.id);
        }
        Look { signal: self.signal.clone(), from: self.id, wakes }
    }

    /// Resolves at a wake for this waiter, or for its agent, since the last
    /// [`look`](Self::look).
    pub async fn woken(&mut self) {
        let has_wakes = || {
            let waiters = self.signal.lock_waiters();
            !waiters.slots[&self.id].wakes.is_empty()
        };
        loop {
            if has_wakes() {
                return;
            }
            tokio::select! {
                // A stored permit can be older than the last look: check again.
                _ = self.bell.notified() => {}
                _ = self.agent.changed() => return,
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiters = self.signal.lock_waiters();
        let Some(slot) = waiters.slots.remove(&self.id) else {
            return;
        };
        if slot.queued {
            waiters.queue.retain(|&id| id != self.id);
        }
        waiters.pass_on(slot.wakes, false, None);
    }
}

/// The wakes one look was made for; passed on by what the look found.
#[derive(Debug)]
#[must_use = "say what the look found"]
pub struct Look {
    signal: WorkSignal,
    from: u64,
    wakes: Vec<u32>,
}

impl Look {
    /// The look found a part (`true`: one wake is spent on it) or nothing
    /// (the wakes go on to other waiters, a hop less).
    pub fn found(mut self, found: bool) {
        let mut wakes = std::mem::take(&mut self.wakes);
        if found {
            wakes.pop();
        }
        self.signal.lock_waiters().pass_on(wakes, true, Some(self.from));
    }
}

impl Drop for Look {
    /// A look that never ended (its lease failed): its wakes go on unused.
    fn drop(&mut self) {
        let wakes = std::mem::take(&mut self.wakes);
        if !wakes.is_empty() {
            self.signal.lock_waiters().pass_on(wakes, false, Some(self.from));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `n` long-polls of agents 0.., each waiting after a look that found
    /// nothing, in that order.
    fn waiting(signal: &WorkSignal, n: i64) -> Vec<Waiter> {
        let mut waiters: Vec<Waiter> = (0..n).map(|i| signal.waiter(i)).collect();
        for w in &mut waiters {
            w.look().found(false);
        }
        waiters
    }

    /// Whether `waiter` has been woken (without waiting).
    async fn is_woken(waiter: &mut Waiter) -> bool {
        tokio::time::timeout(Duration::from_millis(1), waiter.woken()).await.is_ok()
    }

    #[tokio::test]
    async fn an_agent_wakeup_reaches_only_that_agent() {
        let signal = WorkSignal::new();
        let mut waiters = waiting(&signal, 2);

        signal.notify_agent(1);
        assert!(is_woken(&mut waiters[1]).await);
        assert!(!is_woken(&mut waiters[0]).await);
        // An agent nobody waits for is not an error.
        signal.notify_agent(3);
    }

    #[tokio::test]
    async fn work_of_unknown_size_wakes_every_waiter() {
        let signal = WorkSignal::new();
        let mut waiters = waiting(&signal, 3);
        signal.notify();
        for w in &mut waiters {
            assert!(is_woken(w).await);
        }
    }

    #[tokio::test]
    async fn new_parts_wake_as_many_waiters_oldest_first() {
        let signal = WorkSignal::new();
        let mut waiters = waiting(&signal, 4);
        signal.notify_parts(2);
        let woken = [
            is_woken(&mut waiters[0]).await,
            is_woken(&mut waiters[1]).await,
            is_woken(&mut waiters[2]).await,
            is_woken(&mut waiters[3]).await,
        ];
        assert_eq!(woken, [true, true, false, false]);
    }

    #[tokio::test]
    async fn a_waiter_that_finds_nothing_passes_its_wake_on_until_the_hops_end() {
        let signal = WorkSignal::new();
        let mut waiters = waiting(&signal, 3);
        signal.notify_parts(1);
        // Each looks in turn and may not take the part: the wake visits all
        // three (3 hops), then the first again, and ends.
        for turn in [0, 1, 2, 0] {
            for (i, w) in waiters.iter_mut().enumerate() {
                assert_eq!(is_woken(w).await, i == turn, "turn of waiter {turn}");
            }
            waiters[turn].look().found(false);
        }
        for w in &mut waiters {
            assert!(!is_woken(w).await, "the wake ended");
        }
    }

    #[tokio::test]
    async fn a_waiter_that_finds_a_part_spends_the_wake() {
        let signal = WorkSignal::new();
        let mut waiters = waiting(&signal, 2);
        signal.notify_parts(1);
        assert!(is_woken(&mut waiters[0]).await);
        waiters[0].look().found(true);
        assert!(!is_woken(&mut waiters[1]).await);
    }

    #[tokio::test]
    async fn a_wake_reaching_a_waiter_on_its_way_out_goes_on() {
        let signal = WorkSignal::new();
        let mut waiters = waiting(&signal, 2);
        signal.notify_parts(1);
        // The first leaves (its client went away) without looking again.
        let second = waiters.pop();
        drop(waiters);
        assert!(is_woken(&mut second.unwrap()).await);
    }

    #[tokio::test]
    async fn a_wake_during_a_look_brings_another_look() {
        let signal = WorkSignal::new();
        let mut waiter = signal.waiter(1);
        let look = waiter.look();
        signal.notify_parts(1);
        look.found(false);
        assert!(is_woken(&mut waiter).await);
        // That wake is for the next look, which takes it.
        let look = waiter.look();
        assert_eq!(look.wakes, vec![1]);
        look.found(true);
        assert!(!is_woken(&mut waiter).await);
    }
}
