//! PostgreSQL for end-to-end tests: a fresh database on the shared server (the
//! one `scripts/postgres.sh` makes sure is running), or a private server this
//! test may stop and restart (`scripts/peers/private-postgres.sh`).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::repo_root;

/// The shared server: `JOBSTACK_TEST_POSTGRES`, else the local default.
pub fn server_url() -> String {
    std::env::var("JOBSTACK_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let start = base.find("://").map_or(0, |i| i + 3);
    let end = base[start..].find('/').map_or(base.len(), |i| start + i);
    match query {
        Some(q) => format!("{}/{name}?{q}", &base[..end]),
        None => format!("{}/{name}", &base[..end]),
    }
}

fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{prefix}_{}_{}_{nanos:x}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Run SQL on the server's `postgres` database with psql; panics on failure.
pub fn psql(server: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .arg(with_database(server, "postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-Atqc", sql])
        .output()
        .expect("run psql (scripts/postgres.sh installs it)");
    assert!(
        output.status.success(),
        "psql {sql:?} on {server}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A database created for one test, dropped (with its connections) at the end.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
}

impl TestDatabase {
    /// Create a fresh database on `server`.
    pub fn create(server: &str) -> TestDatabase {
        let name = unique("jobstack_e2e");
        psql(server, &format!("CREATE DATABASE \"{name}\""));
        TestDatabase { server: server.to_string(), name }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        with_database(&self.server, &self.name)
    }

    /// Run SQL in this database with psql; returns the unaligned output.
    pub fn query(&self, sql: &str) -> String {
        let output = Command::new("psql")
            .arg(self.url())
            .args(["-v", "ON_ERROR_STOP=1", "-Atqc", sql])
            .output()
            .expect("run psql");
        assert!(
            output.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(with_database(&self.server, "postgres"))
            .args(["-Atqc", &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)])
            .output();
    }
}

/// A PostgreSQL server of this test's own, on a loopback port chosen at run
/// time; destroyed when dropped.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: String,
    port: u16,
    /// Its URL (database `postgres`).
    pub url: String,
}

fn script(args: &[&str]) -> String {
    let output = Command::new(repo_root().join("scripts/peers/private-postgres.sh"))
        .args(args)
        .output()
        .expect("run scripts/peers/private-postgres.sh");
    assert!(
        output.status.success(),
        "private-postgres.sh {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

impl PrivatePostgres {
    /// Create and start one.
    pub fn start() -> PrivatePostgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let dir = format!("/tmp/{}", unique("jobstack-private-pg"));
        let url = script(&["start", &dir, &port.to_string()]);
        PrivatePostgres { dir, port, url }
    }

    /// Stop it (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        script(&["stop", &self.dir]);
    }

    /// Start it again after [`stop`](Self::stop), on the same port.
    pub fn start_again(&self) {
        script(&["start", &self.dir, &self.port.to_string()]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/peers/private-postgres.sh"))
            .args(["destroy", &self.dir])
            .output();
    }
}
