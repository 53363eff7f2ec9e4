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
use conductor_connectors::SqliteStore;
use conductor_engine::processor::{Processor, ProcessorState};
use conductor_engine::store::ProjectionStore;
use conductor_processors::embeddings::config::EmbeddingsConfig;
use conductor_processors::embeddings::embedder;
use conductor_processors::embeddings::stage::EmbedEnrichment;
use conductor_processors::embeddings::text::Template;
use conductor_processors::er::quality::{Labelled, MISSING_DATA_HINT, data_dir};
use conductor_processors::vector_index::ann::exact_nearest;
use conductor_processors::vector_index::quality::{
    computed_event, measure_search_modes, measure_vector_search,
};
use conductor_processors::vector_index::{VectorIndexConfig, VectorIndexProcessor};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Where the Febrl files are [default: CONDUCTOR_ER_DATA, else what ops/install-datasets.sh installed].
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
    /// Measure only the embedders (throughput, and minilm's search quality
    /// on Febrl3).
    #[arg(long)]
    embedders_only: bool,
    /// Where to write the JSON report.
    #[arg(long, default_value = "soak/reports/vector-search.json")]
    out: PathBuf,
}

pub async fn run(args: Args) -> Result<(), String> {
    let dir = args
        .data
        .or_else(data_dir)
        .ok_or_else(|| format!("{MISSING_DATA_HINT} (or pass --data DIR)"))?;
    let embeddings = EmbeddingsConfig::default();
    if args.embedders_only {
        let report = serde_json::json!({
            "scenario": "vector-search --embedders-only",
            "embedders": embedders(&dir).await?,
        });
        report::write(&args.out, &report)?;
        println!("report: {}", args.out.display());
        return Ok(());
    }
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
    // Keyword, vector and hybrid on a real SQLite store's full-text index.
    let mut modes = Vec::new();
    println!(
        "\ndataset  query            mode     alpha  MRR@10 (same person)  MRR@10 (a duplicate's original)"
    );
    for name in &args.datasets {
        let data = Labelled::load(&dir, name)?;
        for (label, fields) in [
            ("whole text", None),
            (
                "name+suburb",
                Some(&["given_name", "surname", "suburb"][..]),
            ),
        ] {
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = SqliteStore::open(&tmp.path().join("search.db"))
                .await
                .map_err(|e| e.to_string())?;
            let found = measure_search_modes(
                &data,
                &embeddings,
                &VectorIndexConfig::default(),
                &store,
                1,
                &[0.3, 0.5, 0.7],
                fields,
            )
            .await?;
            for m in &found {
                println!(
                    "{:<8} {:<16} {:<8} {:<5}  {:.4}                {:.4}",
                    name,
                    label,
                    m.mode,
                    m.alpha.map_or("-".into(), |a| a.to_string()),
                    m.mrr_at_10,
                    m.original_mrr_at_10
                );
            }
            modes.push(serde_json::json!({"query": label, "modes": found}));
            store.close().await;
        }
    }
    let embedders = embedders(&dir).await?;
    let scale = if args.vectors > 0 {
        Some(scale(args.vectors, args.queries, &embeddings).await?)
    } else {
        None
    };
    let report = serde_json::json!({
        "scenario": "vector-search",
        "embeddings": embeddings,
        "index": VectorIndexConfig::default(),
        "quality": quality,
        "search_modes": modes,
        "embedders": embedders,
        "scale": scale,
    });
    report::write(&args.out, &report)?;
    println!("report: {}", args.out.display());
    Ok(())
}

/// Each built-in embedder's throughput on Febrl3's record texts (batches
/// of 256, as the stage calls it), and for minilm — when installed
/// (`ops/install-minilm.sh`) — the search modes on Febrl3 with its vectors.
async fn embedders(dir: &std::path::Path) -> Result<serde_json::Value, String> {
    use conductor_processors::embeddings::config::EmbedderKind;
    use conductor_processors::embeddings::minilm::{default_model_dir, missing_files};
    let data = Labelled::load(dir, "febrl3")?;
    let base = EmbeddingsConfig::default();
    let template = Template::parse(&base.template)?;
    let texts: Vec<String> = data
        .records
        .iter()
        .map(|(_, fields)| {
            let attrs = fields
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        conductor_schemas::AttributeValue::String(v.clone()),
                    )
                })
                .collect();
            template.render(&attrs)
        })
        .collect();
    println!(
        "
embedder        texts   texts/s"
    );
    let mut out = Vec::new();
    for kind in [EmbedderKind::HashedNgrams, EmbedderKind::Minilm] {
        let config = EmbeddingsConfig {
            embedder: kind,
            ..base.clone()
        };
        if kind == EmbedderKind::Minilm
            && let Some(why) = missing_files(&default_model_dir())
        {
            println!("minilm: not measured: {why}");
            continue;
        }
        let embedder = embedder::try_build(&config)?;
        let started = Instant::now();
        for batch in texts.chunks(256) {
            let refs: Vec<&str> = batch.iter().map(String::as_str).collect();
            embedder.embed(&refs)?;
        }
        let per_sec = texts.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "{:<15} {:>5}  {:>8.0}",
            embedder.model(),
            texts.len(),
            per_sec
        );
        let mut entry = serde_json::json!({
            "model": embedder.model(), "texts": texts.len(), "texts_per_second": per_sec,
        });
        if kind == EmbedderKind::Minilm {
            let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = SqliteStore::open(&tmp.path().join("search.db"))
                .await
                .map_err(|e| e.to_string())?;
            let found = measure_search_modes(
                &data,
                &config,
                &VectorIndexConfig::default(),
                &store,
                1,
                &[0.7],
                None,
            )
            .await?;
            for m in &found {
                println!(
                    "febrl3 minilm whole text {:<8} {:<5}  MRR@10 {:.4}  a duplicate's original {:.4}",
                    m.mode,
                    m.alpha.map_or("-".into(), |a| a.to_string()),
                    m.mrr_at_10,
                    m.original_mrr_at_10
                );
            }
            entry["search_modes"] = serde_json::to_value(&found).map_err(|e| e.to_string())?;
            store.close().await;
        }
        out.push(entry);
    }
    Ok(serde_json::Value::Array(out))
}

