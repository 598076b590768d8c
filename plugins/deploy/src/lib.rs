//! jobstack plugin `deploy`: install software on the agents' machines.
//!
//! Parameters:
//!
//! ```json
//! {
//!   "source": {"artifact": "<sha256>"}  or  {"url": "https://...", "sha256": "<sha256>"},
//!   "dir": "/target",
//!   "actions": [
//!     {"action": "mkdir", "path": "opt/app"},
//!     {"action": "unpack", "path": "opt/app"},
//!     {"action": "write", "path": "etc/app.conf", "content": "port = 80\n"},
//!     {"action": "write", "path": "opt/app/app.tar.gz"},
//!     {"action": "remove", "path": "opt/old-app"}
//!   ]
//! }
//! ```
//!
//! - **Source.** An artifact from the daemon's store, which the agent downloads,
//!   verifies and shows read-only at `/artifacts/<sha256>` (the task grants it in
//!   `grants.artifacts`), or a URL fetched over HTTP(S) (the part's target is the
//!   URL's `host:port`, so the agent allows HTTP to it alone). Either way the
//!   bytes' sha256 must equal the one given, or nothing happens. The artifact is
//!   held in memory: its size is bounded by the execution's memory limit.
//! - **Actions** run in order inside `dir`, the guest path of the directory the
//!   task and the agent's operator granted. Every path (and every entry of every
//!   archive) is checked before the first write; see [`plan`] and [`paths`].
//!
//! `split` makes one part: the task targets agents (`targeting.each_agent`),
//! each of which runs it on its own machine.

pub mod paths;
pub mod plan;
pub mod stage;

use jobstack_plugin::http::{self, Url};
use jobstack_plugin::{Capability, Guest, Job, Manifest, Part};
use serde::Deserialize;
use serde_json::json;
use sha2::Digest;
use std::path::Path;

use plan::{Action, Plan};

/// Where the agent shows the task's artifacts.
pub const ARTIFACTS_DIR: &str = "/artifacts";

/// The guest path of the granted directory when the task does not say.
pub const DEFAULT_DIR: &str = "/target";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    source: Option<Source>,
    #[serde(default = "default_dir")]
    dir: String,
    actions: Vec<Action>,
}

fn default_dir() -> String {
    DEFAULT_DIR.to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    #[serde(default)]
    artifact: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
}

/// Where the bytes come from, checked.
#[derive(Debug)]
enum Origin {
    Artifact(String),
    Url(Url, String),
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Params {
    fn parse(text: &str) -> Result<(Params, Option<Origin>), String> {
        let params: Params = jobstack_plugin::from_json("parameters", text)?;
        if params.actions.is_empty() {
            return Err("parameters: `actions` is empty".to_string());
        }
        let origin = match &params.source {
            None => None,
            Some(Source { artifact: Some(sha), url: None, sha256: None }) => {
                if !is_sha256(sha) {
                    return Err(format!(
                        "source.artifact {sha:?} is not a sha256 (64 lowercase hex digits)"
                    ));
                }
                Some(Origin::Artifact(sha.clone()))
            }
            Some(Source { artifact: None, url: Some(url), sha256: Some(sha) }) => {
                if !is_sha256(sha) {
                    return Err(format!(
                        "source.sha256 {sha:?} is not a sha256 (64 lowercase hex digits)"
                    ));
                }
                Some(Origin::Url(Url::parse(url)?, sha.clone()))
            }
            Some(_) => {
                return Err("source is {\"artifact\": sha256} or {\"url\": ..., \"sha256\": ...}"
                    .to_string());
            }
        };
        if origin.is_none() && params.actions.iter().any(Action::uses_artifact) {
            return Err("an unpack, or a write without content, needs a `source`".to_string());
        }
        Ok((params, origin))
    }
}

/// The artifact's bytes, verified against the expected sha256.
fn fetch(origin: &Origin) -> Result<(Vec<u8>, String), String> {
    let (bytes, expected) = match origin {
        Origin::Artifact(sha) => {
            let path = Path::new(ARTIFACTS_DIR).join(sha);
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "artifact {sha} is not available at {} ({e}): the task must grant it (grants.artifacts)",
                    path.display()
                )
            })?;
            (bytes, sha)
        }
        Origin::Url(url, sha) => {
            let mut bytes = Vec::new();
            let head = http::request_streaming("GET", url, &[], &[], |chunk| {
                bytes.extend_from_slice(chunk);
                Ok(())
            })?;
            if head.status != 200 {
                return Err(format!(
                    "GET {}{} answered HTTP {}",
                    url.authority, url.path, head.status
                ));
            }
            (bytes, sha)
        }
    };
    let actual = hex(&sha2::Sha256::digest(&bytes));
    if &actual != expected {
        return Err(format!(
            "sha256 mismatch: expected {expected}, the {} bytes fetched hash to {actual}; nothing was changed",
            bytes.len()
        ));
    }
    Ok((bytes, actual))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Deploy;

