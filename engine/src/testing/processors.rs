//! Small processors for runtime and store tests: one stateless, one stateful.

use crate::processor::{Effect, Processor, ProcessorError, ProcessorState};
use crate::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use conductor_schemas::{Event, EventData};
use std::collections::BTreeMap;

fn key_columns() -> Vec<ColumnSpec> {
    vec![
        ColumnSpec {
            name: "tenant_id",
            ty: ColumnType::Text,
            nullable: false,
        },
        ColumnSpec {
            name: "subject",
            ty: ColumnType::Text,
            nullable: false,
        },
    ]
}

/// A minimal processor for runtime and store tests: every `EntityUpserted`
/// becomes a row of [`latest_versions_table`] keyed by (tenant, subject),
/// holding the entity type, guarded by the event's version. Other kinds are
/// invalid input.
pub struct LatestVersionProcessor;

/// The table [`LatestVersionProcessor`] writes.
pub fn latest_versions_table() -> TableSpec {
    TableSpec {
        text_index: None,
        name: "latest_versions",
        key: key_columns(),
        columns: vec![ColumnSpec {
            name: "entity_type",
            ty: ColumnType::Text,
            nullable: false,
        }],
        indexes: vec![],
    }
}

impl Processor for LatestVersionProcessor {
    fn name(&self) -> &str {
        "latest_version"
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![latest_versions_table()]
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, crate::processor::ProcessorError> {
        let conductor_schemas::EventData::EntityUpserted(e) = &event.data else {
            return Err(crate::processor::ProcessorError::invalid_input(format!(
                "latest_version folds EntityUpserted only, not {}",
                event.kind()
            )));
        };
        Ok(vec![Effect::Upsert(RowUpsert {
            table: "latest_versions",
            key: vec![event.meta.tenant.clone(), event.meta.subject.clone()],
            version: e.version,
            values: vec![SqlValue::Text(e.entity_type.clone())],
            deleted: false,
        })])
    }
}

/// A stateful processor for the state contract: it counts `EntityUpserted`
/// events per (tenant, subject) in memory and writes each new count to
/// [`key_counts_table`] (the count is the row's version). Its counts are
/// partition-local, as the contract asks: a key lives in one partition.
#[derive(Debug, Default)]
pub struct CountsPerKeyProcessor {
    counts: KeyCounts,
}

impl CountsPerKeyProcessor {
    /// `format_version` of its snapshots (a test bumps it to force a warm-up).
    pub fn with_format_version(format_version: u32) -> Self {
        CountsPerKeyProcessor {
            counts: KeyCounts {
                format_version,
                counts: BTreeMap::new(),
            },
        }
    }
}

#[derive(Debug)]
struct KeyCounts {
    format_version: u32,
    counts: BTreeMap<(String, String), i64>,
}

impl Default for KeyCounts {
    fn default() -> Self {
        KeyCounts {
            format_version: 1,
            counts: BTreeMap::new(),
        }
    }
}

impl ProcessorState for KeyCounts {
    fn format_version(&self) -> u32 {
        self.format_version
    }

    fn snapshot(&self) -> Vec<u8> {
        let list: Vec<(&String, &String, i64)> =
            self.counts.iter().map(|((t, s), n)| (t, s, *n)).collect();
        serde_json::to_vec(&list).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let list: Vec<(String, String, i64)> =
            serde_json::from_slice(bytes).map_err(|e| format!("not a counts snapshot: {e}"))?;
        self.counts = list.into_iter().map(|(t, s, n)| ((t, s), n)).collect();
        Ok(())
    }

    fn clear(&mut self) {
        self.counts.clear();
    }
}

/// The table [`CountsPerKeyProcessor`] writes.
pub fn key_counts_table() -> TableSpec {
    TableSpec {
        text_index: None,
        name: "key_counts",
        key: key_columns(),
        columns: vec![ColumnSpec {
            name: "count",
            ty: ColumnType::BigInt,
            nullable: false,
        }],
        indexes: vec![],
    }
}

impl Processor for CountsPerKeyProcessor {
    fn name(&self) -> &str {
        "counts_per_key"
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![key_counts_table()]
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        if !matches!(event.data, EventData::EntityUpserted(_)) {
            return Err(ProcessorError::invalid_input(format!(
                "counts_per_key counts EntityUpserted only, not {}",
                event.kind()
            )));
        }
        let key = (event.meta.tenant.clone(), event.meta.subject.clone());
        let count = self.counts.counts.entry(key.clone()).or_insert(0);
        *count += 1;
        Ok(vec![Effect::Upsert(RowUpsert {
            table: "key_counts",
            key: vec![key.0, key.1],
            version: *count,
            values: vec![SqlValue::BigInt(*count)],
            deleted: false,
        })])
    }

    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        Some(&mut self.counts)
    }
}

