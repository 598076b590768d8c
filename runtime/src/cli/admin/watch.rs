//! `jobstack task watch TASK [--run ID]`: follow a run until it ends, with a
//! live progress bar of parts ended / total; exit 0 iff the run finished.
//!
//! The daemon's event stream (`GET /api/v1/events`) says *when* something
//! changed; the run itself (`GET /api/v1/runs/{id}`) says *what* it is now, so
//! the bar never depends on replaying events correctly. The stream is opened
//! before the first read of the run (no change can fall between them), and the
//! run is read again after every batch of events and at least every
//! [`SAFETY_POLL`]. When the stream cannot be opened or drops (the daemon
//! restarted, a proxy cut it), watch reads the run every [`FALLBACK_POLL`]
//! and opens the stream again, at growing intervals up to
//! [`MAX_REOPEN_DELAY`]; a daemon that is briefly unreachable is waited for,
//! any other error ends the watch.

use std::io::IsTerminal;
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jobstack::client::ClientError;
use jobstack::protocol::{Event, Run};
use jobstack::scheduler::State;

use super::view::{counts_not_finished, counts_text, run_summary, task_view};
use super::{Admin, ServerArgs, print_json};

/// How often the run is read while the event stream is up (in case an event
/// was missed, e.g. the daemon's stream lagging behind its database).
pub const SAFETY_POLL: Duration = Duration::from_secs(5);

/// How often the run is read without an event stream.
pub const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// The longest wait between two tries to open the event stream again.
pub const MAX_REOPEN_DELAY: Duration = Duration::from_secs(30);

/// Events taken together before the run is read again.
const EVENT_BATCH: usize = 256;

/// Arguments of `task watch`.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The task (its latest run unless --run).
    pub task: String,
    /// Another run of the task.
    #[arg(long)]
    pub run: Option<i64>,
    /// Do not use the event stream; read the run every second.
    #[arg(long)]
    pub poll: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

type Events = Pin<Box<dyn Stream<Item = Vec<Result<Event, ClientError>>> + Send>>;

/// What woke the loop.
enum Wake {
    /// A batch of events arrived.
    Events(Vec<Result<Event, ClientError>>),
    /// The stream ended.
    StreamEnded,
    /// The poll interval passed.
    Tick,
}

/// Follow the run until it ends.
pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let id = match args.run {
        Some(id) => id,
        None => latest_or_next_run(&admin, &args.task, args.server.json).await?,
    };
    let display = Display::new(id, args.server.json);

    let mut events = if args.poll { None } else { open_events(&admin, &display).await };
    let mut reopen = (!args.poll && events.is_none()).then(Reopen::soon);
    let mut run = read_run(&admin, id).await?;
    display.update(&run);
    // Intervals, not sleeps: a steady flow of unrelated events must not keep
    // pushing the safety read back.
    let mut safety = poll_interval(SAFETY_POLL);
    let mut fallback = poll_interval(FALLBACK_POLL);
    while !run.state.is_terminal() {
        let wake = match events.as_mut() {
            Some(stream) => tokio::select! {
                batch = stream.next() => batch.map(Wake::Events).unwrap_or(Wake::StreamEnded),
                _ = safety.tick() => Wake::Tick,
            },
            None => {
                fallback.tick().await;
                if let Some(due) = reopen.take_if(|r| r.is_due()) {
                    match batched_events(&admin).await {
                        Ok(stream) => {
                            display.note("event stream open again");
                            events = Some(stream);
                        }
                        Err(_) => reopen = Some(due.later()),
                    }
                }
                Wake::Tick
            }
        };
        let dropped = match wake {
            Wake::Events(batch) => {
                if let Some(Err(e)) = batch.iter().find(|e| e.is_err()) {
                    Some(format!("event stream dropped ({e}); polling"))
                } else if !batch.iter().flatten().any(|e| concerns(e, id)) {
                    continue;
                } else {
                    None
                }
            }
            Wake::StreamEnded => Some("event stream closed; polling".to_string()),
            Wake::Tick => None,
        };
        if let Some(why) = dropped {
            display.note(&why);
            events = None;
            reopen = Some(Reopen::soon());
        }
        match read_run(&admin, id).await {
            Ok(now) => {
                run = now;
                display.update(&run);
            }
            Err(e) if e.is_transient() => display.waiting(&e),
            Err(e) => return Err(admin.explain(e)),
        }
    }
    display.finish(&run)
}

/// The task's latest run; for a task whose first run is scheduled but not
/// created yet (just defined with `--every`, `--cron` or `--once`), wait for it.
async fn latest_or_next_run(admin: &Admin, task: &str, json: bool) -> anyhow::Result<i64> {
    let mut told = false;
    loop {
        let view = task_view(admin, task).await?;
        if let Some(run) = view.latest_run {
            return Ok(run.id);
        }
        let Some(next) = view.task.next_run_at else {
            anyhow::bail!(
                "task {task:?} has no run yet; start one with `jobstack task run {task}`"
            );
        };
        if !told && !json {
            eprintln!(
                "waiting for the first run of {task} (due {})",
                super::table::time(Some(next))
            );
            told = true;
        }
        tokio::time::sleep(FALLBACK_POLL).await;
    }
}

