//! How an execution ended, and what it produced.
//!
//! Four endings, never confused: **finished** (the plugin returned its output),
//! **failed** (the plugin returned an error, trapped, or hit a memory, table or
//! stack limit), **timeout** (the fuel budget or the wall-clock deadline ran out)
//! and **canceled** (the host interrupted it).

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::control::Progress;
use super::host::LogLine;

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The plugin returned its output.
    Finished,
    /// The plugin returned an error or was stopped by a fault or a limit.
    Failed,
    /// The CPU budget (fuel) or the wall-clock deadline ran out.
    Timeout,
    /// The host canceled it.
    Canceled,
}

impl Status {
    /// The lowercase name used in JSON and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Canceled => "canceled",
        }
    }
}

/// The result of one execution of `split` or `init` + `execute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionOutcome {
    /// How it ended.
    pub status: Status,
    /// The plugin's output (JSON) when finished; for `split`, the parts.
    pub output: Option<serde_json::Value>,
    /// Why it did not finish.
    pub error: Option<String>,
    /// Log lines: `host.log`, captured stdout/stderr, engine notes.
    pub logs: Vec<LogLine>,
    /// Records streamed with `host.emit`, in order.
    pub emitted: Vec<serde_json::Value>,
    /// The last progress reported.
    pub progress: Option<Progress>,
    /// Fuel consumed.
    pub fuel_consumed: u64,
    /// Time from getting a slot to the end.
    #[serde(with = "duration_ms", rename = "duration_ms")]
    pub duration: Duration,
}

impl ExecutionOutcome {
    /// An outcome that never ran: it ended before a store existed.
    pub(crate) fn not_run(status: Status, error: String) -> Self {
        ExecutionOutcome {
            status,
            output: None,
            error: Some(error),
            logs: Vec::new(),
            emitted: Vec::new(),
            progress: None,
            fuel_consumed: 0,
            duration: Duration::ZERO,
        }
    }

    /// Whether it finished.
    pub fn is_finished(&self) -> bool {
        self.status == Status::Finished
    }
}

mod duration_ms {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64(ms.max(0.0) / 1000.0))
    }
}
