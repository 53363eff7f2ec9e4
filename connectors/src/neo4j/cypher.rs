//! The Cypher of the graph sink: one statement per kind of change and label
//! (Cypher can't take a label as a parameter), each over `UNWIND $rows`, and
//! the property conversion Neo4j needs.
//!
//! Invariants the statements keep, whatever the order of a batch's changes
//! of different elements (a batch holds at most one change per element):
//! - a node with a `version` is the node's live row; a node without one is a
//!   *stub*: the end of some relationship that has no live row of its own;
//!   a stub no relationship touches is removed;
//! - a change applies only if its version is above the element's and above
//!   its tombstone's (`:ConductorTombstone`, left by a delete), so a batch
//!   applied twice, or a stale change, changes nothing.

use conductor_engine::graph::Properties;
use serde_json::Value;

/// Label of the position nodes: `(:ConductorPosition {sink, topic, partition, next_offset})`.
pub const POSITION_LABEL: &str = "ConductorPosition";
/// Label of the tombstones: `(:ConductorTombstone {sink, element, name, id, version})`.
pub const TOMBSTONE_LABEL: &str = "ConductorTombstone";

/// A label or relationship type as a Cypher identifier: backquoted, with
/// backquotes doubled, so any name is safe to splice.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Properties as Neo4j stores them: strings, numbers, booleans and lists of
/// one of those kinds as they are; nulls dropped (Neo4j has no null
/// property); any other value — an object, a mixed or nested list, an
/// integer beyond i64 — as its JSON text. `id` and `version` are the
/// sink's own and are not taken from the properties.
pub fn neo4j_properties(properties: &Properties) -> Properties {
    properties
        .iter()
        .filter(|(k, v)| !v.is_null() && k.as_str() != "id" && k.as_str() != "version")
        .map(|(k, v)| (k.clone(), neo4j_value(v)))
        .collect()
}

fn is_storable_scalar(v: &Value) -> bool {
    match v {
        Value::String(_) | Value::Bool(_) => true,
        Value::Number(n) => n.is_i64() || n.is_f64(),
        _ => false,
    }
}

fn scalar_kind(v: &Value) -> u8 {
    match v {
        Value::String(_) => 0,
        Value::Bool(_) => 1,
        Value::Number(n) if n.is_i64() => 2,
        _ => 3,
    }
}

fn neo4j_value(v: &Value) -> Value {
    match v {
        v if is_storable_scalar(v) => v.clone(),
        Value::Array(items)
            if items.iter().all(is_storable_scalar)
                && items
                    .windows(2)
                    .all(|w| scalar_kind(&w[0]) == scalar_kind(&w[1])) =>
        {
            v.clone()
        }
        other => Value::String(other.to_string()),
    }
}

/// Creates or replaces nodes of one label. Rows: `{id, version, props}`
/// where `props` already holds `id` and `version` (one `SET n = …`, so the
/// node never lacks its id within the statement).
pub fn upsert_nodes(label: &str) -> String {
    format!(
        "UNWIND $rows AS r \
         OPTIONAL MATCH (t:{TOMBSTONE_LABEL} {{sink: $sink, element: 'node', name: $name, id: r.id}}) \
         WITH r, t WHERE t IS NULL OR t.version < r.version \
         MERGE (n:{l} {{id: r.id}}) \
         WITH n, r, t WHERE n.version IS NULL OR n.version < r.version \
         SET n = r.props \
         WITH t WHERE t IS NOT NULL \
         DELETE t",
        l = ident(label)
    )
}

/// Removes the relationships of one type that a newer change (upsert or
/// delete) replaces, and the stubs that were only their ends. Rows: `{id, version}`.
pub fn remove_replaced_edges(rel_type: &str) -> String {
    format!(
        "UNWIND $rows AS r \
         MATCH (a)-[old:{t} {{id: r.id}}]->(b) WHERE old.version < r.version \
         DELETE old \
         WITH CASE WHEN a = b THEN [a] ELSE [a, b] END AS ends \
         UNWIND ends AS n \
         WITH DISTINCT n WHERE n.version IS NULL AND NOT EXISTS {{ (n)--() }} \
         DELETE n",
        t = ident(rel_type)
    )
}

