//! `vector-search`: the embedding writer's embedder and the vector index,
//! measured on labelled data and timed at scale.
//!
//! - Quality: on each Febrl set every record is embedded and indexed, and
//!   each true pair's first record's text is the query for the second:
//!   MRR@10, hits@1/@10, and the ANN's recall@10 against brute force, for
//!   a grid of `ef_search`.
//! - Scale: `--vectors` synthetic people (the demo's generator): embeddings
//!   per second, inserts per second, the snapshot's size and its restore
//!   time against re-inserting every vector (the baseline a snapshot saves),
//!   and search latency p50/p99 over `--queries` queries next to a brute
//!   force scan of the same vectors in the same process, with recall@10.

use crate::report;
use conductor_engine::processor::{Processor, ProcessorState};
use conductor_processors::embeddings::config::EmbeddingsConfig;
use conductor_processors::embeddings::embedder;
use conductor_processors::embeddings::stage::EmbedEnrichment;
use conductor_processors::embeddings::text::Template;
use conductor_processors::er::quality::{Labelled, data_dir};
use conductor_processors::vector_index::ann::exact_nearest;
use conductor_processors::vector_index::quality::{computed_event, measure_vector_search};
use conductor_processors::vector_index::{VectorIndexConfig, VectorIndexProcessor};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Where the Febrl files are [default: ../shared/data/er, or CONDUCTOR_ER_DATA].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Datasets to measure quality on.
    #[arg(long, value_delimiter = ',', default_value = "febrl1,febrl2,febrl3")]
    datasets: Vec<String>,
    /// Synthetic people for the scale run (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    vectors: usize,
    /// Queries timed at scale.
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "soak/reports/vector-search.json")]
    out: PathBuf,
}

pub async fn run(args: Args) -> Result<(), String> {
    let dir = args
        .data
        .or_else(data_dir)
        .ok_or("no Febrl data: pass --data DIR or set CONDUCTOR_ER_DATA")?;
    let embeddings = EmbeddingsConfig::default();
    let mut quality = Vec::new();
    println!(
        "dataset  ef_search  vectors  queries  MRR@10  hits@1  hits@10  ANN recall@10  searches/s"
    );
    for name in &args.datasets {
        let data = Labelled::load(&dir, name)?;
        for ef_search in [16, 32, 64, 128] {
            let index = VectorIndexConfig {
                ef_search,
                ..Default::default()
            };
            let q = measure_vector_search(&data, &embeddings, &index, 1);
            println!(
                "{:<8} {:>9}  {:>7}  {:>7}  {:.4}  {:.4}  {:.4}   {:.4}           {:.4}        {:>9.0}",
                name,
                ef_search,
                q.vectors,
                q.queries,
                q.mrr_at_10,
                q.hits_at_1,
                q.hits_at_10,
                q.original_mrr_at_10,
                q.ann_recall_at_10,
                q.searches_per_second
            );
            quality.push(serde_json::json!({"ef_search": ef_search, "quality": q}));
        }
    }
    let scale = if args.vectors > 0 {
        Some(scale(args.vectors, args.queries, &embeddings)?)
    } else {
        None
    };
    let report = serde_json::json!({
        "scenario": "vector-search",
        "embeddings": embeddings,
        "index": VectorIndexConfig::default(),
        "quality": quality,
        "scale": scale,
    });
    report::write(&args.out, &report)?;
    println!("report: {}", args.out.display());
    Ok(())
}

