//! The daemon's two webhook loops ([`crate::notify`]): the feeder, which
//! moves new events into the outbox, and the deliverer, which posts them.
//! Each runs apart from the scheduler and the data processor; a store error
//! is logged and the loop goes on at its next turn.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::notify::delivery::Deliverer;
use crate::notify::feed::Feeder;

/// How often the feeder looks for new events when it found none.
const FEED_EVERY: Duration = Duration::from_millis(200);

/// How often the deliverer looks when nothing woke it (retries come due).
const DELIVER_EVERY: Duration = Duration::from_millis(500);

/// Feed until shutdown; each feed that appended wakes the deliverer.
pub async fn feed(mut feeder: Feeder, fed: Arc<Notify>, shutdown: watch::Receiver<bool>) {
    let stopping = super::shutdown_signal(shutdown);
    tokio::pin!(stopping);
    loop {
        // Dropping a feed or a pass midway is safe: nothing is recorded
        // until its transaction commits.
        let fed_once = tokio::select! {
            fed_once = feeder.feed() => fed_once,
            _ = &mut stopping => return,
        };
        let again = match fed_once {
            Ok(done) => {
                if done.appended > 0 {
                    fed.notify_one();
                }
                done.more
            }
            Err(error) => {
                tracing::warn!(%error, "webhook feed failed; retrying");
                false
            }
        };
        if again {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(FEED_EVERY) => {}
            _ = &mut stopping => return,
        }
    }
}

/// Deliver until shutdown: at once while events wait, else at each wake by
/// the feeder, and every [`DELIVER_EVERY`].
pub async fn deliver(deliverer: Deliverer, fed: Arc<Notify>, shutdown: watch::Receiver<bool>) {
    let stopping = super::shutdown_signal(shutdown);
    tokio::pin!(stopping);
    loop {
        let passed = tokio::select! {
            passed = deliverer.deliver() => passed,
            _ = &mut stopping => return,
        };
        match passed {
            Ok(passed) if passed.more => continue,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "webhook delivery pass failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(DELIVER_EVERY) => {}
            _ = fed.notified() => {}
            _ = &mut stopping => return,
        }
    }
}
