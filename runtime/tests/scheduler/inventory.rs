//! The inventory's store, on each backend: the processing queue is the
//! results table (each result merged once), the disappearance sweep, and
//! the asset queries.

use jobstack::inventory::store::{Processed, ProcessedResult};
use jobstack::inventory::view::AttributeFilter;
use jobstack::inventory::{AssetQuery, ChangeKind, ChangeQuery, Observation};
use jobstack::scheduler::targeting::parse_target;
use jobstack::scheduler::{Agent, ResultStatus, Run, Task, TaskSpec};
use serde_json::{Value, json};

use crate::harness::{Backend, Harness, finished, result};
use crate::store_tests;

store_tests!(
    each_result_is_merged_once_however_often_it_is_processed,
    a_complete_later_run_records_what_disappeared_and_a_failed_part_proves_nothing,
    assets_are_filtered_by_kind_address_attribute_and_text_and_paged,
    failed_processing_is_shown_and_retried_and_holds_back_the_sweep,
);

/// The changes run `run_id` made, in order.
async fn changes_of(h: &Harness, run_id: i64) -> Vec<jobstack::inventory::Change> {
    let query = ChangeQuery { run_id: Some(run_id), limit: 100, ..ChangeQuery::default() };
    h.inventory.changes(&query).await.unwrap()
}

/// A host observation of `ip` with `tcp_open` ports.
fn host(ip: &str, ports: &[u16]) -> Value {
    json!({"kind": "host", "keys": {"ip": ip}, "attributes": {"tcp_open": ports}})
}

/// A task `scan` of one part per scope (its targets).
fn scan(h: &Harness, scopes: &[&str]) -> TaskSpec {
    let parts: Vec<Value> = scopes.iter().map(|s| json!({"label": s, "targets": [s]})).collect();
    let mut spec = h.spec("scan", Value::Array(parts));
    spec.retries = 0;
    spec
}

/// Lease every part of `run` and answer each with the records `emitted`
/// gives for its label (a failure where it gives `None`).
async fn answer(
    h: &Harness, agent: &Agent, run: &Run, emitted: impl Fn(&str) -> Option<Vec<Value>>,
) {
    let mut answered = 0;
    while let Some(lease) = h.sched.lease(agent).await.unwrap() {
        answered += 1;
        assert_eq!(lease.run_id, run.id);
        let submission = match emitted(&lease.part.label) {
            Some(records) => {
                let mut s = finished(&lease);
                s.emitted = records;
                s
            }
            None => result(&lease, ResultStatus::Failed),
        };
        h.sched.submit(agent, &submission).await.unwrap();
    }
    assert_eq!(answered, run.parts.total(), "every part of run {} answered", run.id);
}

/// Process every waiting result as a stage that answers its records as
/// observations, then sweep what can be swept.
async fn process(h: &Harness) -> (usize, usize) {
    let pending = h.inventory.pending_results(1_000).await.unwrap();
    let processed = pending
        .into_iter()
        .map(|result| {
            let observed = result.records.iter().map(|r| Observation::parse(r).unwrap()).collect();
            ProcessedResult { result, outcome: Processed::Observed(observed) }
        })
        .collect();
    let report = h.inventory.ingest(processed).await.unwrap();
    let mut gone = 0;
    for run_id in h.inventory.runs_to_sweep(100).await.unwrap() {
        gone += h.inventory.sweep(run_id, h.sched.now()).await.unwrap();
    }
    (report.results, gone)
}

async fn all_assets(h: &Harness) -> Vec<jobstack::inventory::Asset> {
    h.inventory.assets(&AssetQuery { limit: 1_000, ..AssetQuery::default() }).await.unwrap()
}

async fn task_of(h: &Harness, run: &Run) -> Task {
    h.store.task(run.task_id).await.unwrap().unwrap()
}

