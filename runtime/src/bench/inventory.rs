//! `jobstack bench inventory`: the inventory's ingest and queries on a real
//! store, in process, measured in one run.
//!
//! - *observations_per_s*: a run of `assets / per_result` parts, each result
//!   bringing `per_result` host observations (an address, open ports, a
//!   name), processed as the data processor does (the queue read, the
//!   observations checked, the merge with change detection, in batches of
//!   [`PROCESS_BATCH`] results) without the plugin's stage, which runs in the
//!   sandbox and is the plugin's cost; then a second run that changes one
//!   attribute of every host. Observations merged per second over both.
//! - *assets_query_p99_ms*: with those `assets` hosts stored, `queries`
//!   listings filtered by a /24 and an attribute (a page of 100 each): the
//!   99th percentile, ms.
//!
//! The store is made for the run and gone after it
//! ([`BenchStore`](super::store::BenchStore)).

use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

use crate::daemon::processor::PROCESS_BATCH;
use crate::inventory::store::{Processed, ProcessedResult};
use crate::inventory::{AssetQuery, Observation};
use crate::scheduler::targeting::parse_target;
use crate::scheduler::{Frequency, Scheduler, SystemClock, TaskSpec};
use crate::store::postgres::PgSettings;

use super::scheduler::CountSplitter;
use super::store::BenchStore;
use super::{finished, percentile};

/// What `jobstack bench inventory --json` prints.
#[derive(Debug, Serialize)]
pub struct InventoryReport {
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Hosts in the inventory.
    pub assets: usize,
    /// Observations merged (each host twice).
    pub observations: usize,
    /// Observations merged per second, queue to commit.
    pub observations_per_s: f64,
    /// Changes the second run recorded (one per host).
    pub changes: usize,
    /// Median listing by a /24 and an attribute, ms.
    pub assets_query_p50_ms: f64,
    /// 99th percentile of the same, ms (target: at most 50 at 100,000 assets).
    pub assets_query_p99_ms: f64,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct InventoryBenchPlan {
    /// PostgreSQL server URL; the embedded SQLite when `None`.
    pub database: Option<String>,
    /// Hosts observed.
    pub assets: usize,
    /// Observations per result.
    pub per_result: usize,
    /// Listings timed.
    pub queries: usize,
}

impl Default for InventoryBenchPlan {
    fn default() -> Self {
        Self { database: None, assets: 100_000, per_result: 100, queries: 200 }
    }
}

/// The host observation of host `i` in pass `pass` (ports change between
/// passes; every tenth host has 443 open).
fn host(i: usize, pass: usize) -> String {
    let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + i as u32);
    let ports: Vec<u16> = if i.is_multiple_of(10) { vec![22, 443] } else { vec![22] };
    let ports: Vec<u16> = if pass == 0 { ports } else { ports.into_iter().chain([8080]).collect() };
    serde_json::json!({"kind": "host", "name": format!("host-{i}"), "keys": {"ip": ip.to_string()},
                       "attributes": {"tcp_open": ports, "os": "linux"}})
    .to_string()
}

/// Run the benchmark.
pub async fn run(plan: &InventoryBenchPlan) -> anyhow::Result<InventoryReport> {
    anyhow::ensure!(plan.per_result >= 1 && plan.assets >= plan.per_result, "too few assets");
    let bench =
        BenchStore::open(plan.database.as_deref(), PgSettings::default().max_connections).await?;
    let inventory = bench.inventory.clone();
    let sched = Scheduler::new(bench.store.clone(), Arc::new(SystemClock), Arc::new(CountSplitter));
    let agent = bench.agent("bench", sched.now()).await?;
    let parts = plan.assets / plan.per_result;
    let mut spec = TaskSpec::new("inventory", "bench");
    spec.params = serde_json::json!({ "parts": parts });
    spec.frequency = Frequency::Manual;
    let task = sched.create_task(&spec, &serde_json::json!({})).await?;

    let mut observations = 0;
    let mut changes = 0;
    let mut merging = std::time::Duration::ZERO;
    for pass in 0..2 {
        sched.force_run(&task).await?;
        let mut part = 0;
        while let Some(lease) = sched.lease(&agent).await? {
            let mut result = finished(&lease);
            let first = part * plan.per_result;
            result.emitted = (first..first + plan.per_result)
                .map(|i| serde_json::from_str(&host(i, pass)))
                .collect::<Result<_, _>>()?;
            sched.submit(&agent, &result).await?;
            part += 1;
        }
        let started = Instant::now();
        loop {
            let pending = inventory.pending_results(PROCESS_BATCH).await?;
            if pending.is_empty() {
                break;
            }
            let processed = pending
                .into_iter()
                .map(|result| {
                    let seen: Result<Vec<Observation>, String> =
                        result.records.iter().map(|r| Observation::parse(r)).collect();
                    let outcome = Processed::Observed(seen.map_err(anyhow::Error::msg)?);
                    Ok(ProcessedResult { result, outcome })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let report = inventory.ingest(processed).await?;
            observations += report.observations;
            if pass == 1 {
                changes += report.changes;
            }
        }
        merging += started.elapsed();
    }

    if let Some(pg) = &bench.pg {
        // Statistics of the new rows, as autovacuum would gather them.
        sqlx::query("ANALYZE").execute(pg.pool()).await?;
    }
    let mut latencies = Vec::with_capacity(plan.queries);
    for q in 0..plan.queries {
        let net = std::net::Ipv4Addr::from(0x0a00_0000u32 + ((q * 256) % plan.assets) as u32);
        let query = AssetQuery {
            within: parse_target(&format!("{net}/24")),
            attributes: vec![crate::inventory::view::AttributeFilter::Equals(
                "tcp_open".into(),
                serde_json::json!([22, 443, 8080]),
            )],
            limit: 100,
            ..AssetQuery::default()
        };
        let started = Instant::now();
        let found = inventory.assets(&query).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(!found.is_empty(), "the query found nothing: the bench is wrong");
    }

    drop(sched);
    drop(inventory);
    let store = bench.name;
    bench.close().await?;
    Ok(InventoryReport {
        store,
        assets: plan.assets,
        observations,
        observations_per_s: observations as f64 / merging.as_secs_f64(),
        changes,
        assets_query_p50_ms: percentile(&latencies, 0.50),
        assets_query_p99_ms: percentile(&latencies, 0.99),
    })
}
