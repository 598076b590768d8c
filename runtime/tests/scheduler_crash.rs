//! The crash test of the scheduler's store: a process leasing and completing
//! parts in a loop is killed with SIGKILL many times at random moments, and
//! restarted. After each kill, no acknowledged result is missing from the
//! store, no part has two applied results and the run's counters match its
//! parts; after the last restart every part ends Finished, and the event log
//! shows no part moved to Finished twice in all the incarnations.
//!
//! The leasing process is this test binary itself, started again with
//! `--crash-worker` (so the test needs no helper binary in the product). It
//! prints one line per acknowledged result, after the call returned: what the
//! test reads is exactly what an agent would have been told. Each incarnation's
//! manual clock starts a year after the previous one's, so the leases a killed
//! incarnation held have expired when the next one sweeps; within an
//! incarnation, idle workers move the clock past every lease and backoff, which
//! also turns results of working peers into late results (the fencing rule is
//! exercised, not just the happy path).
//!
//! A custom harness (`harness = false`): the same `main` is the test and the
//! worker. Runs once on SQLite and once on PostgreSQL.

#[allow(dead_code)]
#[path = "scheduler/harness.rs"]
mod harness;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use harness::{ParamsSplitter, finished, postgres_store};
use jobstack::scheduler::{
    AgentRegistration, Clock, ManualClock, ResultAck, Scheduler, State, TaskSpec, retry,
};
use jobstack::store::postgres::PgSettings;
use jobstack::store::{PluginRecord, PostgresStore, SqliteStore, Store};
use rand::Rng;

/// Parts in the run: more than the kills leave time for, so most kills land
/// mid-run.
const PARTS: usize = 3_000;
/// Kills before the last incarnation, which runs to the end.
const KILLS: usize = 25;
/// Concurrent agents inside the leasing process.
const AGENTS: usize = 8;
/// A kill lands this long after the start, at random (start-up included).
const KILL_WINDOW_MS: std::ops::Range<u64> = 5..300;
/// The last incarnation must finish the run within this.
const LAST_INCARNATION: Duration = Duration::from_secs(300);
/// The `application_name` of the test's own PostgreSQL sessions.
const OWN_SESSIONS: &str = "crash-check";
/// How far idle workers move their clock: past every lease and backoff.
const PAST_EVERYTHING: Duration = Duration::from_secs(3600);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--crash-worker") {
        worker(&args[i + 1..]);
        return ExitCode::SUCCESS;
    }
    let tests =
        ["sqlite_leasing_process_killed_repeatedly", "postgres_leasing_process_killed_repeatedly"];
    if args.iter().any(|a| a == "--list") {
        for t in tests {
            println!("{t}: test");
        }
        return ExitCode::SUCCESS;
    }
    let (filters, skips) = name_filters(&args[1..]);
    let selected: Vec<_> = tests
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.contains(f.as_str())))
        .filter(|t| !skips.iter().any(|s| t.contains(s.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut failed = 0;
    for name in &selected {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async {
                if name.starts_with("sqlite") {
                    crash_loop(Backend::Sqlite).await
                } else {
                    crash_loop(Backend::Postgres).await
                }
            })
        }));
        let ok = outcome.is_ok();
        failed += usize::from(!ok);
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!(
        "\ntest result: {verdict}. {} passed; {failed} failed; 0 ignored; 0 measured; {} filtered out\n",
        selected.len() - failed,
        tests.len() - selected.len()
    );
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The name filters and `--skip` patterns among libtest's arguments (`cargo
/// test -- --test-threads 2 NAME` must neither take `2` for a name nor run
/// nothing).
fn name_filters(args: &[String]) -> (Vec<String>, Vec<String>) {
    const TAKES_VALUE: [&str; 6] =
        ["--test-threads", "--format", "--color", "--logfile", "--shuffle-seed", "-Z"];
    let (mut filters, mut skips) = (Vec::new(), Vec::new());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--skip" {
            skips.extend(args.next().cloned());
        } else if TAKES_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg.clone());
        }
    }
    (filters, skips)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Open the store at `location` (a file for SQLite, a URL for PostgreSQL).
