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

/// Every record's text (as the embedding template renders it) and vector.
fn texts_and_vectors(
    data: &Labelled,
    embeddings: &EmbeddingsConfig,
) -> (String, HashMap<String, (String, Vec<f32>)>) {
    let embedder = embedder::build(embeddings);
    let model = embedder.model().to_string();
    let template = Template::parse(&embeddings.template).unwrap_or(Template::parse("").unwrap());
    let mut out = HashMap::new();
    for e in data.events(0) {
        if let Some((text, _)) = EmbedEnrichment::text_of(embeddings, &template, &model, &e)
            && let Ok(mut v) = embedder.embed(&[&text])
        {
            out.insert(e.meta.subject.clone(), (text, v.remove(0)));
        }
    }
    (model, out)
}

fn embed_all(
    data: &Labelled,
    embeddings: &EmbeddingsConfig,
) -> (String, HashMap<String, Vec<f32>>) {
    let (model, all) = texts_and_vectors(data, embeddings);
    (model, all.into_iter().map(|(k, (_, v))| (k, v)).collect())
}

/// MRR@10 of one search mode (keyword, vector, hybrid) on labelled data.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModeQuality {
    pub dataset: String,
    pub mode: String,
    pub alpha: Option<f64>,
    pub queries: usize,
    /// Another record of the same person first (the query itself excluded).
    pub mrr_at_10: f64,
    pub hits_at_10: f64,
    /// A duplicate's original (Febrl naming).
    pub original_mrr_at_10: f64,
}

/// Keyword, vector and hybrid search compared on `data`: the records are
/// written to `store`'s `entities` table (its full-text index) as tenant
/// `acme`, embedded and indexed; each record with duplicates (every
/// `query_every`-th) asks, as `conductor search` would, with its own text
/// or — `query_fields` — with those of its attributes only (what a user
/// types: a name and a suburb).
pub async fn measure_search_modes(
    data: &Labelled,
    embeddings: &EmbeddingsConfig,
    index: &VectorIndexConfig,
    store: &dyn conductor_engine::store::ProjectionStore,
    query_every: usize,
    alphas: &[f64],
    query_fields: Option<&[&str]>,
) -> Result<Vec<ModeQuality>, String> {
    use crate::entities::entities_table;
    use conductor_engine::projection::{RowUpsert, SqlValue};
    use conductor_engine::store::StoreCommit;
    let (model, all) = texts_and_vectors(data, embeddings);
    let embedder = embedder::build(embeddings);
    let table = entities_table();
    store
        .migrate(std::slice::from_ref(&table))
        .await
        .map_err(|e| e.to_string())?;
    let rows: Vec<RowUpsert> = data
        .records
        .iter()
        .map(|(id, attributes)| {
            let attrs: serde_json::Map<String, serde_json::Value> = attributes
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            RowUpsert {
                table: table.name,
                key: vec!["acme".into(), id.clone()],
                version: 1,
                values: vec![
                    SqlValue::Text("Person".into()),
                    SqlValue::Json(serde_json::Value::Object(attrs)),
                    SqlValue::Bool(false),
                    SqlValue::Timestamp(chrono::Utc::now()),
                    SqlValue::Text(format!("ev-{id}")),
                ],
                deleted: false,
            }
        })
        .collect();
    for chunk in rows.chunks(2000) {
        store
            .commit(StoreCommit {
                topology: "search_quality".into(),
                upserts: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut p = VectorIndexProcessor::new(index.clone());
    let mut ids: Vec<&String> = all.keys().collect();
    ids.sort();
    for id in &ids {
        let _ = p.process(&computed_event(id, 1, &model, all[*id].1.clone()));
    }
    let person = people(data);
    let same_person = |a: &str, b: &str| person.get(a).is_some_and(|p| person.get(b) == Some(p));
    let mut modes: Vec<(String, Option<f64>)> =
        vec![("keyword".into(), None), ("vector".into(), None)];
    modes.extend(alphas.iter().map(|a| ("hybrid".to_string(), Some(*a))));
    let mut sums = vec![(0.0, 0usize, 0.0, 0usize); modes.len()];
    let mut queries = 0;
    let queried: Vec<&String> = ids
        .iter()
        .copied()
        .filter(|id| person.contains_key(*id))
        .collect();
    for a in queried.into_iter().step_by(query_every.max(1)) {
        let (full, full_vector) = &all[a];
        // The record's own text, or what a user would type: a few fields.
        let (text, q) = match query_fields {
            None => (full.clone(), full_vector.clone()),
            Some(fields) => {
                let attrs = &data
                    .records
                    .iter()
                    .find(|(id, _)| id == a)
                    .expect("queried record")
                    .1;
                let text = crate::embeddings::text::normalise(
                    &fields
                        .iter()
                        .filter_map(|f| attrs.iter().find(|(k, _)| k == f).map(|(_, v)| v.as_str()))
                        .collect::<Vec<_>>()
                        .join(" "),
                );
                if text.is_empty() {
                    continue;
                }
                let v = embedder
                    .embed(&[&text])
                    .map_err(|e| e.to_string())?
                    .remove(0);
                (text, v)
            }
        };
        let q = &q;
        queries += 1;
        let terms: Vec<String> = text.split(' ').map(str::to_string).collect();
        let keyword = store
            .keyword_search(&table, "acme", &terms, 41)
            .await
            .map_err(|e| e.to_string())?;
        let vector = p.search("acme", &model, q, 41);
        let original = a.split_once("-dup-").map(|(base, _)| format!("{base}-org"));
        for (i, (mode, alpha)) in modes.iter().enumerate() {
            let ranked: Vec<String> = match (mode.as_str(), alpha) {
                ("keyword", _) => keyword.iter().map(|h| h.id.clone()).collect(),
                ("vector", _) => vector.iter().map(|h| h.entity_id.clone()).collect(),
                (_, a) => crate::search::fuse(&keyword, &vector, a.unwrap_or(0.5))
                    .into_iter()
                    .map(|h| h.entity_id)
                    .collect(),
            };
            let ranked: Vec<&String> = ranked.iter().filter(|id| *id != a).take(10).collect();
            if let Some(rank) = ranked.iter().position(|id| same_person(a, id)) {
                sums[i].0 += 1.0 / (rank + 1) as f64;
                sums[i].1 += 1;
            }
            if let Some(o) = original.as_ref().filter(|o| all.contains_key(*o)) {
                sums[i].3 += 1;
                if let Some(rank) = ranked.iter().position(|id| *id == o) {
                    sums[i].2 += 1.0 / (rank + 1) as f64;
                }
            }
        }
    }
    let n = queries.max(1) as f64;
    Ok(modes
        .into_iter()
        .zip(sums)
        .map(|((mode, alpha), (rr, hits, orr, originals))| ModeQuality {
            dataset: data.name.clone(),
            mode,
            alpha,
            queries,
            mrr_at_10: rr / n,
            hits_at_10: hits as f64 / n,
            original_mrr_at_10: orr / originals.max(1) as f64,
        })
        .collect())
}

/// Embeds and indexes `data`, then asks one query per `query_every`-th
/// record that has duplicates.
pub fn measure_vector_search(
    data: &Labelled,
    embeddings: &EmbeddingsConfig,
    index: &VectorIndexConfig,
    query_every: usize,
) -> SearchQuality {
    let started = Instant::now();
    let (model, vectors) = embed_all(data, embeddings);
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
