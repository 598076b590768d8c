//! Host-side control of a running execution: stop, cancel, and live progress.
//!
//! **Stop** asks politely: `stop-requested()` turns true and, after a grace
//! period, a cancel follows. **Cancel** interrupts at once: a plugin waiting in
//! the host is dropped immediately, a plugin running code is interrupted at its
//! next epoch check (within [`EPOCH_TICK`](super::config::EPOCH_TICK)).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// Progress of a part as last reported by the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

/// Shared between the execution and whoever controls it.
#[derive(Debug, Default)]
pub struct ExecutionControl {
    stop: AtomicBool,
    cancel: AtomicBool,
    cancel_notify: Notify,
    progress: Mutex<Option<Progress>>,
}

impl ExecutionControl {
    /// Ask the plugin to stop; cancel it if it has not finished after `grace`.
    ///
    /// Must be called from within a tokio runtime (the cancel is a timer).
    pub fn stop(self: &std::sync::Arc<Self>, grace: Duration) {
        self.stop.store(true, Ordering::SeqCst);
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            me.cancel();
        });
    }

    /// Interrupt the execution now.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.cancel_notify.notify_waiters();
        self.cancel_notify.notify_one();
    }

    /// Whether a stop was requested.
    pub fn is_stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether a cancel was requested.
    pub fn is_canceled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Resolves once the execution is canceled.
    pub async fn canceled(&self) {
        loop {
            let notified = self.cancel_notify.notified();
            if self.is_canceled() {
                return;
            }
            notified.await;
        }
    }

    /// The last progress the plugin reported.
    pub fn progress(&self) -> Option<Progress> {
        *self.progress.lock().expect("progress lock")
    }

    pub(crate) fn set_progress(&self, p: Progress) {
        *self.progress.lock().expect("progress lock") = Some(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn cancel_wakes_a_waiter_registered_before_or_after() {
        let c = Arc::new(ExecutionControl::default());
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.canceled().await }
        });
        tokio::task::yield_now().await;
        c.cancel();
        waiter.await.unwrap();
        // A waiter that arrives after the cancel returns at once.
        c.canceled().await;
    }

    #[tokio::test(start_paused = true)]
    async fn stop_sets_the_flag_then_cancels_after_the_grace_period() {
        let c = Arc::new(ExecutionControl::default());
        c.stop(Duration::from_secs(5));
        assert!(c.is_stop_requested());
        assert!(!c.is_canceled());
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(c.is_canceled());
    }
}
