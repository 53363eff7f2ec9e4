//! `er-quality`: ER candidate generation measured on the labelled Febrl sets
//! and timed on a large synthetic tenant.
//!
//! - Quality: each of febrl1/2/3 fed one event at a time in two shuffled
//!   orders; pairs completeness (PC), reduction ratio (RR), pairs quality
//!   (PQ) for a grid of `top_k` × `min_score`, plus the default config.
//! - The ANN signal: the same sets with each record followed by its
//!   embedding (hashed-ngrams over the embedding writer's default template),
//!   with and without `[processor_config.ann]`, with every role and with
//!   the names only (where blocking falls short).
//! - Throughput: records/s and per-record latency percentiles (p50/p99)
//!   while `--records` synthetic people (the demo's generator: typo'd
//!   duplicates) are indexed, and for the last 10% of them, with the rest
//!   already indexed; without and with the ANN signal (a record's time then
//!   includes its embedding's).

use crate::report;
use conductor_engine::processor::Processor;
use conductor_processors::er::ErCandidatesProcessor;
use conductor_processors::er::config::ErConfig;
use conductor_processors::er::quality::{
    Labelled, MISSING_DATA_HINT, ann_variant, data_dir, measure, measure_events,
    with_hashed_ngrams_embeddings as with_embeddings,
};
use conductor_schemas::Event;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Where the Febrl files are [default: CONDUCTOR_ER_DATA, else what ops/install-datasets.sh installed].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Synthetic records for the throughput run.
    #[arg(long, default_value_t = 100_000)]
    records: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "soak/reports/er-quality.json")]
    out: PathBuf,
    /// Skip the grid (defaults only).
    #[arg(long)]
    quick: bool,
    /// Candidates scored per record [default: the processor's default].
    #[arg(long)]
    max_scored: Option<usize>,
    /// LSH bands of the ANN signal [default: the processor's default].
    #[arg(long)]
    ann_bands: Option<usize>,
    /// Sign bits per LSH band [default: the processor's default].
    #[arg(long)]
    ann_bits: Option<usize>,
    /// Datasets to measure.
    #[arg(long, value_delimiter = ',', default_value = "febrl1,febrl2,febrl3")]
    datasets: Vec<String>,
}

