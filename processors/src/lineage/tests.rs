use super::*;
use conductor_engine::testing::check_processor_contract;
use serde_json::{Value, json};

const RUN_ID: &str = "0176a8c2-fe01-7439-87e6-56a1a1b4029f";

fn ol(event_type: &str, at: &str, run: &str, with_io: bool) -> Value {
    let mut e = json!({
        "eventType": event_type,
        "eventTime": at,
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run},
        "job": {"namespace": "etl", "name": "daily_totals"},
    });
    if with_io {
        e["inputs"] = json!([{"namespace": "pg", "name": "orders"}]);
        e["outputs"] = json!([{"namespace": "pg", "name": "totals", "facets": {"columnLineage": {
            "_producer": "https://x.io", "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
            "fields": {"total": {"inputFields": [{"namespace": "pg", "name": "orders", "field": "amount",
                "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION"}]}]}}}}}]);
    }
    e
}

fn event(json: &Value, tenant: &str) -> Event {
    openlineage::to_event(json, tenant).unwrap()
}

fn samples() -> Vec<Event> {
    let other_run = "0176a8c2-fe01-7439-87e6-56a1a1b40300";
    vec![
        event(&ol("START", "2026-02-01T12:00:00Z", RUN_ID, false), "acme"),
        event(&ol("RUNNING", "2026-02-01T12:00:05Z", RUN_ID, true), "acme"),
        event(&ol("COMPLETE", "2026-02-01T12:00:09Z", RUN_ID, true), "acme"),
        event(&ol("COMPLETE", "2026-02-01T12:00:09Z", RUN_ID, true), "acme"),
        event(&ol("START", "2026-02-01T11:59:00Z", RUN_ID, false), "acme"),
        event(&ol("FAIL", "2026-02-01T13:00:00Z", other_run, true), "acme"),
        event(&ol("START", "2026-02-01T12:00:00Z", RUN_ID, true), "globex"),
        conductor_schemas::codec::decode_json(
            br#"{"tenant":"acme","kind":"UsageRecorded","subject":"u","occurred_at":"2026-02-01T12:00:03Z","data":{"usage_kind":"events","quantity":1}}"#,
            None,
        )
        .unwrap(),
    ]
}

#[test]
fn meets_the_processor_contract() {
    check_processor_contract(LineageProcessor::default, &samples());
}

