//! The graph as a user gets it: `conductor run --neo4j-uri …` with the
//! `entities` topology's `graph = true` folds a workload into SQLite and,
//! through the graph sink, into a real Neo4j (the one `ops/test.sh` starts);
//! `conductor sql` reads the SQL graph tables, and Neo4j holds the same graph
//! node for node and relationship for relationship. Needs `NEO4J_URI`
//! (+ `NEO4J_USER`, `NEO4J_PASSWORD`); under `CI=true` its absence fails.

mod support;

use conductor_connectors::neo4j;
use conductor_connectors::neo4j::image::{as_stored_in_neo4j, read_image};
use conductor_engine::graph::GraphImage;
use support::*;

#[test]
fn conductor_run_applies_the_entity_graph_to_neo4j_equal_to_its_sql_tables() {
    let Some(config) = neo4j_config() else {
        return;
    };
    let label = format!(
        "E2E{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let topologies = dir.path().join("topologies");
    std::fs::create_dir(&topologies).unwrap();
    let name = label.to_lowercase();
    std::fs::write(
        topologies.join("graph.toml"),
        format!(
            "name = \"{name}\"\nprocessor = \"entities\"\n[sources]\ntopics = [\"ig.ingest.entities\"]\n\
             [batch]\nmax_events = 400\nlinger_ms = 5\n[processor_config]\ngraph = true\ngraph_node_label = \"{label}\"\n"
        ),
    )
    .unwrap();
    run_ok(conductor(&data).args(["topic", "create", "ig.ingest.entities", "--partitions", "3"]));
    let workload = dir.path().join("workload.jsonl");
    // A topology owns its labels and relationship types in Neo4j: this run's
    // are its own, so earlier runs on the same server don't meet it.
    let rel_type = format!("KNOWS_{label}");
    std::fs::write(
        &workload,
        entity_workload(3000).replace("\"KNOWS\"", &format!("\"{rel_type}\"")),
    )
    .unwrap();
    // The workload holds a few events the topology dead-letters; produce accepts them all.
    run_ok(
        conductor(&data)
            .args(["produce", "--topic", "ig.ingest.entities"])
            .arg(&workload),
    );

    let out = conductor(&data)
        .args(["--neo4j-uri", &config.uri, "--neo4j-user", &config.user])
        .env("CONDUCTOR_NEO4J_PASSWORD", &config.password)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--exit-when-idle",
            "--topologies",
        ])
        .arg(&topologies)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "conductor run failed: {stderr}");
    assert!(
        !stderr.contains(&config.password),
        "the Neo4j password reached the output"
    );

    let sql = as_stored_in_neo4j(&GraphImage::from_rows(
        &sql_rows(&data, &topologies, "entity_graph_nodes"),
        &sql_rows(&data, &topologies, "entity_graph_edges"),
    ));
    assert!(
        sql.nodes.len() > 100 && sql.edges.len() > 50,
        "the workload makes a graph: {}",
        sql.summary()
    );
    let neo = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let graph = neo4j::connect(&config).await.unwrap();
        read_image(&graph, &[label.as_str()], &[rel_type.as_str()])
            .await
            .unwrap()
    });
    assert_eq!(
        neo.nodes.len(),
        sql.nodes.len(),
        "nodes: neo4j {} / sql {}",
        neo.summary(),
        sql.summary()
    );
    assert_eq!(
        neo.stubs, sql.stubs,
        "stub nodes (ends of relationships without an entity)"
    );
    assert_eq!(neo.edges.len(), sql.edges.len());
    assert!(
        neo == sql,
        "Neo4j differs from the SQL graph tables: {} / {}",
        neo.summary(),
        sql.summary()
    );

    // `topology status` reads the sink's position from Neo4j: nothing left.
    let status = run_ok(
        conductor(&data)
            .args(["--neo4j-uri", &config.uri, "--neo4j-user", &config.user])
            .env("CONDUCTOR_NEO4J_PASSWORD", &config.password)
            .args(["topology", "status", "--json", "--topologies"])
            .arg(&topologies),
    );
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let sink = &status[0]["sinks"][0];
    assert_eq!(sink["kind"], "neo4j", "{status}");
    assert_eq!(sink["lag"], 0, "{status}");
}
