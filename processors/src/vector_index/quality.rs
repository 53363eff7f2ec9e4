//! Measuring vector search on labelled data (the Febrl sets): every record
//! is embedded and indexed; each record that has duplicates is a query
//! (its own text), and the answers sought are the other records of the
//! same person (the true pairs, closed transitively). Reported: MRR@10 of
//! the first such record (the query itself excluded), hits@1/@10, and the
//! ANN's recall@10 against brute force over the same vectors. Used by the
//! quality test and the `vector-search` benchmark.

use super::ann::{Hit, exact_nearest};
use super::{VectorIndexConfig, VectorIndexProcessor};
use crate::embeddings::config::EmbeddingsConfig;
use crate::embeddings::embedder;
use crate::embeddings::stage::EmbedEnrichment;
use crate::embeddings::text::Template;
use crate::er::quality::Labelled;
use conductor_engine::processor::Processor;
use conductor_schemas::{EmbeddingComputed, Event, EventData, EventMetadata};
use std::collections::HashMap;
use std::time::Instant;

/// What a run found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SearchQuality {
    pub dataset: String,
    pub model: String,
    pub vectors: usize,
    pub queries: usize,
    pub mrr_at_10: f64,
    pub hits_at_1: f64,
    pub hits_at_10: f64,
    /// The harder question, for Febrl's naming (`rec-N-dup-M` of
    /// `rec-N-org`): MRR@10 of a duplicate's original, other duplicates
    /// of the same person ranking ahead of it counting against.
    pub original_queries: usize,
    pub original_mrr_at_10: f64,
    /// |ANN top 10 ∩ exact top 10| / 10, averaged over the queries.
    pub ann_recall_at_10: f64,
    pub embed_seconds: f64,
    pub index_seconds: f64,
    /// ANN searches per second, one thread.
    pub searches_per_second: f64,
}

/// An `EmbeddingComputed` for `entity_id` of tenant `acme`.
pub fn computed_event(entity_id: &str, version: i64, model: &str, vector: Vec<f32>) -> Event {
    let meta = EventMetadata::new("acme", entity_id, chrono::Utc::now());
    Event::new(
        meta,
        EventData::EmbeddingComputed(EmbeddingComputed {
            entity_type: "Person".into(),
            entity_id: entity_id.into(),
            status: "computed".into(),
            entity_version: version,
            model: model.into(),
            dims: vector.len() as i32,
            vector,
            input_hash: String::new(),
        }),
    )
}

/// Each record of a person with duplicates → the person (the smallest
/// record id of its group; true pairs closed transitively).
fn people(data: &Labelled) -> HashMap<String, String> {
    let mut parent: HashMap<String, String> = HashMap::new();
    fn root(parent: &HashMap<String, String>, x: &str) -> String {
        let mut r = x.to_string();
        while let Some(p) = parent.get(&r).filter(|p| **p != r) {
            r = p.clone();
        }
        r
    }
    for (a, b) in &data.true_pairs {
        parent.entry(a.clone()).or_insert_with(|| a.clone());
        parent.entry(b.clone()).or_insert_with(|| b.clone());
        let (ra, rb) = (root(&parent, a), root(&parent, b));
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        parent.insert(hi, lo);
    }
    let keys: Vec<String> = parent.keys().cloned().collect();
    keys.into_iter()
        .map(|k| {
            let r = root(&parent, &k);
            (k, r)
        })
        .collect()
}

/// Embeds and indexes `data`, then asks one query per `query_every`-th
/// record that has duplicates.
pub fn measure_vector_search(
    data: &Labelled,
    embeddings: &EmbeddingsConfig,
    index: &VectorIndexConfig,
    query_every: usize,
) -> SearchQuality {
    let embedder = embedder::build(embeddings);
    let model = embedder.model().to_string();
    let template = Template::parse(&embeddings.template).unwrap_or(Template::parse("").unwrap());
    let started = Instant::now();
    let mut vectors: HashMap<String, Vec<f32>> = HashMap::new();
    for e in data.events(0) {
        if let Some((text, _)) = EmbedEnrichment::text_of(embeddings, &template, &model, &e)
            && let Ok(mut v) = embedder.embed(&[&text])
        {
            vectors.insert(e.meta.subject.clone(), v.remove(0));
        }
    }
    let embed_seconds = started.elapsed().as_secs_f64();
    let mut p = VectorIndexProcessor::new(index.clone());
    let started = Instant::now();
    let mut ids: Vec<&String> = vectors.keys().collect();
    ids.sort();
    for id in &ids {
        let _ = p.process(&computed_event(id, 1, &model, vectors[*id].clone()));
    }
    let index_seconds = started.elapsed().as_secs_f64();

    let person = people(data);
    let with_duplicates: Vec<&String> = ids
        .iter()
        .copied()
        .filter(|id| person.contains_key(*id))
        .collect();
    let same_person = |a: &str, b: &str| person.get(a).is_some_and(|p| person.get(b) == Some(p));
    let (mut rr, mut hit1, mut hit10, mut recall, mut queries) = (0.0, 0, 0, 0.0, 0usize);
    let (mut original_rr, mut original_queries) = (0.0, 0usize);
    let mut search_secs = 0.0;
    for a in with_duplicates.into_iter().step_by(query_every.max(1)) {
        let q = &vectors[a];
        queries += 1;
        let t = Instant::now();
        let hits: Vec<Hit> = p.search("acme", &model, q, 11);
        search_secs += t.elapsed().as_secs_f64();
        let ranked: Vec<&str> = hits
            .iter()
            .map(|h| h.entity_id.as_str())
            .filter(|id| id != a)
            .take(10)
            .collect();
        if let Some((base, _)) = a.split_once("-dup-")
            && vectors.contains_key(&format!("{base}-org"))
        {
            original_queries += 1;
            let original = format!("{base}-org");
            if let Some(rank) = ranked.iter().position(|id| *id == original) {
                original_rr += 1.0 / (rank + 1) as f64;
            }
        }
        if let Some(rank) = ranked.iter().position(|id| same_person(a, id)) {
            rr += 1.0 / (rank + 1) as f64;
            hit10 += 1;
            if rank == 0 {
                hit1 += 1;
            }
        }
        let exact = exact_nearest(
            q,
            10,
            vectors.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
        );
        let found = p.search("acme", &model, q, 10);
        let overlap = found
            .iter()
            .filter(|h| exact.iter().any(|x| x.entity_id == h.entity_id))
            .count();
        recall += overlap as f64 / exact.len().max(1) as f64;
    }
    let n = queries.max(1) as f64;
    SearchQuality {
        dataset: data.name.clone(),
        model,
        vectors: vectors.len(),
        queries,
        mrr_at_10: rr / n,
        hits_at_1: hit1 as f64 / n,
        hits_at_10: hit10 as f64 / n,
        original_queries,
        original_mrr_at_10: original_rr / original_queries.max(1) as f64,
        ann_recall_at_10: recall / n,
        embed_seconds,
        index_seconds,
        searches_per_second: queries as f64 / search_secs.max(1e-9),
    }
}
