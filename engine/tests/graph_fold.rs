//! Graph effects in the fold: each mutation is a version-guarded row of the
//! processor's graph tables and, when the row changes, one record on the
//! topology's graph topic — the same rows and records however the input is
//! batched, nothing for a stale or replayed change.

use conductor_engine::graph::{GraphImage, GraphMutation};
use conductor_engine::processor::{Effect, Processor, ProcessorError};
use conductor_engine::projection::TableSpec;
use conductor_engine::runtime::driver::TopologyTestDriver;
use conductor_engine::testing::*;
use conductor_schemas::Event;
use std::collections::BTreeMap;

const TOPIC: &str = "ig.ingest.entities";

fn decoded(events: &[String]) -> Vec<Event> {
    events
        .iter()
        .map(|e| conductor_schemas::codec::decode_json(e.as_bytes(), None).unwrap())
        .collect()
}

fn processor() -> GraphTestProcessor {
    GraphTestProcessor { prefix: "T".into() }
}

#[test]
fn the_graph_test_processor_meets_the_processor_contract() {
    check_processor_contract(processor, &decoded(&graph_events(8, 3)[..40]));
}

/// The graph a straight application of every mutation in log order gives:
/// per element, the mutation of the highest version.
fn expected_image(events: &[String]) -> GraphImage {
    let mut p = processor();
    let mut newest: BTreeMap<(String, String), GraphMutation> = BTreeMap::new();
    for e in decoded(events) {
        for effect in p.process(&e).unwrap() {
            let Effect::Graph(m) = effect else { panic!() };
            let (_, name, id) = m.identity();
            let key = (name.to_string(), id.to_string());
            if newest
                .get(&key)
                .is_none_or(|old| old.version() < m.version())
            {
                newest.insert(key, *m);
            }
        }
    }
    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    for m in newest.values() {
        let row = TEST_GRAPH.row(m);
        let spec = if row.table == TEST_GRAPH.nodes_table {
            TEST_GRAPH.nodes()
        } else {
            TEST_GRAPH.edges()
        };
        let json = row.to_json(&spec);
        if row.table == TEST_GRAPH.nodes_table {
            nodes.push(json);
        } else {
            edges.push(json);
        }
    }
    GraphImage::from_rows(&nodes, &edges)
}

async fn fold(events: &[String], max_events: usize) -> TopologyTestDriver {
    let mut driver = TopologyTestDriver::new(
        graph_topology("graph", TOPIC, max_events),
        Box::new(processor()),
    )
    .await
    .unwrap();
    for e in events {
        driver.pipe_json(TOPIC, e).await;
    }
    driver.run_until_idle().await.unwrap();
    driver
}

#[tokio::test]
async fn graph_tables_hold_the_newest_version_of_every_element() {
    let events = graph_events(40, 7);
    let driver = fold(&events, 17).await;
    let image = GraphImage::from_rows(
        &driver.rows(&TEST_GRAPH.nodes()).await,
        &driver.rows(&TEST_GRAPH.edges()).await,
    );
    let expected = expected_image(&events);
    assert!(!expected.nodes.is_empty() && !expected.edges.is_empty());
    assert!(
        !expected.stubs.is_empty(),
        "the history leaves stubs: {}",
        expected.summary()
    );
    assert_eq!(image, expected);
}

#[tokio::test]
async fn each_change_reaches_the_graph_topic_once_in_version_order_per_element() {
    let events = graph_events(40, 11);
    let driver = fold(&events, 17).await;
    let records = driver.output("ig.graph.graph").await;
    let stats = driver.status();
    assert_eq!(
        records.len() as u64,
        stats.changes,
        "one record per applied change"
    );
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for r in &records {
        let m: GraphMutation = serde_json::from_slice(&r.record.value).expect("a graph mutation");
        let key = String::from_utf8(r.record.key.clone().unwrap()).unwrap();
        assert_eq!(key, m.record_key());
        let before = last.insert(key.clone(), m.version());
        assert!(
            before.is_none_or(|v| v < m.version()),
            "{key}: version {} after {before:?}: a stale change was emitted",
            m.version()
        );
    }
    let stale = decoded(&events).len() as u64 - stats.changes;
    assert!(
        stale > 0,
        "the history has stale changes, which emit nothing"
    );
}

#[tokio::test]
async fn the_graph_does_not_depend_on_batch_boundaries() {
    let events = graph_events(30, 5);
    let one = fold(&events, 1).await;
    let many = fold(&events, 1000).await;
    for t in TEST_GRAPH.tables() {
        assert_eq!(one.rows(&t).await, many.rows(&t).await, "{}", t.name);
    }
    assert_eq!(graph_records(&one).await, graph_records(&many).await);
}

/// The graph topic's (key, value) pairs, sorted.
async fn graph_records(d: &TopologyTestDriver) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let mut v: Vec<_> = d
        .output("ig.graph.graph")
        .await
        .into_iter()
        .map(|r| (r.record.key, r.record.value))
        .collect();
    v.sort();
    v
}

/// Emits a graph mutation without declaring a graph.
struct Undeclared;

impl Processor for Undeclared {
    fn name(&self) -> &str {
        "undeclared"
    }
    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }
    fn process(&mut self, _: &Event) -> Result<Vec<Effect>, ProcessorError> {
        Ok(vec![Effect::Graph(Box::new(GraphMutation::delete_node(
            "L", "x", 1,
        )))])
    }
}

#[tokio::test]
async fn a_graph_mutation_without_a_declared_graph_halts_as_a_processor_bug() {
    let mut driver =
        TopologyTestDriver::new(latest_version_topology("u", TOPIC), Box::new(Undeclared))
            .await
            .unwrap();
    driver
        .pipe_json(TOPIC, &entity_upserted_json("acme", "s", 1))
        .await;
    let err = driver.run_until_idle().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("declares no graph"), "{text}");
}
