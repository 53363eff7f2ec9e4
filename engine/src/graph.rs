//! Graph projections: the node and relationship mutations a processor emits
//! (`Effect::Graph`), the SQL tables that hold the graph in every store, and
//! the records that carry the mutations to graph sinks (Neo4j).
//!
//! A processor with a graph declares a [`GraphSpec`] (`Processor::graph`)
//! naming its two tables and lists [`GraphSpec::tables`] among its tables.
//! The fold turns each mutation into a version-guarded row of those tables —
//! so without a graph database the graph lives in SQL — and, when the row
//! changes, into a record on the topology's graph topic
//! (`ig.graph.<topology>`, keyed by node or relationship so per-key order
//! holds) that a sink applies to its target with its own position.
//!
//! Identity: a node is (label, id), a relationship (type, id). A relationship
//! names its end nodes by (label, id); a sink creates an end node that has no
//! row of its own as a *stub* (only its `id`), and removes stubs no
//! relationship touches any more. Deletes are soft in SQL (`deleted = true`,
//! the version kept) so that a stale upsert can't bring a row back.

use crate::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use serde::{Deserialize, Serialize};

/// The graph topic of a topology: where its graph mutations go.
pub fn graph_topic(topology: &str) -> String {
    format!("ig.graph.{topology}")
}

/// The `content-type` of graph topic records.
pub const GRAPH_CONTENT_TYPE: &str = "application/vnd.conductor.graph-mutation+json";

/// Property map of a node or relationship: JSON values. A sink stores
/// strings, numbers, booleans and lists of one of those as they are and any
/// other value (an object, a mixed list) as its JSON text; nulls are absent.
pub type Properties = serde_json::Map<String, serde_json::Value>;

/// An end of a relationship.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeRef {
    pub label: String,
    pub id: String,
}

impl NodeRef {
    pub fn new(label: impl Into<String>, id: impl Into<String>) -> Self {
        NodeRef {
            label: label.into(),
            id: id.into(),
        }
    }
}

/// One change of a graph, keyed and versioned like a projection row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GraphMutation {
    /// Creates or replaces the node (label, id): its properties become `properties`.
    UpsertNode {
        label: String,
        id: String,
        version: i64,
        properties: Properties,
    },
    /// Removes the node (label, id); a node some relationship still touches
    /// stays as a stub.
    DeleteNode {
        label: String,
        id: String,
        version: i64,
    },
    /// Creates or replaces the relationship (rel_type, id) from `from` to `to`.
    UpsertEdge {
        rel_type: String,
        id: String,
        version: i64,
        from: NodeRef,
        to: NodeRef,
        properties: Properties,
    },
    /// Removes the relationship (rel_type, id).
    DeleteEdge {
        rel_type: String,
        id: String,
        version: i64,
    },
}

/// What a mutation is about: a node or a relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Element {
    Node,
    Edge,
}

impl GraphMutation {
    pub fn upsert_node(
        label: impl Into<String>,
        id: impl Into<String>,
        version: i64,
        properties: Properties,
    ) -> Self {
        GraphMutation::UpsertNode {
            label: label.into(),
            id: id.into(),
            version,
            properties,
        }
    }

    pub fn delete_node(label: impl Into<String>, id: impl Into<String>, version: i64) -> Self {
        GraphMutation::DeleteNode {
            label: label.into(),
            id: id.into(),
            version,
        }
    }

    pub fn upsert_edge(
        rel_type: impl Into<String>,
        id: impl Into<String>,
        version: i64,
        from: NodeRef,
        to: NodeRef,
        properties: Properties,
    ) -> Self {
        GraphMutation::UpsertEdge {
            rel_type: rel_type.into(),
            id: id.into(),
            version,
            from,
            to,
            properties,
        }
    }

    pub fn delete_edge(rel_type: impl Into<String>, id: impl Into<String>, version: i64) -> Self {
        GraphMutation::DeleteEdge {
            rel_type: rel_type.into(),
            id: id.into(),
            version,
        }
    }