/// An interval whose first tick is one period from now.
fn poll_interval(period: Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

/// When to try opening a dropped event stream again: soon, then at doubling
/// intervals up to [`MAX_REOPEN_DELAY`].
#[derive(Debug, Clone, Copy)]
struct Reopen {
    at: tokio::time::Instant,
    delay: Duration,
}

impl Reopen {
    fn soon() -> Self {
        Self::after(FALLBACK_POLL)
    }

    fn after(delay: Duration) -> Self {
        Self { at: tokio::time::Instant::now() + delay, delay }
    }

    /// The next try, after this one failed.
    fn later(self) -> Self {
        Self::after((self.delay * 2).min(MAX_REOPEN_DELAY))
    }

    fn is_due(&self) -> bool {
        tokio::time::Instant::now() >= self.at
    }
}

/// The event stream, in batches.
async fn batched_events(admin: &Admin) -> Result<Events, ClientError> {
    let stream = admin.client.events(None).await?;
    Ok(stream.ready_chunks(EVENT_BATCH).boxed())
}

/// The event stream in batches, or `None` (after saying why) when it cannot
/// be opened.
async fn open_events(admin: &Admin, display: &Display) -> Option<Events> {
    match batched_events(admin).await {
        Ok(stream) => Some(stream),
        // A refused token will fail the run read too, with its hint.
        Err(ClientError::Api { status: 401, .. }) => None,
        Err(e) => {
            display.note(&format!("no event stream ({e}); polling"));
            None
        }
    }
}

/// Whether an event may change what the run looks like: its own events and
/// every part event (part events name the part, not the run).
fn concerns(event: &Event, run_id: i64) -> bool {
    match event.entity.as_str() {
        "run" => event.entity_id == run_id,
        "part" => true,
        _ => false,
    }
}

async fn read_run(admin: &Admin, id: i64) -> Result<Run, ClientError> {
    admin.client.get_json(&format!("/runs/{id}")).await
}

/// The progress bar on a terminal; one line per change otherwise (logs, CI).
struct Display {
    bar: ProgressBar,
    live: bool,
    json: bool,
    last_line: std::sync::Mutex<String>,
}

impl Display {
    fn new(run_id: i64, json: bool) -> Self {
        let live = !json && std::io::stderr().is_terminal();
        let bar = if live {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} run {prefix} [{bar:30}] {pos}/{len} parts ended, {msg} ({elapsed})",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(run_id.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { bar, live, json, last_line: Default::default() }
    }

    fn update(&self, run: &Run) {
        let p = &run.parts;
        self.bar.set_length(p.total());
        self.bar.set_position(p.finished + p.failed + p.canceled);
        self.bar.set_message(state_message(run));
        if !self.live && !self.json {
            let line = format!("run {}: {}, {}", run.id, run.state, counts_text(&run.parts));
            let mut last = self.last_line.lock().expect("not poisoned");
            if *last != line {
                eprintln!("{line}");
                *last = line;
            }
        }
    }

    fn waiting(&self, error: &ClientError) {
        self.bar.set_message(format!("daemon unreachable, retrying: {error}"));
        if !self.live && !self.json {
            eprintln!("daemon unreachable, retrying: {error}");
        }
    }

    fn note(&self, text: &str) {
        if self.json {
            return;
        }
        if self.live {
            self.bar.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// Print the outcome; exit 0 iff the run finished.
    fn finish(&self, run: &Run) -> anyhow::Result<ExitCode> {
        self.bar.finish_and_clear();
        if self.json {
            print_json(run)?;
        } else {
            println!("{}", run_summary(run));
        }
        if run.state == State::Finished {
            Ok(ExitCode::SUCCESS)
        } else {
            if !self.json {
                eprintln!("error: run {} ended {}", run.id, run.state);
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The bar's message: the state, and the counts that are not done when they
/// say more than the state (`running: 2 running, 5 waiting`).
fn state_message(run: &Run) -> String {
    let counts = counts_not_finished(&run.parts);
    let state = run.state.to_string();
    if counts.is_empty() || (counts.len() == 1 && counts[0].ends_with(&state)) {
        state
    } else {
        format!("{state}: {}", counts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(entity: &str, entity_id: i64) -> Event {
        Event {
            id: 1,
            at: "2026-11-28T07:00:00Z".parse().unwrap(),
            entity: entity.into(),
            entity_id,
            kind: "state".into(),
            from: None,
            to: None,
            detail: serde_json::json!({}),
        }
    }

    #[test]
    fn bar_message_adds_only_counts_the_state_does_not_say() {
        use jobstack::scheduler::{PartCounts, RunCause, TaskSpec};
        let mut run = Run {
            id: 1,
            task_id: 1,
            spec: TaskSpec::new("t", "p"),
            plugin_sha256: String::new(),
            state: State::Waiting,
            cause: RunCause::Forced,
            rerun_of: None,
            caused_by: None,
            selected: None,
            error: None,
            parts: PartCounts { waiting: 2, ..PartCounts::default() },
            created_at: "2026-11-28T07:00:00Z".parse().unwrap(),
            ended_at: None,
        };
        assert_eq!(state_message(&run), "waiting");
        run.state = State::Running;
        run.parts.running = 1;
        assert_eq!(state_message(&run), "running: 1 running, 2 waiting");
        run.state = State::Finished;
        run.parts = PartCounts { finished: 3, ..PartCounts::default() };
        assert_eq!(state_message(&run), "finished");
    }

    #[test]
    fn only_run_and_part_events_wake_the_watch() {
        assert!(concerns(&event("run", 5), 5));
        assert!(!concerns(&event("run", 6), 5));
        assert!(concerns(&event("part", 99), 5));
        assert!(!concerns(&event("agent", 5), 5));
        assert!(!concerns(&event("task", 5), 5));
    }
}