async fn open(backend: Backend, location: &str) -> Arc<dyn Store> {
    match backend {
        Backend::Sqlite => {
            Arc::new(SqliteStore::open(Path::new(location)).await.expect("open sqlite"))
        }
        Backend::Postgres => {
            let settings = PgSettings { max_connections: 4, ..PgSettings::default() };
            Arc::new(PostgresStore::connect_with(location, &settings).await.expect("open postgres"))
        }
    }
}

/// One acknowledged result, as the worker printed it.
#[derive(Debug, Clone)]
struct Ack {
    part_id: i64,
    attempt: u32,
    kind: String,
}

async fn crash_loop(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (location, _db) = match backend {
        Backend::Sqlite => (dir.path().join("jobstack.db").display().to_string(), None),
        Backend::Postgres => {
            let (store, db) = postgres_store().await;
            store.close().await;
            (db.url(), Some(db))
        }
    };
    // The test's own sessions are named, so that it can wait for the killed
    // process's sessions alone to end (see `backends_gone`).
    let own = match backend {
        Backend::Sqlite => location.clone(),
        Backend::Postgres => format!("{location}?application_name={OWN_SESSIONS}"),
    };
    let start = ManualClock::fixed().now();
    let run_id = create_run(backend, &own, start).await;

    let mut acks = Vec::new();
    let mut rng = rand::rng();
    let mut kills = 0;
    for incarnation in 0..=KILLS {
        let last = incarnation == KILLS;
        let mut child = spawn_worker(backend, &location, run_id, start, incarnation);
        let reader = read_acks(&mut child);
        let status = if last {
            wait_or_kill(&mut child, LAST_INCARNATION)
        } else {
            let delay = Duration::from_millis(rng.random_range(KILL_WINDOW_MS));
            match wait_or_kill(&mut child, delay) {
                Some(status) => Some(status),
                None => {
                    kills += 1;
                    None
                }
            }
        };
        let printed = reader.join().expect("ack reader");
        let stderr = worker_stderr(&mut child);
        match status {
            Some(s) if s.success() => {}
            Some(s) => panic!("incarnation {incarnation} failed ({s}):\n{stderr}"),
            None if last => panic!("the last incarnation did not finish in {LAST_INCARNATION:?}"),
            None => {}
        }
        acks.extend(printed);
        if backend == Backend::Postgres {
            backends_gone(&location).await;
        }
        let store = open(backend, &own).await;
        check(store.as_ref(), run_id, &acks, last).await;
        if last {
            break;
        }
        if status.is_some() {
            // Finished before the kill: nothing left to interrupt.
            let run = store.run(run_id).await.unwrap().unwrap();
            assert_eq!(run.state, State::Finished);
            break;
        }
    }
    assert!(
        kills >= KILLS / 2,
        "only {kills} of {KILLS} kills landed mid-run: the run is too short"
    );
    eprintln!(
        "{}: {kills} kills, {} acknowledged results, run finished",
        backend.name(),
        acks.len()
    );
}

/// Wait until the killed process's PostgreSQL sessions are gone. A session
/// busy with a statement when its client died finishes it (and commits it,
/// outside a transaction block) before it notices; reading the store before
/// that could see a part finished by a commit that landed between two reads.
async fn backends_gone(url: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to the scratch database");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let others: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND application_name IS DISTINCT FROM $1",
        )
        .bind(OWN_SESSIONS)
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_activity");
        if others == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{others} sessions of the killed process still open after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    conn.close().await.expect("close");
}

