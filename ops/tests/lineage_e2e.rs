//! Lineage end to end with the official `openlineage-python` client (PyPI):
//! a job's run (START, RUNNING, COMPLETE; an input, an output with a
//! column-lineage facet) sent over HTTP to `conductor run` and over Kafka to
//! the broker; the graph read back with `conductor lineage` and
//! `GET /api/v1/lineage` (curl), the runs and column lineage with Python's
//! sqlite3. A malformed event is answered 400 naming the field and nothing
//! is appended.

mod support;

use serde_json::Value;
use std::process::Command;
use support::*;

const SECRET: &str = "lineage-e2e-secret-lineage-e2e-secret-01";
const NS: &str = "postgres://warehouse:5432";

/// The official client: `openlineage_client.py http URL KEY JOB` or
/// `kafka BOOTSTRAP TOPIC JOB`.
fn openlineage_client(args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(repo().join("ops/tests/e2e/openlineage_client.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openlineage-python failed (ops/test.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// curl: (status, JSON body).
fn curl(method: &str, url: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    let out = cmd.arg(url).output().expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn lineage_url(addr: &str, node: &str, depth: usize) -> String {
    let node: String = node
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("http://{addr}/api/v1/lineage?nodeId={node}&depth={depth}")
}

fn node<'a>(graph: &'a Value, id: &str) -> &'a Value {
    graph["graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id} in {graph}"))
}

#[test]
fn openlineage_python_over_http_builds_the_graph_that_the_queries_return() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = spawn_server_with(
        dir.path(),
        &["run", "--only", "lineage"],
        &[("CONDUCTOR_JWT_SECRET", SECRET)],
    );
    let writer = bearer_token(SECRET, "acme", &["lineage.write"]);
    let reader = bearer_token(SECRET, "acme", &["lineage.read"]);

    let sent = openlineage_client(&["http", &format!("http://{addr}"), &writer, "daily_totals"]);
    let run_id = sent["run_id"].as_str().unwrap().to_string();

    // A malformed event: 400 naming the field, nothing appended; no token
    // 401, a reader's token 403.
    let bad = r#"{"eventType":"START","eventTime":"2026-02-01T12:00:00Z","producer":"https://x.io","schemaURL":"https://openlineage.io/spec/2-0-2/OpenLineage.json","run":{"runId":"run-1"},"job":{"namespace":"etl","name":"j"}}"#;
    let url = format!("http://{addr}/api/v1/lineage");
    let (status, body) = curl("POST", &url, Some(&writer), Some(bad));
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("run.runId:"),
        "{body}"
    );
    let no_time = bad.replace(r#""eventTime":"2026-02-01T12:00:00Z","#, "");
    let (status, body) = curl("POST", &url, Some(&writer), Some(&no_time));
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("eventTime:"),
        "{body}"
    );
    assert_eq!(curl("POST", &url, None, Some(bad)).0, 401);
    assert_eq!(curl("POST", &url, Some(&reader), Some(bad)).0, 403);

    // The graph, as Marquez answers it, once folded.
    let totals = format!("dataset:{NS}:public.daily_totals");
    let orders = format!("dataset:{NS}:public.orders");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let graph = loop {
        let (status, body) = curl("GET", &lineage_url(&addr, &totals, 5), Some(&reader), None);
        if status == 200
            && body["graph"].as_array().map_or(0, Vec::len) == 3
            && node(&body, "job:etl:daily_totals")["data"]["latestRun"]["state"] == "COMPLETE"
        {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not folded in time: {status} {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let job = node(&graph, "job:etl:daily_totals");
    assert_eq!(job["type"], "JOB");
    assert_eq!(job["inEdges"][0]["origin"], orders.as_str());
    assert_eq!(job["outEdges"][0]["destination"], totals.as_str());
    assert_eq!(job["data"]["latestRun"]["id"], run_id.as_str());
    assert_eq!(node(&graph, &orders)["type"], "DATASET");
    // Another tenant sees none of it; a writer's token can't read.
    let (status, _) = curl(
        "GET",
        &lineage_url(&addr, &totals, 5),
        Some(&bearer_token(SECRET, "globex", &["lineage.read"])),
        None,
    );
    assert_eq!(status, 404);
    assert_eq!(
        curl("GET", &lineage_url(&addr, &totals, 5), Some(&writer), None).0,
        403
    );
    let (status, body) = curl("GET", &lineage_url(&addr, "orders", 5), Some(&reader), None);
    assert_eq!(status, 400, "{body}");

    // GraphQL: the same graph for `lineage(datasetId, maxDepth)`.
    let query = serde_json::json!({
        "query": "query($id: String!) { lineage(datasetId: $id, maxDepth: 5) }",
        "variables": {"id": totals},
    })
    .to_string();
    let graphql = format!("http://{addr}/graphql");
    let (status, body) = curl("POST", &graphql, Some(&reader), Some(&query));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["lineage"], graph,
        "GraphQL and REST answer alike"
    );
    let (_, body) = curl("POST", &graphql, Some(&writer), Some(&query));
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "forbidden",
        "{body}"
    );

    server.kill().unwrap();
    server.wait().unwrap();

    // The CLI reads the same graph.
    let out = run_ok(conductor(dir.path()).args([
        "lineage",
        &totals,
        "--tenant",
        "acme",
        "--direction",
        "upstream",
        "--json",
    ]));
    let cli: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(cli["graph"].as_array().unwrap().len(), 3, "{cli}");
    let impact =
        run_ok(conductor(dir.path()).args(["lineage", "impact", &orders, "--tenant", "acme"]));
    assert!(
        impact.contains("job:etl:daily_totals") && impact.contains(&totals),
        "{impact}"
    );

    // Three events appended (the client's), none of the bad ones.
    let db = dir.path().join("projections.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let records = rt.block_on(topic_records(dir.path(), "ig.ingest.runs"));
    let posted = records
        .iter()
        .filter(|r| {
            let e: Value = serde_json::from_slice(&r.value).unwrap();
            e["job"]["namespace"] == "etl" // not `conductor run`'s own runs
        })
        .count();
    assert_eq!(posted, 3);
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT tenant_id, status, started_at IS NOT NULL, ended_at IS NOT NULL FROM lineage_runs WHERE run_id = ?",
            &[&run_id]
        ),
        ["acme|COMPLETE|1|1"]
    );
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT field, input_field, transformation FROM lineage_column_lineage ORDER BY field",
            &[]
        ),
        [
            "day|created_at|DIRECT/TRANSFORMATION",
            "total|amount|DIRECT/AGGREGATION"
        ]
    );
}

