//! The flags of `task create` and `task edit`, and how they map onto a
//! [`TaskInput`]: create starts from `--file` or from the defaults of
//! [`TaskSpec::new`], edit from the stored task; either way only the flags
//! given change anything.
//!
//! Lists (`--agents`, `--dir`) replace the stored list when given; an empty
//! value (`--agents ''`) clears it. Boolean settings take an optional value
//! (`--each-agent`, `--each-agent=false`) so an edit can turn them off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use jobstack::protocol::TaskInput;
use jobstack::scheduler::{ExecMode, Frequency, Priority, TaskSpec, Trigger, TriggerCondition};

/// Execution mode as a flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeFlag {
    /// Many executions share a few threads (1:N).
    Pooled,
    /// One OS thread per execution (1:1), for heavy work.
    Dedicated,
}

impl From<ModeFlag> for ExecMode {
    fn from(mode: ModeFlag) -> Self {
        match mode {
            ModeFlag::Pooled => ExecMode::Pooled,
            ModeFlag::Dedicated => ExecMode::Dedicated,
        }
    }
}

/// The definition flags shared by `task create` and `task edit`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TaskFlags {
    /// The whole definition as TaskInput JSON ({"task": {...}, "secrets": {...}});
    /// other flags change it.
    #[arg(long, value_name = "task.json")]
    pub file: Option<PathBuf>,
    /// The task's name (on edit: rename).
    #[arg(long)]
    pub name: Option<String>,
    /// The plugin (task type) name.
    #[arg(long)]
    pub plugin: Option<String>,
    /// Parameters: JSON, or @FILE to read them from a file (@- for stdin).
    #[arg(long, value_name = "JSON|@FILE")]
    pub params: Option<String>,
    /// Secrets (a JSON object, write-only): JSON or @FILE.
    #[arg(long, value_name = "JSON|@FILE")]
    pub secrets: Option<String>,
    /// Run every interval, the first run at once (e.g. 1h, 30m).
    #[arg(long, value_parser = humantime::parse_duration, group = "frequency")]
    pub every: Option<Duration>,
    /// Run on a cron schedule (5 fields, UTC), e.g. "0 3 * * *".
    #[arg(long, value_name = "EXPR", group = "frequency")]
    pub cron: Option<String>,
    /// Run once, at once.
    #[arg(long, group = "frequency")]
    pub once: bool,
    /// Run only when forced (`jobstack task run`).
    #[arg(long, group = "frequency")]
    pub manual: bool,
    /// low, normal, high, or a number (lower first, between high and normal).
    #[arg(long)]
    pub priority: Option<Priority>,
    /// Only these agents may take the parts (comma-separated; '' for automatic
    /// targeting by network).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub agents: Option<Vec<String>>,
    /// Give every listed agent its own copy of every part.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub each_agent: Option<bool>,
    /// The longest one part may run (e.g. 30s, 5m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
    /// Attempts beyond the first.
    #[arg(long)]
    pub retries: Option<u32>,
    /// The wait before the first retry, doubling after each (e.g. 5s; 0s for none).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retry_backoff: Option<Duration>,
    /// What a lease adds to the timeout (e.g. 30s) [default: the daemon's --lease-grace].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lease_grace: Option<Duration>,
    /// Execution mode.
    #[arg(long, value_enum)]
    pub mode: Option<ModeFlag>,
    /// Start a new run while the previous one is still active.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_overlap: Option<bool>,
    /// Grant a directory the agent's operator configured, by name (repeat;
    /// '' for none).
    #[arg(long = "dir", value_name = "NAME")]
    pub dirs: Option<Vec<String>>,
    /// Accept self-signed TLS certificates from the part's hosts.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_accept_self_signed: Option<bool>,
    /// Grant an artifact of the daemon's store, by sha256 (repeat; '' for none).
    #[arg(long = "artifact", value_name = "SHA256")]
    pub artifacts: Option<Vec<String>>,
    /// Take the targets from the inventory: a selector as JSON or @FILE, e.g.
    /// '{"into": "devices", "kind": "host", "attr": ["tcp_open[]=161"]}'
    /// ('' for none).
    #[arg(long, value_name = "JSON|@FILE")]
    pub select: Option<String>,
    /// Start a run when a run of TASK ends: TASK, or TASK:finished|failed|any
    /// ('' for none).
    #[arg(long, value_name = "TASK[:ON]")]
    pub after: Option<String>,
}

impl TaskFlags {
    /// The input of `task create`: `--file` or defaults, then the flags.
    pub fn create_input(&self) -> anyhow::Result<TaskInput> {
        let mut input = match &self.file {
            Some(path) => read_input(path)?,
            None => {
                let (Some(name), Some(plugin)) = (&self.name, &self.plugin) else {
                    bail!("a new task needs --name and --plugin (or --file task.json)");
                };
                TaskInput { task: TaskSpec::new(name, plugin), secrets: None }
            }
        };
        self.apply(&mut input)?;
        Ok(input)
    }

