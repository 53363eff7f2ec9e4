//! `lineage`: OpenLineage events folded into a dataset / process / run graph.
//!
//! ```text
//! (:Dataset {id, tenant_id, namespace, name})-[:INPUT_OF]->(:Process {id, tenant_id, namespace, name, version})
//! (:Process)-[:OUTPUT_OF]->(:Dataset)
//! (:Process)-[:HAS_RUN]->(:Run {id, tenant_id, run_id, job, status, started_at, ended_at})
//! ```
//! in the SQL graph tables `lineage_nodes` / `lineage_edges` (and Neo4j
//! through the graph sink), plus `lineage_runs` (a row per run, for SQL) and
//! `lineage_column_lineage` (output field ← input field, from the
//! `columnLineage` facet).
//!
//! Ids are Marquez's node ids (`dataset:NS:NAME`, `job:NS:NAME`,
//! `run:RUN_ID`) behind the tenant (`acme/dataset:NS:NAME`), so tenants never
//! share a node.
//!
//! Exactly once, in any order: datasets and input/output edges never change
//! (version 1, so a replay writes nothing); a process's `version` (a hash of
//! its inputs and outputs) comes from its latest event that names any, the
//! row version being that event's time; a run is the state machine of
//! [`runs`], keyed by run id. Column lineage rows are versioned by event time.
//! Only the runs are state (snapshotted); everything else is decided by the
//! version guard, so events of one job may sit in any partition.

pub mod query;
pub mod runs;
pub mod workload;

use conductor_engine::graph::{GraphMutation, GraphSpec, NodeRef, Properties};
use conductor_engine::processor::{
    Effect, Processor, ProcessorError, ProcessorSpec, ProcessorState,
};
use conductor_engine::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use conductor_schemas::openlineage::{self, LineageDataset, LineageEvent, LineageJob, LineageRun};
use conductor_schemas::{Event, EventData};
use runs::{RunState, RunTransition, Runs};
use serde_json::json;

/// The graph tables.
pub const LINEAGE_GRAPH: GraphSpec = GraphSpec::new("lineage_nodes", "lineage_edges");
/// A row per run.
pub const LINEAGE_RUNS_TABLE: &str = "lineage_runs";
/// Column lineage: a row per (output field, input field, transformation).
pub const COLUMN_LINEAGE_TABLE: &str = "lineage_column_lineage";
/// The dataset catalog: a row per dataset, registered or seen in lineage.
pub const DATASETS_TABLE: &str = "datasets";

/// Node labels and relationship types.
pub const DATASET: &str = "Dataset";
pub const PROCESS: &str = "Process";
pub const RUN: &str = "Run";
pub const INPUT_OF: &str = "INPUT_OF";
pub const OUTPUT_OF: &str = "OUTPUT_OF";
pub const HAS_RUN: &str = "HAS_RUN";

fn col(name: &'static str, ty: ColumnType, nullable: bool) -> ColumnSpec {
    ColumnSpec { name, ty, nullable }
}

/// `lineage_runs(tenant_id, run_id, version, job_namespace, job_name, status,
/// started_at, ended_at, updated_at, error_message)`.
pub fn runs_table() -> TableSpec {
    TableSpec {
        text_index: None,
        name: LINEAGE_RUNS_TABLE,
        key: vec![
            col("tenant_id", ColumnType::Text, false),
            col("run_id", ColumnType::Text, false),
        ],
        columns: vec![
            col("job_namespace", ColumnType::Text, false),
            col("job_name", ColumnType::Text, false),
            col("status", ColumnType::Text, false),
            col("started_at", ColumnType::Timestamp, true),
            col("ended_at", ColumnType::Timestamp, true),
            col("updated_at", ColumnType::Timestamp, false),
            col("error_message", ColumnType::Text, true),
        ],
        indexes: vec![vec!["tenant_id", "job_namespace", "job_name"]],
    }
}

