//! Benchmarks behind `jobstack bench`: each measures in one run and returns
//! figures as a serializable report, so ratios compare numbers taken together
//! on the same (possibly noisy) machine.

pub mod e2e;
pub mod engine;
pub mod inventory;
pub mod scheduler;
mod store;
mod webhooks;

/// The `q` quantile (0..=1) of `samples` by nearest rank, to one decimal
/// place; NaN (JSON `null`) for no samples.
pub fn percentile(samples: &[f64], q: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    (sorted[index] * 10.0).round() / 10.0
}

/// A finished result for `lease`, as the benchmarks' agents send it.
fn finished(lease: &crate::scheduler::Lease) -> crate::scheduler::Submission {
    crate::scheduler::Submission {
        part_id: lease.part_id,
        attempt: lease.attempt,
        status: crate::scheduler::ResultStatus::Finished,
        output: Some(serde_json::json!({ "bench": true })),
        error: None,
        emitted: vec![],
        logs: vec![],
        started_at: None,
        duration_ms: 0,
    }
}
