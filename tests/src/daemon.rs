//! A real `jobstack serve` process on a loopback port chosen at run time, and a
//! small blocking HTTP client for its API.
//!
//! Every end-to-end test that needs the daemon starts one with
//! [`Daemon::start`] (or [`DaemonBuilder`] for extra flags); it is killed when
//! dropped. Its data directory is a temporary directory unless the test gives
//! one (to restart a daemon on the same data). Every answer [`Daemon::request`]
//! gets is checked against the daemon's OpenAPI document ([`Contract`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::contract::{Contract, Exchange};
use crate::jobstack_bin;

/// The admin token every test daemon is started with.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The enrollment secret every test daemon is started with.
pub const ENROLL_SECRET: &str = "test-enroll-secret";

/// How long a daemon may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags for a daemon before it starts.
#[derive(Debug, Default)]
pub struct DaemonBuilder {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    log_file: Option<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl DaemonBuilder {
    /// Use (or reuse, for a restart) this data directory.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Listen on this address (a restart on the port agents know) instead of
    /// a free port chosen by the system.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = Some(addr.to_string());
        self
    }

    /// Write the daemon's log (stderr) to `path` instead of the test's stderr.
    pub fn log_to(mut self, path: &Path) -> Self {
        self.log_file = Some(path.to_path_buf());
        self
    }

    /// Add a command-line argument to `jobstack serve`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Set an environment variable of the daemon process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Start `jobstack serve --listen 127.0.0.1:0 ...` and wait for its
    /// listening line.
    pub fn start(self) -> Daemon {
        let (tmp, data_dir) = match self.data_dir {
            Some(dir) => (None, dir),
            None => {
                let tmp = tempfile::tempdir().expect("temporary data directory");
                let dir = tmp.path().to_path_buf();
                (Some(tmp), dir)
            }
        };
        let mut command = Command::new(jobstack_bin());
        command
            .arg("serve")
            .arg("--listen")
            .arg(self.listen.as_deref().unwrap_or("127.0.0.1:0"))
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--admin-token", ADMIN_TOKEN])
            .args(["--enroll-secret", ENROLL_SECRET])
            .args(&self.args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or("warn".into()))
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match &self.log_file {
                Some(path) => {
                    Stdio::from(std::fs::File::create(path).expect("create the log file"))
                }
                None => Stdio::inherit(),
            });
        let mut child = command.spawn().expect("start jobstack serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let url = wait_for_listening(stdout, &mut child);
        Daemon { child: Some(child), url, data_dir, contract: OnceLock::new(), _tmp: tmp }
    }
}

/// Read stdout until `jobstack: listening on http://ADDR`, then keep draining
/// it in the background so the daemon never blocks on a full pipe.
fn wait_for_listening(stdout: std::process::ChildStdout, child: &mut Child) -> String {
    let line = crate::wait_for_line(stdout, child, "jobstack: listening on ", START_TIMEOUT);
    line.trim().to_string()
}

/// A running daemon. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// Its base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Its OpenAPI document, fetched at the first request.
    contract: OnceLock<Contract>,
    _tmp: Option<tempfile::TempDir>,
}

impl Daemon {
    /// A daemon with default flags and a fresh data directory.
    pub fn start() -> Daemon {
        Daemon::builder().start()
    }

    /// Flags before starting.
    pub fn builder() -> DaemonBuilder {
        DaemonBuilder::default()
    }

    /// Its listening address, e.g. `127.0.0.1:41234`.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon is running").id()
    }

    /// Kill it with SIGKILL and wait for it, keeping the data directory
    /// (a temporary one lives until this value is dropped).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Ask it to stop with SIGTERM and wait for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon is running");
        crate::signal(child.id(), "TERM");
        child.wait().expect("wait for daemon")
    }

    /// `GET /api/v1{path}` as admin.
    pub fn get(&self, path: &str) -> Answer {
        self.request("GET", path, Some(ADMIN_TOKEN), Body::None)
    }

    /// `POST /api/v1{path}` with a JSON body as admin.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.request("POST", path, Some(ADMIN_TOKEN), Body::Json(body))
    }

    /// `PUT /api/v1{path}` with a JSON body as admin.
    pub fn put(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.request("PUT", path, Some(ADMIN_TOKEN), Body::Json(body))
    }

    /// Upload a plugin file as admin; panics unless it is accepted.
    pub fn upload_plugin(&self, wasm: &Path) -> serde_json::Value {
        let bytes = std::fs::read(wasm).expect("read plugin");
        let answer = self.request("POST", "/plugins", Some(ADMIN_TOKEN), Body::Bytes(&bytes));
        answer.expect_ok("upload plugin")
    }

    /// Any request: `path` is below `/api/v1` unless it starts with `//`
    /// (then it is from the root, e.g. `//metrics`).
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: Body) -> Answer {
        let url = match path.strip_prefix("//") {
            Some(root) => format!("{}/{root}", self.url),
            None => format!("{}/api/v1{path}", self.url),
        };
        let mut request = ureq::request(method, &url).timeout(Duration::from_secs(60));
        if let Some(token) = token {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Body::None => request.call(),
            Body::Json(v) => request.send_json(v.clone()),
            Body::Raw(s) => request.set("Content-Type", "application/json").send_string(s),
            Body::Bytes(b) => request.set("Content-Type", "application/wasm").send_bytes(b),
        };
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {url}: {e}"),
        };
        let status = response.status();
        let content_type = response.header("content-type").map(String::from);
        let text = response.into_string().unwrap_or_default();
        let root_path = url.strip_prefix(&self.url).unwrap_or(&url);
        self.contract().check(&Exchange {
            method,
            path: root_path,
            status,
            content_type: content_type.as_deref(),
            body: &text,
        });
        Answer { status, text }
    }

    /// The daemon's OpenAPI document, as the contract its answers keep.
    pub fn contract(&self) -> &Contract {
        self.contract.get_or_init(|| {
            let url = format!("{}/api/v1/openapi.json", self.url);
            let document = ureq::get(&url)
                .timeout(Duration::from_secs(60))
                .call()
                .unwrap_or_else(|e| panic!("GET {url}: {e}"))
                .into_json()
                .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"));
            Contract::new(document)
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A request body.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// No body.
    None,
    /// A JSON value.
    Json(&'a serde_json::Value),
    /// Text sent as `application/json` (malformed JSON tests).
    Raw(&'a str),
    /// Bytes sent as `application/wasm`.
    Bytes(&'a [u8]),
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body text.
    pub text: String,
}

impl Answer {
    /// The body as JSON (`null` when empty or not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or(serde_json::Value::Null)
    }

    /// The error code of an error answer.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }

    /// The JSON body of a 2xx answer; panics with the body otherwise.
    pub fn expect_ok(&self, what: &str) -> serde_json::Value {
        assert!((200..300).contains(&self.status), "{what}: HTTP {} {}", self.status, self.text);
        self.json()
    }
}
