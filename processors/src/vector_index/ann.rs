//! One tenant's vectors of one model in an HNSW graph (hnsw_rs), by slot.
//!
//! hnsw_rs has no delete: a replaced or deleted vector's slot is marked
//! dead and filtered out of every search; once the dead outnumber both the
//! live and `compact_after_dead`, the graph is rebuilt from the live
//! vectors (new slots, same answers).

use hnsw_rs::prelude::{DistCosine, Hnsw};
use std::collections::HashMap;

/// The HNSW parameters of an index (from the topology's config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnnParams {
    pub max_connections: usize,
    pub ef_construction: usize,
    pub compact_after_dead: usize,
}

/// HNSW's layer cap (hnsw_rs allows at most 16).
const MAX_LAYERS: usize = 16;

pub type Graph = Hnsw<'static, f32, DistCosine>;

/// What a slot holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    pub entity_id: String,
    pub version: i64,
    /// False once replaced by a newer vector or deleted.
    pub live: bool,
}

/// A search hit: an entity and its cosine similarity to the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub entity_id: String,
    pub similarity: f32,
}

/// One (tenant, model) index.
pub struct AnnIndex {
    pub params: AnnParams,
    pub dims: usize,
    pub graph: Graph,
    pub slots: Vec<Slot>,
    /// entity → its live slot.
    pub live: HashMap<String, u32>,
    pub dead: usize,
}

