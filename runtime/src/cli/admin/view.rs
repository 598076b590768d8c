//! Views of tasks and runs shared by the task commands, `task watch` and
//! `results`: the task as the daemon shows it, and one-line summaries of runs.

use jobstack::client::segment;
use jobstack::protocol::{Run, TaskView};
use jobstack::scheduler::PartCounts;

use super::Admin;

/// `GET /tasks/{name or id}`.
pub async fn task_view(admin: &Admin, task: &str) -> anyhow::Result<TaskView> {
    admin.get(&format!("/tasks/{}", segment(task))).await
}

/// `run 12 of scan (forced): running, 3/10 parts done`.
pub fn run_summary(run: &Run) -> String {
    let cause = serde_json::to_value(run.cause)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut text = format!(
        "run {} of {} ({cause}): {}, {}",
        run.id,
        run.spec.name,
        state_name(run.state),
        counts_text(&run.parts)
    );
    if let Some(error) = &run.error {
        text.push_str(&format!(", error: {error}"));
    }
    text
}

/// `2/10 parts done (1 failed, 2 running)`: done is finished with success (a
/// canceled or failed part is not done); then the other non-zero counts.
pub fn counts_text(parts: &PartCounts) -> String {
    let mut text = format!("{}/{} parts done", parts.finished, parts.total());
    let details = counts_not_finished(parts);
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join(", ")));
    }
    text
}

/// `["2 running", "1 failed"]`: the counts of parts not finished that are not
/// zero.
pub fn counts_not_finished(parts: &PartCounts) -> Vec<String> {
    [
        ("running", parts.running),
        ("waiting", parts.waiting),
        ("suspended", parts.suspended),
        ("failed", parts.failed),
        ("canceled", parts.canceled),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(what, n)| format!("{n} {what}"))
    .collect()
}

/// A state's lower-case name.
pub fn state_name<T: serde::Serialize>(state: T) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
