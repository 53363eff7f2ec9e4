//! The shipped `entities` topology, run in the topology test driver.

use conductor_engine::runtime::driver::TopologyTestDriver;
use conductor_engine::runtime::fold::{
    HEADER_DLQ_ERROR_KIND, HEADER_DLQ_REASON, HEADER_DLQ_SOURCE_OFFSET,
};
use conductor_engine::runtime::parse_topology;
use conductor_processors::entities::{EntitiesProcessor, entities_table, relationships_table};
use serde_json::Value;

const TOPOLOGY: &str = include_str!("../../topologies/entities.toml");
const ENTITIES: &str = "ig.ingest.entities";
const RELS: &str = "ig.ingest.relationships";
const CHANGES: &str = "ig.changefeed.entities";

async fn driver(max_events: usize) -> TopologyTestDriver {
    let mut config = parse_topology(TOPOLOGY, &conductor_processors::names()).unwrap();
    config.batch.max_events = max_events;
    TopologyTestDriver::new(config, Box::new(EntitiesProcessor::default()))
        .await
        .unwrap()
}

fn upsert(tenant: &str, id: &str, version: i64, name: &str) -> String {
    format!(
        r#"{{"tenant":"{tenant}","kind":"EntityUpserted","subject":"{id}","occurred_at":"2026-02-01T12:00:0{}Z","data":{{"entity_type":"Person","version":{version},"attributes":{{"given_name":"{name}"}}}}}}"#,
        version % 10
    )
}

fn delete(tenant: &str, id: &str, version: i64) -> String {
    format!(
        r#"{{"tenant":"{tenant}","kind":"EntityDeleted","subject":"{id}","occurred_at":"2026-02-01T13:00:00Z","data":{{"entity_type":"Person","version":{version}}}}}"#
    )
}