    /// (node or edge, label or type, id): the identity the version guards.
    pub fn identity(&self) -> (Element, &str, &str) {
        match self {
            GraphMutation::UpsertNode { label, id, .. }
            | GraphMutation::DeleteNode { label, id, .. } => (Element::Node, label, id),
            GraphMutation::UpsertEdge { rel_type, id, .. }
            | GraphMutation::DeleteEdge { rel_type, id, .. } => (Element::Edge, rel_type, id),
        }
    }

    pub fn version(&self) -> i64 {
        match self {
            GraphMutation::UpsertNode { version, .. }
            | GraphMutation::DeleteNode { version, .. }
            | GraphMutation::UpsertEdge { version, .. }
            | GraphMutation::DeleteEdge { version, .. } => *version,
        }
    }

    pub fn is_delete(&self) -> bool {
        matches!(
            self,
            GraphMutation::DeleteNode { .. } | GraphMutation::DeleteEdge { .. }
        )
    }

    /// The record key on the graph topic: `node/<label>/<id>` or
    /// `edge/<type>/<id>`, so that every change of one element lands in one
    /// partition, in order.
    pub fn record_key(&self) -> String {
        match self.identity() {
            (Element::Node, label, id) => format!("node/{label}/{id}"),
            (Element::Edge, rel_type, id) => format!("edge/{rel_type}/{id}"),
        }
    }

    /// What is wrong with it, if anything: an empty label, type or id, a
    /// negative version. The fold refuses such a mutation as a processor bug.
    pub fn problem(&self) -> Option<String> {
        let (element, name, id) = self.identity();
        let what = match element {
            Element::Node => "node label",
            Element::Edge => "relationship type",
        };
        if name.is_empty() {
            return Some(format!("graph mutation with an empty {what}"));
        }
        if id.is_empty() {
            return Some(format!("graph mutation of {name} with an empty id"));
        }
        if self.version() < 0 {
            return Some(format!(
                "graph mutation of {name} {id} with a negative version {}",
                self.version()
            ));
        }
        if let GraphMutation::UpsertEdge { from, to, .. } = self
            && [from, to]
                .iter()
                .any(|n| n.label.is_empty() || n.id.is_empty())
        {
            return Some(format!(
                "relationship {name} {id} names an end node with an empty label or id"
            ));
        }
        None
    }
}

/// The two SQL tables of a processor's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphSpec {
    /// `(label, id) → version, properties, deleted`.
    pub nodes_table: &'static str,
    /// `(rel_type, id) → version, from_label, from_id, to_label, to_id, properties, deleted`.
    pub edges_table: &'static str,
}

fn col(name: &'static str, ty: ColumnType, nullable: bool) -> ColumnSpec {
    ColumnSpec { name, ty, nullable }
}

impl GraphSpec {
    pub const fn new(nodes_table: &'static str, edges_table: &'static str) -> Self {
        GraphSpec {
            nodes_table,
            edges_table,
        }
    }

    /// The node table: key (label, id).
    pub fn nodes(&self) -> TableSpec {
        TableSpec {
            text_index: None,
            name: self.nodes_table,
            key: vec![
                col("label", ColumnType::Text, false),
                col("id", ColumnType::Text, false),
            ],
            columns: vec![
                col("properties", ColumnType::Json, false),
                col("deleted", ColumnType::Bool, false),
            ],
            indexes: vec![],
        }
    }

    /// The relationship table: key (rel_type, id); a deleted row has no ends.
    pub fn edges(&self) -> TableSpec {
        TableSpec {
            text_index: None,
            name: self.edges_table,
            key: vec![
                col("rel_type", ColumnType::Text, false),
                col("id", ColumnType::Text, false),
            ],
            columns: vec![
                col("from_label", ColumnType::Text, true),
                col("from_id", ColumnType::Text, true),
                col("to_label", ColumnType::Text, true),
                col("to_id", ColumnType::Text, true),
                col("properties", ColumnType::Json, false),
                col("deleted", ColumnType::Bool, false),
            ],
            indexes: vec![vec!["from_label", "from_id"], vec!["to_label", "to_id"]],
        }
    }

