//! `jobstack bench e2e`: the whole system measured from outside, in one run.
//!
//! `daemons` real `jobstack serve` processes (this very binary) listen on
//! loopback ports chosen at run time, all on one store: a scratch PostgreSQL
//! database created for the run and dropped after it, or, for one daemon and
//! no `--database`, the embedded SQLite. Agents talk to them over HTTP, spread
//! round-robin over the daemons. Two phases, each a forced run of `parts`
//! parts of the `fixture-steps` plugin with no sleeping (`ms: 0`):
//!
//! 1. *protocol*: `agents` agent links (the agent's own [`HttpLink`]) loop
//!    "lease, send a finished result" without executing anything: the cost of
//!    the agent API, the daemons and the store per part
//!    (`http_lease_complete_per_s`, lease round trip p50/p99);
//! 2. *execution*: `agents` complete agents ([`AgentLoop`]: module download
//!    and verification, the engine, progress, heartbeats, the spool) with
//!    `slots` slots each: parts per second from the forced run to the run's end
//!    (`parts_per_s`); then the same run with every part's record feeding the
//!    inventory (`inventory_parts_per_s`; their ratio, `e2e_parts_per_s_ratio`).
//!
//! Between them, with every agent idle in its lease long-poll, one-part runs
//! are forced one after another and timed from the request to the part's
//! lease at an agent (`force_run_wake_ms`, `enqueue_to_start_p50_ms`/`p99`).
//!
//! With `--webhooks`, the execution phase runs twice, each part's record
//! feeding the inventory (so that each part is an `asset.appeared` event):
//! first with no subscription (`parts_per_s_without_webhooks`), then with a
//! receiver started by the bench subscribed to every event kind
//! (`parts_per_s`); every event of that run must reach the receiver, checked
//! by id (`webhook_events_delivered`, `webhook_delivery_p50_ms`).
//!
//! The two runs also time the forced run (the plugin's `split` in a daemon's
//! engine, the parts stored) and check the outcome the bench exists to
//! protect: every part finished, exactly one applied result per part.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::agent::{AgentLink, AgentLoop, AgentSettings, HttpLink, Spool};
use crate::artifacts::ArtifactStore;
use crate::client::{ApiClient, ClientTls};
use crate::engine::{Engine, EngineConfig};
use crate::protocol::{RunResults, TaskInput};
use crate::scheduler::{AgentRegistration, Frequency, Run, State, TaskSpec};
use crate::store::postgres::ScratchDatabase;

use super::{finished, percentile};

/// The plugin both phases run: many parts, each as long as asked (here: no time).
const PLUGIN_FILE: &str = "fixture_steps.wasm";

/// How long a daemon may take to print its listening line.
const DAEMON_START: Duration = Duration::from_secs(60);

/// How long one run may take before the bench gives up on it.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

/// What `jobstack bench e2e --json` prints.
#[derive(Debug, Serialize)]
pub struct E2eReport {
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    /// Daemons serving the agents.
    pub daemons: usize,
    /// Agents of each phase, spread round-robin over the daemons.
    pub agents: usize,
    /// Slots of each agent in the execution phase.
    pub slots: usize,
    /// Parts of each phase's run.
    pub parts: usize,
    /// Forced run of the protocol phase answered (split and parts stored), ms.
    pub split_store_ms: f64,
    /// Parts leased and completed per second over HTTP, nothing executed.
    pub http_lease_complete_per_s: f64,
    /// Median lease round trip (agent API, daemon, store), µs.
    pub http_lease_p50_us: f64,
    /// 99th percentile lease round trip, µs.
    pub http_lease_p99_us: f64,
    /// Parts per second executed by complete agents (lease, execute, result
    /// over HTTP), forced run to run end.
    pub parts_per_s: f64,
    /// With every agent idle in its lease long-poll: from the forced run of a
    /// one-part task (request sent) to its part leased by an agent, the first
    /// time, ms.
    pub force_run_wake_ms: f64,
    /// The same over `wake_samples` forced runs: median, ms.
    pub enqueue_to_start_p50_ms: f64,
    /// The same: 99th percentile, ms.
    pub enqueue_to_start_p99_ms: f64,
    /// The execution phase's run, forced run to run end, s.
    pub run_s: f64,
    /// Parts per second of the same run when every part's record feeds the
    /// inventory (the stage maps it to a host, the processor merges it).
    pub inventory_parts_per_s: f64,
    /// `inventory_parts_per_s / parts_per_s` (target: at least 0.9).
    pub e2e_parts_per_s_ratio: f64,
    /// Applied results found per phase, one per part (checked).
    pub results_checked: usize,
    /// With `--webhooks`: the execution phase's parts per second with no
    /// subscription (`parts_per_s` is then with one to every event kind).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts_per_s_without_webhooks: Option<f64>,
    /// With `--webhooks`: events of the run delivered, each id once, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_events_delivered: Option<usize>,
    /// With `--webhooks`: median time from an event's commit to its delivery, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_delivery_p50_ms: Option<f64>,
}

