//! `pg-fold`: the entities topology into Postgres, exactly-once, vs COPY.

use crate::report;
use crate::workload::entity_records;
use conductor_connectors::PostgresStore;
use conductor_engine::log::memory::MemoryLog;
use conductor_engine::log::{Log, TopicConfig, now_ms};
use conductor_engine::processor::{Effect, Processor};
use conductor_engine::projection::{RowUpsert, TableSpec};
use conductor_engine::runtime::{Topology, Worker, parse_topology};
use conductor_engine::store::ProjectionStore;
use conductor_processors::entities::{EntitiesProcessor, entities_table};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPOLOGY: &str = include_str!("../../topologies/entities.toml");
const PARTITIONS: i32 = 3;

#[derive(clap::Args)]
pub struct Args {
    /// Postgres URL [env DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test].
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// Events for the throughput phase.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Distinct entities (keys) they update.
    #[arg(long, default_value_t = 50_000)]
    entities: usize,
    /// Input rate of the latency phase (events/s).
    #[arg(long, default_value_t = 5_000)]
    rate: usize,
    /// Duration of the latency phase.
    #[arg(long, default_value_t = 20)]
    latency_seconds: u64,
    /// Throughput rounds (each a fold and its COPY ceiling); the summary is the median.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Batch size (max events per commit).
    #[arg(long, default_value_t = 5000)]
    max_events: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/soak-reports/pg-fold.json")]
    report: std::path::PathBuf,
}

async fn fresh_store(url: &str, tag: &str) -> Result<PostgresStore, String> {
    let schema = format!("soak_{tag}_{}", std::process::id());
    PostgresStore::connect(url, Some(&schema))
        .await
        .map_err(|e| e.to_string())
}

async fn topology(
    max_events: usize,
    linger_ms: u64,
) -> Result<conductor_engine::runtime::TopologyConfig, String> {
    let mut c =
        parse_topology(TOPOLOGY, &conductor_processors::names()).map_err(|p| format!("{p:?}"))?;
    c.batch.max_events = max_events;
    c.batch.linger_ms = linger_ms;
    Ok(c)
}

async fn input_log() -> Result<MemoryLog, String> {
    let log = MemoryLog::new();
    for t in ["ig.ingest.entities", "ig.ingest.relationships"] {
        log.create_topic(t, &TopicConfig::with_partitions(PARTITIONS))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(log)
}

/// One throughput round: the fold with exactly-once on, then its ceiling.
struct Round {
    folded: usize,
    fold_secs: f64,
    total_secs: f64,
    changes: i64,
    /// decode+fold+resolve, version look-ups, waiting for the previous commit (µs).
    split_us: (u64, u64, u64),
    copied: u64,
    copy_secs: f64,
}

impl Round {
    fn fold_rate(&self) -> f64 {
        self.folded as f64 / self.fold_secs
    }
    fn copy_rate(&self) -> f64 {
        self.copied as f64 / self.copy_secs
    }
    fn ratio(&self) -> f64 {
        self.fold_rate() / self.copy_rate()
    }
}

async fn throughput_round(
    args: &Args,
    records: &[(i32, conductor_engine::log::Record)],
) -> Result<Round, String> {
    // The fold, with exactly-once on (store txn + outbox relay running concurrently).
    let store = fresh_store(&args.database_url, "fold").await?;
    let log = input_log().await?;
    for p in 0..PARTITIONS {
        let batch: Vec<_> = records
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, r)| r.clone())
            .collect();
        for chunk in batch.chunks(5000) {
            log.append("ig.ingest.entities", p, chunk.to_vec())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let (mut worker, stop_tx, relay_task) =
        start_pipeline(&log, &store, args.max_events, 0).await?;
    let started = Instant::now();
    let mut folded = 0;
    let (mut fold_us, mut versions_us, mut commit_us) = (0u64, 0u64, 0u64);
    while folded < args.events {
        let o = worker.step().await.map_err(|e| e.to_string())?;
        folded += o.records;
        fold_us += o.fold_micros;
        versions_us += o.versions_micros;
        commit_us += o.commit_micros;
        if o.records == 0 {
            break;
        }
    }
    worker.flush().await.map_err(|e| e.to_string())?;
    let fold_secs = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    relay_task
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let total_secs = started.elapsed().as_secs_f64();
    let changes = count(&log, "ig.changefeed.entities").await;

    // The ceiling: COPY rows of the same shape (one per event) into the same server.
    let spec = copy_table();
    let copy_store = fresh_store(&args.database_url, "copy").await?;
    create_copy_table(&copy_store, &spec).await?;
    let rows = copy_rows(records, &spec);
    let t = Instant::now();
    let copied = copy_store
        .copy_rows(&spec, &rows)
        .await
        .map_err(|e| e.to_string())?;
    let copy_secs = t.elapsed().as_secs_f64();
    copy_store.drop_schema().await.map_err(|e| e.to_string())?;
    store.drop_schema().await.map_err(|e| e.to_string())?;
    Ok(Round {
        folded,
        fold_secs,
        total_secs,
        changes,
        split_us: (fold_us, versions_us, commit_us),
        copied,
        copy_secs,
    })
}

/// (min, median, max) of `values`.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(|a, b| a.total_cmp(b));
    let median = report::percentile(&values, 50.0);
    (
        values.first().copied().unwrap_or(f64::NAN),
        median,
        values.last().copied().unwrap_or(f64::NAN),
    )
}