/// `lineage_column_lineage(tenant_id, dataset_id, field, input_dataset_id,
/// input_field, transformation, version, job_id, transformation_type,
/// transformation_subtype)`: `transformation` is `TYPE/SUBTYPE` (part of the
/// key: one input field may reach an output field two ways).
pub fn column_lineage_table() -> TableSpec {
    TableSpec {
        text_index: None,
        name: COLUMN_LINEAGE_TABLE,
        key: vec![
            col("tenant_id", ColumnType::Text, false),
            col("dataset_id", ColumnType::Text, false),
            col("field", ColumnType::Text, false),
            col("input_dataset_id", ColumnType::Text, false),
            col("input_field", ColumnType::Text, false),
            col("transformation", ColumnType::Text, false),
        ],
        columns: vec![
            col("job_id", ColumnType::Text, false),
            col("transformation_type", ColumnType::Text, false),
            col("transformation_subtype", ColumnType::Text, false),
        ],
        indexes: vec![vec!["tenant_id", "input_dataset_id", "input_field"]],
    }
}

/// `datasets(tenant_id, dataset_id, version, namespace, name, registered,
/// license, purpose, retention, region, contract_version, created_at)`: the
/// catalog. A `DatasetRegistered` event makes a registered row (version: its
/// time, so a later registration replaces it); a dataset that lineage names
/// but nobody registered has an unregistered row (version: minus the time of
/// the earliest event naming it, so the earliest wins whatever the order,
/// and any registration wins over it).
pub fn datasets_table() -> TableSpec {
    TableSpec {
        text_index: None,
        name: DATASETS_TABLE,
        key: vec![
            col("tenant_id", ColumnType::Text, false),
            col("dataset_id", ColumnType::Text, false),
        ],
        columns: vec![
            col("namespace", ColumnType::Text, false),
            col("name", ColumnType::Text, false),
            col("registered", ColumnType::Bool, false),
            col("license", ColumnType::Text, true),
            col("purpose", ColumnType::Json, false),
            col("retention", ColumnType::Text, true),
            col("region", ColumnType::Text, true),
            col("contract_version", ColumnType::Text, true),
            col("created_at", ColumnType::Timestamp, false),
        ],
        indexes: vec![vec!["tenant_id", "registered"]],
    }
}

/// Splits `dataset:NAMESPACE:NAME` (the namespace may hold `:`, the name
/// does not).
pub fn split_dataset_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("dataset:")?;
    let (ns, name) = rest.rsplit_once(':')?;
    (!ns.is_empty() && !name.is_empty()).then_some((ns, name))
}

/// `[processor_config]` of `lineage`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineageConfig {
    /// Keep the `columnLineage` facet in `lineage_column_lineage`.
    pub column_lineage: bool,
}

impl Default for LineageConfig {
    fn default() -> Self {
        LineageConfig {
            column_lineage: true,
        }
    }
}

/// The `lineage` spec.
pub struct LineageSpec;

impl ProcessorSpec for LineageSpec {
    type Config = LineageConfig;
    const NAME: &'static str = "lineage";
    const DESCRIPTION: &'static str = "OpenLineage run, job and dataset events → dataset/process/run graph (SQL and Neo4j), runs, column lineage";

    fn tables(_: &LineageConfig) -> Vec<TableSpec> {
        all_tables()
    }

    fn build(config: LineageConfig) -> Box<dyn Processor> {
        Box::new(LineageProcessor::new(config))
    }
}

fn all_tables() -> Vec<TableSpec> {
    let mut tables = LINEAGE_GRAPH.tables();
    tables.push(runs_table());
    tables.push(column_lineage_table());
    tables.push(datasets_table());
    tables
}

/// The node id of a dataset (Marquez's `nodeId`).
pub fn dataset_id(namespace: &str, name: &str) -> String {
    format!("dataset:{namespace}:{name}")
}

/// The node id of a job.
pub fn job_id(namespace: &str, name: &str) -> String {
    format!("job:{namespace}:{name}")
}

/// The node id of a run.
pub fn run_id(run: &str) -> String {
    format!("run:{run}")
}

/// A node's id in the graph tables: the tenant, then the node id.
pub fn graph_id(tenant: &str, node_id: &str) -> String {
    format!("{tenant}/{node_id}")
}

/// The processor.
#[derive(Debug, Default)]
pub struct LineageProcessor {
    config: LineageConfig,
    runs: Runs,
}

impl LineageProcessor {
    pub fn new(config: LineageConfig) -> Self {
        LineageProcessor {
            config,
            runs: Runs::default(),
        }
    }

    /// A run's state, for tests and `conductor lineage`.
    pub fn run(&self, tenant: &str, run: &str) -> Option<&RunState> {
        self.runs.by_id.get(&(tenant.to_string(), run.to_string()))
    }

