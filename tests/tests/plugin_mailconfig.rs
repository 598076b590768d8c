//! mailconfig through `jobstack exec` on a real directory, checked with the
//! mail servers' own tools: Dovecot's `doveadm pw -t` verifies every stored
//! password (Debian's dovecot-core) and Postfix's `postmap -q KEY texthash:FILE`
//! looks every address up in the map (Debian's postfix).
//!
//! Also through a real `jobstack serve` and `jobstack agent`: the agent's
//! operator offers the directory (`--dir mail=PATH:rw`), the task asks for it
//! (`grants.dirs`) and carries the passwords as its secrets.

use jobstack_e2e::agent::AgentProcess;
use jobstack_e2e::daemon::Daemon;
use jobstack_e2e::{Run, exec, plugin_wasm, wait_until};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const PASSWD_BEFORE: &str = "# managed by jobstack and by hand\npostmaster@example.org:{PLAIN}pm-secret:8:8::/var/mail/postmaster::\n\n";
const MAP_BEFORE: &str =
    "# virtual mailboxes\npostmaster@example.org   example.org/postmaster/\n  # indented comment\n";

/// A granted directory with hand-made files in it.
fn mail_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("passwd"), PASSWD_BEFORE).unwrap();
    std::fs::write(dir.path().join("vmailbox"), MAP_BEFORE).unwrap();
    dir
}

/// Split, then execute the one part with `passwords` as secrets and `dir`
/// granted at /mail. A split that refuses the params is returned as it is: the
/// daemon would refuse the run the same way, before any execution.
fn run(dir: Option<&Path>, params: serde_json::Value, passwords: serde_json::Value) -> Run {
    let wasm = plugin_wasm("mailconfig");
    let params = params.to_string();
    let split = exec(&wasm, &["--params", &params]);
    if split.status() != "finished" {
        return split;
    }
    let part = split.json["output"][0].to_string();
    let secrets = serde_json::json!({ "passwords": passwords }).to_string();
    let grant = dir.map(|d| format!("{}::/mail", d.display()));
    let mut args = vec!["--params", &params, "--part", &part, "--secrets", &secrets];
    if let Some(g) = &grant {
        args.extend(["--dir", g]);
    }
    exec(&wasm, &args)
}

/// The stored password field of `address` in the passwd-file.
fn stored_hash(dir: &Path, address: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("passwd")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{address}:")))
        .map(|rest| rest.split(':').next().unwrap().to_string())
}

/// `doveadm pw -t HASH -p PASSWORD`: whether Dovecot verifies it.
fn dovecot_verifies(hash: &str, password: &str) -> bool {
    let out = Command::new("doveadm")
        .args(["pw", "-t", hash, "-p", password])
        .output()
        .expect("run doveadm: install Debian's dovecot-core (scripts/install-deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.success(), stdout.contains("(verified)"), "doveadm: {out:?}");
    out.status.success()
}

/// `postmap -q KEY texthash:FILE`, with an empty main.cf of its own (the
/// package is installed unconfigured): the value, or `None` when not found.
fn postmap_lookup(dir: &Path, key: &str) -> Option<String> {
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(conf.path().join("main.cf"), "").unwrap();
    let map = format!("texthash:{}", dir.join("vmailbox").display());
    let out = Command::new(postmap())
        .arg("-c")
        .arg(conf.path())
        .args(["-q", key, &map])
        .output()
        .expect("run postmap: install Debian's postfix (scripts/install-deps.sh)");
    match out.status.code() {
        Some(0) => Some(String::from_utf8(out.stdout).unwrap().trim().to_string()),
        Some(1) => None,
        _ => panic!("postmap failed: {out:?}"),
    }
}

fn postmap() -> &'static str {
    if Path::new("/usr/sbin/postmap").exists() { "/usr/sbin/postmap" } else { "postmap" }
}

#[test]
fn added_accounts_verify_with_doveadm_and_postmap() {
    let dir = mail_dir();
    let alice_pw = "correct horse: battery staple ✓";
    let bob_pw = "b0b's p@ss";
    let r = run(
        Some(dir.path()),
        serde_json::json!({"actions": [
            {"op": "add", "address": "Alice@Example.org"},
            {"op": "add", "address": "bob@example.org", "mailbox": "example.org/robert/"},
        ]}),
        serde_json::json!({"alice@example.org": alice_pw, "bob@example.org": bob_pw}),
    );
    assert_eq!(r.status(), "finished", "{:?}", r.json);
    assert_eq!(r.json["output"]["written"], serde_json::json!(["passwd", "vmailbox"]));
    assert_eq!(r.json["emitted"].as_array().unwrap().len(), 2);

    for (address, password) in [("alice@example.org", alice_pw), ("bob@example.org", bob_pw)] {
        let hash = stored_hash(dir.path(), address).expect("a passwd-file line");
        assert!(hash.starts_with("{SHA512-CRYPT}$6$"), "{hash}");
        assert!(dovecot_verifies(&hash, password), "{address}");
        assert!(!dovecot_verifies(&hash, "wrong password"), "{address}");
    }
    assert_eq!(
        postmap_lookup(dir.path(), "alice@example.org").as_deref(),
        Some("example.org/alice/")
    );
    assert_eq!(
        postmap_lookup(dir.path(), "bob@example.org").as_deref(),
        Some("example.org/robert/")
    );
    assert_eq!(
        postmap_lookup(dir.path(), "postmaster@example.org").as_deref(),
        Some("example.org/postmaster/")
    );
    // The hand-made lines are still there, byte for byte, and first.
    let passwd = std::fs::read_to_string(dir.path().join("passwd")).unwrap();
    assert!(passwd.starts_with(PASSWD_BEFORE), "{passwd}");
    let map = std::fs::read_to_string(dir.path().join("vmailbox")).unwrap();
    assert!(map.starts_with(MAP_BEFORE), "{map}");
    assert!(dovecot_verifies("{PLAIN}pm-secret", "pm-secret"));
}

