//! Lineage and impact queries over the lineage graph, in memory.
//!
//! [`LineageGraph`] is built from the graph mutations the `lineage`
//! topology applied (its `ig.graph.lineage` topic, replayed and then
//! followed), version-guarded like the SQL tables, so it equals them. A query
//! is a breadth-first walk over adjacency lists: bounded by depth, in
//! microseconds to milliseconds where Marquez's users report seconds.
//!
//! Node ids are Marquez's (`dataset:NS:NAME`, `job:NS:NAME`); the answer of
//! [`LineageGraph::lineage`] is Marquez's `GET /api/v1/lineage` shape:
//! `{"graph": [{"id", "type": "DATASET"|"JOB", "data", "inEdges", "outEdges"}]}`.

use super::{DATASET, HAS_RUN, PROCESS, RUN};
use conductor_engine::graph::{GraphMutation, Properties};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// Which way a walk goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Towards what a node is made from.
    Upstream,
    /// Towards what is made from it.
    Downstream,
    /// Both (Marquez's lineage endpoint).
    Both,
}

impl std::str::FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "upstream" => Ok(Direction::Upstream),
            "downstream" => Ok(Direction::Downstream),
            "both" => Ok(Direction::Both),
            other => Err(format!(
                "unknown direction `{other}`: use upstream, downstream or both"
            )),
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    label: String,
    version: i64,
    properties: Properties,
    deleted: bool,
}

#[derive(Debug, Clone)]
struct Edge {
    version: i64,
    from: String,
    to: String,
    deleted: bool,
}

/// The graph of every tenant, keyed by graph id (`tenant/dataset:NS:NAME`).
#[derive(Debug, Default)]
pub struct LineageGraph {
    nodes: HashMap<String, Node>,
    edges: HashMap<(String, String), Edge>,
    /// Live edges by end: graph id → (rel type, other end).
    out: HashMap<String, BTreeSet<(String, String)>>,
    inn: HashMap<String, BTreeSet<(String, String)>>,
}

/// A node of an answer: Marquez's shape.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GraphNode {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: &'static str,
    pub data: Value,
    #[serde(rename = "inEdges")]
    pub in_edges: Vec<GraphEdge>,
    #[serde(rename = "outEdges")]
    pub out_edges: Vec<GraphEdge>,
}

/// An edge of an answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct GraphEdge {
    pub origin: String,
    pub destination: String,
}

/// `GET /api/v1/lineage`'s answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Lineage {
    pub graph: Vec<GraphNode>,
}

/// What a change to a node touches downstream.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Impact {
    pub node: String,
    pub datasets: Vec<String>,
    pub jobs: Vec<String>,
}

/// Why a query has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("`{0}` is not a node id: use dataset:NAMESPACE:NAME or job:NAMESPACE:NAME")]
    BadNodeId(String),
    #[error("no node `{node}` in tenant `{tenant}`'s lineage")]
    NotFound { tenant: String, node: String },
}

fn graph_id(tenant: &str, node: &str) -> String {
    super::graph_id(tenant, node)
}

/// The node id without its tenant.
fn node_id(graph_id: &str) -> &str {
    graph_id.split_once('/').map_or(graph_id, |(_, id)| id)
}

impl LineageGraph {
    /// Applies one mutation, if its version is newer than what is held.
    pub fn apply(&mut self, m: &GraphMutation) {
        match m {
            GraphMutation::UpsertNode {
                label,
                id,
                version,
                properties,
            } => self.put_node(label, id, *version, properties.clone(), false),
            GraphMutation::DeleteNode { label, id, version } => {
                self.put_node(label, id, *version, Properties::new(), true)
            }
            GraphMutation::UpsertEdge {
                rel_type,
                id,
                version,
                from,
                to,
                ..
            } => self.put_edge(rel_type, id, *version, &from.id, &to.id, false),
            GraphMutation::DeleteEdge {
                rel_type,
                id,
                version,
            } => self.put_edge(rel_type, id, *version, "", "", true),
        }
    }