/// Sizes of the measurements.
#[derive(Debug, Clone)]
pub struct E2eBenchPlan {
    /// The `jobstack` binary the daemons run.
    pub jobstack: PathBuf,
    /// Where the built plugins are (`fixture_steps.wasm`).
    pub plugin_dir: PathBuf,
    /// PostgreSQL server URL; the embedded SQLite when `None` (one daemon).
    pub database: Option<String>,
    /// Daemons on the store.
    pub daemons: usize,
    /// Agents of each phase.
    pub agents: usize,
    /// Slots of each agent in the execution phase.
    pub slots: usize,
    /// Parts of each phase's run.
    pub parts: usize,
    /// Forced runs timed from enqueue to start.
    pub wake_samples: usize,
    /// Measure the execution phase with and without a webhook subscription.
    pub webhooks: bool,
}

/// Run the benchmark.
pub async fn run(plan: &E2eBenchPlan) -> anyhow::Result<E2eReport> {
    ensure!(plan.daemons >= 1, "--daemons must be at least 1");
    ensure!(plan.agents >= 1, "--agents must be at least 1");
    ensure!(plan.parts >= 1, "--parts must be at least 1");
    if plan.database.is_none() && plan.daemons > 1 {
        bail!("{} daemons need a shared store: give --database postgres://...", plan.daemons);
    }
    let module_path = plan.plugin_dir.join(PLUGIN_FILE);
    let module = std::fs::read(&module_path).with_context(|| {
        format!(
            "cannot read {} (build the plugins with scripts/build-plugins.sh)",
            module_path.display()
        )
    })?;
    let dir = tempfile::tempdir()?;
    let scratch = match &plan.database {
        Some(url) => Some(ScratchDatabase::create(url, "jobstack_bench_e2e").await?),
        None => None,
    };
    let secrets = Secrets::generate();
    let mut daemons = Vec::new();
    for i in 0..plan.daemons {
        let data_dir = dir.path().join(format!("daemon-{i}"));
        let database = scratch.as_ref().map(|db| db.url());
        daemons.push(BenchDaemon::start(plan, &data_dir, database.as_deref(), &secrets).await?);
    }
    let admin = ApiClient::new(&daemons[0].url, ClientTls::default())?
        .with_token(&secrets.admin)
        .with_timeout(Duration::from_secs(120));
    let _: serde_json::Value = admin.post_bytes("/plugins", module, "application/wasm").await?;

    let outcome = measure(plan, &admin, &daemons, &secrets, dir.path()).await;

    for daemon in &mut daemons {
        daemon.stop().await;
    }
    if let Some(db) = scratch {
        db.drop_now().await?;
    }
    outcome
}