#[tokio::test]
async fn folds_upserts_deletes_and_relationships_into_tables() {
    let mut d = driver(100).await;
    d.pipe_json(ENTITIES, &upsert("acme", "p1", 1, "Ada")).await;
    d.pipe_json(ENTITIES, &upsert("acme", "p2", 1, "Charles"))
        .await;
    d.pipe_json(ENTITIES, &upsert("globex", "p1", 5, "Grace"))
        .await;
    d.pipe_json(ENTITIES, &delete("acme", "p2", 2)).await;
    d.pipe_json(RELS, r#"{"tenant":"acme","kind":"RelationshipUpserted","subject":"r1","occurred_at":"2026-02-01T12:00:00Z","data":{"rel_id":"r1","src":"p1","dst":"p2","rel_type":"KNOWS","version":1,"attributes":{"since":1833}}}"#).await;
    d.run_until_idle().await.unwrap();

    let rows = d.rows(&entities_table()).await;
    assert_eq!(
        rows.len(),
        3,
        "tenant-scoped keys: acme/p1, acme/p2, globex/p1"
    );
    let find = |t: &str, id: &str| {
        rows.iter()
            .find(|r| r["tenant_id"] == t && r["entity_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(find("acme", "p1")["attributes"]["given_name"], "Ada");
    assert_eq!(find("globex", "p1")["attributes"]["given_name"], "Grace");
    let p2 = find("acme", "p2");
    assert_eq!(
        (p2["deleted"].clone(), p2["version"].clone()),
        (Value::Bool(true), Value::from(2)),
        "soft delete"
    );
    let rels = d.rows(&relationships_table()).await;
    assert_eq!(rels.len(), 1);
    assert_eq!(rels[0]["src_id"], "p1");
    assert_eq!(rels[0]["attributes"]["since"], 1833);
}

#[tokio::test]
async fn ignores_older_and_replayed_versions_without_change_events() {
    let mut d = driver(100).await;
    d.pipe_json(ENTITIES, &upsert("acme", "p1", 3, "Ada v3"))
        .await;
    d.run_until_idle().await.unwrap();
    d.pipe_json(ENTITIES, &upsert("acme", "p1", 2, "Ada v2 (late)"))
        .await;
    d.pipe_json(ENTITIES, &upsert("acme", "p1", 3, "Ada v3 (replayed)"))
        .await;
    d.pipe_json(ENTITIES, &delete("acme", "p1", 1)).await;
    d.run_until_idle().await.unwrap();
    let rows = d.rows(&entities_table()).await;
    assert_eq!(rows[0]["attributes"]["given_name"], "Ada v3");
    assert_eq!(rows[0]["deleted"], false, "an older delete does not delete");
    assert_eq!(
        d.output_json(CHANGES).await.len(),
        1,
        "only the applied mutation made a change event"
    );

    // A delete keeps a late older upsert from resurrecting the entity.
    d.pipe_json(ENTITIES, &delete("acme", "p1", 4)).await;
    d.pipe_json(ENTITIES, &upsert("acme", "p1", 3, "zombie"))
        .await;
    d.run_until_idle().await.unwrap();
    let rows = d.rows(&entities_table()).await;
    assert_eq!(
        (rows[0]["deleted"].clone(), rows[0]["version"].clone()),
        (Value::Bool(true), Value::from(4))
    );
}

#[tokio::test]
async fn emits_one_change_per_applied_mutation_in_order_per_key() {
    let mut d = driver(100).await;
    for v in 1..=5 {
        d.pipe_json(ENTITIES, &upsert("acme", "p1", v, &format!("v{v}")))
            .await;
    }
    d.pipe_json(ENTITIES, &delete("acme", "p1", 6)).await;
    d.run_until_idle().await.unwrap();
    let changes = d.output_json(CHANGES).await;
    assert_eq!(changes.len(), 6);
    let versions: Vec<i64> = changes
        .iter()
        .map(|c| c["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        versions,
        vec![1, 2, 3, 4, 5, 6],
        "per-key order of application"
    );
    assert_eq!(changes[5]["op"], "delete");
    assert_eq!(changes[0]["tenant"], "acme");
    assert_eq!(changes[0]["key"]["entity_id"], "p1");
    assert_eq!(changes[4]["row"]["attributes"]["given_name"], "v5");
    let mut ids: Vec<&str> = changes
        .iter()
        .map(|c| c["change_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "change ids are unique");
}

#[tokio::test]
async fn dead_letters_bad_input_with_bytes_and_reason_and_keeps_going() {
    let mut d = driver(100).await;
    d.pipe_raw(ENTITIES, b"\x00\x01 not an event").await;
    d.pipe_json(ENTITIES, r#"{"tenant":"acme","kind":"UsageRecorded","subject":"u1","occurred_at":"2026-02-01T12:00:00Z","data":{"usage_kind":"events","quantity":3}}"#).await;
    d.pipe_raw(ENTITIES, br#"{"tenant":"acme","kind":"EntityUpserted","subject":"p9","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":"x","attributes":{}}}"#).await;
    d.pipe_json(ENTITIES, &upsert("acme", "p1", 1, "Ada")).await;
    d.run_until_idle().await.unwrap();
    assert_eq!(
        d.rows(&entities_table()).await.len(),
        1,
        "the good event still landed"
    );
    let dlq = d.output("ig.dlq.entities").await;
    assert_eq!(dlq.len(), 3);
    let header = |r: &conductor_engine::log::StoredRecord, k: &str| {
        String::from_utf8(r.record.header(k).unwrap().to_vec()).unwrap()
    };
    let garbage = dlq
        .iter()
        .find(|r| r.record.value == b"\x00\x01 not an event")
        .expect("original bytes kept");
    assert_eq!(header(garbage, HEADER_DLQ_ERROR_KIND), "invalid_json");
    assert!(
        header(garbage, HEADER_DLQ_SOURCE_OFFSET)
            .parse::<i64>()
            .is_ok()
    );
    let wrong_kind = dlq
        .iter()
        .find(|r| header(r, HEADER_DLQ_ERROR_KIND) == "invalid_input")
        .unwrap();
    assert!(header(wrong_kind, HEADER_DLQ_REASON).contains("UsageRecorded"));
    let bad_field = dlq
        .iter()
        .find(|r| header(r, HEADER_DLQ_REASON).contains("data.version"))
        .unwrap();
    assert_eq!(header(bad_field, HEADER_DLQ_ERROR_KIND), "invalid_field");
}

/// Golden equivalence: the projection and the changefeed do not depend on
/// how input was cut into batches (what a crash-and-restart changes).
#[tokio::test]
async fn gives_the_same_projection_and_changefeed_whatever_the_batch_size() {
    let mut events = Vec::new();
    for i in 0..300i64 {
        let id = format!("p{}", i % 37);
        events.push(if i % 11 == 0 {
            delete("acme", &id, i)
        } else {
            upsert(if i % 3 == 0 { "globex" } else { "acme" }, &id, i / 2, "x")
        });
    }
    let mut digests = Vec::new();
    for batch in [1, 7, 64, 5000] {
        let mut d = driver(batch).await;
        for e in &events {
            d.pipe_json(ENTITIES, e).await;
        }
        d.run_until_idle().await.unwrap();
        let rows = d.rows(&entities_table()).await;
        let mut changes: Vec<(String, String)> = d
            .output_json(CHANGES)
            .await
            .iter()
            .map(|c| {
                (
                    c["change_id"].as_str().unwrap().to_string(),
                    c["version"].to_string(),
                )
            })
            .collect();
        changes.sort();
        digests.push((rows, changes));
    }
    for d in &digests[1..] {
        assert_eq!(d, &digests[0], "batch size changed the outcome");
    }
    assert!(!digests[0].1.is_empty());
}

#[tokio::test]
async fn emits_the_topology_telemetry() {
    let config = parse_topology(TOPOLOGY, &conductor_processors::names()).unwrap();
    let events: Vec<String> = (0..10)
        .map(|i| upsert("acme", &format!("p{i}"), 1, "Ada"))
        .collect();
    conductor_engine::testing::assert_topology_telemetry(
        config,
        Box::new(EntitiesProcessor::default()),
        &events,
    )
    .await;
}

/// `[processor_config] table` puts the projection under another name — a
/// second projection (`entities_v2`) folding the same events beside the first.
#[tokio::test]
async fn a_configured_table_name_holds_the_same_projection() {
    let v2_toml = TOPOLOGY.replace("name = \"entities\"", "name = \"entities_v2\"")
        + "\n[processor_config]\ntable = \"entities_v2\"\nrelationships_table = \"relationships_v2\"\n";
    let config = parse_topology(&v2_toml, &conductor_processors::names()).unwrap();
    let spec = conductor_processors::find("entities").unwrap();
    let tables = spec.tables(&config.processor_config).unwrap();
    let processor = spec.build(&config.processor_config).unwrap();
    let mut v2 = TopologyTestDriver::new(config, processor).await.unwrap();
    let mut v1 = driver(2).await;
    for d in [&v1, &v2] {
        d.pipe_json(ENTITIES, &upsert("acme", "p1", 1, "Ada")).await;
        d.pipe_json(ENTITIES, &upsert("acme", "p1", 2, "Ada L."))
            .await;
        d.pipe_json(ENTITIES, &delete("acme", "p2", 3)).await;
        d.pipe_json(RELS, r#"{"tenant":"acme","kind":"RelationshipUpserted","subject":"r1","occurred_at":"2026-02-01T12:00:00Z","data":{"rel_id":"r1","src":"p1","dst":"p2","rel_type":"KNOWS","version":1,"attributes":{}}}"#).await;
    }
    v1.run_until_idle().await.unwrap();
    v2.run_until_idle().await.unwrap();
    assert_eq!(tables[0].name, "entities_v2");
    let rows_v2 = v2.rows(&tables[0]).await;
    assert_eq!(rows_v2.len(), 2);
    assert_eq!(rows_v2, v1.rows(&entities_table()).await);
    assert_eq!(
        v2.rows(&tables[1]).await,
        v1.rows(&relationships_table()).await
    );
    // Its changes go to its own changefeed (named after the topology).
    assert_eq!(v2.output_json("ig.changefeed.entities_v2").await.len(), 4);
    assert_eq!(v1.output_json(CHANGES).await.len(), 4);
}
