//! Run snapshots parsed by the writer's leases, kept between operations.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::scheduler::TaskSpec;
use crate::store::{StoreError, StoreResult};

/// A run's snapshot as its leases hand it out, with the text it was parsed
/// from.
pub(in crate::store::sqlite) struct Snapshot {
    spec_text: String,
    secrets_text: String,
    pub spec: TaskSpec,
    pub secrets: serde_json::Value,
}

/// Run snapshots parsed by earlier leases, by run: every lease of a run's
/// parts hands out the same snapshot, so it is parsed once. Found again only with the same text:
/// a run's snapshot never changes once stored, but this does not rely on it.
/// Kept on the writer thread, a few runs at a time.
#[derive(Default)]
pub(in crate::store::sqlite) struct Snapshots(RefCell<HashMap<i64, Rc<Snapshot>>>);

impl Snapshots {
    /// Runs kept; the map is emptied when it would hold more.
    const KEPT: usize = 64;

    /// Run `run_id`'s snapshot parsed from `spec` and `secrets`.
    pub fn parsed(&self, run_id: i64, spec: &str, secrets: &str) -> StoreResult<Rc<Snapshot>> {
        if let Some(known) = self.0.borrow().get(&run_id)
            && known.spec_text == spec
            && known.secrets_text == secrets
        {
            return Ok(Rc::clone(known));
        }
        let snapshot = Rc::new(Snapshot {
            spec: parse("spec", spec)?,
            secrets: parse("secrets", secrets)?,
            spec_text: spec.to_owned(),
            secrets_text: secrets.to_owned(),
        });
        let mut kept = self.0.borrow_mut();
        if kept.len() >= Self::KEPT {
            kept.clear();
        }
        kept.insert(run_id, Rc::clone(&snapshot));
        Ok(snapshot)
    }
}

pub(in crate::store::sqlite) fn parse<T: serde::de::DeserializeOwned>(
    column: &str, text: &str,
) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_snapshot_is_parsed_once_per_text() {
        let snapshots = Snapshots::default();
        let spec = serde_json::to_string(&TaskSpec::new("job", "test")).unwrap();
        let first = snapshots.parsed(1, &spec, "{}").unwrap();
        let again = snapshots.parsed(1, &spec, "{}").unwrap();
        assert!(Rc::ptr_eq(&first, &again), "found again, not parsed again");
        assert_eq!(again.spec.plugin, "test");
        // Another text under the same id is parsed, never taken for the first.
        let other = snapshots.parsed(1, &spec, r#"{"community": "s3cret"}"#).unwrap();
        assert_eq!(other.secrets["community"], "s3cret");
        let error = snapshots.parsed(1, "not json", "{}").err().unwrap();
        assert!(matches!(error, StoreError::Corrupt(_)), "{error}");
    }

    #[test]
    fn the_snapshots_kept_are_bounded() {
        let snapshots = Snapshots::default();
        let spec = serde_json::to_string(&TaskSpec::new("job", "test")).unwrap();
        for run in 0..(Snapshots::KEPT as i64 * 3) {
            snapshots.parsed(run, &spec, "{}").unwrap();
            assert!(snapshots.0.borrow().len() <= Snapshots::KEPT);
        }
    }
}
