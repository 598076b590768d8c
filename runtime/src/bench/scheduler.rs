//! `jobstack bench scheduler`: the scheduler's hot path on a real store, in
//! process (no HTTP), measured in one run.
//!
//! - *lease_complete_per_s*: `agents` concurrent agents each loop "submit the
//!   (finished) result of the part held, leasing the next in the same call"
//!   (what agents do: [`Scheduler::submit_and_lease`]) until a run of `parts`
//!   parts is done; *lease_then_result_per_s*: the same with a lease call and
//!   a result call per part.
//! - *lease latency*: one agent leases then completes parts one at a time (only
//!   the lease is timed) from a run of 1,000 waiting parts, then from a run of
//!   1,000,000 waiting parts (`large_parts`): the leasing query must not slow
//!   down with the stack's size; and the same agent's lease while it holds a
//!   part of that run (it must find nothing, quickly).
//! - *split_enqueue_65536_ms*: a /16 network's 65,536 parts stored (the split
//!   itself is the plugin's; here the parts are made up front).
//!
//! Between phases the PostgreSQL tables are vacuumed (see [`settle`]).
//!
//! The store is made for the run and gone after it
//! ([`BenchStore`](super::store::BenchStore)).

use async_trait::async_trait;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

use crate::scheduler::{Agent, NewPart, Run, Scheduler, Splitter, SystemClock, TaskSpec};
use crate::store::PostgresStore;

use super::store::BenchStore;
use super::{finished, percentile};

/// What `jobstack bench scheduler --json` prints.
#[derive(Debug, Serialize)]
pub struct SchedulerReport {
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Concurrent agents of the throughput figure.
    pub agents: usize,
    /// Parts of the throughput figure's run.
    pub parts: usize,
    /// Parts leased and completed per second by `agents` concurrent agents,
    /// each result carrying the next lease.
    pub lease_complete_per_s: f64,
    /// The same with separate lease and result calls.
    pub lease_then_result_per_s: f64,
    /// Median lease latency with 1,000 waiting parts, µs.
    pub lease_p50_us: f64,
    /// 99th percentile lease latency with 1,000 waiting parts, µs.
    pub lease_p99_us: f64,
    /// Median lease latency with `large_parts` waiting parts, µs.
    pub lease_p50_us_1m: f64,
    /// 99th percentile lease latency with `large_parts` waiting parts, µs.
    pub lease_p99_us_1m: f64,
    /// `lease_p99_us_1m / lease_p99_us` (target: at most 2).
    pub lease_p99_ratio_1m: f64,
    /// Median lease latency, with `large_parts` waiting, of an agent that holds
    /// a part of that run already (one part per run per agent: it gets
    /// nothing, and must learn so without walking the run's parts), µs.
    pub lease_held_run_p50_us_1m: f64,
    /// Waiting parts of the large figure (1,000,000 unless told otherwise).
    pub large_parts: usize,
    /// Time to store the large run's parts, ms.
    pub enqueue_large_ms: f64,
    /// Time to store the 65,536 parts of a /16 network, ms.
    pub split_enqueue_65536_ms: f64,
}

/// Sizes of the measurements.
#[derive(Debug, Clone)]
pub struct SchedulerBenchPlan {
    /// PostgreSQL server URL; SQLite when `None`.
    pub database: Option<String>,
    /// Parts of the throughput run.
    pub parts: usize,
    /// Concurrent agents of the throughput run.
    pub agents: usize,
    /// Leases timed at each stack size.
    pub latency_samples: usize,
    /// Waiting parts of the large latency figure.
    pub large_parts: usize,
}

impl Default for SchedulerBenchPlan {
    fn default() -> Self {
        Self {
            database: None,
            parts: 20_000,
            agents: 10,
            latency_samples: 1_000,
            large_parts: 1_000_000,
        }
    }
}

/// Splits a run into `params.parts` parts, one address each (10.0.0.0 up).
pub(super) struct CountSplitter;

#[async_trait]
impl Splitter for CountSplitter {
    async fn split(&self, _: &str, params: &serde_json::Value) -> Result<Vec<NewPart>, String> {
        let n = params["parts"].as_u64().unwrap_or(0) as u32;
        Ok((0..n).map(part).collect())
    }
}

fn part(i: u32) -> NewPart {
    let ip = std::net::Ipv4Addr::from(0x0a00_0000u32.wrapping_add(i));
    NewPart {
        label: ip.to_string(),
        targets: vec![ip.to_string()],
        payload: format!("{{\"ip\":\"{ip}\"}}"),
    }
}