    /// The input of `task edit`: the stored definition (or `--file`), then the
    /// flags. Secrets absent keep the stored ones.
    pub fn edit_input(&self, stored: TaskSpec) -> anyhow::Result<TaskInput> {
        let mut input = match &self.file {
            Some(path) => read_input(path)?,
            None => TaskInput { task: stored, secrets: None },
        };
        self.apply(&mut input)?;
        Ok(input)
    }

    /// Whether any flag besides `--file` is given (an edit with nothing to
    /// change is refused).
    pub fn changes_something(&self) -> bool {
        let Self {
            file,
            name,
            plugin,
            params,
            secrets,
            every,
            cron,
            once,
            manual,
            priority,
            agents,
            each_agent,
            timeout,
            retries,
            retry_backoff,
            lease_grace,
            mode,
            allow_overlap,
            dirs,
            tls_accept_self_signed,
            artifacts,
            select,
            after,
        } = self;
        file.is_some()
            || name.is_some()
            || plugin.is_some()
            || params.is_some()
            || secrets.is_some()
            || every.is_some()
            || cron.is_some()
            || *once
            || *manual
            || priority.is_some()
            || agents.is_some()
            || each_agent.is_some()
            || timeout.is_some()
            || retries.is_some()
            || retry_backoff.is_some()
            || lease_grace.is_some()
            || mode.is_some()
            || allow_overlap.is_some()
            || dirs.is_some()
            || tls_accept_self_signed.is_some()
            || artifacts.is_some()
            || select.is_some()
            || after.is_some()
    }

    /// Change `input` by every flag given.
    fn apply(&self, input: &mut TaskInput) -> anyhow::Result<()> {
        let spec = &mut input.task;
        if let Some(name) = &self.name {
            spec.name = name.clone();
        }
        if let Some(plugin) = &self.plugin {
            spec.plugin = plugin.clone();
        }
        if let Some(params) = &self.params {
            spec.params = json_arg("--params", params)?;
        }
        if let Some(secrets) = &self.secrets {
            let secrets = json_arg("--secrets", secrets)?;
            if !secrets.is_object() {
                bail!("--secrets must be a JSON object, e.g. '{{\"community\": \"public\"}}'");
            }
            input.secrets = Some(secrets);
        }
        if let Some(frequency) = self.frequency()? {
            spec.frequency = frequency;
        }
        if let Some(priority) = self.priority {
            spec.priority = priority;
        }
        if let Some(agents) = &self.agents {
            spec.targeting.agents = non_empty(agents);
        }
        if let Some(each) = self.each_agent {
            spec.targeting.each_agent = each;
        }
        if let Some(timeout) = self.timeout {
            let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            if ms == 0 {
                bail!("--timeout must be at least 1ms");
            }
            spec.timeout_ms = ms;
        }
        if let Some(retries) = self.retries {
            spec.retries = retries;
        }
        if let Some(backoff) = self.retry_backoff {
            spec.retry_backoff_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
        }
        if let Some(grace) = self.lease_grace {
            spec.lease_grace_ms = Some(u64::try_from(grace.as_millis()).unwrap_or(u64::MAX));
        }
        if let Some(mode) = self.mode {
            spec.mode = mode.into();
        }
        if let Some(overlap) = self.allow_overlap {
            spec.allow_overlap = overlap;
        }
        if let Some(dirs) = &self.dirs {
            spec.grants.dirs = non_empty(dirs);
        }
        if let Some(accept) = self.tls_accept_self_signed {
            spec.grants.tls_accept_self_signed = accept;
        }
        if let Some(artifacts) = &self.artifacts {
            spec.grants.artifacts = non_empty(artifacts);
        }
        if let Some(select) = &self.select {
            spec.select = match select.trim() {
                "" => None,
                text => Some(
                    serde_json::from_value(json_arg("--select", text)?)
                        .context("--select is not a selector")?,
                ),
            };
        }
        if let Some(after) = &self.after {
            spec.after = trigger(after)?;
        }
        Ok(())
    }

    /// The frequency flag given, if any (clap allows at most one).
    fn frequency(&self) -> anyhow::Result<Option<Frequency>> {
        if let Some(every) = self.every {
            let seconds = every.as_secs();
            if seconds == 0 || every.subsec_nanos() != 0 {
                bail!("--every takes whole seconds, at least 1s (e.g. 30s, 1h)");
            }
            return Ok(Some(Frequency::Every { seconds }));
        }
        if let Some(expr) = &self.cron {
            return Ok(Some(Frequency::Cron { expr: expr.clone() }));
        }
        if self.once {
            return Ok(Some(Frequency::Once { at: None }));
        }
        if self.manual {
            return Ok(Some(Frequency::Manual));
        }
        Ok(None)
    }
}

