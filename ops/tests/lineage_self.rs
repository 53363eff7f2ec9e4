//! Conductor reports its own lineage: `conductor run` sends START, RUNNING
//! (with the `conductor_progress` facet), COMPLETE — or FAIL when a topology
//! halts — for each topology it runs, into its own `ig.ingest.runs` and to
//! an external OpenLineage endpoint (`[lineage] endpoint`; here a second
//! `conductor run`, reached over HTTP with the API key the config names).

mod support;

use serde_json::Value;
use std::process::Command;
use support::*;

const SECRET: &str = "lineage-self-secret-lineage-self-secret-01";

/// The plain OpenLineage events `conductor run` appended for `job`.
fn reported(dir: &std::path::Path, job: &str) -> Vec<Value> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(topic_records(dir, "ig.ingest.runs"))
        .iter()
        .map(|r| serde_json::from_slice::<Value>(&r.value).unwrap())
        .filter(|e| e["job"]["name"] == job)
        .collect()
}

#[test]
fn run_reports_its_topologies_runs_to_itself_and_to_an_endpoint() {
    // The endpoint: another Conductor, folding what it is posted.
    let endpoint_dir = tempfile::tempdir().unwrap();
    let (_endpoint, addr) = spawn_server_with(
        endpoint_dir.path(),
        &["run", "--only", "lineage"],
        &[("CONDUCTOR_JWT_SECRET", SECRET)],
    );

    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("people.jsonl");
    std::fs::write(&input, entity_workload(20_000)).unwrap();
    produce_entities(dir.path(), &input);
    run_ok(conductor(dir.path()).args([
        "topic",
        "create",
        "ig.ingest.relationships",
        "--partitions",
        "3",
    ]));
    let config = dir.path().join("conductor.toml");
    std::fs::write(
        &config,
        format!(
            "[lineage]\nendpoint = \"http://{addr}\"\napi_key_env = \"LINEAGE_API_KEY\"\nrunning_every_secs = 1\n"
        ),
    )
    .unwrap();
    let out = conductor(dir.path())
        .env(
            "LINEAGE_API_KEY",
            bearer_token(SECRET, "ops", &["lineage.write"]),
        )
        .arg("--config")
        .arg(&config)
        .args([
            "run",
            "--only",
            "entities",
            "--only",
            "lineage",
            "--listen",
            "127.0.0.1:0",
            "--exit-when-idle",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Its own log: START, RUNNING…, COMPLETE of one run of `entities`.
    let events = reported(dir.path(), "entities");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types.first(), Some(&"START"), "{types:?}");
    assert_eq!(types.last(), Some(&"COMPLETE"), "{types:?}");
    assert!(
        types[1..types.len() - 1].iter().all(|t| *t == "RUNNING"),
        "{types:?}"
    );
    let run_ids: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["run"]["runId"].as_str().unwrap())
        .collect();
    assert_eq!(run_ids.len(), 1);
    let complete = events.last().unwrap();
    assert_eq!(complete["job"]["namespace"], "conductor");
    let progress = &complete["run"]["facets"]["conductor_progress"];
    // Offsets and lag are the status's, refreshed every second: they may
    // trail the last batch; the counts don't.
    assert!(progress["lag"].as_i64().is_some(), "{progress}");
    let folded =
        progress["eventsProcessed"].as_u64().unwrap() + progress["dlqEvents"].as_u64().unwrap();
    assert_eq!(folded, 20_000, "{progress}");
    let names = |key: &str| -> Vec<String> {
        complete[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names("inputs"),
        ["ig.ingest.entities", "ig.ingest.relationships"]
    );
    assert!(
        names("outputs").contains(&"entities".to_string()),
        "{:?}",
        names("outputs")
    );
    assert!(names("outputs").contains(&"ig.changefeed.entities".to_string()));
    if types.len() > 2 {
        let running = &events[1]["run"]["facets"]["conductor_progress"];
        assert!(
            running["eventsPerSecond"].as_f64().unwrap() > 0.0,
            "{running}"
        );
        assert!(running["offsets"].as_array().is_some_and(|o| !o.is_empty()));
    }
    // Its lineage topology folded them: the run is COMPLETE.
    let db = dir.path().join("projections.db");
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT tenant_id, status FROM lineage_runs WHERE job_name = 'entities'",
            &[]
        ),
        ["default|COMPLETE"]
    );

    // The endpoint got them too, for the key's tenant.
    let url = format!("http://{addr}/api/v1/lineage?nodeId=job%3Aconductor%3Aentities&depth=1");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let reader = bearer_token(SECRET, "ops", &["lineage.read"]);
    let graph = loop {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-H",
                &format!("Authorization: Bearer {reader}"),
                &url,
            ])
            .output()
            .unwrap();
        let body: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let done = body["graph"].as_array().is_some_and(|g| {
            g.iter().any(|n| {
                n["id"] == "job:conductor:entities" && n["data"]["latestRun"]["state"] == "COMPLETE"
            })
        });
        if done {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the endpoint has no COMPLETE run: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let job = graph["graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "job:conductor:entities")
        .unwrap();
    assert!(
        job["inEdges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["origin"]
                .as_str()
                .unwrap()
                .ends_with("/log:ig.ingest.entities")),
        "{job}"
    );
}

/// A topology that halts reports FAIL with its error, and the lineage
/// topology beside it folds that: a run's failure is in `lineage_runs`.
#[test]
fn a_halted_topology_reports_fail_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    for topic in ["ig.ingest.entities", "ig.ingest.relationships"] {
        run_ok(conductor(dir.path()).args(["topic", "create", topic, "--partitions", "1"]));
    }
    // A table the store can't write one entity into: a permanent error.
    let db = dir.path().join("projections.db");
    let made = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.execute(\"CREATE TABLE entities (tenant_id TEXT NOT NULL, entity_id TEXT NOT NULL, version BIGINT NOT NULL, kind TEXT NOT NULL, attributes TEXT NOT NULL, deleted INTEGER NOT NULL, updated_at TEXT NOT NULL, last_event_id TEXT NOT NULL, PRIMARY KEY (tenant_id, entity_id), CHECK (entity_id <> 'poison'))\")\nc.commit()",
        ])
        .arg(&db)
        .status()
        .unwrap();
    assert!(made.success());
    let input = dir.path().join("poison.jsonl");
    std::fs::write(
        &input,
        r#"{"tenant":"acme","kind":"EntityUpserted","subject":"poison","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":1,"attributes":{"given_name":"Ada"}}}"#,
    )
    .unwrap();
    run_ok(
        conductor(dir.path())
            .args(["produce", "--topic", "ig.ingest.entities"])
            .arg(&input),
    );
    let out = conductor(dir.path())
        .args([
            "run",
            "--only",
            "entities",
            "--only",
            "lineage",
            "--listen",
            "127.0.0.1:0",
            "--exit-when-idle",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the topology halts");
    let events = reported(dir.path(), "entities");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["START", "FAIL"]);
    let message = events[1]["run"]["facets"]["errorMessage"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("CHECK constraint failed"), "{message}");
    let rows = sqlite_rows(
        &db,
        "SELECT job_name, status, error_message LIKE '%CHECK constraint failed%' FROM lineage_runs ORDER BY job_name",
        &[],
    );
    assert_eq!(rows, ["entities|FAIL|1", "lineage|COMPLETE|None"]);
}

