//! Task selectors resolved against the inventory: the [`Selection`] port of
//! the scheduler, over [`InventoryReads`]. A selector is an asset listing's
//! filters ([`AssetQuery`]); each selected asset gives one target, its
//! address (the first inside the selector's network, when it names one).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::view::{AssetQuery, MAX_PAGE};
use super::{Asset, InventoryReads};
use crate::scheduler::targeting::{AddressSpan, parse_target};
use crate::scheduler::{MAX_SELECTED, Selection, TargetSelector};

/// Selectors resolved against an inventory store.
pub struct InventorySelection {
    inventory: Arc<dyn InventoryReads>,
}

impl InventorySelection {
    /// Resolve selectors against `inventory`.
    pub fn new(inventory: Arc<dyn InventoryReads>) -> Self {
        Self { inventory }
    }
}

/// The asset listing a selector stands for, at `now`.
pub fn query_of(selector: &TargetSelector, now: DateTime<Utc>) -> Result<AssetQuery, String> {
    let mut params: Vec<(String, String)> = Vec::new();
    if let Some(kind) = &selector.kind {
        params.push(("kind".into(), kind.clone()));
    }
    if let Some(cidr) = &selector.cidr {
        params.push(("cidr".into(), cidr.clone()));
    }
    for predicate in &selector.attr {
        params.push(("attr".into(), predicate.clone()));
    }
    if let Some(within) = &selector.seen_within {
        humantime::parse_duration(within)
            .map_err(|_| format!("seen_within: {within:?} is not a duration like 1d or 12h"))?;
        params.push(("seen_since".into(), within.clone()));
    }
    let mut query = AssetQuery::from_params(&params, now)?;
    query.limit = MAX_PAGE;
    Ok(query)
}

/// The target an asset gives: its address, the first inside `within` when
/// given; `None` for an asset without one there.
fn target_of(asset: &Asset, within: Option<&AddressSpan>) -> Option<(u128, String)> {
    let addresses = asset.keys.get("ip")?;
    addresses.iter().find_map(|address| {
        let span = parse_target(address)?;
        within.is_none_or(|w| w.contains(&span)).then(|| (span.lo, address.clone()))
    })
}

#[async_trait]
impl Selection for InventorySelection {
    fn check(&self, selector: &TargetSelector) -> Result<(), String> {
        query_of(selector, Utc::now()).map(|_| ())
    }

    async fn resolve(
        &self, selector: &TargetSelector, now: DateTime<Utc>,
    ) -> Result<Vec<String>, String> {
        let mut query = query_of(selector, now)?;
        let mut targets = Vec::new();
        loop {
            let page = self.inventory.assets(&query).await.map_err(|e| e.to_string())?;
            let Some(last) = page.last() else {
                break;
            };
            query.after = last.id;
            targets.extend(page.iter().filter_map(|a| target_of(a, query.within.as_ref())));
            if targets.len() > MAX_SELECTED {
                return Err(format!(
                    "the selector matches more than {MAX_SELECTED} assets: narrow it"
                ));
            }
        }
        targets.sort();
        targets.dedup();
        Ok(targets.into_iter().map(|(_, address)| address).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selector_is_an_asset_listing_and_its_errors_name_the_field() {
        let now = Utc::now();
        let selector = TargetSelector {
            into: "devices".into(),
            kind: Some("host".into()),
            cidr: Some("127.0.0.0/8".into()),
            attr: vec!["tcp_open[]=161".into()],
            seen_within: Some("1d".into()),
        };
        let query = query_of(&selector, now).unwrap();
        assert_eq!(query.kind.as_deref(), Some("host"));
        assert_eq!(query.within, parse_target("127.0.0.0/8"));
        assert_eq!(query.seen_since, Some(now - chrono::Duration::days(1)));
        let bad = |f: fn(&mut TargetSelector)| {
            let mut s = selector.clone();
            f(&mut s);
            query_of(&s, now).unwrap_err()
        };
        assert!(bad(|s| s.cidr = Some("ten".into())).contains("cidr"));
        assert!(bad(|s| s.attr = vec!["nothing".into()]).contains("attr"));
        assert!(bad(|s| s.seen_within = Some("yesterday".into())).contains("seen_within"));
    }

    #[test]
    fn an_asset_gives_its_address_inside_the_network() {
        let asset: Asset = serde_json::from_value(serde_json::json!({
            "id": 1, "kind": "host", "name": null,
            "keys": {"ip": ["10.0.0.5", "127.0.0.9"]}, "attributes": {},
            "first_seen": "2026-12-07T00:00:00Z", "last_seen": "2026-12-07T00:00:00Z",
            "disappeared_at": null,
        }))
        .unwrap();
        let loopback = parse_target("127.0.0.0/8");
        assert_eq!(target_of(&asset, loopback.as_ref()).unwrap().1, "127.0.0.9");
        assert_eq!(target_of(&asset, None).unwrap().1, "10.0.0.5");
        assert!(target_of(&asset, parse_target("192.0.2.0/24").as_ref()).is_none());
    }
}
