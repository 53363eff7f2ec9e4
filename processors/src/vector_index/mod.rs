//! `vector_index`: an HNSW index (hnsw_rs) per tenant and model, built from
//! the embedding writer's `ig.embeddings` — the vector stage of
//! `conductor search` and, later, an ER candidate signal.
//!
//! ```text
//! … embeddings ─▶ ig.embeddings ─▶ vector_index (state: one graph per tenant × model)
//! ```
//!
//! The index is processor state: snapshotted with the batches (the graphs
//! as hnsw_rs dumps them, so a restart loads them rather than inserting
//! every vector again) and restored by the contract v2 runtime. It writes
//! no table and emits nothing. An entity's newer vector replaces its older
//! one; a removal takes it out; an older or replayed event changes nothing.
//! State is partition-local: `ig.embeddings` is keyed `tenant/entity`, and
//! an entity's events all meet in one partition.
//!
//! Modules: [`ann`] (one graph, dead-slot filtering and compaction),
//! [`snapshot`] (the bytes), [`quality`] (recall@k against brute force).

pub mod ann;
pub mod quality;
pub mod snapshot;

use ann::{AnnIndex, AnnParams, Hit};
use conductor_engine::processor::{
    Effect, Processor, ProcessorError, ProcessorSpec, ProcessorState,
};
use conductor_engine::projection::TableSpec;
use conductor_engine::runtime::config::ConfigProblem;
use conductor_schemas::{EmbeddingComputed, Event, EventData};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// `[processor_config]` of `vector_index`: the HNSW parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VectorIndexConfig {
    /// Links per node and layer (HNSW's `M`): more is better recall and
    /// more memory. 4 to 64.
    pub max_connections: usize,
    /// Candidates explored per insert (`ef_construction`): more is a
    /// better graph and slower inserts.
    pub ef_construction: usize,
    /// Candidates explored per search (`ef`; at least `k`).
    pub ef_search: usize,
    /// Replaced or deleted vectors a graph carries before it is rebuilt
    /// from its live ones (it also waits until they outnumber the live).
    pub compact_after_dead: usize,
}

impl Default for VectorIndexConfig {
    fn default() -> Self {
        VectorIndexConfig {
            max_connections: 16,
            ef_construction: 100,
            ef_search: 64,
            compact_after_dead: 1000,
        }
    }
}

impl VectorIndexConfig {
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: &str| {
            out.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
                hint: None,
            })
        };
        if !(4..=64).contains(&self.max_connections) {
            bad("max_connections", "must be between 4 and 64 (16 is usual)");
        }
        if self.ef_construction < self.max_connections {
            bad("ef_construction", "must be at least max_connections");
        }
        if self.ef_search == 0 {
            bad("ef_search", "must be at least 1");
        }
        out
    }

    fn ann(&self) -> AnnParams {
        AnnParams {
            max_connections: self.max_connections,
            ef_construction: self.ef_construction,
            compact_after_dead: self.compact_after_dead,
        }
    }

    /// What a snapshot must have been built with to be used.
    fn fingerprint(&self) -> String {
        format!(
            "m={} efc={} compact={}",
            self.max_connections, self.ef_construction, self.compact_after_dead
        )
    }
}

/// The `vector_index` spec.
pub struct VectorIndexSpec;

impl ProcessorSpec for VectorIndexSpec {
    type Config = VectorIndexConfig;
    const NAME: &'static str = "vector_index";
    const DESCRIPTION: &'static str =
        "ig.embeddings → an HNSW index per tenant and model (state only: search reads it)";

    fn check(config: &VectorIndexConfig) -> Vec<ConfigProblem> {
        config.problems()
    }

    fn tables(_: &VectorIndexConfig) -> Vec<TableSpec> {
        Vec::new()
    }

    fn build(config: VectorIndexConfig) -> Box<dyn Processor> {
        Box::new(VectorIndexProcessor::new(config))
    }
}