    /// Both tables, for `Processor::tables` and `ProcessorSpec::tables`.
    pub fn tables(&self) -> Vec<TableSpec> {
        vec![self.nodes(), self.edges()]
    }

    /// The row a mutation makes (guarded by its version like any upsert).
    pub fn row(&self, mutation: &GraphMutation) -> RowUpsert {
        let props = |p: &Properties| SqlValue::Json(serde_json::Value::Object(p.clone()));
        let empty = || SqlValue::Json(serde_json::Value::Object(Properties::new()));
        let text = |s: &str| SqlValue::Text(s.to_string());
        match mutation {
            GraphMutation::UpsertNode {
                label,
                id,
                version,
                properties,
            } => RowUpsert {
                table: self.nodes_table,
                key: vec![label.clone(), id.clone()],
                version: *version,
                values: vec![props(properties), SqlValue::Bool(false)],
                deleted: false,
            },
            GraphMutation::DeleteNode { label, id, version } => RowUpsert {
                table: self.nodes_table,
                key: vec![label.clone(), id.clone()],
                version: *version,
                values: vec![empty(), SqlValue::Bool(true)],
                deleted: true,
            },
            GraphMutation::UpsertEdge {
                rel_type,
                id,
                version,
                from,
                to,
                properties,
            } => RowUpsert {
                table: self.edges_table,
                key: vec![rel_type.clone(), id.clone()],
                version: *version,
                values: vec![
                    text(&from.label),
                    text(&from.id),
                    text(&to.label),
                    text(&to.id),
                    props(properties),
                    SqlValue::Bool(false),
                ],
                deleted: false,
            },
            GraphMutation::DeleteEdge {
                rel_type,
                id,
                version,
            } => RowUpsert {
                table: self.edges_table,
                key: vec![rel_type.clone(), id.clone()],
                version: *version,
                values: vec![
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    empty(),
                    SqlValue::Bool(true),
                ],
                deleted: true,
            },
        }
    }
}

/// The graph as the SQL tables hold it, in the shape a sink's target is
/// compared with: live nodes, stubs (end nodes of live relationships with no
/// live node row) and live relationships, each sorted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphImage {
    /// (label, id) → (version, properties).
    pub nodes: std::collections::BTreeMap<NodeRef, (i64, Properties)>,
    pub stubs: std::collections::BTreeSet<NodeRef>,
    /// (type, id) → (version, from, to, properties).
    pub edges: std::collections::BTreeMap<(String, String), (i64, NodeRef, NodeRef, Properties)>,
}

impl GraphImage {
    /// Builds the image from dumps of the node and relationship tables
    /// (`ProjectionStore::dump_table`).
    pub fn from_rows(nodes: &[serde_json::Value], edges: &[serde_json::Value]) -> Self {
        let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        let props = |v: &serde_json::Value| match &v["properties"] {
            serde_json::Value::Object(m) => m.clone(),
            // SQLite keeps JSON as text.
            serde_json::Value::String(t) => serde_json::from_str(t).unwrap_or_default(),
            _ => Properties::new(),
        };
        // `deleted` is a boolean, or 0/1 where SQLite's integers come through.
        let live = |v: &&serde_json::Value| v["deleted"] != true && v["deleted"] != 1;
        let mut image = GraphImage::default();
        for n in nodes.iter().filter(live) {
            image.nodes.insert(
                NodeRef::new(s(n, "label"), s(n, "id")),
                (n["version"].as_i64().unwrap_or(-1), props(n)),
            );
        }
        for e in edges.iter().filter(live) {
            let from = NodeRef::new(s(e, "from_label"), s(e, "from_id"));
            let to = NodeRef::new(s(e, "to_label"), s(e, "to_id"));
            for end in [&from, &to] {
                if !image.nodes.contains_key(end) {
                    image.stubs.insert(end.clone());
                }
            }
            image.edges.insert(
                (s(e, "rel_type"), s(e, "id")),
                (e["version"].as_i64().unwrap_or(-1), from, to, props(e)),
            );
        }
        image
    }