async fn measure(
    plan: &E2eBenchPlan, admin: &ApiClient, daemons: &[BenchDaemon], secrets: &Secrets, dir: &Path,
) -> anyhow::Result<E2eReport> {
    // Phase 1: the protocol alone.
    let mut links = Vec::new();
    let mut names = Vec::new();
    for i in 0..plan.agents {
        let url = &daemons[i % daemons.len()].url;
        let name = format!("protocol-{i}");
        links.push(Arc::new(register(url, secrets, &name).await?));
        names.push(name);
    }
    let started = Instant::now();
    let run = force_run(admin, "bench-protocol", plan.parts, &names).await?;
    let split_store_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let mut workers = Vec::new();
    for link in &links {
        let link = link.clone();
        workers.push(tokio::spawn(async move { lease_and_complete(&link).await }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    wait_for_end(admin, run.id).await?;
    let http_lease_complete_per_s = plan.parts as f64 / started.elapsed().as_secs_f64();
    let checked = check_exactly_once(admin, run.id, plan.parts).await?;

    // Phase 2: wake-ups of idle agents, long-polling.
    let wakes = enqueue_to_start(admin, &links, plan.wake_samples.max(1)).await?;

    // Phase 3: complete agents executing the plugin.
    let engine = Engine::new(EngineConfig {
        data_dir: Some(dir.join("agent-engine")),
        pooled_slots: (plan.agents * plan.slots) as u32,
        ..EngineConfig::default()
    })?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    let mut names = Vec::new();
    for i in 0..plan.agents {
        let url = &daemons[i % daemons.len()].url;
        let name = format!("exec-{i}");
        let link = register(url, secrets, &name).await?;
        names.push(name);
        let artifacts = ArtifactStore::open(dir.join(format!("artifacts-{i}")))?;
        let settings = AgentSettings { slots: plan.slots, ..AgentSettings::default() };
        let agent =
            AgentLoop::new(Arc::new(link), engine.clone(), Spool::in_memory(), artifacts, settings);
        let mut stopped = stopped.clone();
        agents.push(tokio::spawn(agent.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })));
    }
    let mut without_webhooks = None;
    let mut delivered = None;
    let run_s = if plan.webhooks {
        let plain = serde_json::json!({ "observe": true, "tag": "bench-plain" });
        let (plain_s, plain_run) =
            timed_run(admin, "bench-execution", plan.parts, &names, plain).await?;
        without_webhooks = Some(plan.parts as f64 / plain_s);
        // Subscribed once the first run's assets are in, so that the second
        // run's events are exactly the ones delivered.
        wait_for_changes(admin, plain_run, plan.parts).await?;
        let receiver = super::webhooks::Receiver::start().await?;
        let subscription = receiver.subscribe(admin).await?;
        let hooked = serde_json::json!({ "observe": true, "tag": "bench-hooked" });
        let (hooked_s, hooked_run) =
            timed_run(admin, "bench-execution-webhooks", plan.parts, &names, hooked).await?;
        wait_for_changes(admin, hooked_run, plan.parts).await?;
        delivered = Some(receiver.all_delivered(admin, subscription.id).await?);
        // Phase 4 measures the inventory without webhooks, as before.
        let path = format!("/webhooks/{}", subscription.id);
        admin.send_empty(reqwest::Method::DELETE, &path).await?;
        // Each part's asset appeared, and the run finished (agents idle
        // since the first phase may go down meanwhile: events too).
        ensure!(
            delivered.is_some_and(|d| d.events > plan.parts),
            "fewer webhook events delivered than the run's {} parts and its end: {delivered:?}",
            plan.parts
        );
        hooked_s
    } else {
        timed_run(admin, "bench-execution", plan.parts, &names, serde_json::json!({})).await?.0
    };

    // Phase 4: the same, every part's record feeding the inventory.
    let started = Instant::now();
    let observe = serde_json::json!({ "observe": true, "tag": "bench" });
    let observed = force_run_with(admin, "bench-inventory", plan.parts, &names, observe).await?;
    wait_for_end(admin, observed.id).await?;
    let inventory_s = started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for agent in agents {
        agent.await??;
    }
    check_exactly_once(admin, observed.id, plan.parts).await?;

    Ok(E2eReport {
        store: if plan.database.is_some() { "postgres" } else { "sqlite" },
        daemons: plan.daemons,
        agents: plan.agents,
        slots: plan.slots,
        parts: plan.parts,
        split_store_ms,
        http_lease_complete_per_s,
        http_lease_p50_us: percentile(&latencies, 0.50),
        http_lease_p99_us: percentile(&latencies, 0.99),
        parts_per_s: plan.parts as f64 / run_s,
        force_run_wake_ms: wakes[0],
        enqueue_to_start_p50_ms: percentile(&wakes, 0.50),
        enqueue_to_start_p99_ms: percentile(&wakes, 0.99),
        run_s,
        inventory_parts_per_s: plan.parts as f64 / inventory_s,
        e2e_parts_per_s_ratio: run_s / inventory_s,
        results_checked: checked,
        parts_per_s_without_webhooks: without_webhooks,
        webhook_events_delivered: delivered.map(|d| d.events),
        webhook_delivery_p50_ms: delivered.map(|d| d.p50_ms),
    })
}

/// The admin token and enrollment secret of this run's daemons.
struct Secrets {
    admin: String,
    enroll: String,
}

impl Secrets {
    fn generate() -> Self {
        Secrets { admin: crate::api::auth::new_token(), enroll: crate::api::auth::new_token() }
    }
}

/// A `jobstack serve` process of the bench, killed when dropped.
struct BenchDaemon {
    child: Child,
    url: String,
}

impl BenchDaemon {
    async fn start(
        plan: &E2eBenchPlan, data_dir: &Path, database: Option<&str>, secrets: &Secrets,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(&plan.jobstack);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--no-local-agent"])
            .arg("--data-dir")
            .arg(data_dir)
            .env("JOBSTACK_ADMIN_TOKEN", &secrets.admin)
            .env("JOBSTACK_ENROLL_SECRET", &secrets.enroll)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(url) = database {
            command.env("JOBSTACK_DATABASE", url);
        }
        if plan.webhooks {
            command.args(["--webhook-allow", "127.0.0.1"]);
        }
        let mut child =
            command.spawn().with_context(|| format!("cannot start {}", plan.jobstack.display()))?;
        let mut lines = BufReader::new(child.stdout.take().context("piped stdout")?).lines();
        let url = tokio::time::timeout(DAEMON_START, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("jobstack: listening on ") {
                    return anyhow::Ok(url.trim().to_string());
                }
            }
            bail!("the daemon exited before listening")
        })
        .await
        .context("the daemon did not listen in time")??;
        // Keep draining stdout so the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(BenchDaemon { child, url })
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

async fn register(url: &str, secrets: &Secrets, name: &str) -> anyhow::Result<HttpLink> {
    let registration = AgentRegistration {
        name: name.to_string(),
        networks: vec![],
        plugins: vec![],
        pooled_slots: 1,
        dedicated_slots: 0,
    };
    let client = ApiClient::new(url, ClientTls::default())?;
    Ok(HttpLink::register(client, &secrets.enroll, &registration).await?)
}

/// Create a manual task of `parts` parts for exactly these agents and force a
/// run of it.
async fn force_run(
    admin: &ApiClient, name: &str, parts: usize, agents: &[String],
) -> anyhow::Result<Run> {
    force_run_with(admin, name, parts, agents, serde_json::json!({})).await
}

/// Force a run of `parts` parts with `more` parameters, wait for its end and
/// check each part was applied once; forced run to end, s.
async fn timed_run(
    admin: &ApiClient, name: &str, parts: usize, agents: &[String], more: serde_json::Value,
) -> anyhow::Result<(f64, i64)> {
    let started = Instant::now();
    let run = force_run_with(admin, name, parts, agents, more).await?;
    wait_for_end(admin, run.id).await?;
    let run_s = started.elapsed().as_secs_f64();
    check_exactly_once(admin, run.id, parts).await?;
    Ok((run_s, run.id))
}

/// Wait until the inventory holds `changes` changes of run `run_id` (each
/// part of an observing run makes one asset appear).
async fn wait_for_changes(admin: &ApiClient, run_id: i64, changes: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + RUN_DEADLINE;
    let (mut seen, mut after) = (0, 0);
    while seen < changes {
        let path = format!("/changes?run={run_id}&after={after}&limit=1000");
        let page: crate::protocol::ChangePage = admin.get_json(&path).await?;
        seen += page.changes.len();
        after = page.changes.last().map_or(after, |c| c.id);
        if page.changes.is_empty() {
            ensure!(Instant::now() < deadline, "run {run_id}: {seen} of {changes} changes");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// [`force_run`] with more parameters of the plugin.
async fn force_run_with(
    admin: &ApiClient, name: &str, parts: usize, agents: &[String], more: serde_json::Value,
) -> anyhow::Result<Run> {
    let mut task = TaskSpec::new(name, "fixture-steps");
    task.params = serde_json::json!({ "parts": parts, "ms": 0 });
    if let (Some(params), Some(more)) = (task.params.as_object_mut(), more.as_object()) {
        params.extend(more.clone());
    }
    task.frequency = Frequency::Manual;
    task.targeting.agents = agents.to_vec();
    let input = TaskInput { task, secrets: None };
    let _: serde_json::Value =
        admin.post_json("/tasks", &input).await?.context("task creation answered no content")?;
    Ok(admin.post(&format!("/tasks/{name}/run")).await?)
}

/// Every link long-polls for work (idle agents); `samples` times, a one-part
/// task is forced to run and the time from the request to its part's lease
/// at an agent is taken, ms. The parts are completed as they come.
async fn enqueue_to_start(
    admin: &ApiClient, links: &[Arc<HttpLink>], samples: usize,
) -> anyhow::Result<Vec<f64>> {
    for i in 0..samples {
        let mut task = TaskSpec::new(&format!("bench-wake-{i}"), "fixture-steps");
        task.params = serde_json::json!({ "parts": 1, "ms": 0 });
        task.frequency = Frequency::Manual;
        let input = TaskInput { task, secrets: None };
        let _: Option<serde_json::Value> = admin.post_json("/tasks", &input).await?;
    }
    let (leased_tx, mut leased) = tokio::sync::mpsc::unbounded_channel();
    let mut pollers = tokio::task::JoinSet::new();
    for link in links {
        let (link, leased_tx) = (link.clone(), leased_tx.clone());
        pollers.spawn(long_poll(link, leased_tx));
    }
    // Let every link reach its long-poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut wakes = Vec::with_capacity(samples);
    for i in 0..samples {
        let started = Instant::now();
        let run: Run = admin.post(&format!("/tasks/bench-wake-{i}/run")).await?;
        let arrived = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match leased.recv().await {
                    Some((run_id, at)) if run_id == run.id => return Some(at),
                    Some(_) => continue,
                    None => return None,
                }
            }
        })
        .await
        .ok()
        .flatten()
        .with_context(|| format!("no agent leased the part of run {} in time", run.id))?;
        wakes.push(arrived.duration_since(started).as_secs_f64() * 1e3);
        wait_for_end(admin, run.id).await?;
    }
    pollers.abort_all();
    Ok(wakes)
}

/// An idle agent: long-poll, say when a part arrived, complete it, again.
async fn long_poll(
    link: Arc<HttpLink>, leased: tokio::sync::mpsc::UnboundedSender<(i64, Instant)>,
) -> anyhow::Result<()> {
    loop {
        let Some(lease) = link.lease(Duration::from_secs(20)).await? else {
            continue;
        };
        let _ = leased.send((lease.run_id, Instant::now()));
        link.submit(&finished(&lease), false).await?;
    }
}

/// Lease and complete parts until none is left for this agent; the lease
/// round trips, µs.
async fn lease_and_complete(link: &HttpLink) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    loop {
        let started = Instant::now();
        let Some(lease) = link.lease(Duration::ZERO).await? else {
            return Ok(latencies);
        };
        latencies.push(started.elapsed().as_secs_f64() * 1e6);
        link.submit(&finished(&lease), false).await?;
    }
}

