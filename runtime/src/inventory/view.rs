//! What the inventory answers: assets, their sources, relations and history,
//! and the queries that select them. Plain data, shared by the API, the CLI
//! and the exports.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::merge::{ChangeKind, Source};
use crate::scheduler::targeting::AddressSpan;

/// The most assets or changes one page holds.
pub const MAX_PAGE: u32 = 1_000;

/// An asset as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Asset {
    /// Its id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its name for people.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Its keys: `{"ip": ["10.0.0.5"], "mac": [...]}`.
    pub keys: BTreeMap<String, Vec<String>>,
    /// Its attributes.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// When it was first seen.
    pub first_seen: DateTime<Utc>,
    /// When it was last seen.
    pub last_seen: DateTime<Utc>,
    /// When a sweep found it gone (and nothing has seen it since).
    #[schema(required = true)]
    pub disappeared_at: Option<DateTime<Utc>>,
}

/// Where an attribute's value came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Provenance {
    /// The attribute.
    pub attribute: String,
    /// Its source.
    #[serde(flatten)]
    pub source: Source,
}

/// A relation between two assets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Relation {
    /// `runs_on`, `part_of`, …
    pub relation: String,
    /// The asset it starts from.
    pub from_id: i64,
    /// The asset it points to.
    pub to_id: i64,
    /// The other asset's name, or its kind when it has none.
    pub other: String,
}

/// One change of one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// Its id: changes are listed in this order.
    pub id: i64,
    /// The asset.
    pub asset_id: i64,
    /// When it was recorded.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: ChangeKind,
    /// The attribute, relation or key concerned.
    #[schema(required = true)]
    pub subject: Option<String>,
    /// The value before.
    #[schema(required = true)]
    pub old: Option<serde_json::Value>,
    /// The value after.
    #[schema(required = true)]
    pub new: Option<serde_json::Value>,
    /// The run whose result (or sweep) made it.
    #[schema(required = true)]
    pub run_id: Option<i64>,
}

/// An asset with everything known of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssetDetail {
    /// The asset.
    #[serde(flatten)]
    pub asset: Asset,
    /// The source of each attribute.
    pub sources: Vec<Provenance>,
    /// Relations from it and to it.
    pub relations: Vec<Relation>,
    /// Its changes, oldest first.
    pub history: Vec<Change>,
}

/// An attribute filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttributeFilter {
    /// The attribute's JSON value equals this one.
    Equals(String, serde_json::Value),
    /// The attribute's JSON text contains this text.
    Contains(String, String),
    /// The attribute is a string starting with this text.
    StartsWith(String, String),
    /// The attribute is a list holding this JSON value.
    Has(String, serde_json::Value),
}

/// Which assets to list: every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetQuery {
    /// Of this kind.
    pub kind: Option<String>,
    /// With an address in this span.
    pub within: Option<AddressSpan>,
    /// With these attributes.
    pub attributes: Vec<AttributeFilter>,
    /// Seen at or after.
    pub seen_since: Option<DateTime<Utc>>,
    /// Not seen since.
    pub not_seen_since: Option<DateTime<Utc>>,
    /// Whose name or a key contains this text.
    pub text: Option<String>,
    /// After this asset id (the cursor).
    pub after: i64,
    /// At most this many.
    pub limit: u32,
}

/// Which changes to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeQuery {
    /// Of this asset.
    pub asset_id: Option<i64>,
    /// Made by this run.
    pub run_id: Option<i64>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// After this change id (the cursor).
    pub after: i64,
    /// At most this many.
    pub limit: u32,
}

/// The largest page when none is asked for.
pub const DEFAULT_PAGE: u32 = 100;

/// A time in a query: RFC 3339, or a duration before `now` (`7d`, `12h`).
fn time_param(name: &str, text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("{name}: {text:?} is neither an RFC 3339 time nor a duration like 7d")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or_else(|| format!("{name}: {text:?} reaches before any time there is"))
}

fn number_param<T: std::str::FromStr>(name: &str, text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("{name}: {text:?} is not a number"))
}

fn page_size(text: &str) -> Result<u32, String> {
    let limit: u32 = number_param("limit", text)?;
    if limit == 0 || limit > MAX_PAGE {
        return Err(format!("limit: {limit} is not between 1 and {MAX_PAGE}"));
    }
    Ok(limit)
}

impl AssetQuery {
    /// The query of an API request's parameters (`kind`, `cidr`, `attr` as
    /// `name=value` or `name~text`, repeated, `seen_since`, `not_seen_since`,
    /// `q`, `after`, `limit`); `now` for times given as durations.
    pub fn from_params(params: &[(String, String)], now: DateTime<Utc>) -> Result<Self, String> {
        let mut q = AssetQuery { limit: DEFAULT_PAGE, ..AssetQuery::default() };
        for (name, value) in params {
            match name.as_str() {
                "kind" => q.kind = Some(value.clone()),
                "cidr" => {
                    let net: ipnet::IpNet = value
                        .parse()
                        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            format!("cidr: {value:?} is not a network like 10.1.0.0/16")
                        })?;
                    q.within = Some(AddressSpan::of_net(&net.trunc()));
                }
                "attr" => q.attributes.push(AttributeFilter::parse(value)?),
                "seen_since" => q.seen_since = Some(time_param(name, value, now)?),
                "not_seen_since" => q.not_seen_since = Some(time_param(name, value, now)?),
                "q" => q.text = Some(value.clone()).filter(|t| !t.is_empty()),
                "after" => q.after = number_param(name, value)?,
                "limit" => q.limit = page_size(value)?,
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: use kind, cidr, attr, seen_since, \
                         not_seen_since, q, after or limit"
                    ));
                }
            }
        }
        Ok(q)
    }
}

