//! A real `jobstack agent` process registered with a test daemon. Killed when
//! dropped; its state directory (spool, module cache) outlives restarts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::ENROLL_SECRET;
use crate::{jobstack_bin, signal, wait_for_line};

/// How long an agent may take to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);

/// A running agent.
#[derive(Debug)]
pub struct AgentProcess {
    child: Option<Child>,
    /// Its name.
    pub name: String,
    /// Its state directory.
    pub state_dir: PathBuf,
}

impl AgentProcess {
    /// Start `jobstack agent --server URL --name NAME --network 127.0.0.0/8
    /// --slots 1 --state-dir STATE ARGS...` and wait until it registered.
    pub fn start(server: &str, name: &str, state_dir: &Path, args: &[&str]) -> AgentProcess {
        let mut child = Command::new(jobstack_bin())
            .arg("agent")
            .args(["--server", server, "--enroll", ENROLL_SECRET, "--name", name])
            .args(["--network", "127.0.0.0/8", "--slots", "1"])
            .arg("--state-dir")
            .arg(state_dir)
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or("warn".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start jobstack agent");
        let stdout = child.stdout.take().expect("piped stdout");
        wait_for_line(stdout, &mut child, "jobstack agent: registered as ", REGISTER_TIMEOUT);
        AgentProcess {
            child: Some(child),
            name: name.to_string(),
            state_dir: state_dir.to_path_buf(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("agent is running").id()
    }

    /// Freeze it (SIGSTOP).
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// Thaw it (SIGCONT).
    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }

    /// Kill it with SIGKILL and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether it has fetched (and compiled) at least one plugin module:
    /// from then on it executes parts without calling the daemon.
    pub fn has_a_module(&self) -> bool {
        std::fs::read_dir(self.state_dir.join("engine/modules"))
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    }

    /// The results waiting in its spool, as `(part, attempt)`.
    pub fn spooled(&self) -> Vec<(i64, u32)> {
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("spool")) else {
            return found;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((part, attempt)) =
                name.strip_suffix(".json").and_then(|stem| stem.split_once('-'))
                && let (Ok(p), Ok(a)) = (part.parse(), attempt.parse())
            {
                found.push((p, a));
            }
        }
        found.sort_unstable();
        found
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A frozen process must be thawed to die cleanly in every case.
            signal(child.id(), "CONT");
        }
        self.kill();
    }
}
