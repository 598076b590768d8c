//! The admin CLI against a real daemon: `jobstack plugin push|list`,
//! `jobstack task ...`, `jobstack results`, and the bad input it must report
//! clearly (`error: <message>`, exit code 1, nothing changed).
//!
//! `task watch` needs parts executed: real agents (the daemon's own, and a
//! `jobstack agent` process), and the test itself playing the agent through
//! the agent API (register with the enrollment secret, lease, submit results)
//! where it must decide how each part ends. It follows a run through a
//! restart of the daemon, opening the event stream again.

use std::process::{Child, Command, Output, Stdio};

use jobstack_e2e::agent::AgentProcess;
use jobstack_e2e::daemon::{ADMIN_TOKEN, Body, Daemon, ENROLL_SECRET};
use jobstack_e2e::{hello_wasm, jobstack_bin, wait_until};
use serde_json::{Value, json};

/// A daemon without its in-process agent: parts stay waiting until the test
/// (playing the agent) leases them, so every state the CLI shows is the one the
/// test made.
fn start_daemon() -> Daemon {
    Daemon::builder().arg("--no-local-agent").start()
}

/// What one CLI command printed and returned.
#[derive(Debug)]
struct Cli {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// Exit 0; returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "{self:?}");
        &self.stdout
    }

    /// Exit 1 with `error: ...` on stderr; returns stderr.
    fn failed(&self) -> &str {
        assert_eq!(self.code, 1, "{self:?}");
        assert!(self.stderr.starts_with("error: "), "{self:?}");
        &self.stderr
    }
}

