//! The ANN signal: an entity's embedding (the embedding writer's
//! `EmbeddingComputed`, on the tenant-keyed topic with the entity events)
//! turned into locality-sensitive keys that join the blocking keys in the
//! same blocks. Random-hyperplane LSH (SimHash): `bands` bands of `bits`
//! sign bits each; two vectors at angle θ agree on a bit with probability
//! 1 − θ/π, so they share a band — and become candidates — with
//! probability 1 − (1 − (1 − θ/π)^bits)^bands: near-certain for near
//! duplicates, rare for unrelated records.
//!
//! Why not the vector index's HNSW graph: its levels are drawn at random
//! and a restored graph grows differently from one that never stopped, so
//! the proposals of a restarted or rebuilt topology could differ from a
//! straight run's. These keys depend on the vector alone (the hyperplanes
//! come from a fixed seed), so candidate generation stays a deterministic
//! fold: a replay, a restore or a rebuild ends exactly where the live run did.

use super::keys::{KeyKind, ann_key};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// `[processor_config.ann]` of `er_candidates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnnConfig {
    /// Use the entities' embeddings as a candidate signal. The topology
    /// must then read `ig.embeddings` too (through its repartition).
    pub enabled: bool,
    /// LSH bands per vector: more bands, more recall and more keys.
    pub bands: usize,
    /// Sign bits per band: more bits, fewer (and closer) neighbours per band.
    pub bits: usize,
    /// Proposals per record from the ANN signal, beyond the blocking `top_k`
    /// (the best by score among the records sharing a band).
    pub top_k: usize,
    /// Only vectors of this model (`hashed-ngrams-d256@1`) count; unset:
    /// a record's first vector, of whatever model. Pin it when the
    /// embedding writer migrates to another model, then rebuild this
    /// topology with the new one: records of two models never share a band.
    pub model: Option<String>,
}

impl Default for AnnConfig {
    fn default() -> Self {
        AnnConfig {
            enabled: false,
            bands: 32,
            bits: 10,
            top_k: 2,
            model: None,
        }
    }
}

/// Seed of the hyperplanes: fixed, so keys are the same in every process.
const SEED: u64 = 0x5151_ab1e_c0ff_ee00;

/// The hyperplanes for each vector size met, made on first use.
#[derive(Debug, Default)]
pub struct Hyperplanes {
    by_dims: HashMap<(usize, usize), Vec<f32>>,
}

impl Hyperplanes {
    /// The LSH keys of `vector` (any length > 0) for a record of `entity_type`.
    pub fn keys(
        &mut self,
        config: &AnnConfig,
        entity_type: &str,
        model: &str,
        vector: &[f32],
    ) -> Vec<(KeyKind, u64)> {
        let dims = vector.len();
        let planes_n = config.bands * config.bits;
        let planes = self
            .by_dims
            .entry((dims, planes_n))
            .or_insert_with(|| planes(dims, planes_n));
        let mut out = Vec::with_capacity(config.bands);
        for band in 0..config.bands {
            let mut code = 0u64;
            for bit in 0..config.bits {
                let row = &planes[(band * config.bits + bit) * dims..][..dims];
                code = (code << 1) | u64::from(dot(row, vector) >= 0.0);
            }
            out.push((KeyKind::Ann, ann_key(entity_type, model, band, code)));
        }
        out
    }
}

/// The dot product in eight lanes, which the compiler vectorises (a plain
/// sequential sum of floats it may not reorder). The same code everywhere,
/// so the keys are the same in every run.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (xs, ys) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = xs
        .remainder()
        .iter()
        .zip(ys.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in xs.zip(ys) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `n` hyperplanes of `dims` components, uniform in [−1, 1) from the seed
/// (only the sign of a dot product matters).
fn planes(dims: usize, n: usize) -> Vec<f32> {
    let mut x = SEED ^ (dims as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..dims * n)
        .map(|_| {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::er::ErCandidatesProcessor;
    use crate::er::config::ErConfig;
    use conductor_engine::processor::{Effect, Processor};
    use conductor_schemas::Event;

    fn event(json: serde_json::Value) -> Event {
        conductor_schemas::codec::decode_json(json.to_string().as_bytes(), None).unwrap()
    }

    /// Pairs proposed when two records (alike only in their state, too
    /// short for a blocking key) come with the same vector of `model`.
    fn proposals(pinned: Option<&str>, model: &str) -> usize {
        let mut config = ErConfig::default();
        config.attributes.name.clear();
        config.attributes.text = vec!["state".into()];
        config.ann.enabled = true;
        config.ann.model = pinned.map(str::to_string);
        let mut p = ErCandidatesProcessor::new(config);
        let mut proposed = 0;
        for id in ["a", "b"] {
            let upsert = event(serde_json::json!({
                "tenant": "acme", "kind": "EntityUpserted", "subject": id,
                "occurred_at": "2026-02-01T12:00:00Z",
                "data": {"entity_type": "Person", "version": 1, "attributes": {"state": "nsw"}}
            }));
            let vector: Vec<f32> = (0..8).map(|i| (i as f32 + 1.0) / 10.0).collect();
            let embedded = event(serde_json::json!({
                "tenant": "acme", "kind": "EmbeddingComputed", "subject": id,
                "occurred_at": "2026-02-01T12:00:00Z",
                "data": {"entity_type": "Person", "entity_id": id, "status": "computed",
                         "entity_version": 1, "model": model, "dims": 8, "vector": vector,
                         "input_hash": "h"}
            }));
            for e in [upsert, embedded] {
                proposed += p
                    .process(&e)
                    .unwrap()
                    .iter()
                    .filter(|fx| matches!(fx, Effect::Upsert(_)))
                    .count();
            }
        }
        proposed
    }

    #[test]
    fn a_pinned_model_counts_only_its_own_vectors() {
        assert_eq!(proposals(None, "m1@1"), 1, "any model when none is pinned");
        assert_eq!(proposals(Some("m2@1"), "m2@1"), 1);
        assert_eq!(
            proposals(Some("m2@1"), "m1@1"),
            0,
            "another model's vectors are ignored"
        );
    }

    fn unit(v: Vec<f32>) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    fn shared(a: &[(KeyKind, u64)], b: &[(KeyKind, u64)]) -> usize {
        a.iter().filter(|k| b.contains(k)).count()
    }

    #[test]
    fn near_vectors_share_bands_and_far_ones_do_not() {
        let config = AnnConfig::default();
        let mut h = Hyperplanes::default();
        let a = unit((0..64).map(|i| (i as f32 * 0.37).sin()).collect());
        let near = unit(
            a.iter()
                .enumerate()
                .map(|(i, x)| x + if i == 3 { 0.05 } else { 0.0 })
                .collect(),
        );
        let far = unit((0..64).map(|i| (i as f32 * 1.91).cos()).collect());
        let ka = h.keys(&config, "Person", "m@1", &a);
        assert_eq!(ka.len(), config.bands);
        assert!(shared(&ka, &h.keys(&config, "Person", "m@1", &near)) >= config.bands / 2);
        assert_eq!(shared(&ka, &h.keys(&config, "Person", "m@1", &far)), 0);
        assert_eq!(
            ka,
            Hyperplanes::default().keys(&config, "Person", "m@1", &a),
            "deterministic"
        );
        assert_eq!(
            shared(&ka, &h.keys(&config, "Company", "m@1", &a)),
            0,
            "types apart"
        );
        assert_eq!(
            shared(&ka, &h.keys(&config, "Person", "m@2", &a)),
            0,
            "models apart"
        );
    }
}