/// Poll the run until it ends; an end other than Finished is an error.
async fn wait_for_end(admin: &ApiClient, run_id: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + RUN_DEADLINE;
    loop {
        let run: Run = admin.get_json(&format!("/runs/{run_id}")).await?;
        match run.state {
            State::Finished => return Ok(()),
            s if s.is_terminal() => bail!("run {run_id} ended {s}: {:?}", run.error),
            _ if Instant::now() > deadline => {
                bail!("run {run_id} did not end within {RUN_DEADLINE:?}: {:?}", run.parts)
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Every part has exactly one applied result; answers how many were checked.
async fn check_exactly_once(admin: &ApiClient, run_id: i64, parts: usize) -> anyhow::Result<usize> {
    let answer: RunResults = admin.get_json(&format!("/runs/{run_id}/results")).await?;
    let mut applied: Vec<i64> =
        answer.results.iter().filter(|r| r.applied).map(|r| r.submission.part_id).collect();
    applied.sort_unstable();
    let total = applied.len();
    let twice: Vec<i64> =
        applied.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).take(3).collect();
    applied.dedup();
    if total == parts && applied.len() == parts {
        return Ok(total);
    }
    let examples: Vec<String> = answer
        .results
        .iter()
        .filter(|r| twice.contains(&r.submission.part_id))
        .map(|r| {
            format!(
                "part {} attempt {} by {} {} {:?} applied {} at {}",
                r.submission.part_id,
                r.submission.attempt,
                r.agent,
                r.submission.status.as_str(),
                r.submission.error,
                r.applied,
                r.received_at
            )
        })
        .collect();
    bail!(
        "run {run_id}: {total} applied results for {} distinct parts of {parts}; {}",
        applied.len(),
        examples.join("; ")
    )
}
