//! The per-execution host state: what a plugin's `host` calls write into, the WASI
//! context it was granted, and the resource limiter that enforces its limits.
//!
//! Everything a plugin can produce is bounded here (log lines, stdio, emitted
//! records), so a misbehaving plugin fails its own execution and never grows the
//! agent's memory.

use serde::Serialize;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result as WasmResult};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::{ExecutionLimits, Grants};

use super::bindings::{Host, HostV0_1, Level, LevelV0_1, wit};
use super::config::{MAX_EMITTED_BYTES, MAX_LOG_LINE_BYTES, MAX_LOG_LINES, MAX_STDIO_BYTES};
use super::control::{ExecutionControl, Progress};
use super::http::HttpPolicy;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Finest detail.
    Trace,
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected, work goes on.
    Warn,
    /// Something failed.
    Error,
}

impl From<Level> for LogLevel {
    fn from(l: Level) -> Self {
        match l {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// `host.log`.
    Plugin,
    /// The plugin's stdout (captured).
    Stdout,
    /// The plugin's stderr (captured).
    Stderr,
    /// The engine, about this execution.
    Engine,
}

/// One line of an execution's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// Origin.
    pub source: LogSource,
    /// The text, cut at [`MAX_LOG_LINE_BYTES`].
    pub message: String,
}

/// What an execution produced besides its return value.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    pub logs: Vec<LogLine>,
    pub dropped_log_lines: usize,
    pub emitted: Vec<serde_json::Value>,
    pub emitted_bytes: usize,
}

impl Journal {
    pub(crate) fn log(&mut self, level: LogLevel, source: LogSource, mut message: String) {
        if self.logs.len() >= MAX_LOG_LINES {
            self.dropped_log_lines += 1;
            return;
        }
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        self.logs.push(LogLine { level, source, message });
    }
}

/// Why a memory or table growth was refused, kept to explain the trap that follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LimitHit {
    Memory { desired: usize, limit: usize },
    Table { desired: usize, limit: usize },
}

/// Enforces the per-execution memory and table limits and remembers refusals.
#[derive(Debug)]
pub(crate) struct ExecutionLimiter {
    pub memory: usize,
    pub table_elements: usize,
    pub hit: Option<LimitHit>,
}