/// The impact gate: a breaking change to a schema the demo's topologies
/// consume fails `schema check --impact`, naming them and what lies
/// downstream; one to a schema nobody reads passes with a note.
#[test]
fn schema_check_impact_fails_naming_the_consuming_topologies() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(conductor(dir.path()).args(["demo", "--people", "60", "--listen", "127.0.0.1:0"]));
    let breaking = |name: &str, field: &str| {
        let text =
            std::fs::read_to_string(repo().join(format!("schemas/avro/{name}.avsc"))).unwrap();
        let mut schema: Value = serde_json::from_str(&text).unwrap();
        let fields = schema["fields"].as_array_mut().unwrap().last_mut().unwrap()["type"]["fields"]
            .as_array_mut()
            .unwrap();
        fields.push(serde_json::json!({"name": field, "type": "double"}));
        let path = dir.path().join(format!("{name}.v2.avsc"));
        std::fs::write(&path, schema.to_string()).unwrap();
        path
    };
    let check = |name: &str, new: &std::path::Path| {
        conductor(dir.path())
            .args(["schema", "check"])
            .arg(repo().join(format!("schemas/avro/{name}.avsc")))
            .arg(new)
            .arg("--impact")
            .output()
            .unwrap()
    };
    let out = check("EntityUpserted", &breaking("EntityUpserted", "risk_score"));
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("carried on:              ig.ingest.entities"),
        "{stdout}"
    );
    assert!(
        stdout.contains("read by topologies:      entities, embeddings_enrich"),
        "{stdout}"
    );
    assert!(
        stdout.contains("job:conductor:vector_index"),
        "downstream via lineage: {stdout}"
    );
    assert!(
        stderr.contains("the change to EntityUpserted breaks"),
        "{stderr}"
    );

    let out = check("QuotaAlert", &breaking("QuotaAlert", "region"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no topology consumes QuotaAlert"));
}
