//! The inventory merge: which asset an observation is, and what it changes.
//!
//! The rules, in the order they are tried for each observation:
//!
//! 1. **Families.** Keys are unique within a family of kinds: `host`,
//!    `network_device`, `hypervisor` and `vm` are one family (devices: a
//!    VM's address found by a scan is the VM); every other kind is a family
//!    of its own (an interface's MAC is not its device's).
//! 2. **Identity first.** The asset owning the observation's strongest
//!    identity key ([`super::keys`]) is the asset.
//! 3. **Then locators.** With no identity key known, the asset owning one of
//!    its locators (`ip`, `hostname`) is the asset, unless that asset holds an
//!    identity key of a name the observation also has, with other values: an
//!    address that now answers with another MAC is another device.
//! 4. **Else a new asset** appears.
//! 5. **Keys move, never merge.** The asset takes every key of the
//!    observation; another asset holding one loses it (a `key_lost` change on
//!    it). Two stored assets are never merged into one.
//! 6. **Kinds refine.** A generic `host` becomes the specific device kind a
//!    later observation says; a specific kind never falls back to `host`.
//! 7. **Attributes** are replaced one by one, each with its source; one that
//!    differs from the stored value is a `changed` change (old → new), one not
//!    stored before too (old is null), except on the observation that made
//!    the asset appear. Attributes the observation does not mention are kept:
//!    each plugin says what it saw.
//! 8. **Relations** are one per name (a VM runs on one host): the named asset
//!    is found by the same rules, and created bare when not known yet.
//!
//! The merge works on a [`Book`]: the assets the batch's keys name, loaded by
//! the store, changed in memory as observations are merged in order, and
//! written back as the [`Write`]s it records. It does not depend on how
//! results are batched: merging them one by one or all at once gives the same
//! assets and the same changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::keys::Key;
use super::observation::{Observation, Reference};

/// An asset's id; negative for an asset created by this merge and not stored
/// yet (the store maps it to the id it gets).
pub type AssetId = i64;

/// Kinds that are one family of devices (keys unique across them).
const DEVICE_KINDS: [&str; 4] = ["host", "network_device", "hypervisor", "vm"];

/// The family of a kind: keys are unique within it.
pub fn family(kind: &str) -> &str {
    if DEVICE_KINDS.contains(&kind) { "device" } else { kind }
}

/// Where an observation came from (and, in the inventory's answers, where
/// an attribute's value came from).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Source {
    /// The plugin's name.
    pub plugin: String,
    /// The task.
    pub task_id: i64,
    /// The run.
    pub run_id: i64,
    /// The part.
    pub part_id: i64,
    /// The agent that ran the part.
    pub agent: String,
    /// When the result was received.
    pub observed_at: DateTime<Utc>,
    /// The part's targets (what its run covered, for disappearance); not
    /// kept with an attribute.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope: Vec<String>,
}

/// An asset as the merge sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AssetState {
    /// Its id.
    pub id: AssetId,
    /// Its kind.
    pub kind: String,
    /// Its name for people.
    pub name: Option<String>,
    /// Its keys.
    pub keys: BTreeSet<Key>,
    /// Its attributes.
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// Its relations, by name, to other assets.
    pub relations: BTreeMap<String, AssetId>,
    /// Whether a sweep found it gone (and nothing has seen it since).
    pub disappeared: bool,
}

/// What happened to an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// First seen.
    Appeared,
    /// An attribute changed (or was first set).
    Changed,
    /// Its kind was refined (`host` → `network_device`).
    KindChanged,
    /// A relation now points elsewhere.
    RelationChanged,
    /// Another asset took one of its keys.
    KeyLost,
    /// A complete later run over its address did not see it.
    Disappeared,
    /// Seen again after it disappeared.
    Reappeared,
}

impl ChangeKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Appeared => "appeared",
            Self::Changed => "changed",
            Self::KindChanged => "kind_changed",
            Self::RelationChanged => "relation_changed",
            Self::KeyLost => "key_lost",
            Self::Disappeared => "disappeared",
            Self::Reappeared => "reappeared",
        }
    }
}

impl std::str::FromStr for ChangeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(s.to_string()))
            .map_err(|_| format!("unknown change kind {s:?}"))
    }
}

/// A value before or after a change.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ChangeValue {
    /// An attribute's value, a kind, a key.
    Json(serde_json::Value),
    /// Another asset (stored as its id once it has one).
    Asset(AssetId),
}

/// One change of one asset, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewChange {
    /// The asset.
    pub asset_id: AssetId,
    /// What happened.
    pub kind: ChangeKind,
    /// The attribute, relation or key concerned.
    pub subject: Option<String>,
    /// The value before.
    pub old: Option<ChangeValue>,
    /// The value after.
    pub new: Option<ChangeValue>,
}

