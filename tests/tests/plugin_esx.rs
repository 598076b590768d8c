//! The esx plugin through `jobstack exec` against govmomi's vSphere simulator
//! (scripts/peers/vcsim: built offline from Debian's govmomi sources), with
//! several hosts and VMs. The expected inventory is what the simulator itself
//! dumps from its object registry at start, never hard-coded values.

use jobstack_e2e::vcsim::{HOST_FIELDS, PASSWORD, USER, VM_FIELDS, Vcsim, project};
use jobstack_e2e::{Run, exec, plugin_wasm};
use serde_json::json;

/// The esx plugin's view of a simulator: parameters, the part, an execution.
trait Esx {
    fn params(&self) -> String;
    fn part(&self) -> String;
    fn execute(&self, password: &str, extra: &[&str]) -> Run;
}

impl Esx for Vcsim {
    fn params(&self) -> String {
        json!({"hosts": [self.url], "user": USER}).to_string()
    }

    /// The one part `split` makes for this endpoint.
    fn part(&self) -> String {
        let split = exec(&plugin_wasm("esx"), &["--params", &self.params()]);
        assert_eq!(split.status(), "finished", "{}", split.json);
        let parts = split.json["output"].as_array().unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0]["targets"], json!([self.host_port()]));
        parts[0].to_string()
    }

    fn execute(&self, password: &str, extra: &[&str]) -> Run {
        let secrets = json!({"password": password}).to_string();
        let params = self.params();
        let part = self.part();
        let mut args =
            vec!["--params", &params, "--part", &part, "--secrets", &secrets, "--timeout", "60s"];
        args.extend_from_slice(extra);
        exec(&plugin_wasm("esx"), &args)
    }
}

#[test]
fn inventory_lists_exactly_the_simulators_hosts_and_vms_over_https() {
    let sim = Vcsim::start(&["-hosts", "3", "-cluster-hosts", "2", "-vms", "2"]);
    assert!(sim.url.starts_with("https://"), "{}", sim.url);
    let hp = sim.host_port();
    let run = sim.execute(PASSWORD, &["--allow-http", &hp, "--tls-accept-self-signed"]);
    assert_eq!(run.status(), "finished", "{}", run.json);
    assert_eq!(run.code, Some(0));

    let emitted = run.json["emitted"].as_array().unwrap();
    let hosts = project(emitted, Some("host"), &HOST_FIELDS);
    let vms = project(emitted, Some("vm"), &VM_FIELDS);
    assert_eq!(hosts.len(), 5, "3 standalone + 2 clustered hosts");
    assert_eq!(hosts, project(&sim.hosts, None, &HOST_FIELDS));
    assert!(vms.len() >= 6, "{} VMs", vms.len());
    assert_eq!(vms, project(&sim.vms, None, &VM_FIELDS));
    assert_eq!(emitted.len(), hosts.len() + vms.len());

    let output = &run.json["output"];
    assert_eq!(output["hosts"], hosts.len());
    assert_eq!(output["vms"], vms.len());
    assert!(output["about"]["fullName"].as_str().unwrap().contains("VMware"));
    assert_eq!(run.json["progress"], json!({"done": 4, "total": 4}));
}

#[test]
fn a_self_signed_certificate_is_refused_unless_the_task_accepts_it() {
    let sim = Vcsim::start(&[]);
    let run = sim.execute(PASSWORD, &["--allow-http", &sim.host_port()]);
    assert_eq!(run.status(), "failed", "{}", run.json);
    assert!(run.error().contains("TLS certificate was rejected"), "{}", run.error());
    let logs = run.json["logs"].to_string();
    assert!(logs.contains("UnknownIssuer"), "{logs}");
    assert!(run.json["emitted"].as_array().unwrap().is_empty());
}

#[test]
fn a_wrong_password_fails_with_the_servers_login_fault() {
    let sim = Vcsim::start(&[]);
    let run = sim.execute(
        "not-the-password",
        &["--allow-http", &sim.host_port(), "--tls-accept-self-signed"],
    );
    assert_eq!(run.status(), "failed", "{}", run.json);
    assert!(run.error().contains("login as \"jobstack\" failed"), "{}", run.error());
    assert!(run.error().contains("InvalidLogin"), "{}", run.error());
    assert!(run.json["emitted"].as_array().unwrap().is_empty());
}

#[test]
fn http_to_a_host_that_is_not_granted_is_refused() {
    let sim = Vcsim::start(&[]);
    // Granted: another port of the same address; not the simulator's.
    let other = format!(
        "127.0.0.1:{}",
        1 + sim.host_port().rsplit(':').next().unwrap().parse::<u16>().unwrap()
    );
    for extra in
        [vec!["--tls-accept-self-signed"], vec!["--allow-http", &other, "--tls-accept-self-signed"]]
    {
        let run = sim.execute(PASSWORD, &extra);
        assert_eq!(run.status(), "failed", "{}", run.json);
        assert!(run.error().contains("request denied by the host"), "{}", run.error());
        let logs = run.json["logs"].to_string();
        assert!(logs.contains("is not granted to this execution"), "{logs}");
    }
}

#[test]
fn plain_http_endpoints_work_too() {
    let sim = Vcsim::start(&["-tls=false", "-hosts", "1", "-cluster-hosts", "1", "-vms", "1"]);
    assert!(sim.url.starts_with("http://"), "{}", sim.url);
    let run = sim.execute(PASSWORD, &["--allow-http", &sim.host_port()]);
    assert_eq!(run.status(), "finished", "{}", run.json);
    let emitted = run.json["emitted"].as_array().unwrap();
    assert_eq!(
        project(emitted, Some("host"), &HOST_FIELDS),
        project(&sim.hosts, None, &HOST_FIELDS)
    );
    assert_eq!(project(emitted, Some("vm"), &VM_FIELDS), project(&sim.vms, None, &VM_FIELDS));
}