    fn put_node(
        &mut self,
        label: &str,
        id: &str,
        version: i64,
        properties: Properties,
        deleted: bool,
    ) {
        if self.nodes.get(id).is_some_and(|n| n.version >= version) {
            return;
        }
        self.nodes.insert(
            id.to_string(),
            Node {
                label: label.to_string(),
                version,
                properties,
                deleted,
            },
        );
    }

    fn put_edge(
        &mut self,
        rel_type: &str,
        id: &str,
        version: i64,
        from: &str,
        to: &str,
        deleted: bool,
    ) {
        let key = (rel_type.to_string(), id.to_string());
        if let Some(old) = self.edges.get(&key) {
            if old.version >= version {
                return;
            }
            if !old.deleted {
                let (f, t) = (old.from.clone(), old.to.clone());
                if let Some(s) = self.out.get_mut(&f) {
                    s.remove(&(rel_type.to_string(), t.clone()));
                }
                if let Some(s) = self.inn.get_mut(&t) {
                    s.remove(&(rel_type.to_string(), f));
                }
            }
        }
        if !deleted {
            self.out
                .entry(from.to_string())
                .or_default()
                .insert((rel_type.to_string(), to.to_string()));
            self.inn
                .entry(to.to_string())
                .or_default()
                .insert((rel_type.to_string(), from.to_string()));
        }
        self.edges.insert(
            key,
            Edge {
                version,
                from: from.to_string(),
                to: to.to_string(),
                deleted,
            },
        );
    }

    /// (from, to) graph ids of `tenant`'s live lineage edges (runs left
    /// out): the graph as an edge list, for benchmarks against SQL.
    pub fn edges_for_export(&self, tenant: &str) -> Vec<(String, String)> {
        let prefix = format!("{tenant}/");
        self.edges
            .iter()
            .filter(|((rel, _), e)| !e.deleted && rel != HAS_RUN && e.from.starts_with(&prefix))
            .map(|(_, e)| (e.from.clone(), e.to.clone()))
            .collect()
    }

    /// Nodes and live edges held, for stats.
    pub fn size(&self) -> (usize, usize) {
        (
            self.nodes.values().filter(|n| !n.deleted).count(),
            self.edges.values().filter(|e| !e.deleted).count(),
        )
    }

    fn check(&self, tenant: &str, node: &str) -> Result<String, QueryError> {
        let known_kind = node.starts_with("dataset:") || node.starts_with("job:");
        if !known_kind || node.matches(':').count() < 2 {
            return Err(QueryError::BadNodeId(node.to_string()));
        }
        let id = graph_id(tenant, node);
        match self.nodes.get(&id) {
            Some(n) if !n.deleted => Ok(id),
            _ => Err(QueryError::NotFound {
                tenant: tenant.to_string(),
                node: node.to_string(),
            }),
        }
    }

    /// Dataset and job neighbours (runs are not part of a lineage walk).
    fn neighbours(&self, id: &str, direction: Direction) -> Vec<String> {
        let mut out = Vec::new();
        let lineage = |(rel, _): &&(String, String)| rel != HAS_RUN;
        if matches!(direction, Direction::Downstream | Direction::Both) {
            out.extend(
                self.out
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter(lineage)
                    .map(|(_, to)| to.clone()),
            );
        }
        if matches!(direction, Direction::Upstream | Direction::Both) {
            out.extend(
                self.inn
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter(lineage)
                    .map(|(_, from)| from.clone()),
            );
        }
        out
    }