impl Guest for Deploy {
    fn manifest() -> Manifest {
        let mut m = jobstack_plugin::manifest(
            "deploy",
            "1.0.0",
            "Software deployment: fetch a verified artifact (artifact store or URL) and apply file actions in a granted directory",
        );
        m.capabilities = vec![Capability::Http, Capability::Filesystem];
        let path = json!({"type": "string", "minLength": 1});
        m.params_schema = json!({
            "type": "object",
            "required": ["actions"],
            "additionalProperties": false,
            "properties": {
                "source": {
                    "oneOf": [
                        {"type": "object", "required": ["artifact"], "additionalProperties": false,
                         "properties": {"artifact": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}},
                        {"type": "object", "required": ["url", "sha256"], "additionalProperties": false,
                         "properties": {"url": {"type": "string", "pattern": "^https?://"},
                                        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}
                    ]
                },
                "dir": {"type": "string", "description": "guest path of the granted directory", "default": DEFAULT_DIR},
                "actions": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "oneOf": [
                            {"type": "object", "required": ["action", "path"], "additionalProperties": false,
                             "properties": {"action": {"const": "write"}, "path": path, "content": {"type": "string"}}},
                            {"type": "object", "required": ["action"], "additionalProperties": false,
                             "properties": {"action": {"const": "unpack"}, "path": {"type": "string"}}},
                            {"type": "object", "required": ["action", "path"], "additionalProperties": false,
                             "properties": {"action": {"const": "mkdir"}, "path": path}},
                            {"type": "object", "required": ["action", "path"], "additionalProperties": false,
                             "properties": {"action": {"const": "remove"}, "path": path}}
                        ]
                    }
                }
            }
        })
        .to_string();
        m
    }

    fn split(params: String) -> Result<Vec<Part>, String> {
        let (_, origin) = Params::parse(&params)?;
        let targets = match &origin {
            Some(Origin::Url(url, _)) => vec![url.host_port()],
            _ => Vec::new(),
        };
        Ok(vec![Part { label: "deploy".to_string(), targets, payload: "{}".to_string() }])
    }

    fn init(params: String) -> Result<(), String> {
        Params::parse(&params).map(|_| ())
    }

    fn execute(job: Job) -> Result<String, String> {
        let (params, origin) = Params::parse(&job.params)?;
        let base = Path::new(&params.dir);
        if !std::fs::metadata(base).is_ok_and(|m| m.is_dir()) {
            return Err(format!(
                "the directory {} is not granted to this execution (the task and the agent's operator must grant it)",
                params.dir
            ));
        }
        let total = params.actions.len() as u64 + 1;
        jobstack_plugin::host::progress(0, total);
        let artifact = origin.as_ref().map(fetch).transpose()?;
        jobstack_plugin::host::progress(1, total);
        let bytes = artifact.as_ref().map(|(b, _)| b.as_slice());
        let plan = Plan::check(base, &params.actions, bytes)
            .map_err(|e| format!("refused, nothing was changed: {e}"))?;
        let mut step = 1;
        let sha256 = artifact.as_ref().map(|(_, sha)| sha.clone());
        plan.apply(bytes, |mut record| {
            if let Some(sha256) = &sha256 {
                record["sha256"] = sha256.clone().into();
            }
            jobstack_plugin::emit(&record);
            step += 1;
            jobstack_plugin::host::progress(step, total);
        })?;
        Ok(json!({
            "sha256": artifact.as_ref().map(|(_, sha)| sha),
            "size": artifact.as_ref().map(|(b, _)| b.len()),
            "actions": plan.len(),
        })
        .to_string())
    }

    fn stage(records: Vec<String>, origin: jobstack_plugin::Origin) -> Result<Vec<String>, String> {
        let seen = stage::observations(&records, &origin.agent)?;
        Ok(seen.iter().map(jobstack_plugin::to_json).collect())
    }
}

jobstack_plugin::export!(Deploy);

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

    #[test]
    fn split_targets_the_url_host_only_for_url_sources() {
        let url = format!(
            r#"{{"source":{{"url":"http://127.0.0.1:8000/a.tgz","sha256":"{SHA}"}},"actions":[{{"action":"unpack"}}]}}"#
        );
        let parts = Deploy::split(url).unwrap();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].targets, vec!["127.0.0.1:8000".to_string()]);
        let art =
            format!(r#"{{"source":{{"artifact":"{SHA}"}},"actions":[{{"action":"unpack"}}]}}"#);
        assert!(Deploy::split(art).unwrap()[0].targets.is_empty());
    }

    #[test]
    fn bad_sources_are_refused() {
        for bad in [
            r#"{"source":{"artifact":"abc"},"actions":[{"action":"unpack"}]}"#.to_string(),
            format!(
                r#"{{"source":{{"artifact":"{SHA}","url":"http://x/"}},"actions":[{{"action":"unpack"}}]}}"#
            ),
            format!(
                r#"{{"source":{{"url":"ftp://x/","sha256":"{SHA}"}},"actions":[{{"action":"unpack"}}]}}"#
            ),
            r#"{"actions":[{"action":"unpack"}]}"#.to_string(),
            r#"{"actions":[]}"#.to_string(),
        ] {
            assert!(Params::parse(&bad).is_err(), "{bad}");
        }
        assert!(Params::parse(r#"{"actions":[{"action":"mkdir","path":"a"}]}"#).is_ok());
    }
}