pub async fn run(args: Args) -> Result<(), String> {
    let dir = args
        .data
        .or_else(data_dir)
        .ok_or_else(|| format!("{MISSING_DATA_HINT} (or pass --data DIR)"))?;
    let mut defaults = ErConfig::default();
    if let Some(m) = args.max_scored {
        defaults.max_scored = m;
    }
    if let Some(b) = args.ann_bands {
        defaults.ann.bands = b;
    }
    if let Some(b) = args.ann_bits {
        defaults.ann.bits = b;
    }
    let mut quality = Vec::new();
    println!("dataset  top_k  min_score  order  candidates  PC      RR       PQ     records/s");
    for name in &args.datasets {
        let data = Labelled::load(&dir, name)?;
        let mut grid = vec![(defaults.top_k, defaults.min_score)];
        if !args.quick {
            for k in [1, 2, 3, 5, 8] {
                for floor in [0.05, 0.2, 0.5] {
                    if (k, floor) != (defaults.top_k, defaults.min_score) {
                        grid.push((k, floor));
                    }
                }
            }
        }
        for (top_k, min_score) in grid {
            let config = ErConfig {
                top_k,
                min_score,
                ..defaults.clone()
            };
            for seed in [1, 2] {
                let q = measure(&data, &config, seed);
                println!(
                    "{:<8} {:>5}  {:>9}  {:>5}  {:>10}  {:.4}  {:.5}  {:.3}  {:>9.0}",
                    name,
                    top_k,
                    min_score,
                    seed,
                    q.candidates,
                    q.pc,
                    q.rr,
                    q.pq,
                    q.records as f64 / q.seconds
                );
                quality.push(serde_json::json!({
                    "top_k": top_k, "min_score": min_score, "order": seed, "default": (top_k, min_score) == (defaults.top_k, defaults.min_score),
                    "quality": q,
                }));
            }
        }
    }
    let mut ann = Vec::new();
    println!("\nthe ANN signal (each record followed by its embedding):");
    println!("dataset  roles      ann_top_k  order  candidates  PC      RR       PQ     records/s");
    for name in &args.datasets {
        let data = Labelled::load(&dir, name)?;
        for seed in [1, 2] {
            let events = with_embeddings(data.events(seed));
            for names_only in [false, true] {
                for ann_top_k in [0, defaults.ann.top_k] {
                    let config = ann_variant(&defaults, names_only, ann_top_k);
                    let q = measure_events(&data, &config, &events);
                    let roles = if names_only {
                        "names only"
                    } else {
                        "every role"
                    };
                    println!(
                        "{:<8} {:<10} {:>9}  {:>5}  {:>10}  {:.4}  {:.5}  {:.3}  {:>9.0}",
                        name,
                        roles,
                        ann_top_k,
                        seed,
                        q.candidates,
                        q.pc,
                        q.rr,
                        q.pq,
                        q.records as f64 / q.seconds
                    );
                    ann.push(serde_json::json!({
                        "roles": roles, "ann_top_k": ann_top_k, "order": seed, "quality": q,
                    }));
                }
            }
        }
    }
    if args.records == 0 {
        return Ok(());
    }
    let throughput_ann = throughput(
        args.records,
        &ann_variant(&defaults, false, defaults.ann.top_k),
        true,
    );
    let throughput = throughput(args.records, &defaults, false);
    for (what, t) in [
        ("blocking", &throughput),
        ("blocking + ann", &throughput_ann),
    ] {
        println!(
            "throughput ({what}): {:.0} records/s; last 10%: {:.0} records/s, p50 {:.1} µs, p99 {:.1} µs",
            t["records_per_second"].as_f64().unwrap_or_default(),
            t["tail_records_per_second"].as_f64().unwrap_or_default(),
            t["tail_p50_micros"].as_f64().unwrap_or_default(),
            t["tail_p99_micros"].as_f64().unwrap_or_default(),
        );
    }
    println!(
        "throughput: {} records in {:.1} s = {:.0} records/s; last 10% (index at {}): {:.0} records/s, p50 {:.1} µs, p99 {:.1} µs; {} candidates",
        args.records,
        throughput["seconds"].as_f64().unwrap_or_default(),
        throughput["records_per_second"]
            .as_f64()
            .unwrap_or_default(),
        args.records * 9 / 10,
        throughput["tail_records_per_second"]
            .as_f64()
            .unwrap_or_default(),
        throughput["tail_p50_micros"].as_f64().unwrap_or_default(),
        throughput["tail_p99_micros"].as_f64().unwrap_or_default(),
        throughput["candidates"]
    );
    let report = serde_json::json!({
        "scenario": "er-quality",
        "config": defaults,
        "quality": quality,
        "ann": ann,
        "throughput": throughput,
        "throughput_with_ann": throughput_ann,
    });
    report::write(&args.out, &report)?;
    println!("report: {}", args.out.display());
    Ok(())
}

/// Indexes `n` synthetic people one at a time (each with its embedding
/// when `embedded`: a record's time is then both events').
fn throughput(n: usize, config: &ErConfig, embedded: bool) -> serde_json::Value {
    let people = crate::workload::er_people(n);
    let events = if embedded {
        with_embeddings(people)
    } else {
        people
    };
    // One group per record: its entity event and what follows it.
    let mut groups: Vec<Vec<&Event>> = Vec::with_capacity(n);
    for e in &events {
        match (&e.data, groups.last_mut()) {
            (conductor_schemas::EventData::EmbeddingComputed(_), Some(g)) => g.push(e),
            _ => groups.push(vec![e]),
        }
    }
    let n = groups.len();
    let mut p = ErCandidatesProcessor::new(config.clone());
    let mut candidates = 0usize;
    let mut tail = Vec::with_capacity(n / 10 + 1);
    let started = Instant::now();
    let tail_from = n - n / 10;
    let mut tail_started = started;
    for (i, group) in groups.iter().enumerate() {
        if i == tail_from {
            tail_started = Instant::now();
        }
        let t = Instant::now();
        for e in group {
            candidates += p.process(e).map(|fx| fx.len() / 2).unwrap_or_default();
        }
        if i >= tail_from {
            tail.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let tail_seconds = tail_started.elapsed().as_secs_f64();
    tail.sort_by(f64::total_cmp);
    serde_json::json!({
        "records": n,
        "seconds": seconds,
        "records_per_second": n as f64 / seconds,
        "tail_records": tail.len(),
        "tail_records_per_second": tail.len() as f64 / tail_seconds,
        "tail_p50_micros": report::percentile(&tail, 50.0),
        "tail_p99_micros": report::percentile(&tail, 99.0),
        "candidates": candidates,
    })
}
