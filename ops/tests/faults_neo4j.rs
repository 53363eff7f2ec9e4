//! Faults beyond SIGKILL, on Neo4j: while `conductor run` folds the entity
//! graph into SQLite and its graph sink applies it to Neo4j, the Neo4j server
//! is killed (SIGKILL, mid-write) and started again, twice. The sink must
//! wait (its status says on what), resume by itself, and end with Neo4j
//! equal to the SQL graph tables, node for node and edge for edge.
//!
//! On a Neo4j of the test's own (`support::service`, started with
//! `ops/start-neo4j.sh`), so the suite's is never killed under other tests.

mod support;

use conductor_connectors::neo4j;
use conductor_connectors::neo4j::image::{as_stored_in_neo4j, read_image};
use conductor_engine::graph::GraphImage;
use std::time::{Duration, Instant};
use support::service::Service;
use support::*;

fn sink_status(addr: &str, topology: &str) -> serde_json::Value {
    let (code, body) = http_get(addr, &format!("/v1/topologies/{topology}"));
    assert_eq!(code, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    s["sinks"][0].clone()
}

#[test]
fn neo4j_killed_mid_write_ends_equal_to_the_sql_graph() {
    let Some(mut server) = Service::neo4j() else {
        return;
    };
    let config = neo4j::Neo4jConfig::new(
        server.env["NEO4J_URI"].clone(),
        server.env["NEO4J_USER"].clone(),
        server.env["NEO4J_PASSWORD"].clone(),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let topologies = dir.path().join("topologies");
    std::fs::create_dir(&topologies).unwrap();
    let (name, label, rel_type) = ("faults", "FaultEntity", "KNOWS");
    // Small batches: many sink writes, so a kill lands inside one.
    std::fs::write(
        topologies.join("graph.toml"),
        format!(
            "name = \"{name}\"\nprocessor = \"entities\"\n[sources]\ntopics = [\"ig.ingest.entities\"]\n\
             [batch]\nmax_events = 200\nlinger_ms = 5\n[processor_config]\ngraph = true\ngraph_node_label = \"{label}\"\n"
        ),
    )
    .unwrap();
    run_ok(conductor(&data).args(["topic", "create", "ig.ingest.entities", "--partitions", "3"]));
    let workload = dir.path().join("workload.jsonl");
    std::fs::write(&workload, entity_workload(env_or("FAULT_EVENTS", 20_000))).unwrap();
    run_ok(
        conductor(&data)
            .args(["produce", "--topic", "ig.ingest.entities"])
            .arg(&workload),
    );

    let mut cmd = conductor(&data);
    cmd.args(["--neo4j-uri", &config.uri, "--neo4j-user", &config.user])
        .env("CONDUCTOR_NEO4J_PASSWORD", &config.password)
        .args(["run", "--listen", "127.0.0.1:0", "--topologies"])
        .arg(&topologies);
    let (mut child, addr) = spawn_with_address(&mut cmd);

    let mut waited = Vec::new();
    for kill in 0..2 {
        // Let the sink write for a while, then kill Neo4j under it.
        let deadline = Instant::now() + Duration::from_secs(120);
        let written = sink_status(&addr, name)["records_written"]
            .as_u64()
            .unwrap_or(0);
        while sink_status(&addr, name)["records_written"]
            .as_u64()
            .unwrap_or(0)
            < written + 500
        {
            assert!(
                Instant::now() < deadline,
                "the sink wrote nothing (kill {kill})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server.stop("KILL");
        let down = Instant::now();
        while down.elapsed() < Duration::from_secs(5) {
            let sink = sink_status(&addr, name);
            assert_ne!(sink["state"], "failed", "the sink gave up: {sink}");
            if let Some(w) = sink["waiting_on"].as_str() {
                waited.push(w.to_string());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        server.start_again();
    }
    assert!(
        !waited.is_empty(),
        "while Neo4j was down the sink's status named what it waits on"
    );

    // It resumes by itself and catches up: nothing left to write.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (_, body) = http_get(&addr, &format!("/v1/topologies/{name}"));
        let s: serde_json::Value = serde_json::from_str(&body).unwrap();
        let caught_up = s["partitions"]
            .as_array()
            .is_some_and(|p| !p.is_empty() && p.iter().all(|p| p["lag"] == 0));
        if caught_up && s["sinks"][0]["lag"] == 0 && s["sinks"][0]["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the sink did not catch up: {s}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "conductor run did not stop cleanly: {exit}");

    let sql = as_stored_in_neo4j(&GraphImage::from_rows(
        &sql_rows(&data, &topologies, "entity_graph_nodes"),
        &sql_rows(&data, &topologies, "entity_graph_edges"),
    ));
    let neo = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let graph = neo4j::connect(&config).await.unwrap();
        read_image(&graph, &[label], &[rel_type]).await.unwrap()
    });
    assert!(
        sql.nodes.len() > 100 && sql.edges.len() > 50,
        "the workload makes a graph: {}",
        sql.summary()
    );
    assert!(
        neo == sql,
        "Neo4j after two kills differs from the SQL graph tables: {} / {}",
        neo.summary(),
        sql.summary()
    );
    eprintln!(
        "Neo4j killed twice mid-write; equal to the SQL graph: {}",
        sql.summary()
    );
}