impl ResourceLimiter for ExecutionLimiter {
    fn memory_growing(
        &mut self, _current: usize, desired: usize, _max: Option<usize>,
    ) -> WasmResult<bool> {
        if desired > self.memory {
            self.hit = Some(LimitHit::Memory { desired, limit: self.memory });
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self, _current: usize, desired: usize, _max: Option<usize>,
    ) -> WasmResult<bool> {
        if desired > self.table_elements {
            self.hit = Some(LimitHit::Table { desired, limit: self.table_elements });
            return Ok(false);
        }
        Ok(true)
    }
}

/// Captures a plugin's stdout or stderr: keeps the first [`MAX_STDIO_BYTES`],
/// drops the rest. Writes never fail, so a chatty plugin is not killed by its
/// own `println!`.
#[derive(Debug, Clone, Default)]
pub(crate) struct CapturedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl CapturedOutput {
    fn push(&self, bytes: &[u8]) {
        let mut buf = self.buffer.lock().expect("stdio buffer lock");
        let room = MAX_STDIO_BYTES.saturating_sub(buf.len());
        buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// The captured text, as lines.
    pub(crate) fn lines(&self) -> Vec<String> {
        let buf = self.buffer.lock().expect("stdio buffer lock");
        String::from_utf8_lossy(&buf)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The store data of one execution.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: ExecutionLimiter,
    pub(crate) journal: Journal,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    pub(crate) control: Arc<ExecutionControl>,
    /// wasi:http state; linked only for plugins declaring the `http` capability.
    pub(crate) http_ctx: WasiHttpCtx,
    /// Who outgoing HTTP may reach (see [`HttpPolicy`]).
    pub(crate) http_policy: HttpPolicy,
    /// When the wall-clock deadline passes.
    pub(crate) deadline: Instant,
}

impl HostState {
    /// Fresh state for one execution: a WASI context holding exactly `grants`,
    /// captured stdio, empty journal, the limits' limiter.
    pub(crate) fn new(
        grants: &Grants, limits: &ExecutionLimits, control: Arc<ExecutionControl>,
        deadline: Instant,
    ) -> std::io::Result<Self> {
        let stdout = CapturedOutput::default();
        let stderr = CapturedOutput::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(stderr.clone());
        grants.apply(&mut wasi)?;
        Ok(HostState {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: ExecutionLimiter {
                memory: usize::try_from(limits.memory).unwrap_or(usize::MAX),
                table_elements: limits.table_elements,
                hit: None,
            },
            journal: Journal::default(),
            stdout,
            stderr,
            control,
            http_ctx: WasiHttpCtx::new(),
            http_policy: HttpPolicy::new(grants.http_hosts(), grants.accepts_self_signed_tls()),
            deadline,
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http_policy,
        }
    }
}

impl wit::Host for HostState {}

impl Host for HostState {
    fn log(&mut self, level: Level, message: String) -> WasmResult<()> {
        self.journal.log(level.into(), LogSource::Plugin, message);
        Ok(())
    }

    fn progress(&mut self, done: u64, total: u64) -> WasmResult<()> {
        self.control.set_progress(Progress { done, total });
        Ok(())
    }

    fn emit(&mut self, record: String) -> WasmResult<()> {
        self.journal.emitted_bytes += record.len();
        if self.journal.emitted_bytes > MAX_EMITTED_BYTES {
            return Err(wasmtime::Error::msg(format!(
                "the plugin emitted more than {} MiB of records in one execution",
                MAX_EMITTED_BYTES >> 20
            )));
        }
        let value = match serde_json::from_str(&record) {
            Ok(v) => v,
            Err(e) => {
                self.journal.log(
                    LogLevel::Warn,
                    LogSource::Engine,
                    format!("emitted record is not JSON ({e}); kept as a string"),
                );
                serde_json::Value::String(record)
            }
        };
        self.journal.emitted.push(value);
        Ok(())
    }

    fn stop_requested(&mut self) -> WasmResult<bool> {
        Ok(self.control.is_stop_requested())
    }
}

/// The 0.1.0 contract's `host` interface: the current one under its old name.
impl HostV0_1 for HostState {
    fn log(&mut self, level: LevelV0_1, message: String) -> WasmResult<()> {
        let level = match level {
            LevelV0_1::Trace => Level::Trace,
            LevelV0_1::Debug => Level::Debug,
            LevelV0_1::Info => Level::Info,
            LevelV0_1::Warn => Level::Warn,
            LevelV0_1::Error => Level::Error,
        };
        Host::log(self, level, message)
    }

    fn progress(&mut self, done: u64, total: u64) -> WasmResult<()> {
        Host::progress(self, done, total)
    }

    fn emit(&mut self, record: String) -> WasmResult<()> {
        Host::emit(self, record)
    }

    fn stop_requested(&mut self) -> WasmResult<bool> {
        Host::stop_requested(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_cuts_long_lines_and_drops_past_the_line_limit() {
        let mut j = Journal::default();
        j.log(LogLevel::Info, LogSource::Plugin, "é".repeat(MAX_LOG_LINE_BYTES));
        assert!(j.logs[0].message.len() <= MAX_LOG_LINE_BYTES + '…'.len_utf8());
        for _ in 0..MAX_LOG_LINES + 5 {
            j.log(LogLevel::Info, LogSource::Plugin, "x".into());
        }
        assert_eq!(j.logs.len(), MAX_LOG_LINES);
        assert_eq!(j.dropped_log_lines, 6);
    }

    #[test]
    fn captured_output_keeps_the_first_bytes_and_never_fails() {
        let mut out = CapturedOutput::default();
        out.write(bytes::Bytes::from("a\nb\n")).unwrap();
        out.write(bytes::Bytes::from(vec![b'z'; MAX_STDIO_BYTES])).unwrap();
        out.write(bytes::Bytes::from("dropped")).unwrap();
        let lines = out.lines();
        assert_eq!(&lines[..2], ["a", "b"]);
        assert!(!lines.concat().contains("dropped"));
    }

    #[test]
    fn limiter_refuses_growth_past_the_limit_and_remembers_it() {
        let mut l = ExecutionLimiter { memory: 1 << 20, table_elements: 10, hit: None };
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!l.memory_growing(1 << 20, 2 << 20, None).unwrap());
        assert_eq!(l.hit, Some(LimitHit::Memory { desired: 2 << 20, limit: 1 << 20 }));
    }
}
