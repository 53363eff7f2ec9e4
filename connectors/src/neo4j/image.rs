//! Reads a graph back from Neo4j as a [`GraphImage`], the shape the SQL
//! graph tables give (`GraphImage::from_rows`), so that the two can be
//! compared node for node and relationship for relationship.

use super::client::Neo4jError;
use super::cypher::{ident, neo4j_properties};
use conductor_engine::graph::{GraphImage, NodeRef, Properties};
use neo4rs::{Graph, query};
use serde_json::Value;

/// The nodes of `labels` and the relationships of `rel_types` between them in Neo4j.
pub async fn read_image(
    graph: &Graph,
    labels: &[&str],
    rel_types: &[&str],
) -> Result<GraphImage, Neo4jError> {
    let mut image = GraphImage::default();
    for label in labels {
        let text = format!(
            "MATCH (n:{}) RETURN n.id AS id, n.version AS version, properties(n) AS props",
            ident(label)
        );
        let mut rows = graph
            .execute(query(&text))
            .await
            .map_err(|e| Neo4jError::query(format!("reading {label} nodes"), e))?;
        while let Some(row) = rows
            .next()
            .await
            .map_err(|e| Neo4jError::query(format!("reading {label} nodes"), e))?
        {
            let id: String = row.get("id").unwrap_or_default();
            let node = NodeRef::new(*label, id);
            match row.get::<Option<i64>>("version").ok().flatten() {
                Some(version) => {
                    image.nodes.insert(node, (version, props_of(&row)));
                }
                None => {
                    image.stubs.insert(node);
                }
            }
        }
    }
    for rel_type in rel_types {
        let text = format!(
            "MATCH (a)-[e:{}]->(b) WHERE head(labels(a)) IN $labels AND head(labels(b)) IN $labels \
             RETURN e.id AS id, e.version AS version, properties(e) AS props, \
             head(labels(a)) AS from_label, a.id AS from_id, head(labels(b)) AS to_label, b.id AS to_id",
            ident(rel_type)
        );
        let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let mut rows = graph
            .execute(query(&text).param("labels", labels))
            .await
            .map_err(|e| Neo4jError::query(format!("reading {rel_type} relationships"), e))?;
        while let Some(row) = rows
            .next()
            .await
            .map_err(|e| Neo4jError::query(format!("reading {rel_type} relationships"), e))?
        {
            let s = |k: &str| row.get::<String>(k).unwrap_or_default();
            image.edges.insert(
                (rel_type.to_string(), s("id")),
                (
                    row.get::<i64>("version").unwrap_or(-1),
                    NodeRef::new(s("from_label"), s("from_id")),
                    NodeRef::new(s("to_label"), s("to_id")),
                    props_of(&row),
                ),
            );
        }
    }
    Ok(image)
}

/// A row's `props` without the sink's own `id` and `version`.
fn props_of(row: &neo4rs::Row) -> Properties {
    match row.get::<Value>("props") {
        Ok(Value::Object(mut m)) => {
            m.remove("id");
            m.remove("version");
            m
        }
        _ => Properties::new(),
    }
}

/// The image the SQL tables imply for Neo4j: properties converted the way
/// the sink stores them (see [`neo4j_properties`]).
pub fn as_stored_in_neo4j(image: &GraphImage) -> GraphImage {
    let mut out = image.clone();
    for (_, props) in out.nodes.values_mut() {
        *props = neo4j_properties(props);
    }
    for (_, _, _, props) in out.edges.values_mut() {
        *props = neo4j_properties(props);
    }
    out
}
