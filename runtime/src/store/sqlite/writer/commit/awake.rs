//! Waiting for the other thread's next hand-off awake, while that pays.
//!
//! Under load the writer's two threads (the writer and the WAL's flusher) hand work to each other every few
//! hundred microseconds, and on a small virtual machine waking a sleeping
//! thread costs tens of microseconds, often more than the wait itself. So a
//! thread first waits awake (polling, yielding the processor between polls)
//! for up to a window, then sleeps. Only while that pays: after a wait that
//! outlasted the window (a quiet daemon, agents idle in their long-polls),
//! the thread sleeps at once, and waits awake again once a wait turns out
//! shorter than the window. A daemon with little to do spends nothing on it.

use std::task::Poll;
use std::time::{Duration, Instant};

/// One thread's way of waiting: its window, and whether the last wait was
/// shorter than it.
#[derive(Debug)]
pub(in crate::store::sqlite::writer) struct AwakeWait {
    window: Duration,
    worth_it: bool,
}

impl AwakeWait {
    /// Wait awake for up to `window` (while that pays).
    pub fn new(window: Duration) -> Self {
        Self { window, worth_it: true }
    }

    /// Wait for `poll` on `queue` to be ready: awake for up to the window if
    /// the last wait was shorter than it, then asleep in `park` until woken.
    pub fn wait<Q, T>(
        &mut self, queue: &mut Q, mut poll: impl FnMut(&mut Q) -> Poll<T>,
        park: impl FnOnce(&mut Q) -> T,
    ) -> T {
        let started = Instant::now();
        let awake_until = started + if self.worth_it { self.window } else { Duration::ZERO };
        loop {
            match poll(queue) {
                Poll::Ready(value) => {
                    self.worth_it = true;
                    return value;
                }
                Poll::Pending if Instant::now() < awake_until => std::thread::yield_now(),
                Poll::Pending => {
                    let value = park(queue);
                    self.worth_it = started.elapsed() < self.window;
                    return value;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A queue ready after `pending` polls; counts the polls.
    struct Queue {
        pending: u32,
        polls: u32,
    }

    fn poll(q: &mut Queue) -> Poll<&'static str> {
        q.polls += 1;
        if q.pending == 0 {
            Poll::Ready("polled")
        } else {
            q.pending -= 1;
            Poll::Pending
        }
    }

    #[test]
    fn within_the_window_it_polls_until_ready_without_sleeping() {
        let mut wait = AwakeWait::new(Duration::from_secs(60));
        let mut queue = Queue { pending: 3, polls: 0 };
        let got = wait.wait(&mut queue, poll, |_| panic!("slept"));
        assert_eq!((got, queue.polls), ("polled", 4));
        assert!(wait.worth_it);
    }

    #[test]
    fn after_a_wait_longer_than_the_window_it_sleeps_at_once_until_a_short_one() {
        // A window nothing fits in: the first wait polls, then sleeps.
        let mut wait = AwakeWait::new(Duration::from_nanos(1));
        let mut queue = Queue { pending: u32::MAX, polls: 0 };
        let slow_wake = |_: &mut Queue| {
            std::thread::sleep(Duration::from_millis(1));
            "slept"
        };
        assert_eq!(wait.wait(&mut queue, poll, slow_wake), "slept");
        assert!(!wait.worth_it);
        // The next wait polls once and sleeps, awake for no window at all.
        wait.window = Duration::from_secs(60);
        queue.polls = 0;
        assert_eq!(wait.wait(&mut queue, poll, |_| "slept"), "slept");
        assert_eq!(queue.polls, 1);
        // That one was short (woken at once): waiting awake pays again.
        assert!(wait.worth_it);
        queue.pending = 2;
        queue.polls = 0;
        let got = wait.wait(&mut queue, poll, |_| panic!("slept"));
        assert_eq!((got, queue.polls), ("polled", 3));
    }
}
