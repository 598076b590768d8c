//! `jobstack task create|edit|list|show|runs|run|suspend|resume|cancel|rerun|watch`.
//!
//! Suspend, resume, cancel and rerun act on runs in the API; here they take a
//! task name meaning its latest run, or `--run ID` for another one.

use std::process::ExitCode;

use anyhow::bail;
use jobstack::client::segment;
use jobstack::protocol::{Part, RerunRequest, Run, Task, TaskView};
use jobstack::scheduler::{Frequency, TaskSpec};

use super::table::{Table, millis, or_dash, time};
use super::task_flags::TaskFlags;
use super::view::{counts_text, run_summary, state_name, task_view};
use super::{Admin, ServerArgs, print_json};

/// `jobstack task ...`.
#[derive(Debug, clap::Subcommand)]
pub enum TaskCommand {
    /// Define a task: flags, or --file task.json (flags change the file's).
    Create(CreateArgs),
    /// Change a task: only the flags given change.
    Edit(EditArgs),
    /// Tasks with their latest run.
    List(ServerArgs),
    /// A task, its latest run and that run's parts (owners, attempts, progress, errors).
    Show(ShowArgs),
    /// The runs of a task, newest first.
    Runs(ShowArgs),
    /// Force a run now, ahead of every priority.
    Run(ShowArgs),
    /// Hold back a run's parts that are not leased yet.
    Suspend(RunActionArgs),
    /// Let a suspended run go on.
    Resume(RunActionArgs),
    /// Stop a run: open parts canceled, leases revoked.
    Cancel(RunActionArgs),
    /// Run a run again (all parts, or only the failed ones).
    Rerun(RerunArgs),
    /// Follow a run with a live progress bar until it ends; exit 0 iff it finished.
    Watch(super::watch::WatchArgs),
}