/// Create the task and its run of [`PARTS`] parts, and close the store.
async fn create_run(backend: Backend, location: &str, start: DateTime<Utc>) -> i64 {
    let store = open(backend, location).await;
    let clock = ManualClock::new(start);
    let sched = Scheduler::new(store.clone(), Arc::new(clock), Arc::new(ParamsSplitter));
    store
        .put_plugin(&PluginRecord {
            sha256: "c".repeat(64),
            name: "test".into(),
            version: "1.0.0".into(),
            manifest: serde_json::json!({ "name": "test", "version": "1.0.0" }),
            size: 1,
            uploaded_at: start,
            retired_at: None,
        })
        .await
        .expect("put plugin");
    let mut spec = TaskSpec::new("crash", "test");
    spec.params = serde_json::json!({ "parts": harness::Harness::labels(PARTS) });
    spec.timeout_ms = 60_000;
    // Every kill can cost a part an attempt: never run out of them.
    spec.retries = 1_000_000;
    let task = sched.create_task(&spec, &serde_json::json!({})).await.expect("create task");
    sched.tick().await.expect("first run");
    let runs = store.runs(Some(task.id)).await.expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].parts.waiting, PARTS as u64);
    runs[0].id
}

fn spawn_worker(
    backend: Backend, location: &str, run_id: i64, start: DateTime<Utc>, incarnation: usize,
) -> Child {
    // A year per incarnation: every lease and backoff of the earlier ones is over.
    let clock = start + TimeDelta::days(365) * (incarnation as i32 + 1);
    Command::new(std::env::current_exe().expect("test binary"))
        .arg("--crash-worker")
        .args([backend.name(), location, &run_id.to_string(), &clock.to_rfc3339()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the worker")
}

/// Read the worker's acknowledgements until its stdout closes. A line cut by
/// the kill has no newline and was never acknowledged.
fn read_acks(child: &mut Child) -> std::thread::JoinHandle<Vec<Ack>> {
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if !line.ends_with('\n') => break,
                Ok(_) => {}
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if let ["ack", part, attempt, kind] = fields[..] {
                acks.push(Ack {
                    part_id: part.parse().expect("part id"),
                    attempt: attempt.parse().expect("attempt"),
                    kind: kind.to_string(),
                });
            }
        }
        acks
    })
}

/// Wait for the worker up to `limit`; past it, SIGKILL it and return None.
fn wait_or_kill(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the worker") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            child.kill().expect("SIGKILL the worker");
            let status = child.wait().expect("reap the worker");
            assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn worker_stderr(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
    }
    text
}

/// What must hold after every kill (and, with `last`, at the end).
async fn check(store: &dyn Store, run_id: i64, acks: &[Ack], last: bool) {
    let results = store.results(run_id).await.expect("results");
    let mut applied: HashMap<i64, u32> = HashMap::new();
    let mut recorded: HashSet<(i64, u32)> = HashSet::new();
    let mut applied_attempts: HashSet<(i64, u32)> = HashSet::new();
    for r in &results {
        recorded.insert((r.submission.part_id, r.submission.attempt));
        if r.applied {
            *applied.entry(r.submission.part_id).or_default() += 1;
            applied_attempts.insert((r.submission.part_id, r.submission.attempt));
        }
    }
    for (part, n) in &applied {
        assert_eq!(*n, 1, "part {part} has {n} applied results");
    }
    for ack in acks {
        let key = (ack.part_id, ack.attempt);
        match ack.kind.as_str() {
            "Applied" | "AcceptedLate" => {
                assert!(applied_attempts.contains(&key), "acknowledged result lost: {ack:?}")
            }
            "Duplicate" | "Recorded" => {
                assert!(recorded.contains(&key), "acknowledged result lost: {ack:?}")
            }
            other => panic!("unknown acknowledgement {other}"),
        }
    }

    let parts = store.parts(run_id).await.expect("parts");
    assert_eq!(parts.len(), PARTS);
    for part in &parts {
        assert_eq!(
            part.state == State::Finished,
            applied.contains_key(&part.id),
            "part {} is {} with {} applied results",
            part.id,
            part.state,
            applied.get(&part.id).copied().unwrap_or(0)
        );
    }
    let run = store.run(run_id).await.expect("run").expect("run exists");
    let finished = parts.iter().filter(|p| p.state == State::Finished).count();
    let running = parts.iter().filter(|p| p.state == State::Running).count();
    assert_eq!(run.parts.finished, finished as u64, "finished counter");
    assert_eq!(run.parts.running, running as u64, "running counter");
    assert_eq!(run.parts.waiting, (PARTS - finished - running) as u64, "waiting counter");

    if !last {
        return;
    }
    // No part was moved to Finished twice, in all the incarnations (the event
    // log records every move; read once, at the end: it is the longest read).
    let mut finished_moves: HashMap<i64, u32> = HashMap::new();
    let mut after = 0;
    loop {
        let events = store.events(after, 10_000).await.expect("events");
        let Some(last_event) = events.last() else {
            break;
        };
        after = last_event.id;
        for e in &events {
            if e.entity == "part" && e.to == Some(State::Finished) {
                *finished_moves.entry(e.entity_id).or_default() += 1;
            }
        }
    }
    for (part, n) in finished_moves {
        assert_eq!(n, 1, "part {part} was finished {n} times");
    }

    assert_eq!(run.state, State::Finished, "the run ends Finished");
    assert_eq!(finished, PARTS, "every part ends Finished");
}