/// A write the store applies, in order, in the batch's transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Insert asset `id` (negative), first seen by the source: the store
    /// gives it its real id.
    CreateAsset { id: AssetId, kind: String, name: Option<String>, source: usize },
    /// Change an asset's kind.
    SetKind { id: AssetId, kind: String },
    /// Change an asset's name.
    SetName { id: AssetId, name: String },
    /// Give a key to an asset (the key is free: a loss was written first).
    AddKey { id: AssetId, family: String, key: Key },
    /// Take a key from an asset.
    RemoveKey { id: AssetId, family: String, key: Key },
    /// Set an attribute with its source.
    SetAttribute { id: AssetId, name: String, value: serde_json::Value, source: usize },
    /// Point a relation at another asset.
    SetRelation { id: AssetId, relation: String, to: AssetId },
    /// The asset was seen: `last_seen`, its sighting by the source's task,
    /// and `disappeared` cleared.
    Seen { id: AssetId, source: usize },
    /// Record a change.
    Change { change: NewChange, source: usize },
}

/// The assets a batch touches, and what the batch does to them.
#[derive(Debug, Default)]
pub struct Book {
    assets: HashMap<AssetId, AssetState>,
    owners: HashMap<(String, Key), AssetId>,
    next_new: AssetId,
    sources: Vec<Source>,
    writes: Vec<Write>,
}

impl Book {
    /// A book of the stored assets the batch's keys name.
    pub fn new(stored: impl IntoIterator<Item = AssetState>) -> Self {
        let mut book = Self { next_new: -1, ..Self::default() };
        for asset in stored {
            for key in &asset.keys {
                book.owners.insert((family(&asset.kind).to_string(), key.clone()), asset.id);
            }
            book.assets.insert(asset.id, asset);
        }
        book
    }

