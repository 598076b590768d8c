//! Several daemons on one PostgreSQL database, end to end: real `jobstack serve`
//! processes on loopback ports, agents speaking the agent API over HTTP (a
//! faithful agent for this purpose: register with the enrollment secret, lease,
//! send the result, re-send it to another daemon until it is acknowledged, as
//! the agent's spool does).
//!
//! - One of two daemons is killed with SIGKILL in the middle of a 10,000-part
//!   run: the other completes it, every part is finished exactly once, every
//!   acknowledged result is in the database.
//! - The same with real `jobstack agent` processes (two per daemon), the
//!   plugin uploaded to one daemon only.
//! - The database restarts in the middle of a run (a private PostgreSQL
//!   server, never the shared one): both daemons answer 503 on /readyz while it
//!   is down, recover by themselves, and the run completes with nothing lost.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobstack_e2e::daemon::{Daemon, ENROLL_SECRET};
use jobstack_e2e::plugin_wasm;
use jobstack_e2e::postgres::{PrivatePostgres, TestDatabase, server_url};
use serde_json::{Value, json};

/// How long a whole run may take before the test gives up.
const RUN_DEADLINE: Duration = Duration::from_secs(600);

/// One HTTP call that reports transport errors instead of panicking (a
/// daemon may be dead).
fn call(base: &str, path: &str, token: &str, body: &Value) -> Result<(u16, Value), String> {
    let request = ureq::post(&format!("{base}/api/v1{path}"))
        .timeout(Duration::from_secs(30))
        .set("Authorization", &format!("Bearer {token}"));
    match request.send_json(body.clone()) {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            let status = r.status();
            let text = r.into_string().unwrap_or_default();
            Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
        }
        Err(e) => Err(e.to_string()),
    }
}

fn readyz(base: &str) -> Option<u16> {
    match ureq::get(&format!("{base}/readyz")).timeout(Duration::from_secs(30)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => Some(r.status()),
        Err(_) => None,
    }
}

/// What the agents share with the test.
#[derive(Default)]
struct Fleet {
    /// Every acknowledged result: (part, attempt, ack).
    acks: Mutex<Vec<(i64, u64, String)>>,
    /// Set by the test when the run is complete.
    done: AtomicBool,
}

impl Fleet {
    fn acknowledged(&self) -> usize {
        self.acks.lock().unwrap().len()
    }
}