/// One index's figures (`conductor search --stats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexStats {
    pub tenant: String,
    pub model: String,
    pub dims: usize,
    pub vectors: usize,
    pub dead_slots: usize,
    /// blake3 of the live (entity, version, vector) triples in entity
    /// order: equal contents, equal digest, however the graph was built.
    pub contents_digest: String,
}

/// The processor's state: every (tenant, model) index and every entity's
/// latest version seen per model (deleted ones too, so an older event stays
/// out). Per model because a model change (a migration of the embedding
/// writer) sends every entity's vector again, at the versions already seen.
pub struct VectorIndexState {
    config: VectorIndexConfig,
    pub indexes: BTreeMap<(String, String), AnnIndex>,
    /// (tenant, model, entity) → version.
    versions: HashMap<(String, String, String), i64>,
}

#[derive(Serialize, Deserialize)]
struct Versions(Vec<(String, String, String, i64)>);

impl VectorIndexState {
    fn sorted_versions(&self) -> Vec<(String, String, String, i64)> {
        let mut v: Vec<_> = self
            .versions
            .iter()
            .map(|((t, m, e), v)| (t.clone(), m.clone(), e.clone(), *v))
            .collect();
        v.sort();
        v
    }

    /// Figures of every index, in (tenant, model) order.
    pub fn stats(&self) -> Vec<IndexStats> {
        self.indexes
            .iter()
            .map(|((tenant, model), idx)| {
                let mut live: Vec<(&str, i64, Vec<f32>)> = idx
                    .live_vectors()
                    .into_iter()
                    .map(|(slot, v)| {
                        let s = &idx.slots[slot as usize];
                        (s.entity_id.as_str(), s.version, v)
                    })
                    .collect();
                live.sort_by(|a, b| a.0.cmp(b.0));
                let mut h = blake3::Hasher::new();
                for (id, version, v) in &live {
                    h.update(id.as_bytes());
                    h.update(&version.to_le_bytes());
                    for x in v {
                        h.update(&x.to_le_bytes());
                    }
                }
                IndexStats {
                    tenant: tenant.clone(),
                    model: model.clone(),
                    dims: idx.dims,
                    vectors: idx.live_count(),
                    dead_slots: idx.dead,
                    contents_digest: h.finalize().to_hex()[..16].to_string(),
                }
            })
            .collect()
    }
}

impl ProcessorState for VectorIndexState {
    fn format_version(&self) -> u32 {
        // 2: versions per (tenant, model, entity).
        2
    }

    fn snapshot(&self) -> Vec<u8> {
        let versions = serde_json::to_vec(&Versions(self.sorted_versions())).unwrap_or_default();
        let graphs = match snapshot::encode(&self.config.fingerprint(), self.indexes.iter()) {
            Ok(b) => b,
            Err(e) => {
                // An empty snapshot fails to restore: the next start warms up.
                tracing::warn!(error = %e, "vector index snapshot failed");
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(4 + versions.len() + graphs.len());
        out.extend_from_slice(&(versions.len() as u32).to_le_bytes());
        out.extend_from_slice(&versions);
        out.extend_from_slice(&graphs);
        out
    }

    fn fingerprint(&self) -> Vec<u8> {
        // Graphs built by other insertion histories (a restore restarts
        // hnsw_rs's level generator) differ in links, not in contents.
        serde_json::to_vec(&(
            self.sorted_versions(),
            self.stats()
                .iter()
                .map(|s| (&s.tenant, &s.model, s.vectors, &s.contents_digest))
                .collect::<Vec<_>>(),
        ))
        .unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let short = || "vector index snapshot: truncated".to_string();
        let len = u32::from_le_bytes(
            bytes
                .get(..4)
                .ok_or_else(short)?
                .try_into()
                .map_err(|_| short())?,
        ) as usize;
        let Versions(versions) = serde_json::from_slice(bytes.get(4..4 + len).ok_or_else(short)?)
            .map_err(|e| format!("vector index snapshot: versions: {e}"))?;
        let indexes = snapshot::decode(
            &bytes[4 + len..],
            &self.config.fingerprint(),
            self.config.ann(),
        )?;
        self.versions = versions
            .into_iter()
            .map(|(t, m, e, v)| ((t, m, e), v))
            .collect();
        self.indexes = indexes.into_iter().collect();
        Ok(())
    }

    fn clear(&mut self) {
        self.indexes.clear();
        self.versions.clear();
    }
}

/// The `vector_index` fold.
pub struct VectorIndexProcessor {
    pub state: VectorIndexState,
}

impl VectorIndexProcessor {
    pub fn new(config: VectorIndexConfig) -> Self {
        VectorIndexProcessor {
            state: VectorIndexState {
                config,
                indexes: BTreeMap::new(),
                versions: HashMap::new(),
            },
        }
    }

    pub fn config(&self) -> &VectorIndexConfig {
        &self.state.config
    }

    /// The `k` entities of `tenant` whose `model` vectors are nearest
    /// `query`, best first (cosine similarity).
    pub fn search(&self, tenant: &str, model: &str, query: &[f32], k: usize) -> Vec<Hit> {
        self.state
            .indexes
            .get(&(tenant.to_string(), model.to_string()))
            .map(|idx| idx.search(query, k, self.state.config.ef_search))
            .unwrap_or_default()
    }

    /// The models `tenant` has an index of.
    pub fn models(&self, tenant: &str) -> Vec<String> {
        self.state
            .indexes
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, m)| m.clone())
            .collect()
    }

