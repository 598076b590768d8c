//! [`ApiState`]: what every handler shares, and the limits the API enforces.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::agent_cache::AgentCache;
use super::auth::Credentials;
use super::metrics::Metrics;
use crate::artifacts::ArtifactStore;
use crate::inventory::InventoryStore;
use crate::module_catalog::ModuleCatalog;
use crate::notify::delivery::Deliverer;
use crate::notify::{AllowList, OutboxStore};
use crate::scheduler::Scheduler;

/// The largest plugin upload: real plugins are well under a few MiB; 64 MiB
/// leaves room for big ones without letting a client fill the disk.
pub const MAX_UPLOAD_BYTES: usize = 64 << 20;

/// The largest JSON body (a result with its emitted records and logs is the
/// largest: the engine bounds those at 16 MiB each).
pub const MAX_JSON_BYTES: usize = 40 << 20;

/// The longest long-poll a lease request may hold: below common proxy idle
/// timeouts (60 s).
pub const MAX_LEASE_WAIT: Duration = Duration::from_secs(25);

/// How often a waiting lease request looks again without a wake-up: parts whose
/// retry backoff ends become leasable without anyone signalling.
pub const LEASE_RECHECK: Duration = Duration::from_millis(500);

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// The scheduler (and through it the store).
    pub scheduler: Scheduler,
    /// The uploaded plugin modules (store and local cache) and the daemon's
    /// engine that validates uploads and runs `split`.
    pub modules: ModuleCatalog,
    /// Accepted token hashes.
    pub credentials: Arc<Credentials>,
    /// The agents behind recent agent tokens.
    pub agents: Arc<AgentCache>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Files deploy tasks install (`<data_dir>/artifacts`).
    pub artifacts: ArtifactStore,
    /// Wakes the background sweep (a new task is due at once), and says
    /// whether its passes fail (`/readyz`).
    pub sweep: Arc<SweepHandle>,
    /// The inventory the data processor keeps (the same store).
    pub inventory: Arc<dyn InventoryStore>,
    /// Webhook subscriptions and their outbox (the same store), the
    /// deliverer that re-sends dead letters, and the hosts allowed.
    pub webhooks: Webhooks,
}

/// The background sweep as the API sees it.
#[derive(Debug, Default)]
pub struct SweepHandle {
    /// Wakes the sweep before its next pass is due.
    pub wake: Notify,
    /// The last pass panicked: lease expiry and recurring runs are stopped
    /// until one completes.
    failing: AtomicBool,
}

impl SweepHandle {
    /// Wake the sweep now.
    pub fn notify_one(&self) {
        self.wake.notify_one();
    }

    /// Record whether the last pass completed.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::Relaxed);
    }

    /// Whether the last pass panicked.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

/// What the webhook routes need.
#[derive(Clone)]
pub struct Webhooks {
    /// Subscriptions, outbox, dead letters.
    pub outbox: Arc<dyn OutboxStore>,
    /// Re-sends dead letters.
    pub deliverer: Deliverer,
    /// The hosts a subscription may name.
    pub allow: AllowList,
}