    /// Relationship count, node count and stub count, for messages.
    pub fn summary(&self) -> String {
        format!(
            "{} nodes, {} stubs, {} relationships",
            self.nodes.len(),
            self.stubs.len(),
            self.edges.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(v: serde_json::Value) -> Properties {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn mutations_travel_as_tagged_json() {
        let m = GraphMutation::upsert_edge(
            "INPUT_OF",
            "e1",
            3,
            NodeRef::new("Dataset", "d1"),
            NodeRef::new("Process", "p1"),
            props(serde_json::json!({"w": 1})),
        );
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.starts_with(r#"{"op":"upsert_edge","rel_type":"INPUT_OF""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<GraphMutation>(&text).unwrap(), m);
        assert_eq!(m.record_key(), "edge/INPUT_OF/e1");
        assert_eq!(
            GraphMutation::delete_node("Dataset", "d1", 2).record_key(),
            "node/Dataset/d1"
        );
    }

    #[test]
    fn rows_are_keyed_by_identity_and_deletes_are_soft() {
        let spec = GraphSpec::new("g_nodes", "g_edges");
        let up = spec.row(&GraphMutation::upsert_node(
            "Dataset",
            "d1",
            1,
            props(serde_json::json!({"name": "x"})),
        ));
        assert_eq!(
            (up.table, up.key.clone(), up.deleted),
            ("g_nodes", vec!["Dataset".into(), "d1".into()], false)
        );
        assert_eq!(up.values.len(), spec.nodes().columns.len());
        let del = spec.row(&GraphMutation::delete_edge("INPUT_OF", "e1", 4));
        assert_eq!(del.table, "g_edges");
        assert!(del.deleted);
        assert_eq!(del.values.len(), spec.edges().columns.len());
    }

    #[test]
    fn names_what_is_wrong_with_a_mutation() {
        assert!(GraphMutation::delete_node("", "d", 1).problem().is_some());
        assert!(GraphMutation::delete_node("L", "", 1).problem().is_some());
        assert!(GraphMutation::delete_node("L", "d", -1).problem().is_some());
        let bad_end = GraphMutation::upsert_edge(
            "R",
            "e",
            1,
            NodeRef::new("L", ""),
            NodeRef::new("L", "b"),
            Properties::new(),
        );
        assert!(bad_end.problem().unwrap().contains("end node"));
        assert!(GraphMutation::delete_edge("R", "e", 0).problem().is_none());
    }

    #[test]
    fn an_image_has_stubs_for_ends_without_a_live_node() {
        let nodes = vec![
            serde_json::json!({"label":"A","id":"1","version":2,"properties":{"k":"v"},"deleted":false}),
            serde_json::json!({"label":"A","id":"2","version":3,"properties":{},"deleted":true}),
        ];
        let edges = vec![
            serde_json::json!({"rel_type":"R","id":"e","version":1,"from_label":"A","from_id":"1","to_label":"A","to_id":"2","properties":"{}","deleted":false}),
            serde_json::json!({"rel_type":"R","id":"gone","version":2,"from_label":null,"from_id":null,"to_label":null,"to_id":null,"properties":{},"deleted":true}),
        ];
        let image = GraphImage::from_rows(&nodes, &edges);
        assert_eq!(image.nodes.len(), 1);
        assert_eq!(
            image.stubs.iter().collect::<Vec<_>>(),
            vec![&NodeRef::new("A", "2")]
        );
        assert_eq!(image.edges.len(), 1);
    }
}