async fn scale(
    n: usize,
    queries: usize,
    config: &EmbeddingsConfig,
) -> Result<serde_json::Value, String> {
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
    let end_to_end = end_to_end(&events, &restored, config, &model, queries).await?;
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
        "hybrid_end_to_end": end_to_end,
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

/// Hybrid search end to end at scale, as `conductor search` runs it once
/// its index is loaded: keyword stage on a SQLite store holding every
/// entity (FTS5), the query embedded, the ANN searched, the two fused.
/// Queries are what a user types: a person's name and suburb.
async fn end_to_end(
    events: &[conductor_schemas::Event],
    index: &VectorIndexProcessor,
    config: &EmbeddingsConfig,
    model: &str,
    queries: usize,
) -> Result<serde_json::Value, String> {
    use conductor_engine::projection::{RowUpsert, SqlValue};
    use conductor_engine::store::StoreCommit;
    use conductor_processors::entities::entities_table;
    use conductor_schemas::EventData;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = SqliteStore::open(&tmp.path().join("entities.db"))
        .await
        .map_err(|e| e.to_string())?;
    let table = entities_table();
    store
        .migrate(std::slice::from_ref(&table))
        .await
        .map_err(|e| e.to_string())?;
    let mut latest: std::collections::BTreeMap<&str, (i64, serde_json::Value)> = Default::default();
    for e in events {
        if let EventData::EntityUpserted(u) = &e.data {
            let attrs = serde_json::to_value(&u.attributes).map_err(|e| e.to_string())?;
            latest.insert(&e.meta.subject, (u.version, attrs));
        }
    }
    let started = Instant::now();
    let rows: Vec<RowUpsert> = latest
        .iter()
        .map(|(id, (version, attrs))| RowUpsert {
            table: table.name,
            key: vec!["acme".into(), id.to_string()],
            version: *version,
            values: vec![
                SqlValue::Text("Person".into()),
                SqlValue::Json(attrs.clone()),
                SqlValue::Bool(false),
                SqlValue::Timestamp(chrono::Utc::now()),
                SqlValue::Text(format!("ev-{id}")),
            ],
            deleted: false,
        })
        .collect();
    for chunk in rows.chunks(5000) {
        store
            .commit(StoreCommit {
                topology: "soak".into(),
                upserts: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    let load_secs = started.elapsed().as_secs_f64();
    let embedder = embedder::build(config);
    let step = (latest.len() / queries.max(1)).max(1);
    let (mut total, mut keyword_us, mut vector_us) = (Vec::new(), Vec::new(), Vec::new());
    for (_, (_, attrs)) in latest.iter().step_by(step).take(queries) {
        let text: Vec<&str> = ["given_name", "surname", "suburb"]
            .iter()
            .filter_map(|k| attrs[*k].as_str())
            .collect();
        let text = conductor_processors::embeddings::text::normalise(&text.join(" "));
        if text.is_empty() {
            continue;
        }
        let t = Instant::now();
        let terms: Vec<String> = text.split(' ').map(str::to_string).collect();
        let keyword = store
            .keyword_search(&table, "acme", &terms, 40)
            .await
            .map_err(|e| e.to_string())?;
        let k_done = t.elapsed();
        let v = embedder.embed(&[&text])?.remove(0);
        let vector = index.search("acme", model, &v, 40);
        let v_done = t.elapsed() - k_done;
        let fused = conductor_processors::search::fuse(&keyword, &vector, 0.7);
        std::hint::black_box(fused);
        total.push(t.elapsed().as_secs_f64() * 1e6);
        keyword_us.push(k_done.as_secs_f64() * 1e6);
        vector_us.push(v_done.as_secs_f64() * 1e6);
    }
    for v in [&mut total, &mut keyword_us, &mut vector_us] {
        v.sort_by(f64::total_cmp);
    }
    store.close().await;
    let out = serde_json::json!({
        "entities": latest.len(),
        "load_seconds": load_secs,
        "queries": total.len(),
        "p50_micros": report::percentile(&total, 50.0),
        "p95_micros": report::percentile(&total, 95.0),
        "p99_micros": report::percentile(&total, 99.0),
        "keyword_p95_micros": report::percentile(&keyword_us, 95.0),
        "vector_p95_micros": report::percentile(&vector_us, 95.0),
    });
    println!(
        "hybrid search end to end over {} entities (SQLite FTS5 + HNSW, name+suburb queries): p50 {:.0} µs, p95 {:.0} µs, p99 {:.0} µs (keyword p95 {:.0} µs, vector p95 {:.0} µs)",
        latest.len(),
        out["p50_micros"].as_f64().unwrap_or_default(),
        out["p95_micros"].as_f64().unwrap_or_default(),
        out["p99_micros"].as_f64().unwrap_or_default(),
        out["keyword_p95_micros"].as_f64().unwrap_or_default(),
        out["vector_p95_micros"].as_f64().unwrap_or_default()
    );
    Ok(out)
}