/// The leasing process: `AGENTS` agents lease and complete parts of the run
/// until it is finished, printing each acknowledgement once it is returned.
fn worker(args: &[String]) {
    let [backend, location, run_id, clock] = args else {
        panic!("usage: --crash-worker BACKEND LOCATION RUN_ID CLOCK");
    };
    let backend = match backend.as_str() {
        "sqlite" => Backend::Sqlite,
        _ => Backend::Postgres,
    };
    let run_id: i64 = run_id.parse().expect("run id");
    let clock =
        ManualClock::new(DateTime::parse_from_rfc3339(clock).expect("clock").with_timezone(&Utc));
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let store = open(backend, location).await;
        let sched =
            Scheduler::new(store.clone(), Arc::new(clock.clone()), Arc::new(ParamsSplitter));
        // The previous incarnation's leases are past their expiry on this clock.
        sched.tick().await.expect("sweep");
        let mut agents = Vec::new();
        for i in 0..AGENTS {
            let registration = AgentRegistration {
                name: format!("w{i}"),
                networks: Vec::new(),
                plugins: Vec::new(),
                pooled_slots: 1,
                dedicated_slots: 0,
            };
            let agent = store
                .register_agent(&registration, &format!("token-w{i}"), clock.now())
                .await
                .expect("register");
            let (sched, clock) = (sched.clone(), clock.clone());
            agents.push(tokio::spawn(async move { work(&sched, &clock, &agent, run_id).await }));
        }
        for a in agents {
            a.await.expect("agent task");
        }
    });
}

async fn work(
    sched: &Scheduler, clock: &ManualClock, agent: &jobstack::scheduler::Agent, run_id: i64,
) {
    let mut idle = 0;
    loop {
        if let Some(lease) = sched.lease(agent).await.expect("lease") {
            idle = 0;
            let ack = sched.submit(agent, &finished(&lease)).await.expect("submit");
            let kind = match ack {
                ResultAck::Applied => "Applied",
                ResultAck::AcceptedLate => "AcceptedLate",
                ResultAck::Duplicate => "Duplicate",
                ResultAck::Recorded => "Recorded",
            };
            println!("ack {} {} {kind}", lease.part_id, lease.attempt);
            continue;
        }
        let run = sched.store().run(run_id).await.expect("run").expect("run");
        if run.state.is_terminal() {
            return;
        }
        // Nothing to lease: parts held by others, or waiting out a backoff
        // after an expiry. The second time, move past every lease and backoff.
        idle += 1;
        if idle > 1 {
            assert!(PAST_EVERYTHING > retry::BACKOFF_MAX.to_std().unwrap());
            clock.advance(PAST_EVERYTHING);
        }
        sched.tick().await.expect("sweep");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
