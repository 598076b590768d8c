//! `jobstack results TASK [--run ID] [--all] [--json]`: what a run's parts
//! returned. By default only the results that count (`applied`) are shown;
//! results kept for the record (a late failure, a duplicate) with `--all`.

use std::process::ExitCode;

use jobstack::client::segment;
use jobstack::protocol::{RunResults, StoredResult};

use super::table::{Table, millis, or_dash};
use super::view::{run_summary, state_name, task_view};
use super::{ServerArgs, print_json};

/// Arguments of `jobstack results`.
#[derive(Debug, clap::Args)]
pub struct ResultsArgs {
    /// The task (its latest run unless --run).
    pub task: String,
    /// Another run of the task.
    #[arg(long)]
    pub run: Option<i64>,
    /// Also the results that were recorded but did not count.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Print a run's results.
pub async fn run(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let admin = args.server.client()?;
    let path = match args.run {
        Some(id) => format!("/runs/{id}/results"),
        None => format!("/tasks/{}/results", segment(&args.task)),
    };
    let results: RunResults = admin.get(&path).await?;
    if args.run.is_some() {
        // A run id from another task is a mistake worth saying.
        let view = task_view(&admin, &args.task).await?;
        if view.task.id != results.run.task_id {
            anyhow::bail!("run {} belongs to another task than {:?}", results.run.id, args.task);
        }
    }
    if args.server.json {
        print_json(&results)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("{}", run_summary(&results.run));
    let shown: Vec<&StoredResult> =
        results.results.iter().filter(|r| args.all || r.applied).collect();
    if shown.is_empty() {
        println!("no results yet");
    } else {
        print!("{}", results_table(&shown, args.all).render());
    }
    let hidden = results.results.len() - shown.len();
    if hidden > 0 {
        println!("({hidden} results that did not count hidden; --all shows them)");
    }
    Ok(ExitCode::SUCCESS)
}

fn results_table(results: &[&StoredResult], with_applied: bool) -> Table {
    let mut header = vec!["PART", "ATTEMPT", "AGENT", "STATUS", "DURATION", "EMITTED", "OUTPUT"];
    if with_applied {
        header.push("APPLIED");
    }
    let mut table = Table::new(&header);
    for r in results {
        let s = &r.submission;
        let output = match (&s.output, &s.error) {
            (_, Some(error)) => format!("error: {error}"),
            (Some(output), None) => output.to_string(),
            (None, None) => String::new(),
        };
        let mut row = vec![
            s.part_id.to_string(),
            s.attempt.to_string(),
            r.agent.clone(),
            state_name(s.status),
            millis(s.duration_ms),
            s.emitted.len().to_string(),
            or_dash(Some(output)),
        ];
        if with_applied {
            row.push(if r.applied { "yes" } else { "no" }.into());
        }
        table.row(row);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobstack::scheduler::{ResultStatus, Submission};

    fn result(part_id: i64, status: ResultStatus, applied: bool) -> StoredResult {
        StoredResult {
            run_id: 1,
            agent: "agent-a".into(),
            submission: Submission {
                part_id,
                attempt: 1,
                status,
                output: (status == ResultStatus::Finished)
                    .then(|| serde_json::json!({"greeting": "hello"})),
                error: (status != ResultStatus::Finished).then(|| "unreachable".into()),
                emitted: vec![serde_json::json!({})],
                logs: vec![],
                started_at: None,
                duration_ms: 1500,
            },
            applied,
            received_at: "2026-11-28T07:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn table_shows_output_or_error() {
        let ok = result(1, ResultStatus::Finished, true);
        let failed = result(2, ResultStatus::Failed, false);
        assert_eq!(
            results_table(&[&ok, &failed], true).render(),
            "PART  ATTEMPT  AGENT    STATUS    DURATION  EMITTED  OUTPUT                APPLIED\n\
             1     1        agent-a  finished  1s        1        {\"greeting\":\"hello\"}  yes\n\
             2     1        agent-a  failed    1s        1        error: unreachable    no\n"
        );
    }
}
