//! The lineage graph in Neo4j: `conductor run --neo4j-uri …` folding
//! OpenLineage run events (and a catalog registration) writes the
//! dataset / process / run graph to the SQL tables and, through the graph
//! sink, to a real Neo4j (the one `ops/test.sh` starts): the same graph node
//! for node and relationship for relationship. Needs `NEO4J_URI` (+
//! `NEO4J_USER`, `NEO4J_PASSWORD`); under `CI=true` its absence fails.

mod support;

use conductor_connectors::neo4j;
use conductor_connectors::neo4j::image::{as_stored_in_neo4j, read_image};
use conductor_engine::graph::GraphImage;
use conductor_processors::lineage::workload::{envelope_lines, generate};
use support::*;

/// Only what belongs to `tenant` (a Neo4j server outlives test runs).
fn of_tenant(image: GraphImage, tenant: &str) -> GraphImage {
    let prefix = format!("{tenant}/");
    GraphImage {
        nodes: image
            .nodes
            .into_iter()
            .filter(|(n, _)| n.id.starts_with(&prefix))
            .collect(),
        stubs: image
            .stubs
            .into_iter()
            .filter(|n| n.id.starts_with(&prefix))
            .collect(),
        edges: image
            .edges
            .into_iter()
            .filter(|((_, id), _)| id.starts_with(&prefix))
            .collect(),
    }
}

#[test]
fn the_lineage_graph_in_neo4j_equals_its_sql_tables() {
    let Some(config) = neo4j_config() else {
        return;
    };
    let tag = format!(
        "t{}x{}",
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
    let shipped = std::fs::read_to_string(repo().join("topologies/lineage.toml")).unwrap();
    std::fs::write(
        topologies.join("lineage.toml"),
        shipped.replace("name = \"lineage\"", &format!("name = \"lineage_{tag}\"")),
    )
    .unwrap();
    run_ok(conductor(&data).args(["topic", "create", "ig.ingest.runs", "--partitions", "3"]));
    let input = dir.path().join("runs.jsonl");
    let lines = envelope_lines(&generate(3000, 60))
        .replace("\"tenant\":\"acme\"", &format!("\"tenant\":\"{tag}\""));
    std::fs::write(&input, lines).unwrap();
    run_ok(
        conductor(&data)
            .args(["produce", "--topic", "ig.ingest.runs"])
            .arg(&input),
    );
    run_ok(conductor(&data).args([
        "catalog",
        "register",
        "dataset:postgres://warehouse:5432:public.d3",
        "--tenant",
        &tag,
        "--purpose",
        "analytics",
        "--retention",
        "P30D",
    ]));

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
    assert!(
        out.status.success(),
        "conductor run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let sql = of_tenant(
        as_stored_in_neo4j(&GraphImage::from_rows(
            &sql_rows(&data, &topologies, "lineage_nodes"),
            &sql_rows(&data, &topologies, "lineage_edges"),
        )),
        &tag,
    );
    assert!(
        sql.nodes.len() > 100 && sql.edges.len() > 100,
        "{}",
        sql.summary()
    );
    let registered = sql
        .nodes
        .iter()
        .find(|(n, _)| n.id == format!("{tag}/dataset:postgres://warehouse:5432:public.d3"))
        .unwrap();
    assert_eq!(
        registered.1.1["retention"], "P30D",
        "the registration is on the node"
    );
    let neo = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let graph = neo4j::connect(&config).await.unwrap();
        read_image(
            &graph,
            &["Dataset", "Process", "Run"],
            &["INPUT_OF", "OUTPUT_OF", "HAS_RUN"],
        )
        .await
        .unwrap()
    });
    let neo = of_tenant(neo, &tag);
    assert_eq!(
        neo.nodes.len(),
        sql.nodes.len(),
        "{} / {}",
        neo.summary(),
        sql.summary()
    );
    assert_eq!(neo.edges.len(), sql.edges.len());
    assert!(
        neo == sql,
        "Neo4j differs from the SQL lineage tables: {} / {}",
        neo.summary(),
        sql.summary()
    );
}