async fn each_result_is_merged_once_however_often_it_is_processed(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("a", &["10.0.0.0/8"]).await;
    let run = h.run_of(&scan(&h, &["10.0.0.0/29", "10.0.0.8/29"])).await;
    answer(&h, &agent, &run, |label| {
        Some(if label == "10.0.0.0/29" {
            vec![host("10.0.0.1", &[22]), host("10.0.0.2", &[80])]
        } else {
            vec![host("10.0.0.9", &[443])]
        })
    })
    .await;
    let pending = h.inventory.pending_results(10).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].records.len() + pending[1].records.len(), 3);
    assert_eq!(pending[0].source.run_id, run.id);
    assert_eq!(pending[0].source.agent, "a");
    assert_eq!(pending[0].source.scope.len(), 1, "the part's targets: {:?}", pending[0].source);
    let batch: Vec<ProcessedResult> = pending
        .into_iter()
        .map(|result| {
            let observed = result.records.iter().map(|r| Observation::parse(r).unwrap()).collect();
            ProcessedResult { result, outcome: Processed::Observed(observed) }
        })
        .collect();
    let first = h.inventory.ingest(batch.clone()).await.unwrap();
    assert_eq!((first.results, first.skipped, first.observations), (2, 0, 3));
    // The same results again (a daemon that died before it knew its
    // ingest committed, or another daemon): nothing is merged twice.
    let again = h.inventory.ingest(batch).await.unwrap();
    assert_eq!((again.results, again.skipped, again.observations, again.changes), (0, 2, 0, 0));
    assert!(h.inventory.pending_results(10).await.unwrap().is_empty());
    let assets = all_assets(&h).await;
    assert_eq!(assets.len(), 3);
    assert_eq!(assets[0].attributes["tcp_open"], json!([22]));
    let changes = changes_of(&h, run.id).await;
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|c| c.kind == ChangeKind::Appeared));
    let detail = h.inventory.asset(assets[0].id).await.unwrap().unwrap();
    assert_eq!(detail.sources.len(), 1);
    let source = &detail.sources[0].source;
    assert_eq!((source.run_id, source.agent.as_str()), (run.id, "a"));
    assert_eq!(detail.history.len(), 1);
}

async fn a_complete_later_run_records_what_disappeared_and_a_failed_part_proves_nothing(
    backend: Backend,
) {
    let h = Harness::new(backend).await;
    let agent = h.agent("a", &["10.0.0.0/8"]).await;
    let first = h.run_of(&scan(&h, &["10.0.0.0/29", "10.0.0.8/29"])).await;
    answer(&h, &agent, &first, |label| {
        Some(if label == "10.0.0.0/29" {
            vec![host("10.0.0.1", &[22, 80]), host("10.0.0.2", &[80])]
        } else {
            vec![host("10.0.0.9", &[443])]
        })
    })
    .await;
    assert_eq!(process(&h).await, (2, 0));
    // The next run: 10.0.0.2 is gone and 10.0.0.1 closed port 80; the part
    // over 10.0.0.8/29 fails, so 10.0.0.9 is not declared gone.
    let second = h.sched.force_run(&task_of(&h, &first).await).await.unwrap();
    answer(&h, &agent, &second, |label| {
        (label == "10.0.0.0/29").then(|| vec![host("10.0.0.1", &[22])])
    })
    .await;
    assert_eq!(process(&h).await, (1, 1));
    let mut seen: Vec<(ChangeKind, Option<String>)> =
        changes_of(&h, second.id).await.into_iter().map(|c| (c.kind, c.subject)).collect();
    seen.sort_by_key(|(k, _)| k.as_str());
    assert_eq!(
        seen,
        [(ChangeKind::Changed, Some("tcp_open".into())), (ChangeKind::Disappeared, None)]
    );
    let gone: Vec<String> = all_assets(&h)
        .await
        .into_iter()
        .filter(|a| a.disappeared_at.is_some())
        .flat_map(|a| a.keys["ip"].clone())
        .collect();
    assert_eq!(gone, ["10.0.0.2"]);
    // Swept once: a second pass changes nothing.
    assert_eq!(h.inventory.sweep(second.id, h.sched.now()).await.unwrap(), 0);
}

