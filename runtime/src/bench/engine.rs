//! `jobstack bench engine`: the cost of one execution of a trivial plugin
//! (instantiate + `init` + `execute` + drop), in each mode and against two
//! baselines, and the memory of many executions parked in a host wait.
//!
//! - *pooled* / *dedicated*: through [`Engine::execute`], as an agent runs parts.
//!   Latency is measured one execution at a time; throughput with many in flight.
//! - *naive*: what a first attempt would do: default (on-demand) allocator, no
//!   `InstancePre`, instantiate through the linker each time; same concurrency as
//!   pooled.
//! - *native*: the same work as a plain Rust call.
//! - *parked*: resident memory of the process with 10,000 pooled executions
//!   waiting in the host (the sleeper fixture) at once.

use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::{Component, Linker};

use super::percentile;
use crate::engine::bindings::{TaskPre, wit};
use crate::engine::{
    Engine, EngineConfig, ExecutionControl, ExecutionLimits, ExecutionRequest, Grants, Mode, Part,
    Status,
};

/// What `jobstack bench engine --json` prints.
#[derive(Debug, Serialize)]
pub struct EngineReport {
    /// Median latency of one pooled execution, µs.
    pub pooled_p50_us: f64,
    /// 99th percentile latency of one pooled execution, µs.
    pub pooled_p99_us: f64,
    /// Pooled executions per second with many in flight.
    pub pooled_exec_per_s: f64,
    /// Median latency of one dedicated execution, µs.
    pub dedicated_p50_us: f64,
    /// 99th percentile latency of one dedicated execution, µs.
    pub dedicated_p99_us: f64,
    /// Dedicated executions per second with all dedicated slots busy.
    pub dedicated_exec_per_s: f64,
    /// Executions per second the naive way (see module docs).
    pub naive_exec_per_s: f64,
    /// The same work as a plain Rust call, per second.
    pub native_exec_per_s: f64,
    /// `pooled_exec_per_s / naive_exec_per_s`.
    pub pooled_vs_naive: f64,
    /// Resident memory of the process with 10,000 pooled executions parked, MiB.
    pub parked_10k_rss_mib: f64,
    /// How many executions were parked when the memory was read.
    pub parked_count: usize,
    /// Worker threads of the pooled executor.
    pub pooled_threads: usize,
}

/// Sizes of the measurements.
#[derive(Debug, Clone)]
pub struct EngineBenchPlan {
    /// Sequential executions for latency.
    pub latency_samples: usize,
    /// Executions for throughput.
    pub throughput_samples: usize,
    /// Executions in flight for throughput.
    pub in_flight: usize,
    /// Executions parked at once for the memory figure.
    pub parked: usize,
    /// Pooled worker threads.
    pub threads: usize,
}

impl Default for EngineBenchPlan {
    fn default() -> Self {
        EngineBenchPlan {
            latency_samples: 5_000,
            throughput_samples: 40_000,
            in_flight: 64,
            parked: 10_000,
            threads: 2,
        }
    }
}

/// Run the engine benchmark with the fixtures found in `plugin_dir`.
pub async fn run(plugin_dir: &Path, plan: &EngineBenchPlan) -> anyhow::Result<EngineReport> {
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let path = plugin_dir.join(name);
        std::fs::read(&path).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (build the plugins with scripts/build-plugins.sh)",
                path.display()
            )
        })
    };
    let trivial_bytes = read("fixture_trivial.wasm")?;
    let sleeper_bytes = read("fixture_sleeper.wasm")?;

    let engine = Engine::new(EngineConfig {
        pooled_slots: (plan.in_flight * 2) as u32,
        dedicated_slots: 2,
        pooled_threads: plan.threads,
        ..EngineConfig::default()
    })?;
    let trivial = engine.load(&trivial_bytes).await?;

    // Pooled: driven from the engine's own threads, as an agent's part loop runs.
    let (pooled_lat, pooled_rate) = {
        let (engine, trivial, plan) = (engine.clone(), trivial.clone(), plan.clone());
        engine
            .clone()
            .spawn(async move {
                let request = || ExecutionRequest::new("{}", trivial_part());
                // Warm up: fill the allocator's warm slots and the code caches.
                for _ in 0..500 {
                    engine.execute(&trivial, request()).await;
                }
                let lat =
                    latencies(plan.latency_samples, || engine.execute(&trivial, request())).await?;
                let rate = throughput(plan.throughput_samples, plan.in_flight, || {
                    let (engine, trivial) = (engine.clone(), trivial.clone());
                    async move { engine.execute(&trivial, request()).await }
                })
                .await?;
                Ok::<_, anyhow::Error>((lat, rate))
            })
            .await??
    };

    let request = || ExecutionRequest::new("{}", trivial_part());
    let dedicated = || engine.execute(&trivial, request().mode(Mode::Dedicated));
    let dedicated_lat = latencies(plan.latency_samples / 5, dedicated).await?;
    let dedicated_rate = throughput(plan.throughput_samples / 10, 2, || {
        engine.start(&trivial, request().mode(Mode::Dedicated)).wait()
    })
    .await?;

    let naive_rate = naive_throughput(&trivial_bytes, plan).await?;
    let native_rate = native_throughput(plan.throughput_samples * 10);
    drop(engine);

    let (parked_rss, parked_count) = parked_rss(&sleeper_bytes, plan).await?;

    Ok(EngineReport {
        pooled_p50_us: percentile(&pooled_lat, 0.50),
        pooled_p99_us: percentile(&pooled_lat, 0.99),
        pooled_exec_per_s: pooled_rate,
        dedicated_p50_us: percentile(&dedicated_lat, 0.50),
        dedicated_p99_us: percentile(&dedicated_lat, 0.99),
        dedicated_exec_per_s: dedicated_rate,
        naive_exec_per_s: naive_rate,
        native_exec_per_s: native_rate,
        pooled_vs_naive: pooled_rate / naive_rate,
        parked_10k_rss_mib: parked_rss,
        parked_count,
        pooled_threads: plan.threads,
    })
}

