//! Debian's snmpd as a test peer (scripts/peers/snmpd.sh), on a loopback
//! address and a run-time UDP port, killed when dropped.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};

use crate::repo_root;

/// A running snmpd.
pub struct Snmpd {
    child: Child,
    /// Its loopback address.
    pub address: String,
    /// Its UDP port.
    pub port: u16,
    /// Its read-only community.
    pub community: String,
    dir: tempfile::TempDir,
}

impl Snmpd {
    /// Start snmpd on `address` (a free UDP port, or `port`) answering
    /// `location` as sysLocation, with `extra` arguments to the script (the
    /// v3 users); ready when `snmpget` gets an answer.
    pub fn start(address: &str, port: Option<u16>, location: &str, extra: &[&str]) -> Snmpd {
        let port = port
            .unwrap_or_else(|| UdpSocket::bind((address, 0)).unwrap().local_addr().unwrap().port());
        Self::launch(address, port, location, extra, false)
    }

    /// Start snmpd on `address` answering on the same free port over UDP
    /// and TCP, so that a TCP port scan finds it.
    pub fn start_with_tcp(address: &str, location: &str) -> Snmpd {
        let port = std::net::TcpListener::bind((address, 0)).unwrap().local_addr().unwrap().port();
        Self::launch(address, port, location, &[], true)
    }

    fn launch(address: &str, port: u16, location: &str, extra: &[&str], tcp: bool) -> Snmpd {
        let dir = tempfile::tempdir().unwrap();
        let community = format!("jobstack-test-{}", std::process::id());
        let log = std::fs::File::create(dir.path().join("snmpd.log")).unwrap();
        let child = Command::new(repo_root().join("scripts/peers/snmpd.sh"))
            .arg(dir.path())
            .arg(port.to_string())
            .arg(&community)
            .args(extra)
            .env("SNMPD_ADDRESS", address)
            .env("SNMPD_LOCATION", location)
            .env("SNMPD_TCP", if tcp { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run scripts/peers/snmpd.sh");
        let mut snmpd = Snmpd { child, address: address.to_string(), port, community, dir };
        // Ready when it answers; up to 20 s for a cold start on a busy machine.
        for _ in 0..40 {
            if let Some(status) = snmpd.child.try_wait().unwrap() {
                panic!("snmpd exited ({status}) before answering:\n{}", snmpd.log());
            }
            let probe = Command::new("snmpget")
                .args(["-v2c", "-c", &snmpd.community, "-r", "0", "-t", "0.5"])
                .arg(snmpd.target())
                .arg("1.3.6.1.2.1.1.5.0")
                .env("MIBS", "")
                .output()
                .unwrap_or_else(|e| {
                    panic!("cannot run snmpget ({e}): run scripts/install-deps.sh (Debian package snmp)")
                });
            if probe.status.success() {
                return snmpd;
            }
        }
        panic!("snmpd did not answer within 20 s:\n{}", snmpd.log());
    }

    /// `address:port`.
    pub fn target(&self) -> String {
        format!("{}:{}", self.address, self.port)
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("snmpd.log")).unwrap_or_default()
    }
}

impl Drop for Snmpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