async fn assets_are_filtered_by_kind_address_attribute_and_text_and_paged(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("a", &["10.0.0.0/8"]).await;
    let run = h.run_of(&scan(&h, &["10.0.0.0/16"])).await;
    answer(&h, &agent, &run, |_| {
        let mut records: Vec<Value> = (1..=20)
            .map(|i| host(&format!("10.0.{}.{i}", i % 2), if i % 5 == 0 { &[443] } else { &[22] }))
            .collect();
        records.push(json!({"kind": "network_device", "name": "core_sw%1",
            "keys": {"ip": "10.0.9.1", "snmp_id": "core|1.3.6.1.4.1.9"},
            "attributes": {"sysObjectID": "1.3.6.1.4.1.9.1.1"}}));
        Some(records)
    })
    .await;
    process(&h).await;
    let h = &h;
    let query = |q: AssetQuery| async move {
        let q = AssetQuery { limit: if q.limit == 0 { 100 } else { q.limit }, ..q };
        h.inventory.assets(&q).await.unwrap()
    };
    assert_eq!(query(AssetQuery::default()).await.len(), 21);
    let kind =
        query(AssetQuery { kind: Some("network_device".into()), ..Default::default() }).await;
    assert_eq!(kind.len(), 1);
    assert_eq!(kind[0].name.as_deref(), Some("core_sw%1"));
    let within = parse_target("10.0.1.0/24");
    assert_eq!(query(AssetQuery { within, ..Default::default() }).await.len(), 10);
    let https = AttributeFilter::Equals("tcp_open".into(), json!([443]));
    let both = AssetQuery { within, attributes: vec![https], ..Default::default() };
    let found = query(both).await;
    assert_eq!(
        found.iter().flat_map(|a| a.keys["ip"].clone()).collect::<Vec<_>>(),
        ["10.0.1.5", "10.0.1.15"]
    );
    let cisco = AttributeFilter::Contains("sysObjectID".into(), "1.3.6.1.4.1.9".into());
    assert_eq!(query(AssetQuery { attributes: vec![cisco], ..Default::default() }).await.len(), 1);
    // `%` and `_` in the text are matched as themselves.
    assert_eq!(
        query(AssetQuery { text: Some("sw%1".into()), ..Default::default() }).await.len(),
        1
    );
    assert_eq!(
        query(AssetQuery { text: Some("sw_1".into()), ..Default::default() }).await.len(),
        0
    );
    assert_eq!(
        query(AssetQuery { text: Some("10.0.1.1".into()), ..Default::default() }).await.len(),
        6
    );
    // Paging by cursor walks every asset once.
    let mut after = 0;
    let mut walked = Vec::new();
    loop {
        let page = query(AssetQuery { after, limit: 7, ..Default::default() }).await;
        let Some(last) = page.last() else { break };
        after = last.id;
        walked.extend(page.iter().map(|a| a.id));
    }
    assert_eq!(walked.len(), 21);
    assert!(walked.windows(2).all(|w| w[0] < w[1]));
}

async fn failed_processing_is_shown_and_retried_and_holds_back_the_sweep(backend: Backend) {
    let h = Harness::new(backend).await;
    let agent = h.agent("a", &["10.0.0.0/8"]).await;
    let run = h.run_of(&scan(&h, &["10.0.0.0/29"])).await;
    answer(&h, &agent, &run, |_| Some(vec![host("10.0.0.1", &[22])])).await;
    let pending = h.inventory.pending_results(10).await.unwrap();
    let failed = pending
        .into_iter()
        .map(|result| ProcessedResult {
            result,
            outcome: Processed::Failed("stage trapped".into()),
        })
        .collect();
    assert_eq!(h.inventory.ingest(failed).await.unwrap().results, 1);
    let failures = h.inventory.processing_failures(run.id).await.unwrap();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].2, "stage trapped");
    assert!(h.inventory.runs_to_sweep(10).await.unwrap().is_empty(), "not swept while failed");
    assert!(all_assets(&h).await.is_empty());
    assert_eq!(h.inventory.retry_processing(run.id).await.unwrap(), 1);
    assert_eq!(process(&h).await, (1, 0));
    assert_eq!(all_assets(&h).await.len(), 1);
    assert!(h.inventory.processing_failures(run.id).await.unwrap().is_empty());
}