/// A processor with a graph, for the graph sink tests: every
/// `EntityUpserted` is a node labelled `<prefix><entity_type>` with id
/// `tenant/subject` and the attributes as properties (plus a nested object
/// and a list, so the sinks' property conversion is exercised);
/// `EntityDeleted` deletes it; `RelationshipUpserted` is a relationship of
/// type `<prefix><rel_type>` between `<prefix><src_type|Person>` and
/// `<prefix><dst_type|Person>` (attributes `src_type`, `dst_type`), deleted
/// when its attribute `deleted` is true. The prefix keeps tests that share
/// a Neo4j server apart.
pub struct GraphTestProcessor {
    pub prefix: String,
}

/// The graph [`GraphTestProcessor`] writes.
pub const TEST_GRAPH: crate::graph::GraphSpec =
    crate::graph::GraphSpec::new("graph_test_nodes", "graph_test_edges");

impl Processor for GraphTestProcessor {
    fn name(&self) -> &str {
        "graph_test"
    }

    fn tables(&self) -> Vec<TableSpec> {
        TEST_GRAPH.tables()
    }

    fn graph(&self) -> Option<crate::graph::GraphSpec> {
        Some(TEST_GRAPH)
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        use crate::graph::{GraphMutation, NodeRef, Properties};
        use conductor_schemas::AttributeValue;
        let tenant = &event.meta.tenant;
        let id = |s: &str| format!("{tenant}/{s}");
        let to_json = |v: &AttributeValue| serde_json::to_value(v).unwrap_or_default();
        let text = |v: Option<&AttributeValue>| match v {
            Some(AttributeValue::String(s)) => Some(s.clone()),
            _ => None,
        };
        let p = &self.prefix;
        let mutation = match &event.data {
            EventData::EntityUpserted(e) => {
                let mut props: Properties = e
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect();
                props.insert("tenant_id".into(), tenant.clone().into());
                props.insert(
                    "shape".into(),
                    serde_json::json!({"attributes": e.attributes.len()}),
                );
                props.insert(
                    "keys".into(),
                    e.attributes.keys().cloned().collect::<Vec<_>>().into(),
                );
                GraphMutation::upsert_node(
                    format!("{p}{}", e.entity_type),
                    id(&event.meta.subject),
                    e.version,
                    props,
                )
            }
            EventData::EntityDeleted(e) => GraphMutation::delete_node(
                format!("{p}{}", e.entity_type),
                id(&event.meta.subject),
                e.version,
            ),
            EventData::RelationshipUpserted(r) => {
                let rel_type = format!("{p}{}", r.rel_type);
                if r.attributes.get("deleted") == Some(&AttributeValue::Bool(true)) {
                    GraphMutation::delete_edge(rel_type, id(&r.rel_id), r.version)
                } else {
                    let end = |key: &str, subject: &str| {
                        let label = text(r.attributes.get(key)).unwrap_or_else(|| "Person".into());
                        NodeRef::new(format!("{p}{label}"), id(subject))
                    };
                    let props: Properties = r
                        .attributes
                        .iter()
                        .filter(|(k, _)| *k != "src_type" && *k != "dst_type")
                        .map(|(k, v)| (k.clone(), to_json(v)))
                        .collect();
                    GraphMutation::upsert_edge(
                        rel_type,
                        id(&r.rel_id),
                        r.version,
                        end("src_type", &r.src),
                        end("dst_type", &r.dst),
                        props,
                    )
                }
            }
            other => {
                return Err(ProcessorError::invalid_input(format!(
                    "graph_test folds entity and relationship events, not {}",
                    other.kind()
                )));
            }
        };
        Ok(vec![Effect::Graph(Box::new(mutation))])
    }
}
