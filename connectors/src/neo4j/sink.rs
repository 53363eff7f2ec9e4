//! The graph sink: a topology's graph topic (`ig.graph.<topology>`) applied
//! to Neo4j, exactly once.
//!
//! Each batch is ONE Neo4j transaction: the batch's changes, compacted to
//! the newest per element, applied by the statements of [`super::cypher`]
//! (version-guarded, so applying a batch twice changes nothing), and the
//! sink's next offsets stored as `(:ConductorPosition {sink, topic,
//! partition, next_offset})` nodes. The runner (`runtime::sink::SinkRunner`)
//! starts from those positions, so a crash loses nothing and repeats nothing.
//! Schema (uniqueness of `id` per label, an index per relationship type) is
//! created outside the data transactions, once per label.

use super::client::{Neo4jError, connect, is_retryable};
use super::config::Neo4jConfig;
use super::cypher;
use conductor_engine::graph::{GraphMutation, NodeRef};
use conductor_engine::log::StoredRecord;
use conductor_engine::runtime::{SinkError, TopicSink, WriteOutcome};
use neo4rs::{BoltType, Graph, query};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Applies graph mutations to Neo4j (see the module doc).
pub struct Neo4jGraphSink {
    config: Neo4jConfig,
    /// Names this sink's positions and tombstones: the topology's name.
    sink: String,
    graph: Option<Graph>,
    /// Labels and relationship types whose schema exists.
    schema_done: HashSet<(bool, String)>,
}

impl Neo4jGraphSink {
    /// A sink for `topology`; connects on first use, so a server that is
    /// down delays the sink (retried) rather than the topology's start.
    pub fn new(config: Neo4jConfig, topology: &str) -> Self {
        Neo4jGraphSink {
            config,
            sink: topology.to_string(),
            graph: None,
            schema_done: HashSet::new(),
        }
    }

    async fn graph(&mut self) -> Result<Graph, SinkError> {
        if let Some(g) = &self.graph {
            return Ok(g.clone());
        }
        let graph = connect(&self.config).await.map_err(sink_error)?;
        for statement in cypher::bookkeeping_schema() {
            graph
                .run(query(&statement))
                .await
                .map_err(|e| sink_error(Neo4jError::query("creating the sink's schema", e)))?;
        }
        self.graph = Some(graph.clone());
        Ok(graph)
    }

    /// Creates the schema of labels and types not seen yet. A refusal (an
    /// index of another kind on the same property, duplicates that predate
    /// the sink) is logged and lived with: lookups by `id` still work.
    async fn ensure_schema(&mut self, graph: &Graph, batch: &Batch) -> Result<(), SinkError> {
        let mut wanted: Vec<(bool, String)> = Vec::new();
        for label in batch.labels() {
            wanted.push((true, label));
        }
        for rel_type in batch.rel_types() {
            wanted.push((false, rel_type));
        }
        for (is_label, name) in wanted {
            if self.schema_done.contains(&(is_label, name.clone())) {
                continue;
            }
            let statement = if is_label {
                cypher::node_schema(&name)
            } else {
                cypher::edge_schema(&name)
            };
            match graph.run(query(&statement)).await {
                Ok(_) => {}
                Err(e) if is_retryable(&e) => {
                    return Err(sink_error(Neo4jError::query("creating schema", e)));
                }
                Err(e) => {
                    tracing::warn!(sink = %self.sink, name = %name, error = %e, "could not create the Neo4j schema for it; lookups by id run without it");
                }
            }
            self.schema_done.insert((is_label, name));
        }
        Ok(())
    }
}

fn sink_error(e: Neo4jError) -> SinkError {
    SinkError {
        retryable: e.is_retryable(),
        message: e.to_string(),
        source: Some(std::sync::Arc::new(e)),
    }
}

fn query_error(operation: &str, e: neo4rs::Error) -> SinkError {
    sink_error(Neo4jError::query(operation, e))
}

fn bolt(value: Value) -> Result<BoltType, SinkError> {
    BoltType::try_from(value)
        .map_err(|e| SinkError::permanent(format!("a value Neo4j can't take: {e}")))
}

/// A batch's changes, the newest per element, grouped as the statements
/// take them.
#[derive(Default)]
struct Batch {
    /// label → rows `{id, version, props}`.
    node_upserts: BTreeMap<String, Vec<Value>>,
    /// label → rows `{id, version}`.
    node_deletes: BTreeMap<String, Vec<Value>>,
    /// type → rows `{id, version}` of every change (the replaced ones go).
    edge_changes: BTreeMap<String, Vec<Value>>,
    /// (type, from label, to label) → rows `{id, version, from, to, props}`.
    edge_upserts: BTreeMap<(String, String, String), Vec<Value>>,
    /// type → rows `{id, version}`.
    edge_deletes: BTreeMap<String, Vec<Value>>,
}