fn output(out: Output) -> Cli {
    Cli {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `jobstack ARGS` as an admin of `daemon` (server and token from the
/// environment, as a user would set them).
fn command(daemon: &Daemon, args: &[&str]) -> Command {
    let mut command = Command::new(jobstack_bin());
    command
        .args(args)
        .env("JOBSTACK_SERVER", &daemon.url)
        .env("JOBSTACK_TOKEN", ADMIN_TOKEN)
        .env_remove("JOBSTACK_CA_FILE")
        .stdin(Stdio::null());
    command
}

fn cli(daemon: &Daemon, args: &[&str]) -> Cli {
    output(command(daemon, args).output().expect("run jobstack"))
}

fn push_hello(daemon: &Daemon) {
    cli(daemon, &["plugin", "push", hello_wasm().to_str().unwrap()]).ok();
}

fn create_greet(daemon: &Daemon, name: &str, count: u32, retries: u32) {
    let params = json!({"name": "world", "count": count}).to_string();
    let retries = retries.to_string();
    cli(
        daemon,
        &[
            "task",
            "create",
            "--name",
            name,
            "--plugin",
            "hello",
            "--params",
            &params,
            "--manual",
            "--retries",
            &retries,
        ],
    )
    .ok();
}

#[test]
fn plugin_push_prints_sha256_name_version_and_list_shows_it() {
    let daemon = start_daemon();
    let wasm = hello_wasm();
    let wasm = wasm.to_str().unwrap();
    let inspected = jobstack_e2e::jobstack(&["plugin", "inspect", wasm]);
    let sha256 = inspected.json["sha256"].as_str().unwrap().to_string();

    let first = cli(&daemon, &["plugin", "push", wasm]);
    assert_eq!(first.ok().trim(), format!("created: hello 0.1.0 sha256 {sha256}"));
    let again = cli(&daemon, &["plugin", "push", wasm, "--json"]);
    let again = again.json();
    assert_eq!(again["created"], false, "{again}");
    assert_eq!(again["sha256"], sha256.as_str());

    let list = cli(&daemon, &["plugin", "list"]);
    let lines: Vec<&str> = list.ok().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("NAME"), "{lines:?}");
    assert!(lines[1].starts_with("hello") && lines[1].contains(&sha256[..16]), "{lines:?}");
    let list = cli(&daemon, &["plugin", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["sha256"], sha256.as_str());

    // Not a component: the daemon's reason, exit 1, nothing stored.
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let refused = cli(&daemon, &["plugin", "push", junk.to_str().unwrap()]);
    assert!(refused.failed().len() > "error: ".len() + 10, "{refused:?}");
    let list = cli(&daemon, &["plugin", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Retired: listed with the time; pushing the file again restores it.
    let retired = cli(&daemon, &["plugin", "retire", "hello", "0.1.0"]);
    assert_eq!(retired.ok().trim(), format!("retired: hello 0.1.0 sha256 {sha256}"));
    let list = cli(&daemon, &["plugin", "list", "--json"]).json();
    assert!(list[0]["retired_at"].is_string(), "{list}");
    cli(&daemon, &["plugin", "push", wasm]).ok();
    let list = cli(&daemon, &["plugin", "list", "--json"]).json();
    assert!(list[0].get("retired_at").is_none(), "{list}");
}

#[test]
fn task_create_edit_list_show_run_suspend_resume_cancel_rerun_results() {
    let daemon = start_daemon();
    push_hello(&daemon);
    create_greet(&daemon, "greet", 3, 2);

    // Edit changes only what is given.
    let edited =
        cli(&daemon, &["task", "edit", "greet", "--retries", "0", "--priority", "high", "--json"]);
    let edited = edited.json();
    assert_eq!(edited["spec"]["retries"], 0);
    assert_eq!(edited["spec"]["priority"], "high");
    assert_eq!(edited["spec"]["params"], json!({"name": "world", "count": 3}));
    assert_eq!(edited["spec"]["frequency"], json!({"kind": "manual"}));

    // A second task from a file, with secrets (write-only).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("task.json");
    std::fs::write(
        &file,
        json!({"task": {"name": "from-file", "plugin": "hello", "params": {"name": "f"},
               "frequency": {"kind": "manual"}},
               "secrets": {"token": "s3cret"}})
        .to_string(),
    )
    .unwrap();
    cli(&daemon, &["task", "create", "--file", file.to_str().unwrap()]).ok();

    let list = cli(&daemon, &["task", "list"]);
    let list = list.ok();
    assert!(list.starts_with("NAME"), "{list}");
    assert!(
        list.lines().any(|l| l.starts_with("greet ") && l.contains("manual") && l.contains("high")),
        "{list}"
    );
    assert!(list.lines().any(|l| l.starts_with("from-file ")), "{list}");
    assert!(!list.contains("s3cret"));
    let listed = cli(&daemon, &["task", "list", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let shown = cli(&daemon, &["task", "show", "from-file", "--json"]);
    assert!(!shown.stdout.contains("s3cret"), "{shown:?}");
    assert_eq!(shown.json()["task"]["has_secrets"], true);

    // Force-run: three waiting parts.
    let run = cli(&daemon, &["task", "run", "greet"]);
    assert!(
        run.ok().starts_with("started run ") && run.stdout.contains("0/3 parts done (3 waiting)"),
        "{run:?}"
    );
    let show = cli(&daemon, &["task", "show", "greet"]);
    let show = show.ok();
    assert!(show.contains("latest run  run "), "{show}");
    let parts: Vec<&str> = show.lines().skip_while(|l| !l.starts_with("PART")).collect();
    assert_eq!(parts.len(), 4, "{show}");
    // No agent: each part says why it waits.
    assert!(
        parts[1..].iter().all(|l| l.contains("waiting") && l.contains("no agent is registered")),
        "{show}"
    );
    let shown = cli(&daemon, &["task", "show", "greet", "--json"]).json();
    let run_id = shown["task"]["latest_run"]["id"].as_i64().unwrap();
    assert_eq!(shown["parts"].as_array().unwrap().len(), 3);

    // Suspend and resume by task name (its latest run), cancel by run id.
    let suspended = cli(&daemon, &["task", "suspend", "greet", "--json"]).json();
    assert_eq!(suspended["id"], run_id);
    assert_eq!(suspended["state"], "suspended");
    let resumed = cli(&daemon, &["task", "resume", "greet"]);
    assert!(resumed.ok().starts_with(&format!("resumed run {run_id} ")), "{resumed:?}");
    let canceled = cli(&daemon, &["task", "cancel", "--run", &run_id.to_string(), "--json"]).json();
    assert_eq!(canceled["state"], "canceled");
    assert_eq!(canceled["parts"]["canceled"], 3);
    let shown = cli(&daemon, &["task", "show", "greet"]);
    assert!(shown.ok().contains("canceled, 0/3 parts done (3 canceled)"), "{shown:?}");
    let again = cli(&daemon, &["task", "cancel", "--run", &run_id.to_string()]);
    assert!(again.failed().contains("the run is already canceled"), "{again:?}");

    // Re-run the canceled parts: a new run of three parts.
    let rerun = cli(&daemon, &["task", "rerun", "greet", "--failed-only", "--json"]).json();
    assert_eq!(rerun["cause"], "rerun");
    assert_eq!(rerun["rerun_of"], run_id);
    assert_eq!(rerun["parts"]["waiting"], 3);

    // Both runs, newest first.
    let runs = cli(&daemon, &["task", "runs", "greet", "--json"]).json();
    let ids: Vec<i64> =
        runs.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [rerun["id"].as_i64().unwrap(), run_id]);
    let runs = cli(&daemon, &["task", "runs", "greet"]);
    assert_eq!(runs.ok().lines().count(), 3, "{runs:?}");

    // Results of the latest run: none yet; of the canceled run by id.
    let results = cli(&daemon, &["results", "greet"]);
    assert!(results.ok().contains("no results yet"), "{results:?}");
    let results =
        cli(&daemon, &["results", "greet", "--run", &run_id.to_string(), "--json"]).json();
    assert_eq!(results["run"]["id"], run_id);
    assert_eq!(results["results"], json!([]));
}

#[test]
fn bad_input_is_reported_clearly_and_changes_nothing() {
    let daemon = start_daemon();
    push_hello(&daemon);

    let unknown = cli(&daemon, &["task", "create", "--name", "t", "--plugin", "nope", "--manual"]);
    assert!(unknown.failed().contains("unknown plugin \"nope\""), "{unknown:?}");

    let schema = cli(
        &daemon,
        &["task", "create", "--name", "t", "--plugin", "hello", "--params", r#"{"count": 2}"#],
    );
    let schema = schema.failed();
    assert!(
        schema.contains("parameters do not match the schema") && schema.contains("name"),
        "{schema}"
    );

    let malformed =
        cli(&daemon, &["task", "create", "--name", "t", "--plugin", "hello", "--params", "{oops"]);
    assert!(malformed.failed().contains("--params: invalid JSON"), "{malformed:?}");

    let missing = cli(&daemon, &["task", "show", "ghost"]);
    assert!(missing.failed().contains("task \"ghost\" not found"), "{missing:?}");
    let no_run = cli(&daemon, &["task", "cancel", "ghost"]);
    assert!(no_run.failed().contains("not found"), "{no_run:?}");

    let wrong = output(
        command(&daemon, &["task", "list"])
            .env("JOBSTACK_TOKEN", "not-the-token")
            .output()
            .unwrap(),
    );
    let wrong = wrong.failed();
    assert!(wrong.contains("refused the admin token"), "{wrong}");

    let none =
        output(command(&daemon, &["task", "list"]).env_remove("JOBSTACK_TOKEN").output().unwrap());
    let none = none.failed();
    assert!(
        none.contains("--token") && none.contains("JOBSTACK_TOKEN") && none.contains("first start"),
        "{none}"
    );

    // Nothing was created by any of the above.
    assert_eq!(cli(&daemon, &["task", "list", "--json"]).json(), json!([]));

    // A daemon that is not running. Port 1 (tcpmux) has no listener on a test
    // machine, and unlike the port of a killed daemon no other test's daemon
    // can be given it meanwhile.
    let url = "http://127.0.0.1:1";
    let down = output(
        Command::new(jobstack_bin())
            .args(["task", "list", "--server", url, "--token", ADMIN_TOKEN])
            .output()
            .unwrap(),
    );
    let down = down.failed();
    assert!(
        down.contains(&format!("cannot reach the daemon at {url}"))
            && down.contains("connection refused")
            && down.contains("jobstack serve"),
        "{down}"
    );
}

/// The agent side, through the agent API.
struct FakeAgent<'a> {
    daemon: &'a Daemon,
    token: String,
}

impl<'a> FakeAgent<'a> {
    fn register(daemon: &'a Daemon, name: &str) -> Self {
        let answer = daemon.request(
            "POST",
            "/agent/register",
            Some(ENROLL_SECRET),
            Body::Json(&json!({"name": name})),
        );
        let token = answer.expect_ok("register")["token"].as_str().unwrap().to_string();
        FakeAgent { daemon, token }
    }

    /// Lease one part (long-polling up to a minute in all: a scheduled run
    /// may not be split yet) and report it `status`.
    fn do_one(&self, status: &str) {
        let mut lease = Value::Null;
        for _ in 0..6 {
            lease = self
                .daemon
                .request(
                    "POST",
                    "/agent/lease",
                    Some(&self.token),
                    Body::Json(&json!({"wait_ms": 10_000})),
                )
                .expect_ok("lease");
            if !lease.is_null() {
                break;
            }
        }
        let part_id = lease["part_id"].as_i64().expect("a part was leased");
        let attempt = lease["attempt"].as_u64().unwrap();
        let mut submission = json!({"part_id": part_id, "attempt": attempt, "status": status});
        if status == "finished" {
            submission["output"] = json!({"part": part_id});
        } else {
            submission["error"] = json!("device unreachable");
        }
        self.daemon
            .request("POST", "/agent/results", Some(&self.token), Body::Json(&submission))
            .expect_ok("result");
    }
}

fn spawn_watch(daemon: &Daemon, task: &str) -> Child {
    command(daemon, &["task", "watch", task])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start jobstack task watch")
}

#[test]
fn watch_follows_a_run_until_it_ends_exit_code_says_how() {
    let daemon = start_daemon();
    push_hello(&daemon);
    let agent = FakeAgent::register(&daemon, "agent-a");

    // A run that finishes: watch exits 0.
    create_greet(&daemon, "greet", 3, 0);
    cli(&daemon, &["task", "run", "greet"]).ok();
    let watch = spawn_watch(&daemon, "greet");
    for _ in 0..3 {
        agent.do_one("finished");
    }
    let done = output(watch.wait_with_output().unwrap());
    assert_eq!(done.code, 0, "{done:?}");
    assert!(done.stdout.contains("finished, 3/3 parts done"), "{done:?}");
    // It followed the event stream (no fallback to polling).
    assert!(!done.stderr.contains("polling"), "{done:?}");
    // Without a terminal, each change is a line on stderr, ending finished.
    assert!(done.stderr.lines().last().unwrap().ends_with("finished, 3/3 parts done"), "{done:?}");
    let results = cli(&daemon, &["results", "greet"]);
    let results = results.ok();
    assert_eq!(
        results.lines().filter(|l| l.contains("agent-a") && l.contains("finished")).count(),
        3,
        "{results}"
    );

    // A run whose part fails for good: watch exits 1 and says so.
    create_greet(&daemon, "fragile", 2, 0);
    cli(&daemon, &["task", "run", "fragile"]).ok();
    let watch = spawn_watch(&daemon, "fragile");
    agent.do_one("failed");
    agent.do_one("finished");
    let failed = output(watch.wait_with_output().unwrap());
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(
        failed.stderr.contains("error: run ") && failed.stderr.contains("ended failed"),
        "{failed:?}"
    );

    // Watching a run that already ended answers at once, same exit codes;
    // `--poll` (no event stream) reads the same state.
    let again = cli(&daemon, &["task", "watch", "greet", "--json"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["state"], "finished");
    let again = cli(&daemon, &["task", "watch", "fragile", "--poll"]);
    assert_eq!(again.code, 1, "{again:?}");

    // A task whose first run the scheduler has not created yet: watch waits
    // for it, then follows it.
    cli(
        &daemon,
        &[
            "task",
            "create",
            "--name",
            "soon",
            "--plugin",
            "hello",
            "--params",
            r#"{"name": "s"}"#,
            "--once",
        ],
    )
    .ok();
    let watch = spawn_watch(&daemon, "soon");
    agent.do_one("finished");
    let soon = output(watch.wait_with_output().unwrap());
    assert_eq!(soon.code, 0, "{soon:?}");
    assert!(soon.stdout.contains("(scheduled): finished, 1/1 parts done"), "{soon:?}");

    // A manual task never run: nothing to wait for.
    create_greet(&daemon, "idle", 1, 0);
    let idle = cli(&daemon, &["task", "watch", "idle"]);
    assert!(
        idle.failed().contains("has no run yet; start one with `jobstack task run idle`"),
        "{idle:?}"
    );

    // The failed part can be re-run and watched to its end.
    cli(&daemon, &["task", "rerun", "fragile", "--failed-only"]).ok();
    let watch = spawn_watch(&daemon, "fragile");
    agent.do_one("finished");
    let rerun = output(watch.wait_with_output().unwrap());
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert!(rerun.stdout.contains("(rerun): finished, 1/1 parts done"), "{rerun:?}");
}

#[test]
fn watch_follows_real_agents_to_the_end() {
    // The daemon's own agent runs a task's first run, which watch waits for.
    let daemon = Daemon::start();
    push_hello(&daemon);
    cli(
        &daemon,
        &[
            "task",
            "create",
            "--name",
            "local",
            "--plugin",
            "hello",
            "--params",
            r#"{"name": "l", "count": 4}"#,
            "--once",
        ],
    )
    .ok();
    let local = cli(&daemon, &["task", "watch", "local"]);
    assert_eq!(local.code, 0, "{local:?}");
    assert!(local.stdout.contains("(scheduled): finished, 4/4 parts done"), "{local:?}");
    drop(daemon);

    // A remote `jobstack agent` process, started while watch already runs.
    let daemon = start_daemon();
    push_hello(&daemon);
    create_greet(&daemon, "remote", 5, 0);
    cli(&daemon, &["task", "run", "remote"]).ok();
    let watch = spawn_watch(&daemon, "remote");
    let state = tempfile::tempdir().unwrap();
    let _agent = AgentProcess::start(&daemon.url, "remote-agent", state.path(), &[]);
    let remote = output(watch.wait_with_output().unwrap());
    assert_eq!(remote.code, 0, "{remote:?}");
    assert!(remote.stdout.contains("(forced): finished, 5/5 parts done"), "{remote:?}");
    let results = cli(&daemon, &["results", "remote", "--json"]).json();
    let results = results["results"].as_array().unwrap();
    assert_eq!(results.len(), 5, "{results:?}");
    for r in results {
        assert_eq!(r["agent"], "remote-agent", "{r}");
        assert_eq!(r["status"], "finished", "{r}");
        assert_eq!(r["applied"], true, "{r}");
        assert!(r["output"]["greeting"].as_str().unwrap().starts_with("hello, world #"), "{r}");
    }
}

#[test]
fn watch_opens_the_event_stream_again_after_the_daemon_restarts() {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(60);
    let data = tempfile::tempdir().unwrap();
    let start = |listen: Option<&str>| {
        let builder = Daemon::builder().data_dir(data.path()).arg("--no-local-agent");
        match listen {
            Some(addr) => builder.listen(addr),
            None => builder,
        }
        .start()
    };
    let mut daemon = start(None);
    let addr = daemon.addr().to_string();
    push_hello(&daemon);
    create_greet(&daemon, "greet", 2, 0);
    cli(&daemon, &["task", "run", "greet"]).ok();
    let mut watch = spawn_watch(&daemon, "greet");
    // Its stderr, line by line, as the watch writes it.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let (stderr, lines) = (watch.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let said = |words: &str| lines.lock().unwrap().iter().any(|l| l.contains(words));
    wait_until("the watch to show the run", PATIENCE, || said("0/2 parts done").then_some(()));

    daemon.kill();
    wait_until("the watch to see its stream drop", PATIENCE, || said("polling").then_some(()));
    let daemon = start(Some(&addr));
    wait_until("the watch to open its stream again", PATIENCE, || {
        said("event stream open again").then_some(())
    });
    let agent = FakeAgent::register(&daemon, "agent-a");
    for _ in 0..2 {
        agent.do_one("finished");
    }
    let status = watch.wait().unwrap();
    reader.join().unwrap();
    let lines = lines.lock().unwrap().clone();
    assert!(status.success(), "{lines:#?}");
    assert!(lines.last().unwrap().ends_with("finished, 2/2 parts done"), "{lines:#?}");
}

#[test]
fn webhooks_selectors_and_triggers_from_the_command_line() {
    let daemon = Daemon::builder().arg("--webhook-allow").arg("127.0.0.1").start();
    push_hello(&daemon);

    let added = cli(
        &daemon,
        &["webhook", "add", "http://127.0.0.1:9/hook", "--events", "run.failed,agent.down"],
    );
    let text = added.ok();
    assert!(text.contains("subscription 1 to http://127.0.0.1:9/hook"), "{text}");
    let secret = text.lines().find_map(|l| l.strip_prefix("signing secret (shown once): "));
    assert_eq!(secret.map(str::len), Some(64), "{text}");
    let listed = cli(&daemon, &["webhook", "list"]);
    assert!(listed.ok().contains("run.failed,agent.down"), "{listed:?}");
    assert!(!listed.stdout.contains(secret.unwrap()), "never listed again");
    let refused = cli(&daemon, &["webhook", "add", "http://10.0.0.1/", "--events", "run.failed"]);
    assert!(refused.failed().contains("allow-list"), "{refused:?}");
    assert!(cli(&daemon, &["webhook", "dead"]).ok().contains("no dead letters"));
    cli(&daemon, &["webhook", "remove", "1"]).ok();
    assert!(cli(&daemon, &["webhook", "list"]).ok().contains("no webhook subscriptions"));

    create_greet(&daemon, "upstream", 1, 0);
    cli(&daemon, &["plugin", "push", jobstack_e2e::plugin_wasm("netscan").to_str().unwrap()]).ok();
    let params = json!({"ports": "22"}).to_string();
    let select = json!({"into": "targets", "kind": "printer"}).to_string();
    cli(
        &daemon,
        &[
            "task",
            "create",
            "--name",
            "follower",
            "--plugin",
            "netscan",
            "--params",
            &params,
            "--manual",
            "--select",
            &select,
            "--after",
            "upstream:any",
        ],
    )
    .ok();
    let shown = cli(&daemon, &["task", "show", "follower"]);
    assert!(shown.ok().contains("from the inventory"), "{shown:?}");
    assert!(shown.stdout.contains("a run of upstream any"), "{shown:?}");
    cli(&daemon, &["task", "run", "follower"]).ok();
    let shown = cli(&daemon, &["task", "show", "follower"]);
    assert!(shown.ok().contains("nothing: the selector matched no asset"), "{shown:?}");
    let cycle = cli(&daemon, &["task", "edit", "upstream", "--after", "follower"]);
    assert!(cycle.failed().contains("upstream → follower → upstream"), "{cycle:?}");
}