    /// Every key observations or their references name (what the store
    /// loads), with its family.
    pub fn keys_named<'o>(
        observations: impl IntoIterator<Item = &'o Observation>,
    ) -> BTreeSet<(String, Key)> {
        let mut keys = BTreeSet::new();
        for o in observations {
            let fam = family(&o.kind);
            keys.extend(o.keys.iter().map(|k| (fam.to_string(), k.clone())));
            for r in &o.relations {
                let fam = family(&r.to.kind);
                keys.extend(r.to.keys.iter().map(|k| (fam.to_string(), k.clone())));
            }
        }
        keys
    }

    /// Merge one observation from `source`; the asset it is.
    pub fn observe(&mut self, o: &Observation, source: &Source) -> AssetId {
        let source_at = self.source_index(source);
        let (id, appeared) = self.resolve(&o.kind, &o.keys, o.name.as_deref(), source_at);
        self.take_keys(id, &o.keys, source_at);
        self.refine_kind(id, &o.kind, source_at);
        if let Some(name) = &o.name
            && self.assets[&id].name.as_ref() != Some(name)
        {
            self.asset(id).name = Some(name.clone());
            self.writes.push(Write::SetName { id, name: name.clone() });
        }
        for (name, value) in &o.attributes {
            let old = self.asset(id).attributes.insert(name.clone(), value.clone());
            if old.as_ref() == Some(value) {
                continue;
            }
            self.writes.push(Write::SetAttribute {
                id,
                name: name.clone(),
                value: value.clone(),
                source: source_at,
            });
            if appeared {
                continue;
            }
            let (old, new) = (old.map(ChangeValue::Json), Some(ChangeValue::Json(value.clone())));
            self.change(id, ChangeKind::Changed, Some(name), old, new, source_at);
        }
        if std::mem::take(&mut self.asset(id).disappeared) {
            self.change(id, ChangeKind::Reappeared, None, None, None, source_at);
        }
        self.writes.push(Write::Seen { id, source: source_at });
        for r in &o.relations {
            let to = self.resolve_reference(&r.to, source_at);
            let old = self.asset(id).relations.insert(r.relation.clone(), to);
            if old == Some(to) {
                continue;
            }
            self.writes.push(Write::SetRelation { id, relation: r.relation.clone(), to });
            if let Some(old) = old {
                let (old, new) = (Some(ChangeValue::Asset(old)), Some(ChangeValue::Asset(to)));
                self.change(
                    id,
                    ChangeKind::RelationChanged,
                    Some(&r.relation),
                    old,
                    new,
                    source_at,
                );
            }
        }
        id
    }

    /// The writes recorded, in order, with the sources they name by index.
    pub fn into_writes(self) -> (Vec<Write>, Vec<Source>) {
        (self.writes, self.sources)
    }

    /// An asset of the book (loaded or created by it).
    pub fn get(&self, id: AssetId) -> Option<&AssetState> {
        self.assets.get(&id)
    }

    fn asset(&mut self, id: AssetId) -> &mut AssetState {
        self.assets.get_mut(&id).expect("the merge names only assets of its book")
    }

    fn source_index(&mut self, source: &Source) -> usize {
        if self.sources.last() != Some(source) {
            self.sources.push(source.clone());
        }
        self.sources.len() - 1
    }

    /// Rules 2 to 4: the asset `keys` name, or a new one (then `true`).
    fn resolve(
        &mut self, kind: &str, keys: &[Key], name: Option<&str>, source: usize,
    ) -> (AssetId, bool) {
        let fam = family(kind).to_string();
        let owner = |key: &Key| self.owners.get(&(fam.clone(), key.clone())).copied();
        let by_identity = keys.iter().filter(|k| !k.name.is_locator()).find_map(owner);
        let by_locator = || {
            keys.iter().filter(|k| k.name.is_locator()).filter_map(owner).find(|id| {
                let asset = &self.assets[id];
                kinds_match(&asset.kind, kind) && !contradicts(asset, keys)
            })
        };
        if let Some(id) = by_identity.filter(|id| kinds_match(&self.assets[id].kind, kind)) {
            return (id, false);
        }
        if let Some(id) = by_locator() {
            return (id, false);
        }
        let id = self.next_new;
        self.next_new -= 1;
        let asset = AssetState {
            id,
            kind: kind.to_string(),
            name: name.map(str::to_string),
            ..AssetState::default()
        };
        self.assets.insert(id, asset);
        self.writes.push(Write::CreateAsset {
            id,
            kind: kind.to_string(),
            name: name.map(str::to_string),
            source,
        });
        self.change(id, ChangeKind::Appeared, None, None, None, source);
        (id, true)
    }

    /// The asset a relation names; created bare (kind and keys) when unknown.
    fn resolve_reference(&mut self, to: &Reference, source: usize) -> AssetId {
        let (id, _) = self.resolve(&to.kind, &to.keys, None, source);
        self.take_keys(id, &to.keys, source);
        id
    }

    /// Rule 5: `id` takes every key; their holders lose them.
    fn take_keys(&mut self, id: AssetId, keys: &[Key], source: usize) {
        let fam = family(&self.assets[&id].kind).to_string();
        for key in keys {
            let slot = (fam.clone(), key.clone());
            match self.owners.get(&slot).copied() {
                Some(owner) if owner == id => continue,
                Some(owner) => {
                    self.asset(owner).keys.remove(key);
                    self.writes.push(Write::RemoveKey {
                        id: owner,
                        family: fam.clone(),
                        key: key.clone(),
                    });
                    let old = Some(ChangeValue::Json(key.value.clone().into()));
                    let new = Some(ChangeValue::Asset(id));
                    let subject = Some(key.name.as_str());
                    self.change(owner, ChangeKind::KeyLost, subject, old, new, source);
                }
                None => {}
            }
            self.owners.insert(slot, id);
            self.asset(id).keys.insert(key.clone());
            self.writes.push(Write::AddKey { id, family: fam.clone(), key: key.clone() });
        }
    }

    /// Rule 6.
    fn refine_kind(&mut self, id: AssetId, kind: &str, source: usize) {
        let current = self.assets[&id].kind.clone();
        if current == "host" && kind != "host" {
            self.asset(id).kind = kind.to_string();
            self.writes.push(Write::SetKind { id, kind: kind.to_string() });
            let old = Some(ChangeValue::Json(current.into()));
            let new = Some(ChangeValue::Json(kind.into()));
            self.change(id, ChangeKind::KindChanged, None, old, new, source);
        }
    }

    fn change(
        &mut self, asset_id: AssetId, kind: ChangeKind, subject: Option<&str>,
        old: Option<ChangeValue>, new: Option<ChangeValue>, source: usize,
    ) {
        let change = NewChange { asset_id, kind, subject: subject.map(str::to_string), old, new };
        self.writes.push(Write::Change { change, source });
    }
}

/// Whether an asset of kind `stored` may be what an observation of kind
/// `seen` saw: the same kind, or a generic `host` of the device family.
fn kinds_match(stored: &str, seen: &str) -> bool {
    stored == seen || (family(stored) == "device" && (stored == "host" || seen == "host"))
}

/// Rule 3's exception: the asset holds identity keys of a name the
/// observation has, and none of the observation's values.
fn contradicts(asset: &AssetState, keys: &[Key]) -> bool {
    keys.iter().filter(|k| !k.name.is_locator()).any(|k| {
        let same_name: Vec<&Key> = asset.keys.iter().filter(|a| a.name == k.name).collect();
        !same_name.is_empty()
            && !same_name
                .iter()
                .any(|a| keys.iter().any(|o| o.name == a.name && o.value == a.value))
    })
}

#[cfg(test)]
mod tests;
