//! Disappearance: which assets a run proves gone.
//!
//! An asset has disappeared when a later run of a task that saw it covered
//! where it was and did not see it. Only finished parts prove anything: a
//! failed or canceled part may have missed what is there. A part covers an
//! asset when one of the part's targets holds one of the asset's addresses
//! (its `ip` keys); an asset without an address (a VM found through its
//! vCenter) is covered by a part with the same targets as the part that saw
//! it. The sweep of a run runs once, after the run ended and every one of its
//! results was processed.

use crate::scheduler::targeting::{AddressSpan, parse_target};

use super::merge::AssetId;

/// An asset a task saw, as the sweep of one of its runs reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// The asset.
    pub asset_id: AssetId,
    /// The task's last run that saw it.
    pub run_id: i64,
    /// The targets of the part that saw it.
    pub scope: Vec<String>,
    /// The asset's addresses.
    pub addresses: Vec<AddressSpan>,
}

/// The assets of `sightings` that run `run_id`, whose finished parts had
/// `finished_scopes` as targets, proves gone.
pub fn gone(run_id: i64, finished_scopes: &[Vec<String>], sightings: &[Sighting]) -> Vec<AssetId> {
    let spans: Vec<AddressSpan> =
        finished_scopes.iter().flatten().filter_map(|t| parse_target(t)).collect();
    sightings
        .iter()
        .filter(|s| s.run_id < run_id)
        .filter(|s| {
            if s.addresses.is_empty() {
                finished_scopes.iter().any(|scope| same_targets(scope, &s.scope))
            } else {
                s.addresses.iter().any(|a| spans.iter().any(|span| span.contains(a)))
            }
        })
        .map(|s| s.asset_id)
        .collect()
}

fn same_targets(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&str> = a.iter().map(|t| t.trim()).collect();
    let mut b: Vec<&str> = b.iter().map(|t| t.trim()).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(asset_id: AssetId, run_id: i64, scope: &str, ip: Option<&str>) -> Sighting {
        Sighting {
            asset_id,
            run_id,
            scope: vec![scope.to_string()],
            addresses: ip.and_then(parse_target).into_iter().collect(),
        }
    }

    #[test]
    fn an_asset_a_later_finished_part_covered_and_did_not_see_is_gone() {
        let sightings = [
            seen(1, 4, "10.0.0.0/28", Some("10.0.0.5")), // not seen by run 5
            seen(2, 5, "10.0.0.0/28", Some("10.0.0.6")), // seen by run 5
            seen(3, 4, "10.0.1.0/28", Some("10.0.1.5")), // not covered by run 5
            seen(4, 6, "10.0.0.0/28", Some("10.0.0.7")), // seen by a later run
        ];
        assert_eq!(gone(5, &[vec!["10.0.0.0/28".into()]], &sightings), [1]);
    }

    #[test]
    fn a_failed_part_proves_nothing() {
        let sightings = [seen(1, 4, "10.0.0.0/28", Some("10.0.0.5"))];
        assert!(gone(5, &[], &sightings).is_empty(), "no finished part: nothing is gone");
    }

    #[test]
    fn an_asset_without_an_address_is_covered_by_a_part_with_the_same_targets() {
        let sightings = [seen(1, 4, "127.0.0.1:8989", None), seen(2, 4, "127.0.0.2:8989", None)];
        assert_eq!(gone(5, &[vec!["127.0.0.1:8989".into()]], &sightings), [1]);
    }
}
