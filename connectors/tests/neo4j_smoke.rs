//! neo4rs against a real Neo4j 5 (the server `ops/test.sh` starts from Maven
//! Central, see `neo4j_support`): the graph sink of the processor contract
//! stands on these working.
mod neo4j_support;

use conductor_connectors::neo4j::{self, Neo4jConfig, Neo4jError};
use neo4rs::query;

#[tokio::test]
async fn writes_and_reads_back_a_node_and_a_relationship_through_neo4rs() {
    let Some(config) = neo4j_support::config() else {
        return;
    };
    let graph = neo4j::connect(&config).await.unwrap();
    let label = neo4j_support::unique_label("Smoke");

    // MERGE twice: idempotent by key, the second write updates in place.
    for version in [1_i64, 2] {
        let mut txn = graph.start_txn().await.unwrap();
        txn.run(
            query(&format!(
                "MERGE (p:{label} {{tenant_id: $tenant, id: $id}}) \
                 SET p.name = $name, p.version = $version \
                 MERGE (q:{label} {{tenant_id: $tenant, id: 'org-1'}}) \
                 MERGE (p)-[r:WORKS_FOR]->(q) SET r.since = $since"
            ))
            .param("tenant", "acme")
            .param("id", "person-42")
            .param("name", format!("Ada v{version}"))
            .param("version", version)
            .param("since", 1843_i64),
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }

    let mut rows = graph
        .execute(
            query(&format!(
                "MATCH (p:{label} {{tenant_id: $tenant}})-[r:WORKS_FOR]->(q:{label}) \
                 RETURN p.id AS id, p.name AS name, p.version AS version, r.since AS since, q.id AS org, \
                        count {{ (n:{label}) }} AS nodes"
            ))
            .param("tenant", "acme"),
        )
        .await
        .unwrap();
    let row = rows.next().await.unwrap().expect("one row");
    assert_eq!(row.get::<String>("id").unwrap(), "person-42");
    assert_eq!(row.get::<String>("name").unwrap(), "Ada v2");
    assert_eq!(row.get::<i64>("version").unwrap(), 2);
    assert_eq!(row.get::<i64>("since").unwrap(), 1843);
    assert_eq!(row.get::<String>("org").unwrap(), "org-1");
    assert_eq!(
        row.get::<i64>("nodes").unwrap(),
        2,
        "MERGE made no duplicate"
    );
    assert!(rows.next().await.unwrap().is_none(), "one relationship");

    // A rolled-back transaction leaves nothing behind.
    let mut txn = graph.start_txn().await.unwrap();
    txn.run(query(&format!("CREATE (:{label} {{id: 'ghost'}})")))
        .await
        .unwrap();
    txn.rollback().await.unwrap();
    let mut rows = graph
        .execute(query(&format!(
            "MATCH (n:{label} {{id: 'ghost'}}) RETURN count(n) AS n"
        )))
        .await
        .unwrap();
    let n: i64 = rows.next().await.unwrap().unwrap().get("n").unwrap();
    assert_eq!(n, 0, "the rollback removed the node");

    graph
        .run(query(&format!("MATCH (n:{label}) DETACH DELETE n")))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_that_retrying_cannot_fix() {
    let Some(config) = neo4j_support::config() else {
        return;
    };
    let wrong = Neo4jConfig {
        password: "not-the-password".into(),
        ..config.clone()
    };
    let Err(err) = neo4j::connect(&wrong).await else {
        panic!("a wrong password logged in");
    };
    assert!(matches!(err, Neo4jError::Auth { .. }), "{err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("NEO4J_PASSWORD"), "says what to fix: {text}");
    assert!(
        !text.contains("not-the-password") && !format!("{wrong:?}").contains("not-the-password"),
        "the password never reaches a message: {text}"
    );
}

#[tokio::test]
async fn no_server_at_the_uri_is_a_retryable_connect_error_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("bolt://127.0.0.1:{port}");
    let mut config = Neo4jConfig::new(&uri, "neo4j", "whatever-password");
    config.connect_timeout_ms = 1_000;
    let Err(err) = neo4j::connect(&config).await else {
        panic!("connected to a port nobody listens on");
    };
    assert!(matches!(err, Neo4jError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains(&uri), "{err}");
}

#[tokio::test]
async fn a_missing_database_is_a_settings_error_not_a_retry() {
    let Some(config) = neo4j_support::config() else {
        return;
    };
    let missing = Neo4jConfig {
        database: Some("nosuchdatabase".into()),
        ..config
    };
    let Err(err) = neo4j::connect(&missing).await else {
        panic!("connected to a database that does not exist");
    };
    assert!(matches!(err, Neo4jError::Config { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("nosuchdatabase"), "{err}");
}