impl Batch {
    fn of(mutations: Vec<GraphMutation>) -> Batch {
        // The newest change per element wins (versions only grow per key).
        let mut newest: HashMap<(bool, String, String), GraphMutation> = HashMap::new();
        for m in mutations {
            let (element, name, id) = m.identity();
            let key = (
                element == conductor_engine::graph::Element::Node,
                name.to_string(),
                id.to_string(),
            );
            match newest.get(&key) {
                Some(old) if old.version() >= m.version() => {}
                _ => {
                    newest.insert(key, m);
                }
            }
        }
        let mut batch = Batch::default();
        let with_identity = |props: &serde_json::Map<String, Value>, id: &str, version: i64| {
            let mut p = cypher::neo4j_properties(props);
            p.insert("id".into(), json!(id));
            p.insert("version".into(), json!(version));
            Value::Object(p)
        };
        for m in newest.into_values() {
            match m {
                GraphMutation::UpsertNode {
                    label,
                    id,
                    version,
                    properties,
                } => batch.node_upserts.entry(label).or_default().push(json!({
                    "id": id, "version": version,
                    "props": with_identity(&properties, &id, version),
                })),
                GraphMutation::DeleteNode { label, id, version } => batch
                    .node_deletes
                    .entry(label)
                    .or_default()
                    .push(json!({"id": id, "version": version})),
                GraphMutation::UpsertEdge {
                    rel_type,
                    id,
                    version,
                    from,
                    to,
                    properties,
                } => {
                    batch
                        .edge_changes
                        .entry(rel_type.clone())
                        .or_default()
                        .push(json!({"id": id, "version": version}));
                    let NodeRef {
                        label: fl,
                        id: from,
                    } = from;
                    let NodeRef { label: tl, id: to } = to;
                    batch
                        .edge_upserts
                        .entry((rel_type, fl, tl))
                        .or_default()
                        .push(json!({
                            "id": id, "version": version, "from": from, "to": to,
                            "props": with_identity(&properties, &id, version),
                        }));
                }
                GraphMutation::DeleteEdge {
                    rel_type,
                    id,
                    version,
                } => {
                    let row = json!({"id": id, "version": version});
                    batch
                        .edge_changes
                        .entry(rel_type.clone())
                        .or_default()
                        .push(row.clone());
                    batch.edge_deletes.entry(rel_type).or_default().push(row);
                }
            }
        }
        batch
    }

    fn labels(&self) -> Vec<String> {
        let mut out: Vec<String> = self.node_upserts.keys().cloned().collect();
        out.extend(self.node_deletes.keys().cloned());
        for (_, fl, tl) in self.edge_upserts.keys() {
            out.push(fl.clone());
            out.push(tl.clone());
        }
        out.sort();
        out.dedup();
        out
    }

    fn rel_types(&self) -> Vec<String> {
        self.edge_changes.keys().cloned().collect()
    }