    fn fold(&mut self, tenant: &str, event: LineageEvent) -> Vec<Effect> {
        let mut out = Effects {
            tenant,
            at: event.event_time(),
            effects: Vec::new(),
        };
        match event {
            LineageEvent::Run(run) => {
                let job = out.job(&run.job, &run.inputs, &run.outputs, &run.event_time);
                if self.config.column_lineage {
                    out.column_lineage(&job, &run.outputs, &run.event_time);
                }
                self.fold_run(&mut out, &job, &run);
            }
            LineageEvent::Job(j) => {
                let job = out.job(&j.job, &j.inputs, &j.outputs, &j.event_time);
                if self.config.column_lineage {
                    out.column_lineage(&job, &j.outputs, &j.event_time);
                }
            }
            LineageEvent::Dataset(d) => {
                out.dataset(&d.dataset);
            }
        }
        out.effects
    }

    fn fold_run(&mut self, out: &mut Effects<'_>, job: &str, run: &LineageRun) {
        let key = (out.tenant.to_string(), run.run_id.clone());
        let state = self.runs.by_id.entry(key).or_insert_with(|| RunState {
            job: (run.job.namespace.clone(), run.job.name.clone()),
            ..RunState::default()
        });
        let transition = RunTransition {
            event_type: run.event_type,
            at: run.event_time.timestamp_micros(),
            error_message: run
                .run_facets
                .get("errorMessage")
                .and_then(|f| f.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_string),
        };
        if !state.apply(&transition) {
            return;
        }
        out.run(job, &run.run_id, state);
    }
}

/// Effects of one event, for one tenant.
struct Effects<'a> {
    tenant: &'a str,
    /// The event's time.
    at: chrono::DateTime<chrono::Utc>,
    effects: Vec<Effect>,
}

fn timestamp(micros: Option<i64>) -> SqlValue {
    micros
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map_or(SqlValue::Null, SqlValue::Timestamp)
}