/// `--after TASK[:ON]` as a trigger; `None` for ''.
fn trigger(value: &str) -> anyhow::Result<Option<Trigger>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let (task, on) = match value.rsplit_once(':') {
        Some((task, on)) => (task, on),
        None => (value, "finished"),
    };
    let on: TriggerCondition = serde_json::from_value(serde_json::json!(on)).map_err(|_| {
        anyhow::anyhow!("--after {value:?}: the condition is finished, failed or any")
    })?;
    Ok(Some(Trigger { task: task.to_string(), on }))
}

/// Names without the empty ones (`--agents ''` clears the list).
fn non_empty(values: &[String]) -> Vec<String> {
    values.iter().map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect()
}

/// A JSON flag value: inline JSON, `@FILE`, or `@-` for stdin.
pub fn json_arg(flag: &str, value: &str) -> anyhow::Result<serde_json::Value> {
    let (text, source) = match value.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .with_context(|| format!("{flag}: cannot read stdin"))?;
            (text, "stdin".to_string())
        }
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("{flag}: cannot read {path}"))?,
            path.to_string(),
        ),
        None => (value.to_string(), "the command line".to_string()),
    };
    serde_json::from_str(&text).with_context(|| format!("{flag}: invalid JSON in {source}"))
}

/// Read a TaskInput file.
fn read_input(path: &Path) -> anyhow::Result<TaskInput> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a task definition ({{\"task\": {{\"name\", \"plugin\", \"params\", ...}}, \"secrets\": {{...}}}})",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        flags: TaskFlags,
    }

    fn flags(args: &[&str]) -> TaskFlags {
        let mut all = vec!["cmd"];
        all.extend_from_slice(args);
        Cmd::try_parse_from(all).expect("flags parse").flags
    }

    #[test]
    fn create_maps_every_flag() {
        let input = flags(&[
            "--name",
            "scan",
            "--plugin",
            "netscan",
            "--params",
            r#"{"range":"10.0.0.0/24"}"#,
            "--secrets",
            r#"{"community":"public"}"#,
            "--every",
            "1h",
            "--priority",
            "7",
            "--agents",
            "a,b",
            "--each-agent",
            "--timeout",
            "5m",
            "--retries",
            "4",
            "--retry-backoff",
            "0s",
            "--lease-grace",
            "1m",
            "--mode",
            "dedicated",
            "--dir",
            "deploy",
            "--dir",
            "logs",
            "--allow-overlap",
            "--tls-accept-self-signed",
            "--artifact",
            &"ab".repeat(32),
        ])
        .create_input()
        .unwrap();
        let spec = &input.task;
        assert_eq!(spec.name, "scan");
        assert_eq!(spec.plugin, "netscan");
        assert_eq!(spec.params, json!({"range": "10.0.0.0/24"}));
        assert_eq!(input.secrets, Some(json!({"community": "public"})));
        assert_eq!(spec.frequency, Frequency::Every { seconds: 3600 });
        assert_eq!(spec.priority, Priority::Custom(7));
        assert_eq!(spec.targeting.agents, ["a", "b"]);
        assert!(spec.targeting.each_agent);
        assert_eq!(spec.timeout_ms, 300_000);
        assert_eq!(spec.retries, 4);
        assert_eq!((spec.retry_backoff_ms, spec.lease_grace_ms), (0, Some(60_000)));
        assert_eq!(spec.mode, ExecMode::Dedicated);
        assert_eq!(spec.grants.dirs, ["deploy", "logs"]);
        assert!(spec.allow_overlap);
        assert!(spec.grants.tls_accept_self_signed);
        assert_eq!(spec.grants.artifacts, ["ab".repeat(32)]);
    }

    #[test]
    fn create_defaults_match_the_daemons() {
        let input = flags(&["--name", "t", "--plugin", "p"]).create_input().unwrap();
        assert_eq!(input.task, TaskSpec::new("t", "p"));
        assert_eq!(input.secrets, None);
    }

    #[test]
    fn create_needs_name_and_plugin() {
        let e = flags(&["--name", "t"]).create_input().unwrap_err();
        assert!(e.to_string().contains("--name and --plugin"), "{e}");
    }

    #[test]
    fn frequencies() {
        let freq = |args: &[&str]| {
            let mut all = vec!["--name", "t", "--plugin", "p"];
            all.extend_from_slice(args);
            flags(&all).create_input().unwrap().task.frequency
        };
        assert_eq!(freq(&["--manual"]), Frequency::Manual);
        assert_eq!(freq(&["--once"]), Frequency::Once { at: None });
        assert_eq!(freq(&["--cron", "0 3 * * *"]), Frequency::Cron { expr: "0 3 * * *".into() });
        assert_eq!(freq(&["--every", "90s"]), Frequency::Every { seconds: 90 });
        let e = flags(&["--name", "t", "--plugin", "p", "--every", "1500ms"])
            .create_input()
            .unwrap_err();
        assert!(e.to_string().contains("whole seconds"), "{e}");
        // Two frequencies at once are refused by the parser.
        assert!(Cmd::try_parse_from(["cmd", "--manual", "--every", "1h"]).is_err());
    }

    #[test]
    fn edit_changes_only_what_is_given() {
        let mut stored = TaskSpec::new("scan", "netscan");
        stored.params = json!({"range": "10.0.0.0/24"});
        stored.targeting.agents = vec!["a".into()];
        stored.targeting.each_agent = true;
        stored.grants.dirs = vec!["deploy".into()];
        stored.frequency = Frequency::Cron { expr: "0 3 * * *".into() };
        let f = flags(&["--retries", "0", "--each-agent=false", "--dir", ""]);
        assert!(f.changes_something());
        let input = f.edit_input(stored.clone()).unwrap();
        let mut expected = stored;
        expected.retries = 0;
        expected.targeting.each_agent = false;
        expected.grants.dirs = Vec::new();
        assert_eq!(input.task, expected);
        assert_eq!(input.secrets, None, "absent secrets keep the stored ones");
        assert!(!flags(&[]).changes_something());
    }

    #[test]
    fn json_from_a_file_and_file_input() {
        let dir = tempfile::tempdir().unwrap();
        let params = dir.path().join("params.json");
        std::fs::write(&params, r#"{"name": "world", "count": 2}"#).unwrap();
        let input = flags(&[
            "--name",
            "t",
            "--plugin",
            "hello",
            "--params",
            &format!("@{}", params.display()),
        ])
        .create_input()
        .unwrap();
        assert_eq!(input.task.params, json!({"name": "world", "count": 2}));

        let file = dir.path().join("task.json");
        std::fs::write(
            &file,
            r#"{"task": {"name": "from-file", "plugin": "hello", "params": {"name": "x"}}, "secrets": {"k": "v"}}"#,
        )
        .unwrap();
        let input = flags(&["--file", file.to_str().unwrap(), "--priority", "high"])
            .create_input()
            .unwrap();
        assert_eq!(input.task.name, "from-file");
        assert_eq!(input.task.priority, Priority::High);
        assert_eq!(input.secrets, Some(json!({"k": "v"})));
    }

    #[test]
    fn bad_json_and_non_object_secrets_are_explained() {
        let e = flags(&["--name", "t", "--plugin", "p", "--params", "{oops"])
            .create_input()
            .unwrap_err();
        assert!(format!("{e:#}").contains("--params: invalid JSON in the command line"), "{e:#}");
        let e = flags(&["--name", "t", "--plugin", "p", "--secrets", "[1]"])
            .create_input()
            .unwrap_err();
        assert!(e.to_string().contains("--secrets must be a JSON object"), "{e}");
        let e = flags(&["--name", "t", "--plugin", "p", "--params", "@/nonexistent"])
            .create_input()
            .unwrap_err();
        assert!(format!("{e:#}").contains("cannot read /nonexistent"), "{e:#}");
        assert!(Cmd::try_parse_from(["cmd", "--priority", "urgent"]).is_err());
    }

    #[test]
    fn select_and_after_set_and_clear_the_selector_and_the_trigger() {
        let input = flags(&[
            "--name",
            "inv",
            "--plugin",
            "snmp",
            "--manual",
            "--select",
            r#"{"into": "devices", "attr": ["tcp_open[]=161"]}"#,
            "--after",
            "scan:any",
        ])
        .create_input()
        .unwrap();
        let select = input.task.select.clone().unwrap();
        assert_eq!((select.into.as_str(), select.attr.len()), ("devices", 1));
        let after = input.task.after.clone().unwrap();
        assert_eq!((after.task.as_str(), after.on), ("scan", TriggerCondition::Any));
        let plain = flags(&["--after", "scan"]).edit_input(input.task.clone()).unwrap();
        assert_eq!(plain.task.after.unwrap().on, TriggerCondition::Finished);
        let cleared = flags(&["--select", "", "--after", ""]).edit_input(input.task).unwrap();
        assert!(cleared.task.select.is_none() && cleared.task.after.is_none());
        let err = flags(&["--after", "scan:sometimes"]).edit_input(TaskSpec::new("a", "b"));
        assert!(format!("{:#}", err.unwrap_err()).contains("finished, failed or any"));
        let err = flags(&["--select", r#"{"into": "x", "colour": 1}"#])
            .edit_input(TaskSpec::new("a", "b"));
        assert!(format!("{:#}", err.unwrap_err()).contains("unknown field"));
    }
}