pub async fn run(args: Args) -> Result<(), String> {
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    println!(
        "pg-fold: {} events over {} entities into Postgres ({}), {} round(s)",
        args.events, args.entities, args.database_url, args.rounds
    );
    let records = entity_records(args.events, args.entities, PARTITIONS);

    // Rounds of fold + COPY: the server's own noise (checkpoints, vacuum)
    // moves single runs by ±15%, so the summary is the median round.
    println!(
        "\nfold into Postgres (exactly-once: rows + outbox + offsets per txn, relay running) vs COPY"
    );
    let mut rounds = Vec::with_capacity(args.rounds);
    for i in 1..=args.rounds {
        let r = throughput_round(&args, &records).await?;
        let (fold_us, versions_us, commit_us) = r.split_us;
        println!(
            "  round {i}: {} events in {:.2}s = {:.0} events/s ({} change events; drained at {:.2}s); COPY {:.0} rows/s; ratio {:.2}",
            r.folded,
            r.fold_secs,
            r.fold_rate(),
            r.changes,
            r.total_secs,
            r.copy_rate(),
            r.ratio()
        );
        println!(
            "    time split: decode+fold+resolve {:.2}s, version look-ups {:.2}s, waiting for the previous commit {:.2}s, reading input/other {:.2}s",
            fold_us as f64 / 1e6,
            versions_us as f64 / 1e6,
            commit_us as f64 / 1e6,
            r.fold_secs - (fold_us + versions_us + commit_us) as f64 / 1e6
        );
        rounds.push(r);
    }
    let fold = spread(rounds.iter().map(Round::fold_rate).collect());
    let copy = spread(rounds.iter().map(Round::copy_rate).collect());
    let ratio = spread(rounds.iter().map(Round::ratio).collect());

    // Event-to-commit latency at a fixed rate.
    let (p50, p95, p99, measured) = latency(&args).await?;

    let per_round: Vec<serde_json::Value> = rounds
        .iter()
        .map(|r| {
            let (fold_us, versions_us, commit_us) = r.split_us;
            serde_json::json!({
                "events": r.folded,
                "fold_seconds": r.fold_secs,
                "fold_events_per_s": r.fold_rate(),
                "fold_plus_relay_drain_seconds": r.total_secs,
                "change_events": r.changes,
                "copy_rows": r.copied,
                "copy_seconds": r.copy_secs,
                "copy_rows_per_s": r.copy_rate(),
                "fold_to_copy_ratio": r.ratio(),
                "time_split_seconds": {"decode_fold_resolve": fold_us as f64 / 1e6, "version_lookups": versions_us as f64 / 1e6, "waiting_for_previous_commit": commit_us as f64 / 1e6},
            })
        })
        .collect();
    let r = serde_json::json!({
        "scenario": "pg-fold",
        "events": args.events,
        "entities": args.entities,
        "max_events_per_batch": args.max_events,
        "rounds": per_round,
        "fold_events_per_s": {"min": fold.0, "median": fold.1, "max": fold.2},
        "copy_rows_per_s": {"min": copy.0, "median": copy.1, "max": copy.2},
        "fold_to_copy_ratio": {"min": ratio.0, "median": ratio.1, "max": ratio.2},
        "latency_rate_events_per_s": args.rate,
        "latency_events_measured": measured,
        "latency_ms": {"p50": p50, "p95": p95, "p99": p99},
    });
    report::write(&args.report, &r)?;
    println!(
        "  median of {} round(s): fold {:.0} events/s (min {:.0}, max {:.0}); COPY {:.0} rows/s ({:.0}..{:.0})",
        args.rounds, fold.1, fold.0, fold.2, copy.1, copy.0, copy.2
    );
    println!(
        "  ratio fold / COPY = {:.2} (min {:.2}, max {:.2})",
        ratio.1, ratio.0, ratio.2
    );
    println!(
        "event-to-commit latency at {} events/s over {}s ({measured} events): p50 {p50:.1} ms, p95 {p95:.1} ms, p99 {p99:.1} ms",
        args.rate, args.latency_seconds
    );
    println!("report: {}", args.report.display());
    Ok(())
}

