use super::*;

/// A store in memory: applies a book's writes as a backend does (new ids
/// for created assets), and loads books for the next batch.
#[derive(Default)]
struct Memory {
    assets: BTreeMap<AssetId, AssetState>,
    changes: Vec<(AssetId, ChangeKind, Option<String>)>,
    next_id: AssetId,
}

impl Memory {
    fn book(&self, observations: &[Observation]) -> Book {
        let named = Book::keys_named(observations);
        let loaded = self.assets.values().filter(|a| {
            a.keys.iter().any(|k| named.contains(&(family(&a.kind).to_string(), k.clone())))
        });
        Book::new(loaded.cloned())
    }

    fn apply(&mut self, book: Book) {
        let (writes, _) = book.into_writes();
        let mut ids = HashMap::new();
        let real = |id: AssetId, ids: &mut HashMap<AssetId, AssetId>| {
            if id > 0 { id } else { *ids.get(&id).expect("created before named") }
        };
        for write in writes {
            match write {
                Write::CreateAsset { id, kind, name, .. } => {
                    self.next_id += 1;
                    ids.insert(id, self.next_id);
                    let asset = AssetState { id: self.next_id, kind, name, ..Default::default() };
                    self.assets.insert(self.next_id, asset);
                }
                Write::SetKind { id, kind } => {
                    self.assets.get_mut(&real(id, &mut ids)).unwrap().kind = kind;
                }
                Write::SetName { id, name } => {
                    self.assets.get_mut(&real(id, &mut ids)).unwrap().name = Some(name);
                }
                Write::AddKey { id, key, .. } => {
                    self.assets.get_mut(&real(id, &mut ids)).unwrap().keys.insert(key);
                }
                Write::RemoveKey { id, key, .. } => {
                    self.assets.get_mut(&real(id, &mut ids)).unwrap().keys.remove(&key);
                }
                Write::SetAttribute { id, name, value, .. } => {
                    let asset = self.assets.get_mut(&real(id, &mut ids)).unwrap();
                    asset.attributes.insert(name, value);
                }
                Write::SetRelation { id, relation, to } => {
                    let to = real(to, &mut ids);
                    let asset = self.assets.get_mut(&real(id, &mut ids)).unwrap();
                    asset.relations.insert(relation, to);
                }
                Write::Seen { id, .. } => {
                    self.assets.get_mut(&real(id, &mut ids)).unwrap().disappeared = false;
                }
                Write::Change { change, .. } => {
                    let id = real(change.asset_id, &mut ids);
                    self.changes.push((id, change.kind, change.subject));
                }
            }
        }
    }

    /// Merge `observations` in one batch.
    fn merge(&mut self, observations: &[Observation]) {
        let mut book = self.book(observations);
        for o in observations {
            book.observe(o, &source());
        }
        self.apply(book);
    }

    /// Merge one observation.
    fn see(&mut self, observation: serde_json::Value) {
        self.merge(&[obs(observation)]);
    }

    fn with_key(&self, name: &str, value: &str) -> Vec<&AssetState> {
        self.assets
            .values()
            .filter(|a| a.keys.iter().any(|k| k.name.as_str() == name && k.value == value))
            .collect()
    }
}

fn source() -> Source {
    Source {
        plugin: "test".into(),
        task_id: 1,
        run_id: 1,
        part_id: 1,
        agent: "a".into(),
        observed_at: DateTime::<Utc>::UNIX_EPOCH,
        scope: vec!["10.0.0.0/28".into()],
    }
}

fn obs(json: serde_json::Value) -> Observation {
    Observation::parse(&json.to_string()).unwrap()
}

fn kinds(memory: &Memory) -> Vec<ChangeKind> {
    memory.changes.iter().map(|(_, k, _)| *k).collect()
}

#[test]
fn the_same_address_seen_by_a_scan_and_by_snmp_is_one_asset() {
    let mut m = Memory::default();
    m.see(serde_json::json!({
        "kind": "host", "keys": {"ip": "10.0.0.5"}, "attributes": {"tcp_open": [22, 161]}}));
    m.see(serde_json::json!({
        "kind": "network_device", "name": "sw1",
        "keys": {"ip": "10.0.0.5", "snmp_id": "sw1|1.3.6.1.4.1.9"},
        "attributes": {"sysLocation": "rack 4"}}));
    assert_eq!(m.assets.len(), 1);
    let asset = m.assets.values().next().unwrap();
    assert_eq!(asset.kind, "network_device");
    assert_eq!(asset.name.as_deref(), Some("sw1"));
    assert_eq!(asset.attributes.len(), 2, "each plugin's attributes are kept");
    assert_eq!(
        kinds(&m),
        [ChangeKind::Appeared, ChangeKind::KindChanged, ChangeKind::Changed],
        "appeared with its first attributes, then refined and given a location"
    );
}