/// Run the benchmark.
pub async fn run(plan: &SchedulerBenchPlan) -> anyhow::Result<SchedulerReport> {
    let bench = BenchStore::open(plan.database.as_deref(), plan.agents as u32 + 4).await?;
    let pg = bench.pg.clone();
    let sched = Scheduler::new(bench.store.clone(), Arc::new(SystemClock), Arc::new(CountSplitter));
    let now = sched.now();
    let mut agents = Vec::new();
    for i in 0..plan.agents.max(1) {
        agents.push(bench.agent(&format!("bench-{i}"), now).await?);
    }

    // The /16 split: stored, timed, then canceled so that it does not feed the
    // other measurements.
    let started = Instant::now();
    let run16 = new_run(&sched, "split16", 65_536).await?;
    let split_enqueue_65536_ms = ms(started);
    sched.cancel(run16.id).await?;

    // Throughput, as agents lease (the next lease with each result), then
    // with a call for each.
    let lease_complete_per_s = throughput(&sched, pg.as_ref(), &agents, plan.parts, true).await?;
    let lease_then_result_per_s =
        throughput(&sched, pg.as_ref(), &agents, plan.parts, false).await?;

    // Latency with a small, then a large stack.
    new_run(&sched, "small", 1_000).await?;
    settle(pg.as_ref()).await?;
    let small = lease_latencies(&sched, &agents[0], plan.latency_samples.min(500)).await?;
    let remaining = sched.store().runs(None).await?;
    for run in remaining.iter().filter(|r| !r.state.is_terminal()) {
        sched.cancel(run.id).await?;
    }
    let started = Instant::now();
    new_run(&sched, "large", plan.large_parts).await?;
    let enqueue_large_ms = ms(started);
    settle(pg.as_ref()).await?;
    // Leave one part for the held-run figure below.
    let large_samples = plan.latency_samples.min(plan.large_parts.saturating_sub(1));
    let large = lease_latencies(&sched, &agents[0], large_samples).await?;
    let held = held_run_latencies(&sched, &agents[0], plan.latency_samples.min(200)).await?;

    drop(sched);
    let store = bench.name;
    bench.close().await?;
    let (p50, p99) = (percentile(&small, 0.50), percentile(&small, 0.99));
    let (p50_1m, p99_1m) = (percentile(&large, 0.50), percentile(&large, 0.99));
    Ok(SchedulerReport {
        store,
        agents: plan.agents,
        parts: plan.parts,
        lease_complete_per_s,
        lease_then_result_per_s,
        lease_p50_us: p50,
        lease_p99_us: p99,
        lease_p50_us_1m: p50_1m,
        lease_p99_us_1m: p99_1m,
        lease_p99_ratio_1m: p99_1m / p99,
        lease_held_run_p50_us_1m: percentile(&held, 0.50),
        large_parts: plan.large_parts,
        enqueue_large_ms,
        split_enqueue_65536_ms,
    })
}

/// A forced run of a task of `parts` parts, split and stored.
async fn new_run(sched: &Scheduler, name: &str, parts: usize) -> anyhow::Result<Run> {
    let mut spec = TaskSpec::new(name, "bench");
    spec.params = serde_json::json!({ "parts": parts });
    spec.frequency = crate::scheduler::Frequency::Manual;
    let task = sched.create_task(&spec, &serde_json::json!({})).await?;
    Ok(sched.force_run(&task).await?)
}

/// Parts per second of a new run of `parts` parts completed by `agents`
/// concurrent agents; `chained`: each result leases the next part.
async fn throughput(
    sched: &Scheduler, pg: Option<&PostgresStore>, agents: &[Agent], parts: usize, chained: bool,
) -> anyhow::Result<f64> {
    new_run(sched, if chained { "chained" } else { "separate" }, parts).await?;
    settle(pg).await?;
    let started = Instant::now();
    let mut workers = Vec::new();
    for agent in agents {
        let (sched, agent) = (sched.clone(), agent.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0usize;
            let mut held = sched.lease(&agent).await?;
            while let Some(lease) = held {
                held = if chained {
                    sched.submit_and_lease(&agent, &finished(&lease)).await?.1
                } else {
                    sched.submit(&agent, &finished(&lease)).await?;
                    sched.lease(&agent).await?
                };
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut completed = 0;
    for w in workers {
        completed += w.await??;
    }
    anyhow::ensure!(completed == parts, "{completed} parts completed of {parts}");
    Ok(completed as f64 / started.elapsed().as_secs_f64())
}

/// Lease `samples` parts one at a time, timing each lease; each part is
/// completed (untimed) before the next lease.
async fn lease_latencies(
    sched: &Scheduler, agent: &Agent, samples: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let lease = sched.lease(agent).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        let lease = lease.ok_or_else(|| anyhow::anyhow!("the stack ran dry"))?;
        sched.submit(agent, &finished(&lease)).await?;
    }
    Ok(latencies)
}

/// Lease one part and keep it; then time `samples` leases of the same agent,
/// each of which must find nothing (the agent holds a part of the only run).
async fn held_run_latencies(
    sched: &Scheduler, agent: &Agent, samples: usize,
) -> anyhow::Result<Vec<f64>> {
    let held = sched.lease(agent).await?.ok_or_else(|| anyhow::anyhow!("the stack ran dry"))?;
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let lease = sched.lease(agent).await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(lease.is_none(), "a second part of one run for one agent");
    }
    sched.submit(agent, &finished(&held)).await?;
    Ok(latencies)
}

/// Between phases on PostgreSQL, what autovacuum does within a minute on a
/// live system: remove the previous phase's dead index entries (a canceled
/// 65,536-part run leaves them at the head of the leasing index) and refresh
/// the statistics, so that each figure measures its own phase.
async fn settle(pg: Option<&PostgresStore>) -> anyhow::Result<()> {
    if let Some(pg) = pg {
        sqlx::query("VACUUM (ANALYZE) parts").execute(pg.pool()).await?;
    }
    Ok(())
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}