#[test]
fn change_password_then_remove() {
    let dir = mail_dir();
    let add = run(
        Some(dir.path()),
        serde_json::json!({"actions": [
            {"op": "add", "address": "alice@example.org"},
            {"op": "add", "address": "bob@example.org"},
        ]}),
        serde_json::json!({"alice@example.org": "old-pw", "bob@example.org": "bob-pw"}),
    );
    assert_eq!(add.status(), "finished", "{:?}", add.json);
    let bob_hash = stored_hash(dir.path(), "bob@example.org").unwrap();

    let change = run(
        Some(dir.path()),
        serde_json::json!({"actions": [
            {"op": "change_password", "address": "alice@example.org"},
            {"op": "change_password", "address": "postmaster@example.org"},
        ]}),
        serde_json::json!({"alice@example.org": "new-pw", "postmaster@example.org": "pm-new"}),
    );
    assert_eq!(change.status(), "finished", "{:?}", change.json);
    assert_eq!(change.json["output"]["written"], serde_json::json!(["passwd"]));
    let alice = stored_hash(dir.path(), "alice@example.org").unwrap();
    assert!(dovecot_verifies(&alice, "new-pw"));
    assert!(!dovecot_verifies(&alice, "old-pw"));
    // The postmaster line keeps its other fields.
    let passwd = std::fs::read_to_string(dir.path().join("passwd")).unwrap();
    let pm = passwd.lines().find(|l| l.starts_with("postmaster@")).unwrap();
    assert!(pm.ends_with(":8:8::/var/mail/postmaster::"), "{pm}");
    assert!(dovecot_verifies(
        &stored_hash(dir.path(), "postmaster@example.org").unwrap(),
        "pm-new"
    ));

    let remove = run(
        Some(dir.path()),
        serde_json::json!({"actions": [{"op": "remove", "address": "alice@example.org"}]}),
        serde_json::json!({}),
    );
    assert_eq!(remove.status(), "finished", "{:?}", remove.json);
    assert_eq!(stored_hash(dir.path(), "alice@example.org"), None);
    assert_eq!(postmap_lookup(dir.path(), "alice@example.org"), None);
    // Bob is untouched.
    assert_eq!(stored_hash(dir.path(), "bob@example.org").unwrap(), bob_hash);
    assert!(dovecot_verifies(&bob_hash, "bob-pw"));
    assert_eq!(postmap_lookup(dir.path(), "bob@example.org").as_deref(), Some("example.org/bob/"));
}