#[test]
fn seeing_the_same_thing_again_changes_nothing() {
    let mut m = Memory::default();
    let seen = [obs(serde_json::json!({
        "kind": "host", "keys": {"ip": "10.0.0.5"}, "attributes": {"tcp_open": [22]}}))];
    m.merge(&seen);
    let before = m.changes.len();
    m.merge(&seen);
    assert_eq!(m.changes.len(), before);
    assert_eq!(m.assets.len(), 1);
}

#[test]
fn an_address_that_answers_with_another_mac_is_a_new_asset_that_takes_the_address() {
    let mut m = Memory::default();
    m.see(serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.5", "mac": "0e5a00000001"}}));
    m.see(serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.5", "mac": "0e5a00000002"}}));
    assert_eq!(m.assets.len(), 2, "the old asset is not overwritten");
    let owners = m.with_key("ip", "10.0.0.5");
    assert_eq!(owners.len(), 1);
    assert!(owners[0].keys.iter().any(|k| k.value == "0e:5a:00:00:00:02"));
    let old = &m.with_key("mac", "0e:5a:00:00:00:01")[0];
    assert!(old.keys.iter().all(|k| k.name.as_str() != "ip"), "the old asset lost the address");
    assert!(m.changes.iter().any(|(id, k, s)| {
        *id == old.id && *k == ChangeKind::KeyLost && s.as_deref() == Some("ip")
    }));
}

#[test]
fn an_identity_key_wins_over_an_address_that_moved() {
    let mut m = Memory::default();
    m.see(serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.5", "serial": "S1"}}));
    // The same machine now answers on another address.
    m.see(serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.9", "serial": "S1"}}));
    assert_eq!(m.assets.len(), 1, "a moved device is not seen twice");
    let asset = m.assets.values().next().unwrap();
    assert_eq!(asset.keys.iter().filter(|k| k.name.as_str() == "ip").count(), 2);
}

#[test]
fn a_vm_is_related_to_its_host_whichever_is_seen_first() {
    let host =
        obs(serde_json::json!({"kind": "hypervisor", "name": "esx1", "keys": {"uuid": "H1"}}));
    let vm = obs(serde_json::json!({"kind": "vm", "name": "web", "keys": {"uuid": "V1"},
        "relations": [{"relation": "runs_on", "to": {"kind": "hypervisor", "keys": {"uuid": "H1"}}}]}));
    for order in [[vm.clone(), host.clone()], [host.clone(), vm.clone()]] {
        let mut m = Memory::default();
        m.merge(&order);
        assert_eq!(m.assets.len(), 2);
        let host_id = m.with_key("uuid", "h1")[0].id;
        let vm_asset = m.with_key("uuid", "v1")[0];
        assert_eq!(vm_asset.relations.get("runs_on"), Some(&host_id));
        assert_eq!(m.with_key("uuid", "h1")[0].name.as_deref(), Some("esx1"));
    }
}

#[test]
fn a_vm_moved_to_another_host_records_the_relation_change() {
    let mut m = Memory::default();
    let on = |host: &str| {
        obs(serde_json::json!({"kind": "vm", "keys": {"uuid": "V1"},
            "relations": [{"relation": "runs_on", "to": {"kind": "hypervisor", "keys": {"uuid": host}}}]}))
    };
    m.merge(&[on("H1")]);
    m.merge(&[on("H2")]);
    assert_eq!(kinds(&m).last(), Some(&ChangeKind::RelationChanged));
}

#[test]
fn merging_one_by_one_or_all_at_once_gives_the_same_assets_and_changes() {
    let seen = [
        obs(
            serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.5"}, "attributes": {"tcp_open": [22]}}),
        ),
        obs(
            serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.5"}, "attributes": {"tcp_open": [22, 80]}}),
        ),
        obs(serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.5", "mac": "0e5a00000002"}})),
        obs(serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.5", "mac": "0e5a00000003"}})),
    ];
    let mut together = Memory::default();
    together.merge(&seen);
    let mut apart = Memory::default();
    for o in &seen {
        apart.merge(std::slice::from_ref(o));
    }
    assert_eq!(together.assets, apart.assets);
    assert_eq!(together.changes, apart.changes);
    assert_eq!(together.assets.len(), 2);
}

#[test]
fn an_interface_mac_is_not_its_devices() {
    let mut m = Memory::default();
    m.merge(&[
        obs(serde_json::json!({"kind": "interface", "keys": {"mac": "0e5a00000001", "port": "sw1#1"}})),
        obs(serde_json::json!({"kind": "host", "keys": {"mac": "0e5a00000001"}})),
    ]);
    assert_eq!(m.assets.len(), 2);
    assert!(m.changes.iter().all(|(_, k, _)| *k != ChangeKind::KeyLost));
}

#[test]
fn a_disappeared_asset_seen_again_reappears() {
    let mut m = Memory::default();
    let seen = [obs(serde_json::json!({"kind": "host", "keys": {"ip": "10.0.0.5"}}))];
    m.merge(&seen);
    m.assets.values_mut().for_each(|a| a.disappeared = true);
    m.merge(&seen);
    assert_eq!(kinds(&m), [ChangeKind::Appeared, ChangeKind::Reappeared]);
}