fn trivial_part() -> Part {
    Part { label: "bench".into(), targets: Vec::new(), payload: "{}".into() }
}

/// Latencies in µs of `n` executions one after the other; every one must finish.
async fn latencies<F, Fut>(n: usize, mut one: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::engine::ExecutionOutcome>,
{
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let outcome = one().await;
        out.push(t.elapsed().as_secs_f64() * 1e6);
        anyhow::ensure!(
            outcome.status == Status::Finished,
            "benchmark execution failed: {outcome:?}"
        );
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// Executions per second for `n` executions with `in_flight` at a time.
async fn throughput<F, Fut>(n: usize, in_flight: usize, mut one: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crate::engine::ExecutionOutcome> + Send + 'static,
{
    let started = Instant::now();
    let mut pending = tokio::task::JoinSet::new();
    let mut launched = 0;
    let mut done = 0;
    while done < n {
        while launched < n && pending.len() < in_flight {
            pending.spawn(one());
            launched += 1;
        }
        if let Some(result) = pending.join_next().await {
            let outcome = result?;
            anyhow::ensure!(
                outcome.status == Status::Finished,
                "benchmark execution failed: {outcome:?}"
            );
            done += 1;
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// The naive baseline: default allocator, no fuel or epochs, no `InstancePre`;
/// run on its own runtime with the same threads and concurrency as pooled.
async fn naive_throughput(bytes: &[u8], plan: &EngineBenchPlan) -> anyhow::Result<f64> {
    let engine = wasmtime::Engine::new(&wasmtime::Config::new())?;
    let component = Component::new(&engine, bytes)?;
    let mut linker: Linker<crate::engine::host::HostState> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    crate::engine::bindings::add_to_linker(&mut linker)?;
    let shared = Arc::new((engine, component, linker));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .enable_all()
        .build()?;
    let n = plan.throughput_samples / 4;
    let in_flight = plan.in_flight;
    let rate = runtime
        .spawn(async move {
            let started = Instant::now();
            let mut pending = tokio::task::JoinSet::new();
            let (mut launched, mut done) = (0, 0);
            while done < n {
                while launched < n && pending.len() < in_flight {
                    let shared = shared.clone();
                    pending.spawn(async move { naive_once(&shared.0, &shared.1, &shared.2).await });
                    launched += 1;
                }
                if let Some(r) = pending.join_next().await {
                    r??;
                    done += 1;
                }
            }
            Ok::<f64, anyhow::Error>(n as f64 / started.elapsed().as_secs_f64())
        })
        .await??;
    runtime.shutdown_background();
    Ok(rate)
}

async fn naive_once(
    engine: &wasmtime::Engine, component: &Component,
    linker: &Linker<crate::engine::host::HostState>,
) -> anyhow::Result<()> {
    let state = crate::engine::host::HostState::new(
        &Grants::new(),
        &ExecutionLimits::default(),
        Arc::new(ExecutionControl::default()),
        Instant::now() + Duration::from_secs(60),
    )?;
    let mut store = Store::new(engine, state);
    let pre = TaskPre::new(linker.instantiate_pre(component)?)?;
    let task = pre.instantiate_async(&mut store).await?;
    task.call_init(&mut store, "{}").await?.map_err(anyhow::Error::msg)?;
    let job = wit::Job {
        params: "{}".into(),
        secrets: "{}".into(),
        part: (&trivial_part()).into(),
        attempt: 1,
    };
    task.call_execute(&mut store, &job).await?.map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The trivial plugin's work as plain Rust: the same strings in and out.
fn native_throughput(n: usize) -> f64 {
    fn init(params: &str) -> Result<(), String> {
        std::hint::black_box(params);
        Ok(())
    }
    fn execute(job: &(String, String, Part, u32)) -> Result<String, String> {
        std::hint::black_box(job);
        Ok("{}".to_string())
    }
    let started = Instant::now();
    for _ in 0..n {
        let params = std::hint::black_box("{}".to_string());
        let job = (params.clone(), "{}".to_string(), trivial_part(), 1);
        init(&params).unwrap();
        std::hint::black_box(execute(&job).unwrap());
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Park `plan.parked` sleeper executions, read the process's resident memory,
/// then cancel them all.
async fn parked_rss(sleeper: &[u8], plan: &EngineBenchPlan) -> anyhow::Result<(f64, usize)> {
    let engine = Engine::new(EngineConfig {
        pooled_slots: plan.parked as u32,
        dedicated_slots: 1,
        pooled_threads: plan.threads,
        ..EngineConfig::default()
    })?;
    let plugin = engine.load(sleeper).await?;
    let handles: Vec<_> = (0..plan.parked)
        .map(|_| {
            let req = ExecutionRequest::new(r#"{"secs": 3600}"#, trivial_part())
                .limits(ExecutionLimits::with_timeout(Duration::from_secs(3600)));
            engine.start(&plugin, req)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while engine.running_executions() < plan.parked {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {} executions parked after 120 s",
            engine.running_executions(),
            plan.parked
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the last ones reach their host wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let parked = engine.running_executions();
    let rss = resident_mib()?;
    for h in &handles {
        h.control().cancel();
    }
    for h in handles {
        let outcome = h.wait().await;
        anyhow::ensure!(
            outcome.status == Status::Canceled,
            "parked execution ended as {outcome:?}"
        );
    }
    Ok((rss, parked))
}

/// Resident set size of this process, MiB (Linux `/proc/self/status` VmRSS).
fn resident_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib / 1024.0)
}