fn rfc3339(micros: Option<i64>) -> serde_json::Value {
    micros
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map_or(serde_json::Value::Null, |t| {
            json!(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        })
}

impl Effects<'_> {
    fn graph(&mut self, m: GraphMutation) {
        self.effects.push(Effect::Graph(Box::new(m)));
    }

    fn props(&self, id: &str, extra: serde_json::Value) -> Properties {
        let mut p = Properties::new();
        p.insert("id".into(), id.into());
        p.insert("tenant_id".into(), self.tenant.into());
        if let serde_json::Value::Object(extra) = extra {
            p.extend(extra.into_iter().filter(|(_, v)| !v.is_null()));
        }
        p
    }

    /// A dataset node (never changes: version 1; a registration's node
    /// replaces it) and its unregistered catalog row.
    fn dataset(&mut self, d: &LineageDataset) -> String {
        let id = dataset_id(&d.namespace, &d.name);
        let props = self.props(&id, json!({"namespace": d.namespace, "name": d.name}));
        self.graph(GraphMutation::upsert_node(
            DATASET,
            graph_id(self.tenant, &id),
            1,
            props,
        ));
        self.effects.push(Effect::Upsert(RowUpsert {
            table: DATASETS_TABLE,
            key: vec![self.tenant.to_string(), id.clone()],
            version: -self.at.timestamp_micros().max(1),
            values: vec![
                SqlValue::Text(d.namespace.clone()),
                SqlValue::Text(d.name.clone()),
                SqlValue::Bool(false),
                SqlValue::Null,
                SqlValue::Json(json!([])),
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Timestamp(self.at),
            ],
            deleted: false,
        }));
        id
    }

    /// A registration: the catalog row and the dataset node with its
    /// governance facts, both versioned by the registration's time.
    fn registered(
        &mut self,
        r: &conductor_schemas::DatasetRegistered,
    ) -> Result<(), ProcessorError> {
        let (namespace, name) = split_dataset_id(&r.dataset_id).ok_or_else(|| {
            ProcessorError::invalid_input(format!(
                "data.dataset_id: `{}` is not dataset:NAMESPACE:NAME",
                r.dataset_id
            ))
        })?;
        let version = self.at.timestamp_micros().max(2);
        let props = self.props(
            &r.dataset_id,
            json!({
                "namespace": namespace, "name": name, "title": r.name,
                "purpose": r.purpose, "retention": r.retention,
                "license": r.license, "region": r.region,
            }),
        );
        self.graph(GraphMutation::upsert_node(
            DATASET,
            graph_id(self.tenant, &r.dataset_id),
            version,
            props,
        ));
        let text = |v: &Option<String>| v.clone().map_or(SqlValue::Null, SqlValue::Text);
        self.effects.push(Effect::Upsert(RowUpsert {
            table: DATASETS_TABLE,
            key: vec![self.tenant.to_string(), r.dataset_id.clone()],
            version,
            values: vec![
                SqlValue::Text(namespace.to_string()),
                SqlValue::Text(r.name.clone()),
                SqlValue::Bool(true),
                text(&r.license),
                SqlValue::Json(json!(r.purpose)),
                text(&r.retention),
                text(&r.region),
                text(&r.contract_version),
                SqlValue::Timestamp(self.at),
            ],
            deleted: false,
        }));
        Ok(())
    }

    /// The process node, its datasets and their edges; returns its id.
    fn job(
        &mut self,
        job: &LineageJob,
        inputs: &[LineageDataset],
        outputs: &[LineageDataset],
        at: &chrono::DateTime<chrono::Utc>,
    ) -> String {
        let id = job_id(&job.namespace, &job.name);
        let node = NodeRef::new(PROCESS, graph_id(self.tenant, &id));
        let input_ids: Vec<String> = inputs.iter().map(|d| self.dataset(d)).collect();
        let output_ids: Vec<String> = outputs.iter().map(|d| self.dataset(d)).collect();
        // The version names the job's inputs and outputs (as Marquez's job
        // versions do); an event naming none leaves the last one standing.
        let (row_version, version) = if input_ids.is_empty() && output_ids.is_empty() {
            (0, serde_json::Value::Null)
        } else {
            let mut ins = input_ids.clone();
            let mut outs = output_ids.clone();
            ins.sort();
            outs.sort();
            let hash = blake3::hash(
                format!("{}\u{1e}{}", ins.join("\u{1f}"), outs.join("\u{1f}")).as_bytes(),
            );
            (at.timestamp_micros().max(1), json!(&hash.to_hex()[..16]))
        };
        let props = self.props(
            &id,
            json!({"namespace": job.namespace, "name": job.name, "version": version}),
        );
        self.graph(GraphMutation::upsert_node(
            PROCESS,
            node.id.clone(),
            row_version,
            props,
        ));
        for input in &input_ids {
            self.edge(INPUT_OF, dataset_ref(self.tenant, input), node.clone());
        }
        for output in &output_ids {
            self.edge(OUTPUT_OF, node.clone(), dataset_ref(self.tenant, output));
        }
        id
    }

    /// An edge that never changes (version 1), id `tenant/FROM>TO`.
    fn edge(&mut self, rel_type: &str, from: NodeRef, to: NodeRef) {
        let from_id = from
            .id
            .split_once('/')
            .map_or(from.id.as_str(), |(_, id)| id);
        let id = format!(
            "{}>{}",
            from_id,
            to.id.split_once('/').map_or(to.id.as_str(), |(_, id)| id)
        );
        let props = self.props(&id, json!({}));
        self.graph(GraphMutation::upsert_edge(
            rel_type,
            graph_id(self.tenant, &id),
            1,
            from,
            to,
            props,
        ));
    }

    fn run(&mut self, job: &str, run: &str, state: &RunState) {
        let id = run_id(run);
        let ended = state.ended.as_ref();
        let props = self.props(
            &id,
            json!({
                "run_id": run,
                "job": job,
                "status": state.status(),
                "started_at": rfc3339(state.started_at),
                "ended_at": rfc3339(ended.map(|e| e.0)),
            }),
        );
        let node = NodeRef::new(RUN, graph_id(self.tenant, &id));
        self.graph(GraphMutation::upsert_node(
            RUN,
            node.id.clone(),
            state.version,
            props,
        ));
        self.edge(
            HAS_RUN,
            NodeRef::new(PROCESS, graph_id(self.tenant, job)),
            node,
        );
        self.effects.push(Effect::Upsert(RowUpsert {
            table: LINEAGE_RUNS_TABLE,
            key: vec![self.tenant.to_string(), run.to_string()],
            version: state.version,
            values: vec![
                SqlValue::Text(state.job.0.clone()),
                SqlValue::Text(state.job.1.clone()),
                SqlValue::Text(state.status().to_string()),
                timestamp(state.started_at),
                timestamp(ended.map(|e| e.0)),
                timestamp(Some(state.updated_at)),
                ended
                    .and_then(|e| e.2.clone())
                    .map_or(SqlValue::Null, SqlValue::Text),
            ],
            deleted: false,
        }));
    }

    /// The `columnLineage` facet of each output, versioned by event time.
    fn column_lineage(
        &mut self,
        job: &str,
        outputs: &[LineageDataset],
        at: &chrono::DateTime<chrono::Utc>,
    ) {
        for output in outputs {
            let dataset = dataset_id(&output.namespace, &output.name);
            for lineage in output.column_lineage() {
                for input in lineage.inputs {
                    let transformation = format!(
                        "{}/{}",
                        input.transformation_type, input.transformation_subtype
                    );
                    self.effects.push(Effect::Upsert(RowUpsert {
                        table: COLUMN_LINEAGE_TABLE,
                        key: vec![
                            self.tenant.to_string(),
                            dataset.clone(),
                            lineage.field.clone(),
                            dataset_id(&input.namespace, &input.name),
                            input.field,
                            transformation,
                        ],
                        version: at.timestamp_micros().max(1),
                        values: vec![
                            SqlValue::Text(job.to_string()),
                            SqlValue::Text(input.transformation_type),
                            SqlValue::Text(input.transformation_subtype),
                        ],
                        deleted: false,
                    }));
                }
            }
        }
    }
}