fn graph_of(effects: &[Effect]) -> Vec<(String, String, i64)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Graph(m) => {
                let (_, kind, id) = m.identity();
                Some((kind.to_string(), id.to_string(), m.version()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_run_event_makes_datasets_a_process_a_run_and_their_edges() {
    let mut p = LineageProcessor::default();
    let effects = p
        .process(&event(
            &ol("COMPLETE", "2026-02-01T12:00:09Z", RUN_ID, true),
            "acme",
        ))
        .unwrap();
    let graph = graph_of(&effects);
    let has = |kind: &str, id: &str| graph.iter().any(|(k, i, _)| k == kind && i == id);
    assert!(has(DATASET, "acme/dataset:pg:orders"), "{graph:?}");
    assert!(has(DATASET, "acme/dataset:pg:totals"));
    assert!(has(PROCESS, "acme/job:etl:daily_totals"));
    assert!(has(INPUT_OF, "acme/dataset:pg:orders>job:etl:daily_totals"));
    assert!(has(
        OUTPUT_OF,
        "acme/job:etl:daily_totals>dataset:pg:totals"
    ));
    assert!(has(super::RUN, &format!("acme/run:{RUN_ID}")));
    assert!(has(
        HAS_RUN,
        &format!("acme/job:etl:daily_totals>run:{RUN_ID}")
    ));
    let rows: Vec<&RowUpsert> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Upsert(u) => Some(u),
            _ => None,
        })
        .collect();
    let run = rows.iter().find(|r| r.table == LINEAGE_RUNS_TABLE).unwrap();
    assert_eq!(run.values[2], SqlValue::Text("COMPLETE".into()));
    let column = rows
        .iter()
        .find(|r| r.table == COLUMN_LINEAGE_TABLE)
        .unwrap();
    assert_eq!(
        column.key,
        [
            "acme",
            "dataset:pg:totals",
            "total",
            "dataset:pg:orders",
            "amount",
            "DIRECT/AGGREGATION"
        ]
    );
}

#[test]
fn a_repeated_event_writes_no_run_row_and_a_late_start_keeps_the_run_complete() {
    let mut p = LineageProcessor::default();
    let complete = event(
        &ol("COMPLETE", "2026-02-01T12:00:09Z", RUN_ID, false),
        "acme",
    );
    p.process(&complete).unwrap();
    let again = p.process(&complete).unwrap();
    assert!(
        !again
            .iter()
            .any(|e| matches!(e, Effect::Upsert(u) if u.table == LINEAGE_RUNS_TABLE)),
        "{again:?}"
    );
    p.process(&event(
        &ol("START", "2026-02-01T12:00:00Z", RUN_ID, false),
        "acme",
    ))
    .unwrap();
    let run = p.run("acme", RUN_ID).unwrap();
    assert_eq!(run.status(), "COMPLETE");
    assert!(run.started_at.is_some());
}

#[test]
fn a_failed_run_keeps_its_error_message() {
    let mut p = LineageProcessor::default();
    let mut fail = ol("FAIL", "2026-02-01T12:00:09Z", RUN_ID, false);
    fail["run"]["facets"] = json!({"errorMessage": {
        "_producer": "https://x.io", "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json",
        "message": "division by zero", "programmingLanguage": "python"}});
    let effects = p.process(&event(&fail, "acme")).unwrap();
    let Some(Effect::Upsert(row)) = effects
        .iter()
        .find(|e| matches!(e, Effect::Upsert(u) if u.table == LINEAGE_RUNS_TABLE))
    else {
        panic!()
    };
    assert_eq!(row.values[6], SqlValue::Text("division by zero".into()));
}

#[test]
fn the_typed_run_event_is_folded_too() {
    let mut p = LineageProcessor::default();
    let e = conductor_schemas::codec::decode_json(
        format!(r#"{{"tenant":"acme","kind":"RunEvent","subject":"run:etl/j","occurred_at":"2026-02-01T12:00:00Z","data":{{"eventType":"START","eventTime":"2026-02-01T12:00:00Z","run":{{"runId":"{RUN_ID}"}},"job":{{"namespace":"etl","name":"j"}},"inputs":[{{"namespace":"pg","name":"a"}}],"outputs":[]}}}}"#).as_bytes(),
        None,
    )
    .unwrap();
    let graph = graph_of(&p.process(&e).unwrap());
    assert!(
        graph
            .iter()
            .any(|(k, i, _)| k == INPUT_OF && i == "acme/dataset:pg:a>job:etl:j")
    );
    assert_eq!(p.run("acme", RUN_ID).unwrap().status(), "START");
}

#[test]
fn other_kinds_are_invalid_input() {
    let err = LineageProcessor::default()
        .process(samples().last().unwrap())
        .unwrap_err();
    assert!(err.message.contains("UsageRecorded"), "{err:?}");
}

#[test]
fn a_registration_makes_a_registered_catalog_row_that_discovery_never_overrides() {
    let mut p = LineageProcessor::default();
    let registered = conductor_schemas::codec::decode_json(
        br#"{"tenant":"acme","kind":"DatasetRegistered","subject":"dataset:pg:totals","occurred_at":"2026-02-01T11:00:00Z","data":{"dataset_id":"dataset:pg:totals","name":"Daily totals","license":"internal","purpose":["analytics"],"retention":"P30D","region":"eu-west-1"}}"#,
        None,
    )
    .unwrap();
    let effects = p.process(&registered).unwrap();
    let row = |effects: &[Effect]| {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Upsert(u)
                    if u.table == DATASETS_TABLE && u.key[1] == "dataset:pg:totals" =>
                {
                    Some(u.clone())
                }
                _ => None,
            })
            .next()
    };
    let reg = row(&effects).unwrap();
    assert_eq!(reg.values[2], SqlValue::Bool(true));
    assert!(reg.version > 0);
    let Some(Effect::Graph(node)) = effects.iter().find(|e| matches!(e, Effect::Graph(_))) else {
        panic!()
    };
    assert!(
        node.version() > 1,
        "a registration's node replaces a discovered one"
    );
    // Lineage then names it: an unregistered row with a negative version.
    let discovered = row(&p
        .process(&event(
            &ol("COMPLETE", "2026-02-01T12:00:09Z", RUN_ID, true),
            "acme",
        ))
        .unwrap())
    .unwrap();
    assert_eq!(discovered.values[2], SqlValue::Bool(false));
    assert!(discovered.version < 0 && discovered.version < reg.version);
    // An earlier event's discovery outranks a later one's.
    let earlier = row(&p
        .process(&event(
            &ol("START", "2026-02-01T10:00:00Z", RUN_ID, true),
            "acme",
        ))
        .unwrap())
    .unwrap();
    assert!(earlier.version > discovered.version);

    let mut bad = registered.clone();
    if let EventData::DatasetRegistered(d) = &mut bad.data {
        d.dataset_id = "totals".into();
    }
    let err = p.process(&bad).unwrap_err();
    assert!(err.message.contains("data.dataset_id"), "{err:?}");
}