impl AttributeFilter {
    /// `name=value` (the value as JSON, else as a string), `name~text`
    /// (contains), `name^=text` (starts with) or `name[]=value` (a list
    /// holding the value).
    pub fn parse(text: &str) -> Result<Self, String> {
        let at = text.find(['=', '~']).ok_or_else(|| {
            format!("attr: {text:?} is none of name=value, name~text, name^=text, name[]=value")
        })?;
        let (raw, value) = (text[..at].trim(), &text[at + 1..]);
        let json = || {
            serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_string()))
        };
        let named = |name: &str| {
            let name = name.trim();
            if name.is_empty() {
                Err(format!("attr: {text:?} names no attribute"))
            } else {
                Ok(name.to_string())
            }
        };
        Ok(if text.as_bytes()[at] == b'~' {
            AttributeFilter::Contains(named(raw)?, value.to_string())
        } else if let Some(name) = raw.strip_suffix('^') {
            AttributeFilter::StartsWith(named(name)?, value.to_string())
        } else if let Some(name) = raw.strip_suffix("[]") {
            AttributeFilter::Has(named(name)?, json())
        } else {
            AttributeFilter::Equals(named(raw)?, json())
        })
    }
}

impl ChangeQuery {
    /// The query of an API request's parameters (`asset`, `run`, `since`,
    /// `after`, `limit`).
    pub fn from_params(params: &[(String, String)], now: DateTime<Utc>) -> Result<Self, String> {
        let mut q = ChangeQuery { limit: DEFAULT_PAGE, ..ChangeQuery::default() };
        for (name, value) in params {
            match name.as_str() {
                "asset" => q.asset_id = Some(number_param(name, value)?),
                "run" => q.run_id = Some(number_param(name, value)?),
                "since" => q.since = Some(time_param(name, value, now)?),
                "after" => q.after = number_param(name, value)?,
                "limit" => q.limit = page_size(value)?,
                other => {
                    return Err(format!(
                        "unknown parameter {other:?}: use asset, run, since, after or limit"
                    ));
                }
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn an_asset_query_is_read_from_its_parameters() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z").unwrap().with_timezone(&Utc);
        let q = AssetQuery::from_params(
            &params(&[
                ("kind", "host"),
                ("cidr", "10.1.0.0/16"),
                ("attr", "tcp_open=[443]"),
                ("attr", "sysObjectID~1.3.6.1.4.1.9"),
                ("attr", "sysLocation=rack 4"),
                ("seen_since", "7d"),
                ("limit", "50"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(q.kind.as_deref(), Some("host"));
        assert_eq!(q.within, crate::scheduler::targeting::parse_target("10.1.0.0/16"));
        assert_eq!(
            q.attributes[0],
            AttributeFilter::Equals("tcp_open".into(), serde_json::json!([443]))
        );
        assert_eq!(
            q.attributes[1],
            AttributeFilter::Contains("sysObjectID".into(), "1.3.6.1.4.1.9".into())
        );
        assert_eq!(q.attributes[2], AttributeFilter::Equals("sysLocation".into(), "rack 4".into()));
        assert_eq!(
            AttributeFilter::parse("sysObjectID^=1.3.6.1.4.1.9").unwrap(),
            AttributeFilter::StartsWith("sysObjectID".into(), "1.3.6.1.4.1.9".into())
        );
        assert_eq!(
            AttributeFilter::parse("tcp_open[]=443").unwrap(),
            AttributeFilter::Has("tcp_open".into(), serde_json::json!(443))
        );
        assert!(AttributeFilter::parse("[]=443").unwrap_err().contains("names no attribute"));
        assert_eq!(q.seen_since, Some(now - chrono::Duration::days(7)));
        assert_eq!(q.limit, 50);
    }

    #[test]
    fn bad_parameters_are_refused_saying_why() {
        let now = Utc::now();
        let err =
            |pairs: &[(&str, &str)]| AssetQuery::from_params(&params(pairs), now).unwrap_err();
        assert!(err(&[("cidr", "ten")]).contains("not a network"));
        assert!(err(&[("attr", "nothing")]).contains("none of"));
        assert!(err(&[("limit", "0")]).contains("between 1 and"));
        assert!(err(&[("seen_since", "yesterday")]).contains("RFC 3339"));
        assert!(err(&[("colour", "red")]).contains("unknown parameter"));
        let err = ChangeQuery::from_params(&params(&[("run", "x")]), now).unwrap_err();
        assert!(err.contains("not a number"));
    }
}