/// An agent: prefers `daemons[0]`, fails over to the next one when a daemon is
/// unreachable or unavailable.
fn agent(name: String, daemons: Vec<String>, fleet: Arc<Fleet>) {
    let mut current = 0;
    let fail_over = |current: &mut usize| {
        *current = (*current + 1) % daemons.len();
        std::thread::sleep(Duration::from_millis(100));
    };
    let registration = json!({ "name": name, "pooled_slots": 1 });
    let token = loop {
        match call(&daemons[current], "/agent/register", ENROLL_SECRET, &registration) {
            Ok((200, body)) => break body["token"].as_str().expect("token").to_string(),
            _ => fail_over(&mut current),
        }
    };
    while !fleet.done.load(Ordering::Relaxed) {
        let lease =
            match call(&daemons[current], "/agent/lease", &token, &json!({ "wait_ms": 500 })) {
                Ok((200, lease)) => lease,
                Ok((204, _)) => continue,
                Ok((503, _)) | Err(_) => {
                    fail_over(&mut current);
                    continue;
                }
                Ok((status, body)) => panic!("agent {name}: lease answered {status} {body}"),
            };
        let (part, attempt) =
            (lease["part_id"].as_i64().unwrap(), lease["attempt"].as_u64().unwrap());
        let result = json!({
            "part_id": part,
            "attempt": attempt,
            "status": "finished",
            "output": { "label": lease["part"]["label"] },
            "duration_ms": 1,
        });
        // Deliver until acknowledged, to whichever daemon answers.
        loop {
            match call(&daemons[current], "/agent/results", &token, &result) {
                Ok((200, answer)) => {
                    let ack = answer["ack"].as_str().unwrap_or("?").to_string();
                    fleet.acks.lock().unwrap().push((part, attempt, ack));
                    break;
                }
                Ok((503, _)) | Err(_) => fail_over(&mut current),
                Ok((status, body)) => {
                    panic!("agent {name}: result of part {part} answered {status} {body}")
                }
            }
        }
    }
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn daemon_on(database: &str) -> Daemon {
    let daemon = Daemon::builder().arg("--database").arg(database).arg("--no-local-agent").start();
    daemon.upload_plugin(&plugin_wasm("fixture-emitter"));
    daemon
}

/// Create a manual task of `parts` parts through `daemon` and force a run;
/// returns the run id.
fn start_run(daemon: &Daemon, parts: u64) -> i64 {
    let task = json!({ "task": {
        "name": "sweep",
        "plugin": "fixture-emitter",
        "params": { "records": parts },
        "frequency": { "kind": "manual" },
        "timeout_ms": 5000,
        "retries": 5,
    }});
    daemon.post("/tasks", &task).expect_ok("create task");
    let run = daemon.post("/tasks/sweep/run", &json!({})).expect_ok("force run");
    run["id"].as_i64().expect("run id")
}

fn spawn_fleet(
    daemons: &[&Daemon], per_daemon: usize, fleet: &Arc<Fleet>,
) -> Vec<std::thread::JoinHandle<()>> {
    let urls: Vec<String> = daemons.iter().map(|d| d.url.clone()).collect();
    let mut agents = Vec::new();
    for (i, _) in urls.iter().enumerate() {
        for n in 0..per_daemon {
            // Each agent prefers daemon i, then the others in order.
            let mut order = urls.clone();
            order.rotate_left(i);
            let fleet = fleet.clone();
            agents.push(std::thread::spawn(move || agent(format!("agent-{i}-{n}"), order, fleet)));
        }
    }
    agents
}

fn run_state(daemon: &Daemon, run: i64) -> String {
    daemon.get(&format!("/runs/{run}")).json()["state"].as_str().unwrap_or("").to_string()
}

/// Every part finished by exactly one applied result, and every acknowledged
/// result stored.
fn check_nothing_lost(db: &impl Fn(&str) -> String, run: i64, parts: usize, fleet: &Fleet) {
    let finished: usize =
        db(&format!("SELECT count(*) FROM parts WHERE run_id = {run} AND state = 'finished'"))
            .parse()
            .unwrap();
    assert_eq!(finished, parts, "every part finished");
    let applied_twice = db(&format!(
        "SELECT count(*) FROM (SELECT part_id FROM results WHERE run_id = {run} AND applied \
         GROUP BY part_id HAVING count(*) > 1) x"
    ));
    assert_eq!(applied_twice, "0", "no part finished twice");
    let applied_parts: usize = db(&format!(
        "SELECT count(DISTINCT part_id) FROM results WHERE run_id = {run} AND applied"
    ))
    .parse()
    .unwrap();
    assert_eq!(applied_parts, parts, "every part finished by an applied result");
    let stored: HashSet<(i64, u64)> =
        db(&format!("SELECT part_id || ' ' || attempt FROM results WHERE run_id = {run}"))
            .lines()
            .map(|l| {
                let (p, a) = l.split_once(' ').unwrap();
                (p.parse().unwrap(), a.parse().unwrap())
            })
            .collect();
    let acks = fleet.acks.lock().unwrap();
    assert!(acks.len() >= parts, "{} acknowledgements for {parts} parts", acks.len());
    for (part, attempt, ack) in acks.iter() {
        assert!(
            stored.contains(&(*part, *attempt)),
            "acknowledged result ({ack}) of part {part} attempt {attempt} is not in the database"
        );
    }
}

#[test]
fn a_run_completes_when_one_of_two_daemons_is_killed() {
    let parts = 10_000;
    let pg = TestDatabase::create(&server_url());
    let mut a = daemon_on(&pg.url());
    let b = daemon_on(&pg.url());
    let run = start_run(&a, parts as u64);
    let fleet = Arc::new(Fleet::default());
    let agents = spawn_fleet(&[&a, &b], 4, &fleet);

    wait_for("a third of the run", RUN_DEADLINE, || fleet.acknowledged() >= parts / 3);
    a.kill();
    wait_for("the run to finish on the surviving daemon", RUN_DEADLINE, || {
        run_state(&b, run) == "finished"
    });
    fleet.done.store(true, Ordering::Relaxed);
    for agent in agents {
        agent.join().expect("agent thread");
    }
    check_nothing_lost(&|sql| pg.query(sql), run, parts, &fleet);
}

#[test]
fn a_database_restart_during_a_run_loses_nothing() {
    let parts = 3_000;
    let server = PrivatePostgres::start();
    let pg = TestDatabase::create(&server.url);
    let a = daemon_on(&pg.url());
    let b = daemon_on(&pg.url());
    let run = start_run(&a, parts as u64);
    let fleet = Arc::new(Fleet::default());
    let agents = spawn_fleet(&[&a, &b], 3, &fleet);

    wait_for("a third of the run", RUN_DEADLINE, || fleet.acknowledged() >= parts / 3);
    server.stop();
    for daemon in [&a, &b] {
        assert_eq!(readyz(&daemon.url), Some(503), "not ready without the database");
    }
    let during = fleet.acknowledged();
    server.start_again();
    for daemon in [&a, &b] {
        wait_for("the daemon to be ready again", Duration::from_secs(60), || {
            readyz(&daemon.url) == Some(200)
        });
    }
    wait_for("the run to finish", RUN_DEADLINE, || run_state(&a, run) == "finished");
    assert!(fleet.acknowledged() > during, "work went on after the restart");
    fleet.done.store(true, Ordering::Relaxed);
    for agent in agents {
        agent.join().expect("agent thread");
    }
    check_nothing_lost(&|sql| pg.query(sql), run, parts, &fleet);
}

#[test]
fn real_agents_finish_a_run_when_one_of_two_daemons_is_killed() {
    use jobstack_e2e::agent::AgentProcess;
    let parts = 2_000;
    let pg = TestDatabase::create(&server_url());
    let mut a = daemon_on(&pg.url());
    let b = daemon_on(&pg.url());
    // Uploaded to B only: A splits the run and serves the module to its
    // agents from what B put into the shared database.
    b.upload_plugin(&plugin_wasm("fixture-steps"));
    let task = json!({ "task": {
        "name": "steps",
        "plugin": "fixture-steps",
        "params": { "parts": parts, "ms": 0 },
        "frequency": { "kind": "manual" },
        "timeout_ms": 5000,
    }});
    a.post("/tasks", &task).expect_ok("create task");
    let run = a.post("/tasks/steps/run", &json!({})).expect_ok("force run")["id"].as_i64().unwrap();
    let state = tempfile::tempdir().unwrap();
    // Real `jobstack agent` processes, two per daemon (each talks to one).
    let _agents: Vec<AgentProcess> = [(&a, "a"), (&a, "b"), (&b, "c"), (&b, "d")]
        .iter()
        .map(|(daemon, name)| {
            let dir = state.path().join(name);
            AgentProcess::start(&daemon.url, &format!("real-{name}"), &dir, &[])
        })
        .collect();
    let finished = |daemon: &Daemon| -> u64 {
        daemon.get(&format!("/runs/{run}")).json()["parts"]["finished"].as_u64().unwrap_or(0)
    };
    wait_for("a third of the run", RUN_DEADLINE, || finished(&b) >= parts / 3);
    a.kill();
    // The dead daemon's agents cannot deliver any more; their leases expire
    // and daemon B's agents take the parts over.
    wait_for("the run to finish on the surviving daemon", RUN_DEADLINE, || {
        run_state(&b, run) == "finished"
    });
    assert_eq!(
        pg.query(&format!(
            "SELECT count(*) FROM parts WHERE run_id = {run} AND state = 'finished'"
        )),
        parts.to_string()
    );
    assert_eq!(
        pg.query(&format!(
            "SELECT count(*) FROM (SELECT part_id FROM results WHERE run_id = {run} AND applied \
             GROUP BY part_id HAVING count(*) = 1) x"
        )),
        parts.to_string(),
        "every part finished by exactly one applied result"
    );
}
