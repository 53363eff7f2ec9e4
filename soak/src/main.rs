//! `conductor-soak`: load, soak and chaos scenarios with machine-readable reports.
//!
//! Scenarios:
//! - `pg-fold`: the `entities` topology folding into Postgres with
//!   exactly-once on (store commit + outbox relay), events/s next to a plain
//!   COPY of rows of the same shape into the same server, and event-to-commit
//!   latency percentiles at a fixed input rate.
//! - `replay-rebuild`: a full rebuild of ≥ 1M events into a Postgres shadow
//!   next to a COPY of one row per event, and `conductor sql` GROUP BY timings.
//! - `fanout`: N WebSocket subscribers (1k, 5k, 10k) on one `conductor serve`
//!   while events are appended at a fixed rate: delivered vs expected,
//!   fan-out latency percentiles, server memory per subscriber, CPU.
//!   Run it with `soak/fanout.sh`, which raises the open-file limit.
//! - `kafka-fold`: `conductor run --log kafka` into Postgres per broker and
//!   exactly-once mode, next to the file log in the same run. Run it with
//!   `soak/kafka-fold.sh`, which starts Apache Kafka and tansu.
//! - `er-quality`: ER candidate generation on the labelled Febrl sets (PC,
//!   RR, PQ against `top_k` and `min_score`, two arrival orders) and its
//!   throughput with 100k records indexed.
//! - `lineage`: the lineage fold's events/s, lineage queries at depth 5 and
//!   20 over ≥ 100k datasets and jobs against a recursive SQL walk, and
//!   RunEvents/s posted over HTTP to a release `conductor run`.
//! - `vector-search`: vector search on the Febrl sets (MRR@10, ANN recall@10
//!   against brute force, by `ef_search`), and at 100k vectors: embeddings/s,
//!   inserts/s, snapshot restore vs re-insert, search p50/p99 vs brute force.

mod er_quality;
mod fanout;
mod kafka_fold;
mod lineage;
mod pg_fold;
mod proc_stats;
mod replay_rebuild;
mod report;
mod vector_search;
mod workload;

use clap::{Parser, Subcommand};

// The fold allocates many small, short-lived values (decoded events, rows,
// change events); mimalloc handles that churn markedly better than glibc.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "conductor-soak",
    about = "Load, soak and chaos scenarios for Conductor"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Fold throughput into Postgres vs COPY, and latency at a fixed rate.
    PgFold(pg_fold::Args),
    /// Full rebuild of ≥ 1M events into a Postgres shadow vs COPY, and SQL timings.
    ReplayRebuild(replay_rebuild::Args),
    /// N WebSocket subscribers on one `conductor serve` at a fixed event rate.
    Fanout(fanout::Args),
    /// `conductor run --log kafka` into Postgres per broker and mode vs the file log.
    KafkaFold(kafka_fold::Args),
    /// ER candidates: PC / RR / PQ on the Febrl sets against K, and records/s.
    ErQuality(er_quality::Args),
    /// Vector search: MRR / ANN recall on the Febrl sets, and speed at 100k vectors.
    VectorSearch(vector_search::Args),
    /// Lineage: fold events/s, query p50/p99 at depth 5 and 20 vs recursive SQL, HTTP ingest.
    Lineage(lineage::Args),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let result = match cli.scenario {
        Scenario::PgFold(args) => pg_fold::run(args).await,
        Scenario::ReplayRebuild(args) => replay_rebuild::run(args).await,
        Scenario::Fanout(args) => fanout::run(args).await,
        Scenario::KafkaFold(args) => kafka_fold::run_scenario(args).await,
        Scenario::ErQuality(args) => er_quality::run(args).await,
        Scenario::VectorSearch(args) => vector_search::run(args).await,
        Scenario::Lineage(args) => lineage::run(args).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