/// Creates relationships of one type between nodes of two labels (after
/// [`remove_replaced_edges`]: a relationship still there is as new or newer,
/// so the row is stale). Missing ends are created as stubs. Rows:
/// `{id, version, from, to, props}` (`props` with `id` and `version`).
pub fn create_edges(rel_type: &str, from_label: &str, to_label: &str) -> String {
    format!(
        "UNWIND $rows AS r \
         OPTIONAL MATCH (t:{TOMBSTONE_LABEL} {{sink: $sink, element: 'edge', name: $name, id: r.id}}) \
         WITH r, t WHERE t IS NULL OR t.version < r.version \
         OPTIONAL MATCH ()-[cur:{t} {{id: r.id}}]->() \
         WITH r, t, cur WHERE cur IS NULL \
         MERGE (a:{fl} {{id: r.from}}) \
         MERGE (b:{tl} {{id: r.to}}) \
         CREATE (a)-[e:{t}]->(b) \
         SET e = r.props \
         WITH t WHERE t IS NOT NULL \
         DELETE t",
        t = ident(rel_type),
        fl = ident(from_label),
        tl = ident(to_label)
    )
}

/// Leaves (or raises) the tombstones of deleted elements of one kind and
/// name. Rows: `{id, version}`; `$element` is `node` or `edge`.
pub fn write_tombstones() -> String {
    format!(
        "UNWIND $rows AS r \
         MERGE (t:{TOMBSTONE_LABEL} {{sink: $sink, element: $element, name: $name, id: r.id}}) \
         ON CREATE SET t.version = r.version \
         ON MATCH SET t.version = CASE WHEN t.version < r.version THEN r.version ELSE t.version END"
    )
}

/// Deletes nodes of one label older than the row's version; one some
/// relationship still touches becomes a stub. Rows: `{id, version}`.
pub fn delete_nodes(label: &str) -> String {
    format!(
        "UNWIND $rows AS r \
         MATCH (n:{l} {{id: r.id}}) WHERE n.version IS NOT NULL AND n.version < r.version \
         SET n = {{id: r.id}} \
         WITH n WHERE NOT EXISTS {{ (n)--() }} \
         DELETE n",
        l = ident(label)
    )
}

/// Stores the sink's next offset per partition. Rows: `{partition, next_offset}`.
pub fn store_positions() -> String {
    format!(
        "UNWIND $rows AS r \
         MERGE (p:{POSITION_LABEL} {{sink: $sink, topic: $topic, partition: r.partition}}) \
         SET p.next_offset = r.next_offset"
    )
}

/// The sink's stored positions on a topic.
pub fn load_positions() -> String {
    format!(
        "MATCH (p:{POSITION_LABEL} {{sink: $sink, topic: $topic}}) \
         RETURN p.partition AS partition, p.next_offset AS next_offset"
    )
}

/// Schema statements the sink runs once (outside the data transactions).
pub fn bookkeeping_schema() -> Vec<String> {
    vec![
        format!(
            "CREATE CONSTRAINT conductor_position IF NOT EXISTS FOR (p:{POSITION_LABEL}) \
             REQUIRE (p.sink, p.topic, p.partition) IS UNIQUE"
        ),
        format!(
            "CREATE INDEX conductor_tombstone IF NOT EXISTS FOR (t:{TOMBSTONE_LABEL}) \
             ON (t.sink, t.element, t.name, t.id)"
        ),
    ]
}

/// A node label's uniqueness constraint on `id` (MERGE looks up by it and
/// two concurrent MERGEs can't make twins).
pub fn node_schema(label: &str) -> String {
    format!(
        "CREATE CONSTRAINT IF NOT EXISTS FOR (n:{}) REQUIRE n.id IS UNIQUE",
        ident(label)
    )
}

/// A relationship type's index on `id`.
pub fn edge_schema(rel_type: &str) -> String {
    format!(
        "CREATE INDEX IF NOT EXISTS FOR ()-[e:{}]-() ON (e.id)",
        ident(rel_type)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quotes_any_name_as_an_identifier() {
        assert_eq!(ident("Dataset"), "`Dataset`");
        assert_eq!(ident("we`ird) DETACH DELETE"), "`we``ird) DETACH DELETE`");
    }

    #[test]
    fn keeps_what_neo4j_stores_and_turns_the_rest_into_json_text() {
        let props = json!({
            "s": "x", "i": 3, "f": 1.5, "b": true,
            "list": [1, 2], "mixed": [1, "a"], "obj": {"k": [1]},
            "none": null, "id": "not mine", "version": 9,
            "big": 18446744073709551615u64
        });
        let out = neo4j_properties(props.as_object().unwrap());
        assert_eq!(
            Value::Object(out),
            json!({
                "s": "x", "i": 3, "f": 1.5, "b": true,
                "list": [1, 2], "mixed": "[1,\"a\"]", "obj": "{\"k\":[1]}",
                "big": "18446744073709551615"
            })
        );
    }
}