impl AnnIndex {
    pub fn new(params: AnnParams, dims: usize) -> Self {
        AnnIndex {
            graph: new_graph(&params, 1024),
            params,
            dims,
            slots: Vec::new(),
            live: HashMap::new(),
            dead: 0,
        }
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Puts `vector` in for `entity_id` at `version`, replacing its old one.
    pub fn upsert(&mut self, entity_id: &str, version: i64, vector: &[f32]) {
        self.remove(entity_id);
        let slot = self.slots.len();
        self.graph.insert_slice((vector, slot));
        self.slots.push(Slot {
            entity_id: entity_id.to_string(),
            version,
            live: true,
        });
        self.live.insert(entity_id.to_string(), slot as u32);
    }

    /// Takes `entity_id`'s vector out (its slot turns dead).
    pub fn remove(&mut self, entity_id: &str) {
        if let Some(old) = self.live.remove(entity_id) {
            self.slots[old as usize].live = false;
            self.dead += 1;
            if self.dead > self.params.compact_after_dead.max(self.live.len()) {
                self.compact();
            }
        }
    }

    /// The `k` live entities nearest `query`, best first, exploring `ef`
    /// candidates (at least `k`).
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Vec<Hit> {
        if query.len() != self.dims || self.live.is_empty() || k == 0 {
            return Vec::new();
        }
        let slots = &self.slots;
        let live = |id: &usize| slots.get(*id).is_some_and(|s| s.live);
        let found = if self.dead == 0 {
            self.graph.search(query, k, ef.max(k))
        } else {
            self.graph.search_filter(query, k, ef.max(k), Some(&live))
        };
        found
            .into_iter()
            .filter(|n| live(&n.d_id))
            .map(|n| Hit {
                entity_id: slots[n.d_id].entity_id.clone(),
                similarity: 1.0 - n.distance,
            })
            .collect()
    }

    /// Every live vector by slot, read back from the graph.
    pub fn live_vectors(&self) -> Vec<(u32, Vec<f32>)> {
        let mut out: Vec<(u32, Vec<f32>)> = self
            .graph
            .get_point_indexation()
            .into_iter()
            .filter(|p| self.slots.get(p.get_origin_id()).is_some_and(|s| s.live))
            .map(|p| (p.get_origin_id() as u32, p.get_v().to_vec()))
            .collect();
        out.sort_by_key(|(slot, _)| *slot);
        out
    }

    /// Rebuilds the graph from the live vectors, in slot order.
    fn compact(&mut self) {
        let vectors = self.live_vectors();
        let graph = new_graph(&self.params, vectors.len().max(1024));
        let mut slots = Vec::with_capacity(vectors.len());
        let mut live = HashMap::with_capacity(vectors.len());
        for (old, v) in vectors {
            let slot = slots.len();
            graph.insert_slice((&v, slot));
            let s = self.slots[old as usize].clone();
            live.insert(s.entity_id.clone(), slot as u32);
            slots.push(s);
        }
        tracing::debug!(
            dead = self.dead,
            live = slots.len(),
            "vector index compacted"
        );
        metrics::counter!(conductor_engine::metrics::VECTOR_INDEX_COMPACTIONS_TOTAL).increment(1);
        self.graph = graph;
        self.slots = slots;
        self.live = live;
        self.dead = 0;
    }
}

pub fn new_graph(params: &AnnParams, capacity: usize) -> Graph {
    Hnsw::new(
        params.max_connections,
        capacity,
        MAX_LAYERS,
        params.ef_construction,
        DistCosine,
    )
}

/// The exact `k` nearest by cosine similarity (brute force), for recall.
pub fn exact_nearest<'a>(
    query: &[f32],
    k: usize,
    vectors: impl Iterator<Item = (&'a str, &'a [f32])>,
) -> Vec<Hit> {
    let mut all: Vec<Hit> = vectors
        .map(|(id, v)| Hit {
            entity_id: id.to_string(),
            similarity: cosine(query, v),
        })
        .collect();
    all.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.entity_id.cmp(&b.entity_id))
    });
    all.truncate(k);
    all
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0f64, 0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        dot += (*x as f64) * (*y as f64);
        na += (*x as f64) * (*x as f64);
        nb += (*y as f64) * (*y as f64);
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> AnnParams {
        AnnParams {
            max_connections: 16,
            ef_construction: 64,
            compact_after_dead: 2,
        }
    }

    fn unit(i: usize, dims: usize) -> Vec<f32> {
        // Spread points on the sphere deterministically.
        let mut v: Vec<f32> = (0..dims)
            .map(|d| (((i * 31 + d * 17) % 97) as f32 / 97.0) - 0.5)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    #[test]
    fn finds_a_vector_by_itself_and_forgets_replaced_and_removed_ones() {
        let mut idx = AnnIndex::new(params(), 8);
        for i in 0..50 {
            idx.upsert(&format!("e{i}"), 1, &unit(i, 8));
        }
        assert_eq!(idx.search(&unit(7, 8), 1, 32)[0].entity_id, "e7");
        // e7 moves to e8's place: a search for its old vector no longer finds it first.
        idx.upsert("e7", 2, &unit(8, 8));
        let hits = idx.search(&unit(7, 8), 50, 64);
        assert!(hits.iter().filter(|h| h.entity_id == "e7").count() <= 1);
        idx.remove("e8");
        idx.remove("e9");
        idx.remove("e10"); // dead 4 > max(2, live): no — live is 47, so no compaction yet
        let hits = idx.search(&unit(9, 8), 50, 64);
        assert!(
            hits.iter()
                .all(|h| h.entity_id != "e9" && h.entity_id != "e8")
        );
        assert_eq!(idx.live_count(), 47);
        assert_eq!(idx.live_vectors().len(), 47);
    }

    #[test]
    fn compaction_keeps_every_live_vector_and_its_answers() {
        let mut idx = AnnIndex::new(params(), 8);
        for i in 0..10 {
            idx.upsert(&format!("e{i}"), 1, &unit(i, 8));
        }
        for i in 0..7 {
            idx.remove(&format!("e{i}"));
        }
        assert!(idx.slots.len() <= 10);
        assert_eq!(idx.live_count(), 3);
        assert!(idx.dead < 7, "compacted on the way");
        for i in 7..10 {
            assert_eq!(idx.search(&unit(i, 8), 1, 16)[0].entity_id, format!("e{i}"));
        }
    }

    #[test]
    fn a_query_of_other_dimensions_finds_nothing_rather_than_panicking() {
        let mut idx = AnnIndex::new(params(), 8);
        idx.upsert("a", 1, &unit(1, 8));
        assert!(idx.search(&unit(1, 4), 3, 16).is_empty());
    }
}