#[test]
fn openlineage_python_over_kafka_is_folded_from_the_broker() {
    let Some(bootstrap) = required_service("KAFKA_BOOTSTRAP") else {
        return;
    };
    let id = format!(
        "{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let topic = format!("e2e.{id}.runs");
    let name = format!("lineage_{id}");
    let dir = tempfile::tempdir().unwrap();
    let topologies = dir.path().join("topologies");
    std::fs::create_dir(&topologies).unwrap();
    let shipped = std::fs::read_to_string(repo().join("topologies/lineage.toml")).unwrap();
    std::fs::write(
        topologies.join("lineage.toml"),
        shipped
            .replace("name = \"lineage\"", &format!("name = \"{name}\""))
            .replace("ig.ingest.runs", &topic),
    )
    .unwrap();
    let kafka = |c: &mut Command| {
        c.args(["--log", "kafka", "--kafka-bootstrap", &bootstrap]);
    };
    let mut create = conductor(dir.path());
    kafka(&mut create);
    run_ok(create.args(["topic", "create", &topic, "--partitions", "3"]));

    let sent = openlineage_client(&["kafka", &bootstrap, &topic, "nightly_load"]);
    let run_id = sent["run_id"].as_str().unwrap();

    let mut run = conductor(dir.path());
    kafka(&mut run);
    run_ok(
        run.args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--exit-when-idle",
            "--topologies",
        ])
        .arg(&topologies),
    );
    let db = dir.path().join("projections.db");
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT tenant_id, job_name, status FROM lineage_runs WHERE run_id = ?",
            &[run_id]
        ),
        ["default|nightly_load|COMPLETE"],
        "no ig-tenant header: the default tenant"
    );
    let mut query = conductor(dir.path());
    kafka(&mut query);
    let out = run_ok(query.args([
        "lineage",
        &format!("dataset:{NS}:public.daily_totals"),
        "--direction",
        "upstream",
        "--topology",
        &name,
        "--json",
    ]));
    let graph: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        node(&graph, "job:etl:nightly_load")["inEdges"][0]["origin"],
        format!("dataset:{NS}:public.orders").as_str()
    );
}