#[test]
fn list_reports_accounts_without_hashes() {
    let dir = mail_dir();
    let r = run(
        Some(dir.path()),
        serde_json::json!({"actions": [
            {"op": "add", "address": "carol@example.org"},
            {"op": "list"},
        ]}),
        serde_json::json!({"carol@example.org": "c"}),
    );
    assert_eq!(r.status(), "finished", "{:?}", r.json);
    let listed = &r.json["output"]["actions"][1]["accounts"];
    assert_eq!(
        listed,
        &serde_json::json!([
            {"address": "postmaster@example.org", "mailbox": "example.org/postmaster/", "password_scheme": "PLAIN"},
            {"address": "carol@example.org", "mailbox": "example.org/carol/", "password_scheme": "SHA512-CRYPT"},
        ])
    );
    let text = r.json.to_string();
    assert!(!text.contains("$6$"), "a hash leaked: {text}");
    assert!(!text.contains("pm-secret"), "a password leaked: {text}");
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let dir = mail_dir();
    let snapshot = || {
        let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        entries.sort();
        entries
    };
    let before = snapshot();
    for (actions, passwords, needle) in [
        // The first action alone would be fine; the second cannot apply.
        (
            serde_json::json!([{"op": "add", "address": "dave@example.org"}, {"op": "remove", "address": "ghost@example.org"}]),
            serde_json::json!({"dave@example.org": "d"}),
            "action 2: ghost@example.org does not exist",
        ),
        (
            serde_json::json!([{"op": "add", "address": "postmaster@example.org"}]),
            serde_json::json!({"postmaster@example.org": "x"}),
            "already exists",
        ),
        (
            serde_json::json!([{"op": "add", "address": "erin@example.org"}]),
            serde_json::json!({}),
            "no password for erin@example.org",
        ),
        (
            serde_json::json!([{"op": "add", "address": "frank@example.org", "mailbox": "../../etc/"}]),
            serde_json::json!({"frank@example.org": "f"}),
            "mailbox",
        ),
    ] {
        let r = run(Some(dir.path()), serde_json::json!({ "actions": actions }), passwords);
        assert_eq!(r.status(), "failed", "{actions}: {:?}", r.json);
        assert!(r.error().contains(needle), "{actions}: {}", r.error());
        assert_eq!(snapshot(), before, "{actions}: the directory changed");
    }
    // An address the schema refuses is refused before anything runs, by
    // `exec` as by `task create`.
    let params =
        serde_json::json!({"actions": [{"op": "add", "address": "bad address@example.org"}]});
    let refused = std::process::Command::new(jobstack_e2e::jobstack_bin())
        .args([
            "exec",
            plugin_wasm("mailconfig").to_str().unwrap(),
            "--params",
            &params.to_string(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("do not match the schema of plugin mailconfig"), "{stderr}");
    assert_eq!(snapshot(), before, "the directory changed");
    // A file name leaving the directory is refused by split already.
    let params = serde_json::json!({"passwd_file": "../passwd", "actions": [{"op": "list"}]});
    let split = exec(&plugin_wasm("mailconfig"), &["--params", &params.to_string()]);
    assert_eq!(split.status(), "failed", "{:?}", split.json);
    assert!(split.error().contains("passwd_file"), "{}", split.error());
}

#[test]
fn without_the_directory_granted_it_fails_naming_it() {
    let r = run(None, serde_json::json!({"actions": [{"op": "list"}]}), serde_json::json!({}));
    assert_eq!(r.status(), "failed", "{:?}", r.json);
    assert!(r.error().contains("directory /mail is not available"), "{}", r.error());
}

#[test]
fn accounts_through_daemon_and_agent_with_a_granted_directory() {
    let dir = mail_dir();
    let daemon = Daemon::builder().arg("--no-local-agent").start();
    daemon.upload_plugin(&plugin_wasm("mailconfig"));
    let state = tempfile::tempdir().unwrap();
    let offer = format!("mail={}:rw", dir.path().display());
    let _agent = AgentProcess::start(&daemon.url, "mailhost", state.path(), &["--dir", &offer]);
    let task = serde_json::json!({
        "task": {
            "name": "accounts",
            "plugin": "mailconfig",
            "params": {"actions": [
                {"op": "add", "address": "gina@example.org"},
                {"op": "change_password", "address": "postmaster@example.org"},
            ]},
            "frequency": {"kind": "manual"},
            "timeout_ms": 30000,
            "grants": {"dirs": ["mail"]},
        },
        "secrets": {"passwords": {"gina@example.org": "g1na", "postmaster@example.org": "pm2"}},
    });
    daemon.post("/tasks", &task).expect_ok("create task");
    let run = daemon.post("/tasks/accounts/run", &serde_json::json!({})).expect_ok("force-run");
    let run_id = run["id"].as_i64().unwrap();
    wait_until("the run to finish", Duration::from_secs(120), || {
        let state = daemon.get(&format!("/runs/{run_id}")).expect_ok("show run")["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(state != "failed" && state != "canceled", "run ended {state}");
        (state == "finished").then_some(())
    });
    let results = daemon.get(&format!("/runs/{run_id}/results")).expect_ok("results");
    let applied: Vec<&serde_json::Value> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["applied"] == serde_json::json!(true))
        .collect();
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0]["agent"], "mailhost");
    assert_eq!(applied[0]["output"]["written"], serde_json::json!(["passwd", "vmailbox"]));
    let gina = stored_hash(dir.path(), "gina@example.org").unwrap();
    assert!(dovecot_verifies(&gina, "g1na"));
    let pm = stored_hash(dir.path(), "postmaster@example.org").unwrap();
    assert!(dovecot_verifies(&pm, "pm2"));
    assert_eq!(
        postmap_lookup(dir.path(), "gina@example.org").as_deref(),
        Some("example.org/gina/")
    );
    // The secrets stay out of what the daemon shows.
    assert!(!results.to_string().contains("g1na"));
    // The accounts are in the inventory, on the agent's server, without any
    // password or hash.
    let accounts = wait_until("the accounts in the inventory", Duration::from_secs(60), || {
        let page = daemon.get("/assets?kind=mail_account").expect_ok("assets");
        let found = page["assets"].as_array().unwrap().clone();
        (found.len() == 2).then_some(found)
    });
    let mut names: Vec<&str> = accounts.iter().map(|a| a["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["gina@example.org", "postmaster@example.org"]);
    assert_eq!(
        accounts[0]["keys"]["account"][0].as_str().unwrap().split('/').next(),
        Some("mailhost")
    );
    let everything = daemon.get("/assets?limit=1000").expect_ok("assets").to_string();
    assert!(!everything.contains("g1na") && !everything.contains("$6$"), "{everything}");
}
