//! The vSphere test peer: govmomi's simulator (scripts/peers/vcsim, built
//! offline from Debian's govmomi sources by its build script) on a loopback
//! port chosen at run time, with the inventory it dumps at start.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::repo_root;

/// The only user name the simulator accepts (its flags' default).
pub const USER: &str = "jobstack";
/// The only password the simulator accepts (its flags' default).
pub const PASSWORD: &str = "s3cret";

/// The simulator binary, built once per test process.
fn binary() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = repo_root().join("scripts/peers/vcsim/build.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed (scripts/install-deps.sh installs golang-go and govmomi)",
            script.display()
        );
        String::from_utf8(out.stdout).expect("a path").trim().to_string()
    })
}

/// A running simulator. Killed when dropped.
pub struct Vcsim {
    child: Child,
    /// The SDK URL, e.g. `https://127.0.0.1:41234/sdk`.
    pub url: String,
    /// Its host systems as it dumped them (sorted by name).
    pub hosts: Vec<Value>,
    /// Its virtual machines as it dumped them (sorted by name).
    pub vms: Vec<Value>,
}

impl Vcsim {
    /// Start the simulator with `args` (see its main.go: `-tls`, `-hosts`,
    /// `-cluster-hosts`, `-vms`, `-user`, `-password`).
    pub fn start(args: &[&str]) -> Vcsim {
        let mut child = Command::new(binary())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the vSphere simulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("read the simulator's first line");
        let info: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the simulator printed {line:?}: {e}"));
        Vcsim {
            child,
            url: info["url"].as_str().expect("url").to_string(),
            hosts: info["hosts"].as_array().expect("hosts").clone(),
            vms: info["vms"].as_array().expect("vms").clone(),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host_port(&self) -> String {
        let rest = self.url.split_once("://").expect("scheme").1;
        rest.split('/').next().expect("authority").to_string()
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `records` of `kind` (any when `None`), each reduced to `fields`, sorted by name.
pub fn project(records: &[Value], kind: Option<&str>, fields: &[&str]) -> Vec<Value> {
    let mut out: Vec<Value> = records
        .iter()
        .filter(|r| kind.is_none_or(|k| r["kind"] == k))
        .map(|r| {
            let obj: serde_json::Map<String, Value> =
                fields.iter().map(|f| (f.to_string(), r[*f].clone())).collect();
            Value::Object(obj)
        })
        .collect();
    out.sort_by_key(|v| v["name"].as_str().unwrap_or_default().to_string());
    out
}

/// The host fields the esx plugin reports and the simulator dumps.
pub const HOST_FIELDS: [&str; 12] = [
    "name",
    "vendor",
    "model",
    "cpu_model",
    "cpu_cores",
    "cpu_threads",
    "cpu_mhz",
    "memory_bytes",
    "bios_version",
    "product_name",
    "product_version",
    "product_build",
];

/// The VM fields the esx plugin reports and the simulator dumps.
pub const VM_FIELDS: [&str; 7] =
    ["name", "host", "power_state", "cpus", "memory_mb", "guest_os", "uuid"];