    fn computed(&mut self, tenant: &str, e: &EmbeddingComputed) -> Result<(), ProcessorError> {
        if e.vector.is_empty() || e.dims as usize != e.vector.len() {
            return Err(ProcessorError::invalid_input(format!(
                "EmbeddingComputed of {} declares {} dims and carries {}",
                e.entity_id,
                e.dims,
                e.vector.len()
            )));
        }
        if e.vector.iter().any(|x| !x.is_finite()) || e.vector.iter().all(|x| *x == 0.0) {
            return Err(ProcessorError::invalid_input(format!(
                "EmbeddingComputed of {}: the vector is zero or not finite",
                e.entity_id
            )));
        }
        let key = (tenant.to_string(), e.model.clone());
        let ann = self.state.config.ann();
        let idx = self
            .state
            .indexes
            .entry(key)
            .or_insert_with(|| AnnIndex::new(ann, e.vector.len()));
        if idx.dims != e.vector.len() {
            return Err(ProcessorError::invalid_input(format!(
                "EmbeddingComputed of {}: model {} has {} dims in this index, the event {}",
                e.entity_id,
                e.model,
                idx.dims,
                e.vector.len()
            )));
        }
        idx.upsert(&e.entity_id, e.entity_version, &e.vector);
        Ok(())
    }
}

impl Processor for VectorIndexProcessor {
    fn name(&self) -> &str {
        VectorIndexSpec::NAME
    }

    fn tables(&self) -> Vec<TableSpec> {
        Vec::new()
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        let EventData::EmbeddingComputed(e) = &event.data else {
            return Ok(Vec::new());
        };
        let tenant = event.meta.tenant.as_str();
        let key = (tenant.to_string(), e.model.clone(), e.entity_id.clone());
        if self
            .state
            .versions
            .get(&key)
            .is_some_and(|v| *v >= e.entity_version)
        {
            return Ok(Vec::new()); // older or replayed
        }
        match e.status.as_str() {
            "computed" => self.computed(tenant, e)?,
            "removed" => {
                // Out of every model's index: a deleted entity is found by none.
                for ((t, model), idx) in self.state.indexes.iter_mut() {
                    if t == tenant {
                        idx.remove(&e.entity_id);
                        let other = (t.clone(), model.clone(), e.entity_id.clone());
                        let seen = self.state.versions.entry(other).or_default();
                        *seen = (*seen).max(e.entity_version);
                    }
                }
            }
            other => {
                return Err(ProcessorError::invalid_input(format!(
                    "EmbeddingComputed status `{other}` is neither computed nor removed"
                )));
            }
        }
        self.state.versions.insert(key, e.entity_version);
        Ok(Vec::new())
    }

    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        Some(&mut self.state)
    }
}
