//! The shipped `lineage` topology, run in the topology test driver on plain
//! OpenLineage JSON (what a Kafka client's transport sends).

use conductor_engine::runtime::driver::TopologyTestDriver;
use conductor_engine::runtime::fold::{HEADER_DLQ_ERROR_KIND, HEADER_DLQ_REASON};
use conductor_processors::lineage::{
    COLUMN_LINEAGE_TABLE, LINEAGE_GRAPH, LineageConfig, LineageProcessor, column_lineage_table,
    runs_table,
};
use serde_json::{Value, json};

const TOPOLOGY: &str = include_str!("../../topologies/lineage.toml");
const RUNS: &str = "ig.ingest.runs";
const RUN_ID: &str = "0176a8c2-fe01-7439-87e6-56a1a1b4029f";

async fn driver(max_events: usize) -> TopologyTestDriver {
    let mut config = conductor_processors::parse_topology(TOPOLOGY).unwrap();
    config.batch.max_events = max_events;
    TopologyTestDriver::new(
        config,
        Box::new(LineageProcessor::new(LineageConfig::default())),
    )
    .await
    .unwrap()
}

fn run_event(event_type: &str, at: &str) -> Value {
    json!({
        "eventType": event_type,
        "eventTime": at,
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": RUN_ID},
        "job": {"namespace": "etl", "name": "daily_totals"},
        "inputs": [{"namespace": "postgres://db:5432", "name": "public.orders"}],
        "outputs": [{"namespace": "postgres://db:5432", "name": "public.totals", "facets": {"columnLineage": {
            "_producer": "https://x.io", "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
            "fields": {"total": {"inputFields": [{"namespace": "postgres://db:5432", "name": "public.orders", "field": "amount",
                "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION"}]}]}}}}}]
    })
}

async fn pipe(d: &TopologyTestDriver, event: &Value) {
    d.pipe_raw(RUNS, event.to_string().as_bytes()).await;
}

#[tokio::test]
async fn plain_openlineage_events_build_the_graph_and_the_run() {
    let mut d = driver(100).await;
    // Out of order, with a client's retry of COMPLETE.
    pipe(&d, &run_event("COMPLETE", "2026-02-01T12:00:09Z")).await;
    pipe(&d, &run_event("START", "2026-02-01T12:00:00Z")).await;
    pipe(&d, &run_event("RUNNING", "2026-02-01T12:00:04Z")).await;
    pipe(&d, &run_event("COMPLETE", "2026-02-01T12:00:09Z")).await;
    d.run_until_idle().await.unwrap();

    let runs = d.rows(&runs_table()).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(
        run["tenant_id"], "default",
        "no ig-tenant header: the default tenant"
    );
    assert_eq!(run["status"], "COMPLETE", "a late START doesn't reopen it");
    assert_eq!(
        run["version"], 2,
        "START after COMPLETE changed the start; RUNNING and the retry nothing"
    );
    assert!(
        run["started_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-02-01T12:00:00")
    );
    assert!(
        run["ended_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-02-01T12:00:09")
    );

    let nodes = d.rows(&LINEAGE_GRAPH.nodes()).await;
    let ids: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| (n["label"].as_str().unwrap(), n["id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            (
                "Dataset",
                "default/dataset:postgres://db:5432:public.orders"
            ),
            (
                "Dataset",
                "default/dataset:postgres://db:5432:public.totals"
            ),
            ("Process", "default/job:etl:daily_totals"),
            ("Run", &format!("default/run:{RUN_ID}") as &str),
        ]
    );
    let edges = d.rows(&LINEAGE_GRAPH.edges()).await;
    let types: Vec<&str> = edges
        .iter()
        .map(|e| e["rel_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["HAS_RUN", "INPUT_OF", "OUTPUT_OF"]);
    let column = d.rows(&column_lineage_table()).await;
    assert_eq!(column.len(), 1);
    assert_eq!(column[0]["input_field"], "amount");
    assert_eq!(column[0]["transformation_subtype"], "AGGREGATION");
    assert_eq!(COLUMN_LINEAGE_TABLE, "lineage_column_lineage");

    // Applied graph mutations went to ig.graph.lineage, once each.
    let graph_records = d.output("ig.graph.lineage").await;
    assert_eq!(
        graph_records.len(),
        nodes.len() + edges.len() + 1,
        "the run node twice (two versions)"
    );
}

#[tokio::test]
async fn a_bad_event_goes_to_the_dlq_naming_the_field() {
    let mut d = driver(100).await;
    let mut bad = run_event("START", "2026-02-01T12:00:00Z");
    bad["run"]["runId"] = json!("42");
    pipe(&d, &bad).await;
    let mut no_job = run_event("START", "2026-02-01T12:00:00Z");
    no_job["job"].as_object_mut().unwrap().remove("name");
    pipe(&d, &no_job).await;
    pipe(&d, &run_event("START", "2026-02-01T12:00:00Z")).await;
    d.run_until_idle().await.unwrap();
    let dlq = d.output("ig.dlq.lineage").await;
    assert_eq!(dlq.len(), 2);
    let reason = |i: usize| {
        String::from_utf8(dlq[i].record.header(HEADER_DLQ_REASON).unwrap().to_vec()).unwrap()
    };
    assert!(reason(0).contains("run.runId"), "{}", reason(0));
    assert!(reason(1).contains("job.name"), "{}", reason(1));
    assert_eq!(
        dlq[0].record.header(HEADER_DLQ_ERROR_KIND).unwrap(),
        b"invalid_field"
    );
    assert_eq!(
        dlq[0].record.value,
        bad.to_string().into_bytes(),
        "the bytes as sent"
    );
    assert_eq!(d.rows(&runs_table()).await.len(), 1);
}

#[tokio::test]
async fn batch_size_does_not_change_the_outcome() {
    let mut digests = Vec::new();
    for max_events in [1, 2, 1000] {
        let mut d = driver(max_events).await;
        for (i, kind) in ["START", "RUNNING", "RUNNING", "FAIL", "START"]
            .iter()
            .enumerate()
        {
            pipe(&d, &run_event(kind, &format!("2026-02-01T12:00:0{i}Z"))).await;
        }
        d.run_until_idle().await.unwrap();
        digests.push((
            d.rows(&runs_table()).await,
            d.rows(&LINEAGE_GRAPH.nodes()).await,
            d.rows(&LINEAGE_GRAPH.edges()).await,
        ));
    }
    assert_eq!(digests[0].0[0]["status"], "FAIL");
    for other in &digests[1..] {
        assert_eq!(other, &digests[0]);
    }
}

#[tokio::test]
async fn emits_the_topology_telemetry() {
    let config = conductor_processors::parse_topology(TOPOLOGY).unwrap();
    let events: Vec<String> = (0..5)
        .map(|i| {
            let mut e = run_event("RUNNING", &format!("2026-02-01T12:00:0{i}Z"));
            e["run"]["runId"] = json!(format!("0176a8c2-fe01-7439-87e6-56a1a1b4029{i}"));
            // The envelope form (the helper pipes validated envelopes).
            let event = conductor_schemas::openlineage::to_event(&e, "acme").unwrap();
            String::from_utf8(conductor_schemas::codec::encode_json(&event)).unwrap()
        })
        .collect();
    conductor_engine::testing::assert_topology_telemetry(
        config,
        Box::new(LineageProcessor::default()),
        &events,
    )
    .await;
}
