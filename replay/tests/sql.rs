//! `SqlContext`: DataFusion over topics (decoded through the schemas) and
//! projection tables, on a memory log and store folded by the real worker.

use conductor_engine::log::memory::MemoryLog;
use conductor_engine::log::{Log, Record, TopicConfig};
use conductor_engine::processor::Processor;
use conductor_engine::runtime::{Worker, parse_topology};
use conductor_engine::store::ProjectionStore;
use conductor_engine::store::memory::MemoryStore;
use conductor_processors::entities::EntitiesProcessor;
use conductor_replay::sql::output::{self, Format};
use conductor_replay::sql::{SqlContext, SqlError};
use datafusion::arrow::array::{Array, Int64Array, StringArray};
use std::sync::Arc;

const TOPOLOGY: &str = include_str!("../../topologies/entities.toml");

fn upsert(tenant: &str, id: &str, version: i64, entity_type: &str) -> Record {
    let json = format!(
        r#"{{"tenant":"{tenant}","kind":"EntityUpserted","subject":"{id}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"{entity_type}","version":{version},"attributes":{{"name":"x"}}}}}}"#
    );
    Record::new(Some(id.as_bytes().to_vec()), json.into_bytes())
}

async fn setup() -> SqlContext {
    let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
    for (t, p) in [("ig.ingest.entities", 2), ("ig.ingest.relationships", 1)] {
        log.create_topic(t, &TopicConfig::with_partitions(p))
            .await
            .unwrap();
    }
    let mut records = Vec::new();
    for i in 0..40 {
        let kind = if i % 4 == 0 { "Organization" } else { "Person" };
        records.push(upsert("acme", &format!("e{i}"), 1, kind));
    }
    for i in 0..10 {
        records.push(upsert("globex", &format!("g{i}"), 2, "Person"));
    }
    records.push(Record::new(None, b"{not json".to_vec()));
    for (i, r) in records.into_iter().enumerate() {
        log.append("ig.ingest.entities", (i % 2) as i32, vec![r])
            .await
            .unwrap();
    }
    let store: Arc<dyn ProjectionStore> = Arc::new(MemoryStore::new());
    let config = parse_topology(TOPOLOGY, &conductor_processors::names()).unwrap();
    let mut w = Worker::start(
        config,
        Box::new(EntitiesProcessor::default()),
        log.clone(),
        store.clone(),
    )
    .await
    .unwrap();
    while w.step().await.unwrap().records > 0 {}
    w.flush().await.unwrap();
    SqlContext::new(log, Some(store), EntitiesProcessor::default().tables())
        .await
        .unwrap()
}

fn strings(result: &conductor_replay::sql::QueryResult, col: usize) -> Vec<Option<String>> {
    result
        .batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(col)
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            (0..a.len())
                .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ints(result: &conductor_replay::sql::QueryResult, col: usize) -> Vec<i64> {
    result
        .batches
        .iter()
        .flat_map(|b| {
            let a = b.column(col).as_any().downcast_ref::<Int64Array>().unwrap();
            a.values().to_vec()
        })
        .collect()
}

#[tokio::test]
async fn groups_a_topic_by_decoded_event_fields() {
    let ctx = setup().await;
    let r = ctx
        .query(r#"SELECT tenant, entity_type, count(*) AS n FROM "ig.ingest.entities" WHERE decode_error IS NULL GROUP BY tenant, entity_type ORDER BY tenant, entity_type"#)
        .await
        .unwrap();
    assert_eq!(
        strings(&r, 0),
        ["acme", "acme", "globex"].map(|s| Some(s.to_string()))
    );
    assert_eq!(
        strings(&r, 1),
        ["Organization", "Person", "Person"].map(|s| Some(s.to_string()))
    );
    assert_eq!(ints(&r, 2), [10, 30, 10]);

    let bad = ctx
        .query(
            r#"SELECT decode_error, kind FROM "ig.ingest.entities" WHERE decode_error IS NOT NULL"#,
        )
        .await
        .unwrap();
    assert_eq!(
        bad.rows(),
        1,
        "an undecodable record is a row with its reason"
    );
    assert!(strings(&bad, 0)[0].as_deref().unwrap().len() > 5);
    assert_eq!(strings(&bad, 1), [None]);
}

#[tokio::test]
async fn queries_projection_tables_and_joins_them_with_topics() {
    let ctx = setup().await;
    let r = ctx
        .query("SELECT tenant_id, count(*), sum(version) FROM entities GROUP BY tenant_id ORDER BY tenant_id")
        .await
        .unwrap();
    assert_eq!(
        strings(&r, 0),
        ["acme", "globex"].map(|s| Some(s.to_string()))
    );
    assert_eq!(ints(&r, 1), [40, 10]);
    assert_eq!(ints(&r, 2), [40, 20]);
    let joined = ctx
        .query(r#"SELECT count(*) FROM entities e JOIN "ig.ingest.entities" t ON t.tenant = e.tenant_id AND t.subject = e.entity_id AND t.version = e.version"#)
        .await
        .unwrap();
    assert_eq!(ints(&joined, 0), [50]);
}

#[tokio::test]
async fn writes_csv_and_json_and_explains_unknown_tables() {
    let ctx = setup().await;
    let r = ctx
        .query(
            "SELECT tenant_id, count(*) AS n FROM entities GROUP BY tenant_id ORDER BY tenant_id",
        )
        .await
        .unwrap();
    let mut csv = Vec::new();
    output::write(&r, Format::Csv, &mut csv).unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "tenant_id,n\nacme,40\nglobex,10\n"
    );
    let mut json = Vec::new();
    output::write(&r, Format::Json, &mut json).unwrap();
    assert_eq!(
        String::from_utf8(json).unwrap(),
        "{\"tenant_id\":\"acme\",\"n\":40}\n{\"tenant_id\":\"globex\",\"n\":10}\n"
    );
    let err = ctx.query("SELECT * FROM ingest").await.err().unwrap();
    match err {
        SqlError::Query(m) => assert!(
            m.contains("\"ig.ingest.entities\"") && m.contains("entities"),
            "{m}"
        ),
        other => panic!("{other}"),
    }
}