    /// Every node within `depth` edges of `start`, with its distance.
    fn walk(&self, start: &str, depth: usize, direction: Direction) -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        seen.insert(start.to_string(), 0);
        let mut queue = VecDeque::from([(start.to_string(), 0usize)]);
        while let Some((id, d)) = queue.pop_front() {
            if d == depth {
                continue;
            }
            for next in self.neighbours(&id, direction) {
                if self.nodes.get(&next).is_some_and(|n| !n.deleted) && !seen.contains_key(&next) {
                    seen.insert(next.clone(), d + 1);
                    queue.push_back((next, d + 1));
                }
            }
        }
        seen
    }

    /// The lineage of `node` (`dataset:NS:NAME`, `job:NS:NAME`) in `tenant`:
    /// every dataset and job within `depth` edges, in Marquez's shape. Edges
    /// are listed between the nodes returned only.
    pub fn lineage(
        &self,
        tenant: &str,
        node: &str,
        depth: usize,
        direction: Direction,
    ) -> Result<Lineage, QueryError> {
        let start = self.check(tenant, node)?;
        let within = self.walk(&start, depth, direction);
        let graph = within
            .keys()
            .filter_map(|id| {
                let n = self.nodes.get(id)?;
                let edges = |map: &HashMap<String, BTreeSet<(String, String)>>, incoming: bool| {
                    map.get(id)
                        .into_iter()
                        .flatten()
                        .filter(|(rel, other)| rel != HAS_RUN && within.contains_key(other))
                        .map(|(_, other)| {
                            let (o, d) = if incoming { (other, id) } else { (id, other) };
                            GraphEdge {
                                origin: node_id(o).to_string(),
                                destination: node_id(d).to_string(),
                            }
                        })
                        .collect::<Vec<_>>()
                };
                Some(GraphNode {
                    id: node_id(id).to_string(),
                    node_type: if n.label == PROCESS { "JOB" } else { "DATASET" },
                    data: self.data(id, n),
                    in_edges: edges(&self.inn, true),
                    out_edges: edges(&self.out, false),
                })
            })
            .collect();
        Ok(Lineage { graph })
    }

    /// Every dataset and job downstream of `node`, however far.
    pub fn impact(&self, tenant: &str, node: &str) -> Result<Impact, QueryError> {
        let start = self.check(tenant, node)?;
        let mut impact = Impact {
            node: node.to_string(),
            ..Impact::default()
        };
        for (id, distance) in self.walk(&start, usize::MAX, Direction::Downstream) {
            if distance == 0 {
                continue;
            }
            let label = self.nodes.get(&id).map(|n| n.label.as_str());
            let target = if label == Some(PROCESS) {
                &mut impact.jobs
            } else {
                &mut impact.datasets
            };
            target.push(node_id(&id).to_string());
        }
        Ok(impact)
    }

    /// A node's `data`: its properties, and a job's latest run.
    fn data(&self, id: &str, n: &Node) -> Value {
        let p = &n.properties;
        let mut data = json!({
            "id": {"namespace": p.get("namespace"), "name": p.get("name")},
            "namespace": p.get("namespace"),
            "name": p.get("name"),
        });
        if n.label == DATASET {
            data["type"] = json!("DATASET");
        }
        if n.label == PROCESS {
            data["type"] = json!("JOB");
            data["version"] = p.get("version").cloned().unwrap_or(Value::Null);
            if let Some(run) = self.latest_run(id) {
                data["latestRun"] = run;
            }
        }
        data
    }

    fn latest_run(&self, job: &str) -> Option<Value> {
        self.out
            .get(job)?
            .iter()
            .filter(|(rel, _)| rel == HAS_RUN)
            .filter_map(|(_, run)| self.nodes.get(run).filter(|n| n.label == RUN && !n.deleted))
            .map(|n| &n.properties)
            .max_by_key(|p| {
                let at = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                (at("started_at"), at("ended_at"))
            })
            .map(|p| {
                json!({
                    "id": p.get("run_id"),
                    "state": p.get("status"),
                    "startedAt": p.get("started_at"),
                    "endedAt": p.get("ended_at"),
                })
            })
    }

    /// The answer as Graphviz `dot`.
    pub fn to_dot(lineage: &Lineage) -> String {
        let mut out = String::from("digraph lineage {\n  rankdir=LR;\n");
        for n in &lineage.graph {
            let shape = if n.node_type == "JOB" {
                "box"
            } else {
                "ellipse"
            };
            out.push_str(&format!("  {:?} [shape={shape}];\n", n.id));
        }
        for n in &lineage.graph {
            for e in &n.out_edges {
                out.push_str(&format!("  {:?} -> {:?};\n", e.origin, e.destination));
            }
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lineage::LineageProcessor;
    use conductor_engine::processor::{Effect, Processor};
    use conductor_schemas::openlineage::to_event;

    /// raw → clean (job a) → report (job b) → mart (job c), all in acme;
    /// and the same raw dataset in globex.
    fn graph() -> LineageGraph {
        let mut p = LineageProcessor::default();
        let mut g = LineageGraph::default();
        let chain = [
            ("a", "raw", "clean"),
            ("b", "clean", "report"),
            ("c", "report", "mart"),
        ];
        for (tenant, chain) in [("acme", &chain[..]), ("globex", &chain[..1])] {
            for (i, (job, input, output)) in chain.iter().enumerate() {
                let e = json!({
                    "eventType": "COMPLETE", "eventTime": format!("2026-02-01T12:00:0{i}Z"),
                    "producer": "https://x.io", "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json",
                    "run": {"runId": format!("0176a8c2-fe01-7439-87e6-56a1a1b4029{i}")},
                    "job": {"namespace": "etl", "name": job},
                    "inputs": [{"namespace": "pg", "name": input}],
                    "outputs": [{"namespace": "pg", "name": output}],
                });
                for effect in p.process(&to_event(&e, tenant).unwrap()).unwrap() {
                    if let Effect::Graph(m) = effect {
                        g.apply(&m);
                    }
                }
            }
        }
        g
    }

    #[test]
    fn upstream_of_a_dataset_is_the_chain_that_made_it() {
        let g = graph();
        let l = g
            .lineage("acme", "dataset:pg:report", 20, Direction::Upstream)
            .unwrap();
        let ids: Vec<&str> = l.graph.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "dataset:pg:clean",
                "dataset:pg:raw",
                "dataset:pg:report",
                "job:etl:a",
                "job:etl:b"
            ]
        );
        let job_b = l.graph.iter().find(|n| n.id == "job:etl:b").unwrap();
        assert_eq!(job_b.node_type, "JOB");
        assert_eq!(
            job_b.in_edges,
            [GraphEdge {
                origin: "dataset:pg:clean".into(),
                destination: "job:etl:b".into()
            }]
        );
        assert_eq!(job_b.data["latestRun"]["state"], "COMPLETE");
    }

    #[test]
    fn depth_bounds_the_walk_and_both_goes_either_way() {
        let g = graph();
        let one = g
            .lineage("acme", "dataset:pg:clean", 1, Direction::Both)
            .unwrap();
        let ids: BTreeSet<&str> = one.graph.iter().map(|n| n.id.as_str()).collect();
        assert_eq!(
            ids,
            BTreeSet::from(["dataset:pg:clean", "job:etl:a", "job:etl:b"])
        );
    }

    #[test]
    fn impact_lists_everything_downstream_in_the_tenant_only() {
        let g = graph();
        let impact = g.impact("acme", "dataset:pg:raw").unwrap();
        assert_eq!(impact.jobs, ["job:etl:a", "job:etl:b", "job:etl:c"]);
        assert_eq!(
            impact.datasets,
            ["dataset:pg:clean", "dataset:pg:mart", "dataset:pg:report"]
        );
        let globex = g.impact("globex", "dataset:pg:raw").unwrap();
        assert_eq!(globex.jobs, ["job:etl:a"]);
        assert_eq!(
            g.impact("initech", "dataset:pg:raw").unwrap_err(),
            QueryError::NotFound {
                tenant: "initech".into(),
                node: "dataset:pg:raw".into()
            }
        );
        assert!(matches!(
            g.impact("acme", "pg.raw"),
            Err(QueryError::BadNodeId(_))
        ));
    }

    #[test]
    fn dot_names_every_node_and_edge() {
        let g = graph();
        let l = g.lineage("acme", "job:etl:a", 1, Direction::Both).unwrap();
        let dot = LineageGraph::to_dot(&l);
        assert!(dot.contains("\"dataset:pg:raw\" -> \"job:etl:a\""), "{dot}");
        assert!(dot.contains("\"job:etl:a\" [shape=box]"));
    }
}
