//! What the inventory answers: assets, their sources, relations and history,
//! and the queries that select them. Plain data, shared by the API, the CLI
//! and the exports.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::merge::ChangeKind;
use crate::scheduler::targeting::AddressSpan;

/// The most assets or changes one page holds.
pub const MAX_PAGE: u32 = 1_000;

/// An asset as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Asset {
    /// Its id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its name for people.
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
    pub disappeared_at: Option<DateTime<Utc>>,
}

/// Where an attribute's value came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The attribute.
    pub attribute: String,
    /// The plugin whose stage observed it.
    pub plugin: String,
    /// The task.
    pub task_id: i64,
    /// The run.
    pub run_id: i64,
    /// The part.
    pub part_id: i64,
    /// The agent that ran the part.
    pub agent: String,
    /// When.
    pub observed_at: DateTime<Utc>,
}

/// A relation between two assets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub subject: Option<String>,
    /// The value before.
    pub old: Option<serde_json::Value>,
    /// The value after.
    pub new: Option<serde_json::Value>,
    /// The run whose result (or sweep) made it.
    pub run_id: Option<i64>,
}

/// An asset with everything known of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