fn dataset_ref(tenant: &str, id: &str) -> NodeRef {
    NodeRef::new(DATASET, graph_id(tenant, id))
}

/// The typed subset `RunEvent` (Conductor's own schema) as an OpenLineage run.
fn from_run_event(r: &conductor_schemas::RunEvent) -> LineageRun {
    let dataset = |d: &conductor_schemas::Dataset| LineageDataset {
        namespace: d.namespace.clone(),
        name: d.name.clone(),
        facets: Default::default(),
        io_facets: Default::default(),
    };
    LineageRun {
        event_type: Some(r.event_type),
        event_time: r.event_time,
        producer: r.producer.clone().unwrap_or_default(),
        run_id: r.run.run_id.clone(),
        run_facets: Default::default(),
        job: LineageJob {
            namespace: r.job.namespace.clone(),
            name: r.job.name.clone(),
            facets: Default::default(),
        },
        inputs: r.inputs.iter().map(dataset).collect(),
        outputs: r.outputs.iter().map(dataset).collect(),
    }
}

impl Processor for LineageProcessor {
    fn name(&self) -> &str {
        "lineage"
    }

    fn tables(&self) -> Vec<TableSpec> {
        all_tables()
    }

    fn graph(&self) -> Option<GraphSpec> {
        Some(LINEAGE_GRAPH)
    }

    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        Some(&mut self.runs)
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        if let EventData::DatasetRegistered(r) = &event.data {
            let mut out = Effects {
                tenant: &event.meta.tenant,
                at: event.meta.occurred_at,
                effects: Vec::new(),
            };
            out.registered(r)?;
            return Ok(out.effects);
        }
        let lineage = match &event.data {
            EventData::OpenLineageEvent(ol) => openlineage::parse_str(&ol.event)
                .map_err(|e| ProcessorError::invalid_input(format!("data.event: {e}")))?,
            EventData::RunEvent(r) => LineageEvent::Run(from_run_event(r)),
            other => {
                return Err(ProcessorError::invalid_input(format!(
                    "the lineage topology folds OpenLineage events (OpenLineageEvent, RunEvent) and DatasetRegistered, not {}",
                    other.kind()
                )));
            }
        };
        let effects = self.fold(&event.meta.tenant, lineage);
        for e in &effects {
            if let Effect::Graph(m) = e
                && let Some(problem) = m.problem()
            {
                return Err(ProcessorError::invalid_input(problem));
            }
        }
        Ok(effects)
    }
}

impl ProcessorState for Runs {
    fn format_version(&self) -> u32 {
        1
    }

    fn snapshot(&self) -> Vec<u8> {
        let runs: Vec<(&(String, String), &RunState)> = self.by_id.iter().collect();
        serde_json::to_vec(&runs).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let runs: Vec<((String, String), RunState)> =
            serde_json::from_slice(bytes).map_err(|e| format!("lineage runs snapshot: {e}"))?;
        self.by_id = runs.into_iter().collect();
        Ok(())
    }

    fn clear(&mut self) {
        self.by_id.clear();
    }
}

#[cfg(test)]
mod tests;
