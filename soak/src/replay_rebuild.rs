//! `replay-rebuild`: a full rebuild of the `entities` projection from
//! ≥ 1M events into a Postgres shadow schema (bulk mode), next to a plain
//! COPY of one row per event into the same server in the same run, plus
//! `conductor sql` GROUP BY timings over the topic and over the projection.

use crate::report;
use crate::workload::entity_records;
use conductor_connectors::PostgresStore;
use conductor_engine::log::memory::MemoryLog;
use conductor_engine::log::{Log, TopicConfig};
use conductor_engine::processor::Processor;
use conductor_engine::runtime::parse_topology;
use conductor_processors::entities::EntitiesProcessor;
use conductor_replay::rebuild::{RebuildRequest, ReplayFrom, rebuild};
use conductor_replay::sql::SqlContext;
use conductor_replay::{Generation, GenerationHome};
use std::sync::Arc;
use std::time::Instant;

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
    /// Events in the topic to rebuild from.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Distinct entities (keys) they update.
    #[arg(long, default_value_t = 250_000)]
    entities: usize,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/soak-reports/replay-rebuild.json")]
    report: std::path::PathBuf,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

pub async fn run(args: Args) -> Result<(), String> {
    println!(
        "replay-rebuild: {} events over {} entities, rebuilt into Postgres ({})",
        args.events, args.entities, args.database_url
    );
    let t = Instant::now();
    let records = entity_records(args.events, args.entities, PARTITIONS);
    let log = MemoryLog::new();
    for topic in ["ig.ingest.entities", "ig.ingest.relationships"] {
        log.create_topic(topic, &TopicConfig::with_partitions(PARTITIONS))
            .await
            .map_err(err)?;
    }
    for p in 0..PARTITIONS {
        let part: Vec<_> = records
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, r)| r.clone())
            .collect();
        for chunk in part.chunks(10_000) {
            log.append("ig.ingest.entities", p, chunk.to_vec())
                .await
                .map_err(err)?;
        }
    }
    println!("  workload ready in {:.1}s", t.elapsed().as_secs_f64());
    let log: Arc<dyn Log> = Arc::new(log);

    // A live schema of its own; the shadow goes beside it.
    let schema = format!("soak_rb_{}", std::process::id());
    let creator = PostgresStore::connect(&args.database_url, Some(&schema))
        .await
        .map_err(err)?;
    let sep = if args.database_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{sep}options=-csearch_path%3D{schema}", args.database_url);
    let home = GenerationHome::postgres(&url).await.map_err(err)?;
    let config =
        parse_topology(TOPOLOGY, &conductor_processors::names()).map_err(|p| format!("{p:?}"))?;

    let request = RebuildRequest {
        from: ReplayFrom::Earliest,
        to_ms: None,
    };
    let started = Instant::now();
    let report = rebuild(
        log.clone(),
        &home,
        &config,
        Box::new(EntitiesProcessor::default()),
        &request,
        |_, _| {},
    )
    .await
    .map_err(err)?;
    let rebuild_secs = started.elapsed().as_secs_f64();
    let rebuild_rate = report.folded.records as f64 / rebuild_secs;

    // The ceiling: COPY one row per event (the rows the fold derives).
    let spec = crate::pg_fold::copy_table();
    let copy_store = PostgresStore::connect(&args.database_url, Some(&format!("{schema}_copy")))
        .await
        .map_err(err)?;
    crate::pg_fold::create_copy_table(&copy_store, &spec).await?;
    let rows = crate::pg_fold::copy_rows(&records, &spec);
    drop(records);
    let t = Instant::now();
    let copied = copy_store.copy_rows(&spec, &rows).await.map_err(err)?;
    let copy_secs = t.elapsed().as_secs_f64();
    let copy_rate = copied as f64 / copy_secs;
    drop(rows);
    copy_store.drop_schema().await.map_err(err)?;

    // SQL: GROUP BY over the topic and over the rebuilt projection.
    let shadow = home
        .open(&config.name, Generation::Shadow)
        .await
        .map_err(err)?;
    let ctx = SqlContext::new(
        log.clone(),
        Some(shadow.clone()),
        EntitiesProcessor::default().tables(),
    )
    .await
    .map_err(err)?;
    let topic_sql = r#"SELECT tenant, count(*) AS events, max(version) AS max_version FROM "ig.ingest.entities" GROUP BY tenant ORDER BY tenant"#;
    let t = Instant::now();
    let topic_result = ctx.query(topic_sql).await.map_err(err)?;
    let topic_secs = t.elapsed().as_secs_f64();
    let projection_sql = "SELECT tenant_id, count(*) AS entities, sum(version) AS versions FROM entities GROUP BY tenant_id ORDER BY tenant_id";
    let t = Instant::now();
    let projection_result = ctx.query(projection_sql).await.map_err(err)?;
    let projection_secs = t.elapsed().as_secs_f64();
    let projected_rows = shadow
        .dump_table(&conductor_processors::entities::entities_table())
        .await
        .map_err(err)?
        .len();
    shadow.close().await;
    home.remove(&config.name, Generation::Shadow)
        .await
        .map_err(err)?;
    creator.drop_schema().await.map_err(err)?;

    let r = serde_json::json!({
        "scenario": "replay-rebuild",
        "events": report.folded.records,
        "entities": args.entities,
        "projected_rows": projected_rows,
        "rebuild_seconds": rebuild_secs,
        "rebuild_events_per_s": rebuild_rate,
        "copy_rows": copied,
        "copy_seconds": copy_secs,
        "copy_rows_per_s": copy_rate,
        "rebuild_to_copy_ratio": rebuild_rate / copy_rate,
        "sql": {
            "topic_group_by": {"query": topic_sql, "seconds": topic_secs, "rows": topic_result.rows()},
            "projection_group_by": {"query": projection_sql, "seconds": projection_secs, "rows": projection_result.rows()},
        },
    });
    report::write(&args.report, &r)?;
    println!("\nrebuild into a Postgres shadow (bulk batches, side effects off)");
    println!(
        "  {} events in {rebuild_secs:.2}s = {rebuild_rate:.0} events/s ({projected_rows} rows)",
        report.folded.records
    );
    println!("  COPY of {copied} rows (one per event): {copy_secs:.2}s = {copy_rate:.0} rows/s");
    println!("  ratio rebuild / COPY = {:.2}", rebuild_rate / copy_rate);
    println!(
        "sql GROUP BY over the {}-event topic: {topic_secs:.2}s (reading, decoding into Arrow, aggregating)",
        report.folded.records
    );
    println!("sql GROUP BY over the {projected_rows}-row projection: {projection_secs:.2}s");
    println!("report: {}", args.report.display());
    Ok(())
}