    /// The statements of the batch, in the order they must run.
    fn statements(&self, sink: &str) -> Result<Vec<(String, neo4rs::Query)>, SinkError> {
        let mut out = Vec::new();
        let q = |text: String, name: &str, rows: &[Value]| -> Result<neo4rs::Query, SinkError> {
            Ok(query(&text)
                .param("sink", sink)
                .param("name", name)
                .param("rows", bolt(Value::Array(rows.to_vec()))?))
        };
        for (label, rows) in &self.node_upserts {
            out.push((
                format!("upserting {label} nodes"),
                q(cypher::upsert_nodes(label), label, rows)?,
            ));
        }
        for (rel_type, rows) in &self.edge_changes {
            out.push((
                format!("replacing {rel_type} relationships"),
                q(cypher::remove_replaced_edges(rel_type), rel_type, rows)?,
            ));
        }
        for ((rel_type, fl, tl), rows) in &self.edge_upserts {
            out.push((
                format!("creating {rel_type} relationships"),
                q(cypher::create_edges(rel_type, fl, tl), rel_type, rows)?,
            ));
        }
        for (rel_type, rows) in &self.edge_deletes {
            out.push((
                format!("deleting {rel_type} relationships"),
                q(cypher::write_tombstones(), rel_type, rows)?.param("element", "edge"),
            ));
        }
        for (label, rows) in &self.node_deletes {
            out.push((
                format!("deleting {label} nodes"),
                q(cypher::write_tombstones(), label, rows)?.param("element", "node"),
            ));
            out.push((
                format!("deleting {label} nodes"),
                q(cypher::delete_nodes(label), label, rows)?,
            ));
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl TopicSink for Neo4jGraphSink {
    fn kind(&self) -> &'static str {
        "neo4j"
    }

    fn target(&self) -> String {
        format!("neo4j {}", self.config.uri)
    }

    async fn load_positions(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>, SinkError> {
        let loaded = self.read_positions(topic).await;
        self.forget_pool_after(&loaded);
        loaded
    }

    async fn write(
        &mut self,
        topic: &str,
        records: &[StoredRecord],
        positions: &BTreeMap<i32, i64>,
    ) -> Result<WriteOutcome, SinkError> {
        let written = self.write_batch(topic, records, positions).await;
        self.forget_pool_after(&written);
        written
    }
}

impl Neo4jGraphSink {
    /// After a failure a retry can fix, the next attempt connects afresh.
    /// A pooled connection whose server was killed under it (mid-transaction)
    /// can stay in the pool and time out on every later use: found by the
    /// fault soak (`soak/faults.sh`), where the sink stopped writing for good
    /// after a Neo4j SIGKILL while the server was back.
    fn forget_pool_after<T>(&mut self, result: &Result<T, SinkError>) {
        if result.as_ref().is_err_and(|e| e.retryable) {
            self.graph = None;
        }
    }

    async fn read_positions(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>, SinkError> {
        let graph = self.graph().await?;
        let mut rows = graph
            .execute(
                query(&cypher::load_positions())
                    .param("sink", self.sink.as_str())
                    .param("topic", topic),
            )
            .await
            .map_err(|e| query_error("reading the sink's position", e))?;
        let mut positions = BTreeMap::new();
        while let Some(row) = rows
            .next()
            .await
            .map_err(|e| query_error("reading the sink's position", e))?
        {
            let partition: i64 = row.get("partition").map_err(|e| {
                SinkError::permanent(format!("a ConductorPosition without a partition: {e}"))
            })?;
            let next: i64 = row.get("next_offset").map_err(|e| {
                SinkError::permanent(format!("a ConductorPosition without next_offset: {e}"))
            })?;
            positions.insert(partition as i32, next);
        }
        Ok(positions)
    }

    async fn write_batch(
        &mut self,
        topic: &str,
        records: &[StoredRecord],
        positions: &BTreeMap<i32, i64>,
    ) -> Result<WriteOutcome, SinkError> {
        let mut rejected = 0;
        let mut mutations = Vec::with_capacity(records.len());
        for r in records {
            match serde_json::from_slice::<GraphMutation>(&r.record.value) {
                Ok(m) if m.problem().is_none() => mutations.push(m),
                Ok(m) => {
                    rejected += 1;
                    tracing::warn!(sink = %self.sink, topic = %r.topic, partition = r.partition, offset = r.offset, problem = %m.problem().unwrap_or_default(), "graph record skipped");
                }
                Err(e) => {
                    rejected += 1;
                    tracing::warn!(sink = %self.sink, topic = %r.topic, partition = r.partition, offset = r.offset, error = %e, "graph record skipped: not a graph mutation");
                }
            }
        }
        let batch = Batch::of(mutations);
        let graph = self.graph().await?;
        self.ensure_schema(&graph, &batch).await?;
        let mut statements = batch.statements(&self.sink)?;
        let position_rows: Vec<Value> = positions
            .iter()
            .map(|(p, next)| json!({"partition": p, "next_offset": next}))
            .collect();
        statements.push((
            "storing the sink's position".into(),
            query(&cypher::store_positions())
                .param("sink", self.sink.as_str())
                .param("topic", topic)
                .param("rows", bolt(Value::Array(position_rows))?),
        ));
        let mut txn = graph
            .start_txn()
            .await
            .map_err(|e| query_error("starting a transaction", e))?;
        for (operation, statement) in statements {
            if let Err(e) = txn.run(statement).await {
                let _ = txn.rollback().await;
                return Err(query_error(&operation, e));
            }
        }
        // A COMMIT whose reply is lost is retryable: the position in the
        // graph says what happened, and replaying the batch is harmless.
        txn.commit()
            .await
            .map_err(|e| query_error("committing a batch", e))?;
        Ok(WriteOutcome { rejected })
    }
}