fn scale(n: usize, queries: usize, config: &EmbeddingsConfig) -> Result<serde_json::Value, String> {
    let embedder = embedder::build(config);
    let model = embedder.model().to_string();
    let template = Template::parse(&config.template)?;
    let events = crate::workload::er_people(n);
    let texts: Vec<(String, String)> = events
        .iter()
        .filter_map(|e| {
            EmbedEnrichment::text_of(config, &template, &model, e)
                .map(|(text, _)| (e.meta.subject.clone(), text))
        })
        .collect();
    // Embedding, in the stage's batches of 256.
    let started = Instant::now();
    let mut vectors: Vec<(String, Vec<f32>)> = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(256) {
        let batch: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let out = embedder.embed(&batch)?;
        vectors.extend(chunk.iter().map(|(id, _)| id.clone()).zip(out));
    }
    let embed_secs = started.elapsed().as_secs_f64();
    // Later versions of one entity replace earlier ones, as in the topology.
    let mut p = VectorIndexProcessor::new(VectorIndexConfig::default());
    let started = Instant::now();
    for (i, (id, v)) in vectors.iter().enumerate() {
        p.process(&computed_event(id, i as i64 + 1, &model, v.clone()))
            .map_err(|e| e.message)?;
    }
    let index_secs = started.elapsed().as_secs_f64();
    let stats = p.state.stats();
    let live: usize = stats.iter().map(|s| s.vectors).sum();

    let started = Instant::now();
    let snapshot = p.state.snapshot();
    let snapshot_secs = started.elapsed().as_secs_f64();
    let mut restored = VectorIndexProcessor::new(VectorIndexConfig::default());
    let started = Instant::now();
    restored.state.restore(&snapshot)?;
    let restore_secs = started.elapsed().as_secs_f64();

    // The latest vector of each live entity, for brute force.
    let mut latest: std::collections::HashMap<&str, &[f32]> = std::collections::HashMap::new();
    for (id, v) in &vectors {
        latest.insert(id, v);
    }
    let (mut ann, mut exact, mut recall) = (Vec::new(), Vec::new(), 0.0);
    let step = (vectors.len() / queries.max(1)).max(1);
    for (_, q) in vectors.iter().step_by(step).take(queries) {
        let t = Instant::now();
        let found = restored.search("acme", &model, q, 10);
        ann.push(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        let truth = exact_nearest(q, 10, latest.iter().map(|(k, v)| (*k, *v)));
        exact.push(t.elapsed().as_secs_f64() * 1e6);
        recall += found
            .iter()
            .filter(|h| truth.iter().any(|x| x.entity_id == h.entity_id))
            .count() as f64
            / truth.len().max(1) as f64;
    }
    ann.sort_by(f64::total_cmp);
    exact.sort_by(f64::total_cmp);
    let asked = ann.len().max(1) as f64;
    let out = serde_json::json!({
        "events": events.len(),
        "embedded_texts": vectors.len(),
        "embeddings_per_second": vectors.len() as f64 / embed_secs,
        "indexed_live_vectors": live,
        "inserts_per_second": vectors.len() as f64 / index_secs,
        "index_seconds": index_secs,
        "snapshot_bytes": snapshot.len(),
        "snapshot_seconds": snapshot_secs,
        "restore_seconds": restore_secs,
        "restore_vs_reinsert": index_secs / restore_secs.max(1e-9),
        "queries": ann.len(),
        "ann_p50_micros": report::percentile(&ann, 50.0),
        "ann_p99_micros": report::percentile(&ann, 99.0),
        "brute_force_p50_micros": report::percentile(&exact, 50.0),
        "ann_speedup_p50": report::percentile(&exact, 50.0) / report::percentile(&ann, 50.0).max(1e-9),
        "recall_at_10": recall / asked,
    });
    println!(
        "scale: {} texts embedded at {:.0}/s; {} live vectors indexed at {:.0} inserts/s; snapshot {:.1} MB in {:.2} s, restored in {:.2} s ({:.0}x faster than re-inserting); search p50 {:.0} µs p99 {:.0} µs vs brute force p50 {:.0} µs; recall@10 {:.4}",
        vectors.len(),
        out["embeddings_per_second"].as_f64().unwrap_or_default(),
        live,
        out["inserts_per_second"].as_f64().unwrap_or_default(),
        snapshot.len() as f64 / 1e6,
        snapshot_secs,
        restore_secs,
        out["restore_vs_reinsert"].as_f64().unwrap_or_default(),
        out["ann_p50_micros"].as_f64().unwrap_or_default(),
        out["ann_p99_micros"].as_f64().unwrap_or_default(),
        out["brute_force_p50_micros"].as_f64().unwrap_or_default(),
        recall / asked
    );
    Ok(out)
}