/// Arguments of `task create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: TaskFlags,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `task edit`.
#[derive(Debug, clap::Args)]
pub struct EditArgs {
    /// The task's name (or id).
    pub task: String,
    #[command(flatten)]
    pub flags: TaskFlags,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments naming one task.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The task's name (or id).
    pub task: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of suspend, resume and cancel.
#[derive(Debug, clap::Args)]
pub struct RunActionArgs {
    /// The task whose latest run to act on.
    #[arg(required_unless_present = "run")]
    pub task: Option<String>,
    /// The run's id, instead of the task's latest run.
    #[arg(long, conflicts_with = "task")]
    pub run: Option<i64>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Arguments of `task rerun`.
#[derive(Debug, clap::Args)]
pub struct RerunArgs {
    #[command(flatten)]
    pub target: RunActionArgs,
    /// Only the parts that failed or were canceled.
    #[arg(long)]
    pub failed_only: bool,
}

/// Run a `task` subcommand.
pub async fn run(command: TaskCommand) -> anyhow::Result<ExitCode> {
    match command {
        TaskCommand::Create(args) => create(args).await,
        TaskCommand::Edit(args) => edit(args).await,
        TaskCommand::List(args) => list(args).await,
        TaskCommand::Show(args) => show(args).await,
        TaskCommand::Runs(args) => runs(args).await,
        TaskCommand::Run(args) => force_run(args).await,
        TaskCommand::Suspend(args) => run_action(args, "suspend", "suspended").await,
        TaskCommand::Resume(args) => run_action(args, "resume", "resumed").await,
        TaskCommand::Cancel(args) => run_action(args, "cancel", "canceled").await,
        TaskCommand::Rerun(args) => rerun(args).await,
        TaskCommand::Watch(args) => super::watch::run(args).await,
    }
}

async fn create(args: CreateArgs) -> anyhow::Result<ExitCode> {
    let input = args.flags.create_input()?;
    let admin = args.server.client()?;
    let task: Task = admin.post_json("/tasks", &input, "task").await?;
    admin.print(&task, |task| format!("created task {} (id {})", task.spec.name, task.id))
}

async fn edit(args: EditArgs) -> anyhow::Result<ExitCode> {
    if !args.flags.changes_something() {
        bail!("nothing to change: give the flags to change (see `jobstack task edit --help`)");
    }
    let admin = args.server.client()?;
    let stored = task_view(&admin, &args.task).await?;
    let input = args.flags.edit_input(stored.task.spec)?;
    let task: Task = admin.put_json(&format!("/tasks/{}", stored.task.id), &input).await?;
    admin.print(&task, |task| format!("updated task {} (id {})", task.spec.name, task.id))
}

async fn list(server: ServerArgs) -> anyhow::Result<ExitCode> {
    let admin = server.client()?;
    let tasks: Vec<TaskView> = admin.get("/tasks").await?;
    admin.print_list(&tasks, "no tasks; define one with `jobstack task create`", |tasks| {
        tasks_table(tasks).render()
    })
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let view = task_view(&admin, &args.task).await?;
    let parts: Vec<Part> = match &view.latest_run {
        Some(run) => admin.get(&format!("/runs/{}/parts", run.id)).await?,
        None => Vec::new(),
    };
    if args.server.json {
        print_json(&serde_json::json!({ "task": view, "parts": parts }))?;
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", describe_task(&view));
    if !parts.is_empty() {
        println!();
        print!("{}", parts_table(&parts).render());
    }
    Ok(ExitCode::SUCCESS)
}

async fn runs(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let runs: Vec<Run> = admin.get(&format!("/runs?task={}", segment(&args.task))).await?;
    let empty = format!(
        "task {} has no run yet; start one with `jobstack task run {}`",
        args.task, args.task
    );
    admin.print_list(&runs, &empty, |runs| runs_table(runs).render())
}

async fn force_run(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let run: Run = admin.post(&format!("/tasks/{}/run", segment(&args.task))).await?;
    admin.print(&run, |run| format!("started {}", run_summary(run)))
}

async fn run_action(args: RunActionArgs, action: &str, done: &str) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let id = run_id(&admin, args.task.as_deref(), args.run).await?;
    let run: Run = admin.post(&format!("/runs/{id}/{action}")).await?;
    admin.print(&run, |run| format!("{done} {}", run_summary(run)))
}

async fn rerun(args: RerunArgs) -> anyhow::Result<ExitCode> {
    let target = args.target;
    let admin = target.server.client()?;
    let id = run_id(&admin, target.task.as_deref(), target.run).await?;
    let request = RerunRequest { failed_only: args.failed_only };
    let run: Run = admin.post_json(&format!("/runs/{id}/rerun"), &request, "run").await?;
    admin.print(&run, |run| format!("started {} (re-run of run {id})", run_summary(run)))
}

/// The run named by `--run`, or the latest run of `task`.
pub async fn run_id(admin: &Admin, task: Option<&str>, run: Option<i64>) -> anyhow::Result<i64> {
    if let Some(id) = run {
        return Ok(id);
    }
    let Some(task) = task else {
        bail!("name a task (its latest run) or give --run ID");
    };
    let view = task_view(admin, task).await?;
    match view.latest_run {
        Some(run) => Ok(run.id),
        None => bail!("task {task:?} has no run yet; start one with `jobstack task run {task}`"),
    }
}

/// `every 1h`, `cron 0 3 * * *`, `once`, `manual`.
pub fn frequency_text(frequency: &Frequency) -> String {
    match frequency {
        Frequency::Once { at: None } => "once".into(),
        Frequency::Once { at: Some(at) } => format!("once at {}", time(Some(*at))),
        Frequency::Every { seconds } => format!(
            "every {}",
            humantime::format_duration(std::time::Duration::from_secs(*seconds))
        ),
        Frequency::Cron { expr } => format!("cron {expr}"),
        Frequency::Manual => "manual".into(),
    }
}

fn targeting_text(spec: &TaskSpec) -> String {
    let t = &spec.targeting;
    if t.agents.is_empty() {
        "automatic (by network)".into()
    } else if t.each_agent {
        format!("agents {} (each agent)", t.agents.join(","))
    } else {
        format!("agents {}", t.agents.join(","))
    }
}

fn tasks_table(tasks: &[TaskView]) -> Table {
    let mut table = Table::new(&[
        "NAME",
        "PLUGIN",
        "FREQUENCY",
        "PRIORITY",
        "RUN",
        "STATE",
        "PARTS",
        "NEXT RUN",
    ]);
    for view in tasks {
        let spec = &view.task.spec;
        let (run, state, parts) = match &view.latest_run {
            Some(run) => (
                run.id.to_string(),
                state_name(run.state),
                format!(
                    "{}/{}",
                    run.parts.finished + run.parts.failed + run.parts.canceled,
                    run.parts.total()
                ),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        table.row(vec![
            spec.name.clone(),
            spec.plugin.clone(),
            frequency_text(&spec.frequency),
            spec.priority.to_string(),
            run,
            state,
            parts,
            time(view.task.next_run_at),
        ]);
    }
    table
}

fn describe_task(view: &TaskView) -> String {
    let task = &view.task;
    let spec = &task.spec;
    let mut rows = Table::new(&["TASK", &format!("{} (id {})", spec.name, task.id)]);
    let mut add = |key: &str, value: String| rows.row(vec![key.to_string(), value]);
    add("plugin", spec.plugin.clone());
    add("params", spec.params.to_string());
    add("frequency", frequency_text(&spec.frequency));
    add("priority", spec.priority.to_string());
    add("targeting", targeting_text(spec));
    add(
        "execution",
        format!(
            "{}, timeout {}, {} retries",
            state_name(spec.mode),
            millis(spec.timeout_ms),
            spec.retries
        ),
    );
    if !spec.grants.dirs.is_empty() {
        add("dirs", spec.grants.dirs.join(","));
    }
    if let Some(select) = &spec.select {
        add("targets", format!("from the inventory: {}", serde_json::json!(select)));
    }
    if let Some(after) = &spec.after {
        add("after", format!("a run of {} {}", after.task, state_name(after.on)));
    }
    add("secrets", if task.has_secrets { "set" } else { "none" }.into());
    add("next run", time(task.next_run_at));
    add(
        "latest run",
        view.latest_run.as_ref().map(run_summary).unwrap_or_else(|| "none yet".into()),
    );
    if let Some(run) = &view.latest_run {
        if let Some(upstream) = run.caused_by {
            add("caused by", format!("run {upstream}"));
        }
        match run.selected.as_deref() {
            Some([]) => add("selected", "nothing: the selector matched no asset".into()),
            Some(targets) => add("selected", targets.join(",")),
            None => {}
        }
    }
    rows.render()
}

fn runs_table(runs: &[Run]) -> Table {
    let mut table =
        Table::new(&["RUN", "CAUSE", "STATE", "PARTS", "PLUGIN", "CREATED", "ENDED", "ERROR"]);
    for run in runs {
        table.row(vec![
            run.id.to_string(),
            state_name(run.cause),
            state_name(run.state),
            counts_text(&run.parts),
            run.plugin_sha256.chars().take(12).collect(),
            time(Some(run.created_at)),
            time(run.ended_at),
            or_dash(run.error.as_deref()),
        ]);
    }
    table
}

fn parts_table(parts: &[Part]) -> Table {
    let mut table =
        Table::new(&["PART", "LABEL", "STATE", "OWNER", "ATTEMPT", "PROGRESS", "ERROR"]);
    for part in parts {
        table.row(vec![
            part.id.to_string(),
            part.label.clone(),
            state_name(part.state),
            or_dash(part.owner.as_deref()),
            part.shown_attempt().to_string(),
            or_dash(part.progress.map(|(done, total)| format!("{done}/{total}"))),
            or_dash(part.error.clone().or_else(|| part.unassignable.clone())),
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobstack::scheduler::{PartCounts, RunCause, State};

    fn run() -> Run {
        Run {
            id: 12,
            task_id: 3,
            spec: TaskSpec::new("scan", "hello"),
            plugin_sha256: "ab".repeat(32),
            state: State::Running,
            cause: RunCause::Forced,
            rerun_of: None,
            caused_by: None,
            selected: None,
            error: None,
            parts: PartCounts {
                waiting: 5,
                running: 2,
                finished: 2,
                failed: 1,
                ..PartCounts::default()
            },
            created_at: "2026-11-28T07:00:00Z".parse().unwrap(),
            ended_at: None,
        }
    }

    #[test]
    fn run_summary_counts_what_is_not_zero() {
        assert_eq!(
            run_summary(&run()),
            "run 12 of scan (forced): running, 2/10 parts done (2 running, 5 waiting, 1 failed)"
        );
    }

    #[test]
    fn canceled_parts_are_not_done() {
        let parts = PartCounts { finished: 1, canceled: 2, ..PartCounts::default() };
        assert_eq!(counts_text(&parts), "1/3 parts done (2 canceled)");
    }

    #[test]
    fn runs_table_shows_cause_state_counts_and_module() {
        assert_eq!(
            runs_table(&[run()]).render(),
            "RUN  CAUSE   STATE    PARTS                                             PLUGIN        CREATED               ENDED  ERROR\n\
             12   forced  running  2/10 parts done (2 running, 5 waiting, 1 failed)  abababababab  2026-11-28 07:00:00Z  -      -\n"
        );
    }

    #[test]
    fn frequencies_read_like_the_flags() {
        assert_eq!(frequency_text(&Frequency::Every { seconds: 3600 }), "every 1h");
        assert_eq!(frequency_text(&Frequency::Manual), "manual");
        assert_eq!(frequency_text(&Frequency::Cron { expr: "0 3 * * *".into() }), "cron 0 3 * * *");
    }

    #[test]
    fn tasks_table_shows_the_latest_run() {
        let now = "2026-11-28T07:00:00Z".parse().unwrap();
        let mut spec = TaskSpec::new("scan", "hello");
        spec.frequency = Frequency::Manual;
        let task = Task {
            id: 3,
            spec,
            next_run_at: None,
            chained_since: None,
            has_secrets: false,
            created_at: now,
            updated_at: now,
        };
        let views = [
            TaskView { task: task.clone(), latest_run: Some(run()) },
            TaskView {
                task: Task { id: 4, spec: TaskSpec::new("idle", "hello"), ..task },
                latest_run: None,
            },
        ];
        assert_eq!(
            tasks_table(&views).render(),
            "NAME  PLUGIN  FREQUENCY  PRIORITY  RUN  STATE    PARTS  NEXT RUN\n\
             scan  hello   manual     normal    12   running  3/10   -\n\
             idle  hello   once       normal    -    -        -      -\n"
        );
    }

    #[test]
    fn parts_table_shows_owner_attempt_progress_error() {
        let part = Part {
            id: 7,
            run_id: 12,
            seq: 0,
            label: "greeting 0".into(),
            targets: vec![],
            payload: "{}".into(),
            state: State::Running,
            attempt: 2,
            result_attempt: None,
            owner: Some("agent-b".into()),
            pinned_agent: None,
            lease_expires_at: None,
            available_at: "2026-11-28T07:00:00Z".parse().unwrap(),
            progress: Some((3, 4)),
            error: Some("lease expired".into()),
            unassignable: None,
        };
        assert_eq!(
            parts_table(&[part]).render(),
            "PART  LABEL       STATE    OWNER    ATTEMPT  PROGRESS  ERROR\n\
             7     greeting 0  running  agent-b  2        3/4       lease expired\n"
        );
    }
}