async fn count(log: &MemoryLog, topic: &str) -> i64 {
    match log.describe_topic(topic).await {
        Ok(d) => d.partitions.iter().map(|p| p.high_watermark).sum(),
        Err(_) => 0,
    }
}

pub fn copy_table() -> TableSpec {
    let mut spec = entities_table();
    spec.name = "copy_ceiling_entities";
    spec.indexes.clear();
    spec.text_index = None;
    spec
}

/// Creates the COPY target. Projection tables leave pages 30% free for HOT
/// updates; a table that is only loaded would not, and packed pages make
/// the ceiling higher, so this one is packed.
pub async fn create_copy_table(store: &PostgresStore, spec: &TableSpec) -> Result<(), String> {
    store
        .migrate(std::slice::from_ref(spec))
        .await
        .map_err(|e| e.to_string())?;
    let sql = format!("ALTER TABLE \"{}\" SET (fillfactor = 100)", spec.name);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// The processor's row for each event, with a unique key so COPY can load all.
pub fn copy_rows(
    records: &[(i32, conductor_engine::log::Record)],
    spec: &TableSpec,
) -> Vec<RowUpsert> {
    let mut p = EntitiesProcessor::default();
    records
        .iter()
        .enumerate()
        .filter_map(|(i, (_, r))| {
            let event = conductor_engine::envelope::decode_event(r).ok()?;
            match p.process(&event).ok()?.pop()? {
                Effect::Upsert(mut u) => {
                    u.table = spec.name;
                    u.key[1] = format!("{}-{i}", u.key[1]);
                    Some(u)
                }
                Effect::Emit(_) | Effect::Graph(_) => None,
            }
        })
        .collect()
}

type RelayTask = tokio::task::JoinHandle<Result<(), conductor_engine::runtime::relay::RelayError>>;

/// The entities worker on `log` → `store`, with its relay running in the background.
async fn start_pipeline(
    log: &MemoryLog,
    store: &PostgresStore,
    max_events: usize,
    linger_ms: u64,
) -> Result<(Worker, tokio::sync::watch::Sender<bool>, RelayTask), String> {
    let shared_log: Arc<dyn Log> = Arc::new(log.clone());
    let shared_store: Arc<dyn ProjectionStore> = Arc::new(store.clone());
    let (worker, relay) = Topology::prepare(
        topology(max_events, linger_ms).await?,
        Box::new(EntitiesProcessor::default()),
        shared_log,
        shared_store,
    )
    .await
    .map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let relay_task = tokio::spawn(relay.run(worker.committed.clone(), stop_rx));
    Ok((worker, stop_tx, relay_task))
}

/// Appends at `rate` events/s in 10 ms ticks while the worker and the relay
/// run; per event, latency = commit time − append time.
async fn latency(args: &Args) -> Result<(f64, f64, f64, usize), String> {
    let store = fresh_store(&args.database_url, "lat").await?;
    let log = input_log().await?;
    let (mut worker, stop_tx, relay_task) =
        start_pipeline(&log, &store, args.max_events, 5).await?;

    let total = args.rate * args.latency_seconds as usize;
    let records = entity_records(total, args.entities, PARTITIONS);
    let producer_log = log.clone();
    let per_tick = (args.rate / 100).max(1);
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for chunk in records.chunks(per_tick) {
            tick.tick().await;
            for (p, r) in chunk {
                let mut r = r.clone();
                r.timestamp_ms = now_ms();
                let _ = producer_log.append("ig.ingest.entities", *p, vec![r]).await;
            }
        }
    });
    let mut latencies = Vec::with_capacity(total);
    let mut seen = worker.positions().clone();
    let deadline = Instant::now() + Duration::from_secs(args.latency_seconds + 30);
    while latencies.len() < total && Instant::now() < deadline {
        let o = worker.step().await.map_err(|e| e.to_string())?;
        if o.records == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        // Latency is measured to the commit, so wait for it here.
        worker.flush().await.map_err(|e| e.to_string())?;
        let committed_at = now_ms();
        for ((topic, p), next) in worker.positions().clone() {
            let from = seen.get(&(topic.clone(), p)).copied().unwrap_or(0);
            if next > from {
                for r in log
                    .read(&topic, p, from, (next - from) as usize)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    latencies.push((committed_at - r.record.timestamp_ms) as f64);
                }
            }
            seen.insert((topic, p), next);
        }
    }
    producer.await.map_err(|e| e.to_string())?;
    let _ = stop_tx.send(true);
    relay_task
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    store.drop_schema().await.map_err(|e| e.to_string())?;
    latencies.sort_by(|a, b| a.total_cmp(b));
    Ok((
        report::percentile(&latencies, 50.0),
        report::percentile(&latencies, 95.0),
        report::percentile(&latencies, 99.0),
        latencies.len(),
    ))
}
