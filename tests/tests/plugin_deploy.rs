//! The deploy plugin through `jobstack exec --dir`, as an agent runs it: an
//! artifact directory shown at `/artifacts` and a granted target directory at
//! `/target`. Archives are real tar.gz files made by Debian's `tar`; the URL
//! source is served by a small static file server on loopback started here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use jobstack_e2e::{exec, part_json, plugin_wasm};
use serde_json::{Value, json};

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("run sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// `tar ARGS` in `dir`; panics unless it succeeds.
fn tar(dir: &Path, args: &[&str]) {
    let status = Command::new("tar").current_dir(dir).args(args).status().expect("run tar");
    assert!(status.success(), "tar {args:?} failed");
}

/// A workspace: `src/` (what goes into archives), `artifacts/` (shown at
/// `/artifacts`), `target/` (granted at `/target`).
struct Setup {
    root: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let root = tempfile::tempdir().unwrap();
        for d in ["src", "artifacts", "target"] {
            std::fs::create_dir(root.path().join(d)).unwrap();
        }
        Setup { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Make `name` (a tar.gz) with `tar ARGS` run in src/, put it in the
    /// artifact directory under its sha256; returns the sha256.
    fn archive(&self, name: &str, args: &[&str]) -> String {
        let file = self.path(name);
        let mut all = vec!["-czf", file.to_str().unwrap()];
        all.extend_from_slice(args);
        tar(&self.path("src"), &all);
        let sha = sha256_hex(&file);
        std::fs::copy(&file, self.path("artifacts").join(&sha)).unwrap();
        sha
    }

    fn run(&self, params: &Value, extra: &[&str]) -> jobstack_e2e::Run {
        let params = params.to_string();
        let split = exec(&plugin_wasm("deploy"), &["--params", &params]);
        assert_eq!(split.status(), "finished", "{}", split.json);
        let parts = split.json["output"].as_array().unwrap();
        assert_eq!(parts.len(), 1, "one part: the task targets agents");
        let targets: Vec<&str> =
            parts[0]["targets"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let part = part_json("deploy", &targets, &json!({}));
        let artifacts = format!("{}::/artifacts", self.path("artifacts").display());
        let target = format!("{}::/target", self.path("target").display());
        let mut args =
            vec!["--params", &params, "--part", &part, "--dir", &artifacts, "--dir", &target];
        args.extend_from_slice(extra);
        exec(&plugin_wasm("deploy"), &args)
    }

    /// Every path under target/, relative, sorted.
    fn target_listing(&self) -> Vec<String> {
        let base = self.path("target");
        let mut out = Vec::new();
        let mut stack = vec![base.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(&base).unwrap().display().to_string());
                if path.is_dir() && !path.is_symlink() {
                    stack.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

/// Fill src/ with a small software tree.
fn software(setup: &Setup) {
    let src = setup.path("src");
    std::fs::create_dir_all(src.join("app/bin")).unwrap();
    std::fs::create_dir_all(src.join("app/share/doc")).unwrap();
    std::fs::write(src.join("app/bin/run.sh"), "#!/bin/sh\necho running\n").unwrap();
    std::fs::write(src.join("app/share/doc/README"), "the app\n".repeat(100)).unwrap();
    std::fs::write(src.join("app/VERSION"), "2.1.0\n").unwrap();
}

#[test]
fn an_artifact_is_unpacked_written_and_cleaned_up_on_disk() {
    let setup = Setup::new();
    software(&setup);
    let sha = setup.archive("app.tar.gz", &["app"]);
    std::fs::create_dir_all(setup.path("target/old-app/lib")).unwrap();
    std::fs::write(setup.path("target/old-app/lib/x.so"), "old").unwrap();
    std::fs::write(setup.path("target/app.conf"), "port = 1\n").unwrap();

    let params = json!({
        "source": {"artifact": sha},
        "dir": "/target",
        "actions": [
            {"action": "mkdir", "path": "opt/var/log"},
            {"action": "unpack", "path": "opt"},
            {"action": "write", "path": "app.conf", "content": "port = 8080\n"},
            {"action": "write", "path": "packages/app.tar.gz"},
            {"action": "remove", "path": "old-app"}
        ]
    });
    let run = setup.run(&params, &[]);
    assert_eq!(run.status(), "finished", "{}", run.json);
    assert_eq!(run.json["output"]["sha256"], sha);

    // Every file of the archive, as Debian's tar lists it, is on disk with its bytes.
    let listing = Command::new("tar")
        .args(["-tzf", setup.path("app.tar.gz").to_str().unwrap()])
        .output()
        .unwrap();
    let names = String::from_utf8(listing.stdout).unwrap();
    let mut files = 0;
    for name in names.lines() {
        let installed = setup.path("target/opt").join(name);
        let original = setup.path("src").join(name);
        if original.is_dir() {
            assert!(installed.is_dir(), "{name} is not a directory");
        } else {
            assert_eq!(
                std::fs::read(&installed).unwrap(),
                std::fs::read(&original).unwrap(),
                "{name}"
            );
            files += 1;
        }
    }
    assert_eq!(files, 3);
    assert_eq!(std::fs::read_to_string(setup.path("target/app.conf")).unwrap(), "port = 8080\n");
    assert_eq!(
        std::fs::read(setup.path("target/packages/app.tar.gz")).unwrap(),
        std::fs::read(setup.path("app.tar.gz")).unwrap()
    );
    assert!(setup.path("target/opt/var/log").is_dir());
    assert!(!setup.path("target/old-app").exists());
    // Atomic writes leave no temporary file behind.
    assert!(
        setup.target_listing().iter().all(|p| !p.contains(".tmp")),
        "{:?}",
        setup.target_listing()
    );

    let emitted = run.json["emitted"].as_array().unwrap();
    assert_eq!(emitted.len(), 5);
    // Each record names the artifact it applied (what the inventory keeps).
    let mut unpack = emitted[1].clone();
    let sha256 = unpack.as_object_mut().unwrap().remove("sha256").expect("the artifact's sha256");
    assert_eq!(unpack, json!({"action": "unpack", "path": "opt", "files": 3, "dirs": 4}));
    assert_eq!(sha256.as_str().unwrap().len(), 64);
    assert_eq!(emitted[4]["removed"], true);
}

/// Serve `body` at any path on a loopback port, for `requests` requests.
fn serve_file(body: Vec<u8>, requests: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    port
}

#[test]
fn a_url_source_is_fetched_from_the_granted_host_and_verified() {
    let setup = Setup::new();
    software(&setup);
    let sha = setup.archive("app.tar.gz", &["app"]);
    let port = serve_file(std::fs::read(setup.path("app.tar.gz")).unwrap(), 2);
    let host = format!("127.0.0.1:{port}");
    let params = json!({
        "source": {"url": format!("http://{host}/files/app.tar.gz"), "sha256": sha},
        "actions": [{"action": "unpack"}]
    });

    // Without the HTTP grant the fetch is refused and nothing is written.
    let refused = setup.run(&params, &[]);
    assert_eq!(refused.status(), "failed", "{}", refused.json);
    assert!(refused.error().contains("request denied by the host"), "{}", refused.error());
    assert!(setup.target_listing().is_empty());

    let run = setup.run(&params, &["--allow-http", &host]);
    assert_eq!(run.status(), "finished", "{}", run.json);
    assert_eq!(
        std::fs::read(setup.path("target/app/VERSION")).unwrap(),
        std::fs::read(setup.path("src/app/VERSION")).unwrap()
    );
    assert_eq!(
        run.json["output"]["size"],
        std::fs::metadata(setup.path("app.tar.gz")).unwrap().len()
    );
}

#[test]
fn a_sha256_mismatch_is_refused_and_nothing_is_written() {
    let setup = Setup::new();
    software(&setup);
    let sha = setup.archive("app.tar.gz", &["app"]);
    // The artifact directory holds other bytes under that name.
    std::fs::write(setup.path("artifacts").join(&sha), b"tampered").unwrap();
    let params = json!({
        "source": {"artifact": sha},
        "actions": [{"action": "mkdir", "path": "first"}, {"action": "unpack"}]
    });
    let run = setup.run(&params, &[]);
    assert_eq!(run.status(), "failed", "{}", run.json);
    assert!(run.error().contains("sha256 mismatch"), "{}", run.error());
    assert!(setup.target_listing().is_empty());

    // Same over HTTP: the server sends bytes whose hash is not the one asked for.
    let port = serve_file(b"not the archive".to_vec(), 1);
    let host = format!("127.0.0.1:{port}");
    let params = json!({
        "source": {"url": format!("http://{host}/app.tar.gz"), "sha256": sha},
        "actions": [{"action": "unpack"}]
    });
    let run = setup.run(&params, &["--allow-http", &host]);
    assert_eq!(run.status(), "failed", "{}", run.json);
    assert!(run.error().contains("sha256 mismatch"), "{}", run.error());
    assert!(setup.target_listing().is_empty());
}

#[test]
fn an_archive_entry_escaping_the_directory_is_refused_before_anything_is_written() {
    let setup = Setup::new();
    software(&setup);
    std::fs::write(setup.path("outside.txt"), "outside").unwrap();
    // `-P` keeps the `../` that tar would otherwise strip, as a hostile archive would.
    let sha = setup.archive("evil.tar.gz", &["-P", "app", "../outside.txt"]);
    let params = json!({
        "source": {"artifact": sha},
        "actions": [
            {"action": "mkdir", "path": "before"},
            {"action": "write", "path": "conf", "content": "x"},
            {"action": "unpack", "path": "opt"}
        ]
    });
    let run = setup.run(&params, &[]);
    assert_eq!(run.status(), "failed", "{}", run.json);
    assert!(run.error().contains("nothing was changed"), "{}", run.error());
    assert!(run.error().contains("../outside.txt"), "{}", run.error());
    assert!(setup.target_listing().is_empty(), "{:?}", setup.target_listing());
    assert!(!setup.path("target/outside.txt").exists());
}

#[test]
fn links_in_archives_and_escaping_action_paths_are_refused_with_nothing_written() {
    let setup = Setup::new();
    std::os::unix::fs::symlink("/etc", setup.path("src/etc-link")).unwrap();
    std::fs::write(setup.path("src/file"), "x").unwrap();
    let sha = setup.archive("links.tar.gz", &["file", "etc-link"]);
    let run =
        setup.run(&json!({"source": {"artifact": sha}, "actions": [{"action": "unpack"}]}), &[]);
    assert_eq!(run.status(), "failed", "{}", run.json);
    assert!(run.error().contains("symbolic link"), "{}", run.error());

    // A link already in the target directory is never followed.
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), setup.path("target/escape")).unwrap();
    for (path, why) in [
        ("/etc/passwd", "absolute"),
        ("../x", "escapes"),
        ("a/../../x", "escapes"),
        ("escape/planted", "symbolic link"),
    ] {
        let params = json!({"actions": [
            {"action": "mkdir", "path": "first"},
            {"action": "write", "path": path, "content": "owned"}
        ]});
        let run = setup.run(&params, &[]);
        assert_eq!(run.status(), "failed", "{path}: {}", run.json);
        assert!(run.error().contains(why), "{path}: {}", run.error());
        assert_eq!(setup.target_listing(), vec!["escape".to_string()], "{path}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0, "{path}");
    }
}

#[test]
fn a_directory_that_is_not_granted_fails_clearly() {
    let setup = Setup::new();
    let params = json!({"dir": "/elsewhere", "actions": [{"action": "mkdir", "path": "a"}]});
    let run = setup.run(&params, &[]);
    assert_eq!(run.status(), "failed", "{}", run.json);
    assert!(run.error().contains("/elsewhere is not granted"), "{}", run.error());
}
