//! Helpers shared by the end-to-end tests: find the `jobstack` binary and the
//! built plugins, run the binary, read its JSON.
//!
//! The binary and the plugins are built by `scripts/test.sh` before the tests
//! run; a missing one fails the test with the command that builds it.

pub mod agent;
pub mod contract;
pub mod daemon;
pub mod postgres;
pub mod proxy;
pub mod receiver;
pub mod snmpd;
pub mod vcsim;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

/// The `jobstack` binary of this build (`$JOBSTACK_BIN` overrides).
pub fn jobstack_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("JOBSTACK_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<this test> -> target/<profile>/jobstack
    let exe = std::env::current_exe().expect("current test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in target/<profile>/deps");
    let bin = profile_dir.join("jobstack");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p jobstack` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A plugin built in `plugins/`, by crate name (`fixture-spin`, `netscan`).
pub fn plugin_wasm(name: &str) -> PathBuf {
    let file = format!("{}.wasm", name.replace('-', "_"));
    let path = repo_root().join("plugins/target/wasm32-wasip2/release").join(file);
    assert!(
        path.exists(),
        "{} is missing: build the plugins with scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// The hello example plugin (`examples/hello-plugin`): its parameters have a
/// JSON Schema (`name` required), so it serves the schema tests too.
pub fn hello_wasm() -> PathBuf {
    let path =
        repo_root().join("examples/hello-plugin/target/wasm32-wasip2/release/hello_plugin.wasm");
    assert!(
        path.exists(),
        "{} is missing: build the plugins with scripts/build-plugins.sh",
        path.display()
    );
    path
}

/// The JSON of a part object as `jobstack exec --part` takes it.
pub fn part_json(label: &str, targets: &[&str], payload: &serde_json::Value) -> String {
    serde_json::json!({
        "label": label,
        "targets": targets,
        "payload": payload.to_string(),
    })
    .to_string()
}

/// What a run of the binary printed and returned.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// stdout parsed as JSON.
    pub json: serde_json::Value,
    /// stderr, for failure messages.
    pub stderr: String,
}

impl Run {
    /// The `status` field of an exec outcome.
    pub fn status(&self) -> &str {
        self.json["status"].as_str().unwrap_or("<none>")
    }

    /// The `error` field of an exec outcome.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// Run `jobstack ARGS...` and parse its stdout as one JSON value.
pub fn jobstack(args: &[&str]) -> Run {
    let output = Command::new(jobstack_bin()).args(args).output().expect("start jobstack");
    parse(output, args)
}

/// Run `jobstack exec WASM ARGS...`.
pub fn exec(wasm: &Path, args: &[&str]) -> Run {
    let wasm = wasm.to_str().expect("utf-8 path");
    let mut all = vec!["exec", wasm];
    all.extend_from_slice(args);
    jobstack(&all)
}

fn parse(output: Output, args: &[&str]) -> Run {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("jobstack {args:?} printed no JSON ({e}).\nstdout: {stdout}\nstderr: {stderr}")
    });
    Run { code: output.status.code(), json, stderr }
}

/// Send `SIG{name}` (`STOP`, `CONT`, `KILL`, `TERM`) to a process.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Read a child's stdout until a line starting with `prefix`; return the rest
/// of that line. Keeps draining stdout in the background afterwards so the
/// child never blocks on a full pipe. Panics (killing the child) after `timeout`.
pub fn wait_for_line(
    stdout: std::process::ChildStdout, child: &mut std::process::Child, prefix: &str,
    timeout: Duration,
) -> String {
    let (tx, rx) = mpsc::channel();
    let wanted = prefix.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.strip_prefix(&wanted) {
                let _ = tx.send(rest.to_string());
                sent = true;
            }
        }
    });
    match rx.recv_timeout(timeout) {
        Ok(rest) => rest,
        Err(_) => {
            let status = child.try_wait().ok().flatten();
            let _ = child.kill();
            panic!("no line {prefix:?} within {timeout:?} (exit: {status:?}); stderr is above");
        }
    }
}

/// Poll `check` every 100 ms until it returns `Some`, or panic with `what`
/// after `timeout`. For waiting on other processes, never for asserting timing.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
