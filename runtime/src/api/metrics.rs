//! Prometheus metrics, rendered at `/metrics`. Counters are bumped by the
//! handlers; part and agent gauges are read from the store at scrape time, so
//! they are right even with several daemons on one database.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

use crate::scheduler::{PartCounts, Run};

/// The `state` label of part gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// A part state, e.g. `waiting`.
    pub state: String,
}

/// The `ack` label of result counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabel {
    /// What was done with a result, e.g. `applied`, `duplicate`.
    pub ack: String,
}

/// The daemon's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Parts by state, over runs that are not finished.
    pub parts: Family<StateLabel, Gauge>,
    /// Registered agents.
    pub agents: Gauge,
    /// Agents the monitor finds down.
    pub agents_down: Gauge,
    /// Waiting parts of active runs that no registered agent may take.
    pub parts_unassignable: Gauge,
    /// Assets of the inventory that disappeared (not seen again since).
    pub assets_disappeared: Gauge,
    /// Webhook events delivery gave up on.
    pub webhook_dead_letters: Gauge,
    /// Agent long-polls waiting for work on this daemon (idle slots).
    pub long_polls: Gauge,
    /// Leases handed out.
    pub leases: Counter,
    /// Leases that expired.
    pub expiries: Counter,
    /// Results received, by what was done with them.
    pub results: Family<AckLabel, Counter>,
    /// Execution durations reported with results.
    pub durations: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register every metric under the `jobstack` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("jobstack");
        let parts = Family::<StateLabel, Gauge>::default();
        let agents = Gauge::default();
        let agents_down = Gauge::default();
        let parts_unassignable = Gauge::default();
        let assets_disappeared = Gauge::default();
        let webhook_dead_letters = Gauge::default();
        let long_polls = Gauge::default();
        let leases = Counter::default();
        let expiries = Counter::default();
        let results = Family::<AckLabel, Counter>::default();
        let durations = Histogram::new(exponential_buckets(0.001, 4.0, 12));
        registry.register("parts", "Job parts by state", parts.clone());
        registry.register("agents", "Registered agents", agents.clone());
        registry.register(
            "agents_down",
            "Agents with no request for the set time",
            agents_down.clone(),
        );
        registry.register(
            "parts_unassignable",
            "Waiting parts of active runs that no registered agent may take",
            parts_unassignable.clone(),
        );
        registry.register(
            "assets_disappeared",
            "Inventory assets a complete later run no longer saw",
            assets_disappeared.clone(),
        );
        registry.register(
            "webhook_dead_letters",
            "Webhook events delivery gave up on",
            webhook_dead_letters.clone(),
        );
        registry.register(
            "long_polls_waiting",
            "Agent long-polls waiting for work on this daemon (idle agent slots)",
            long_polls.clone(),
        );
        registry.register("leases", "Leases handed to agents", leases.clone());
        registry.register("lease_expiries", "Leases that expired", expiries.clone());
        registry.register(
            "results",
            "Results received, by what was done with them",
            results.clone(),
        );
        registry.register(
            "execution_duration_seconds",
            "Execution durations reported by agents",
            durations.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            parts,
            agents,
            agents_down,
            parts_unassignable,
            assets_disappeared,
            webhook_dead_letters,
            long_polls,
            leases,
            expiries,
            results,
            durations,
        }
    }

    /// Set the part gauges from the runs' counters.
    pub fn set_parts(&self, runs: &[Run]) {
        let mut total = PartCounts::default();
        for run in runs {
            let p = &run.parts;
            total.waiting += p.waiting;
            total.running += p.running;
            total.suspended += p.suspended;
            total.finished += p.finished;
            total.failed += p.failed;
            total.canceled += p.canceled;
        }
        for (state, n) in [
            ("waiting", total.waiting),
            ("running", total.running),
            ("suspended", total.suspended),
            ("finished", total.finished),
            ("failed", total.failed),
            ("canceled", total.canceled),
        ] {
            self.parts.get_or_create(&StateLabel { state: state.to_string() }).set(n as i64);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().expect("metrics registry lock");
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }
}
