//! `lineage`: how fast lineage is taken in and asked.
//!
//! 1. The fold: the `lineage` processor over a generated workload (runs of
//!    jobs chained through datasets, `lineage::workload`), events/s in
//!    process; the graph it makes is the query graph.
//! 2. Queries at depth 5 and 20 (Marquez's default) over that graph
//!    (≥ 100k datasets and jobs): p50/p99 of `LineageGraph::lineage` from
//!    random datasets, against the same walk as a recursive SQL query over
//!    the edges table in SQLite — how a SQL-backed lineage service answers —
//!    in the same process, same starts.
//! 3. HTTP ingest: `POST /api/v1/lineage` on a release `conductor run --only
//!    lineage` with N concurrent clients, accepted RunEvents/s (each answered
//!    after its append is durable), against the same requests with an
//!    invalid event (checked and refused, nothing appended) — the ratio is
//!    what the durable append costs.

use crate::report::{percentile, write};
use conductor_engine::processor::{Effect, Processor};
use conductor_processors::lineage::query::{Direction, LineageGraph};
use conductor_processors::lineage::workload::generate;
use conductor_processors::lineage::{LineageConfig, LineageProcessor};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Jobs of the query graph (each writes one dataset: about twice as
    /// many nodes).
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,
    /// Queries per depth.
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
    /// Recursive-SQL baseline queries per depth (slower: fewer).
    #[arg(long, default_value_t = 100)]
    sql_queries: usize,
    /// RunEvents posted over HTTP.
    #[arg(long, default_value_t = 5_000)]
    http_events: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// The `conductor` binary (a release build).
    #[arg(long, default_value = "target/release/conductor")]
    conductor: PathBuf,
    /// Skip the HTTP part.
    #[arg(long)]
    no_http: bool,
    #[arg(long, default_value = "soak/reports/lineage.json")]
    report: PathBuf,
}

pub async fn run(args: Args) -> Result<(), String> {
    let (graph, fold) = fold(args.jobs);
    let (nodes, edges) = graph.size();
    println!(
        "fold: {} events in {:.2} s = {:.0} events/s; graph {nodes} nodes, {edges} edges",
        fold.0,
        fold.1,
        fold.0 as f64 / fold.1
    );
    let mut queries = Vec::new();
    let sql = sql_graph(&graph_edges(&graph)).await?;
    for depth in [5usize, 20] {
        let starts = starts(args.jobs, args.queries);
        let (ours, sizes) = time_ours(&graph, &starts, depth);
        let theirs = time_sql(&sql, &starts[..args.sql_queries.min(starts.len())], depth).await?;
        let (p50, p99) = (percentile(&ours, 50.0), percentile(&ours, 99.0));
        let (s50, s99) = (percentile(&theirs, 50.0), percentile(&theirs, 99.0));
        let mean_nodes = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        println!(
            "depth {depth:>2}: p50 {p50:.3} ms, p99 {p99:.3} ms ({mean_nodes:.0} nodes an answer on average, max {}); recursive SQL p50 {s50:.1} ms, p99 {s99:.1} ms = {:.0}x / {:.0}x",
            sizes.iter().max().unwrap_or(&0),
            s50 / p50,
            s99 / p99
        );
        queries.push(json!({
            "depth": depth, "queries": ours.len(), "p50_ms": p50, "p99_ms": p99,
            "mean_nodes": mean_nodes, "max_nodes": sizes.iter().max(),
            "sql_queries": theirs.len(), "sql_p50_ms": s50, "sql_p99_ms": s99,
            "speedup_p50": s50 / p50, "speedup_p99": s99 / p99,
        }));
    }
    let http = if args.no_http {
        serde_json::Value::Null
    } else {
        http_ingest(&args).await?
    };
    let report = json!({
        "scenario": "lineage",
        "fold": {"events": fold.0, "seconds": fold.1, "events_per_second": fold.0 as f64 / fold.1},
        "graph": {"nodes": nodes, "edges": edges, "jobs": args.jobs},
        "queries": queries,
        "http_ingest": http,
    });
    write(&args.report, &report)?;
    println!("report: {}", args.report.display());
    Ok(())
}

/// Folds a workload touching every job once, in one tenant (`acme`), and
/// applies the graph it makes.
fn fold(jobs: usize) -> (LineageGraph, (usize, f64)) {
    let events: Vec<_> = generate(jobs * 4, jobs)
        .into_iter()
        .filter(|e| e.tenant == "acme")
        .filter_map(|e| conductor_schemas::openlineage::to_event(&e.event, e.tenant).ok())
        .collect();
    let mut p = LineageProcessor::new(LineageConfig::default());
    let mut graph = LineageGraph::default();
    let started = Instant::now();
    let mut mutations = Vec::new();
    for e in &events {
        for effect in p.process(e).unwrap_or_default() {
            if let Effect::Graph(m) = effect {
                mutations.push(m);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    for m in &mutations {
        graph.apply(m);
    }
    (graph, (events.len(), seconds))
}

/// `count` datasets spread over the chain (a fixed stride, so every run
/// asks the same).
fn starts(jobs: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            format!(
                "dataset:postgres://warehouse:5432:public.d{}",
                (i * 7919) % jobs
            )
        })
        .collect()
}

fn time_ours(graph: &LineageGraph, starts: &[String], depth: usize) -> (Vec<f64>, Vec<usize>) {
    let mut times = Vec::with_capacity(starts.len());
    let mut sizes = Vec::with_capacity(starts.len());
    for s in starts {
        let t = Instant::now();
        let answer = graph.lineage("acme", s, depth, Direction::Both);
        let size = answer.as_ref().map_or(0, |l| l.graph.len());
        // Serialized, as the endpoint answers it.
        let body = answer.map(|l| serde_json::to_vec(&l).map(|b| b.len()).unwrap_or(0));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        sizes.push(size);
        std::hint::black_box(body.ok());
    }
    times.sort_by(f64::total_cmp);
    (times, sizes)
}

/// (from, to) node ids of every lineage edge (runs left out).
fn graph_edges(graph: &LineageGraph) -> Vec<(String, String)> {
    graph.edges_for_export("acme")
}

async fn sql_graph(edges: &[(String, String)]) -> Result<sqlx::SqlitePool, String> {
    use sqlx::sqlite::SqlitePoolOptions;
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .map_err(|e| e.to_string())?;
    let run = |q: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(q)
                .execute(&pool)
                .await
                .map_err(|e| e.to_string())
        }
    };
    run("CREATE TABLE edges (from_id TEXT NOT NULL, to_id TEXT NOT NULL)").await?;
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    for (f, t) in edges {
        sqlx::query("INSERT INTO edges VALUES (?, ?)")
            .bind(f)
            .bind(t)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    run("CREATE INDEX edges_from ON edges (from_id)").await?;
    run("CREATE INDEX edges_to ON edges (to_id)").await?;
    Ok(pool)
}

/// The same walk (both directions, `depth` edges) as one recursive query.
async fn time_sql(
    pool: &sqlx::SqlitePool,
    starts: &[String],
    depth: usize,
) -> Result<Vec<f64>, String> {
    const WALK: &str = "WITH RECURSIVE walk(id, d) AS (
            SELECT ?1, 0
            UNION
            SELECT e.to_id, w.d + 1 FROM edges e JOIN walk w ON e.from_id = w.id WHERE w.d < ?2
            UNION
            SELECT e.from_id, w.d + 1 FROM edges e JOIN walk w ON e.to_id = w.id WHERE w.d < ?2
        )
        SELECT DISTINCT id FROM walk";
    let mut times = Vec::with_capacity(starts.len());
    for s in starts {
        let t = Instant::now();
        let rows = sqlx::query(WALK)
            .bind(format!("acme/{s}"))
            .bind(depth as i64)
            .fetch_all(pool)
            .await
            .map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(rows.len());
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Posts `http_events` RunEvents with `concurrency` clients to a release
/// `conductor run --only lineage`; then as many invalid ones.
async fn http_ingest(args: &Args) -> Result<serde_json::Value, String> {
    const SECRET: &str = "soak-lineage-secret-soak-lineage-secret-0";
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(&args.conductor)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--only", "lineage", "--listen", "127.0.0.1:0"])
        .env("CONDUCTOR_JWT_SECRET", SECRET)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "{}: {e} (build it: cargo build --release -p conductor)",
                args.conductor.display()
            )
        })?;
    let addr = {
        use std::io::BufRead;
        let mut line = String::new();
        let mut stderr = std::io::BufReader::new(child.stderr.take().ok_or("no stderr")?);
        stderr.read_line(&mut line).map_err(|e| e.to_string())?;
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        line.split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .ok_or(format!("no address in {line}"))?
            .to_string()
    };
    let token = conductor_replay::subscribe::auth::issue(
        SECRET.as_bytes(),
        &conductor_replay::subscribe::auth::Claims {
            tenant: "acme".into(),
            scopes: vec!["lineage.write".into()],
            scope: None,
            exp: conductor_replay::subscribe::auth::now_secs() + 3600,
            tier: None,
        },
    );
    let url = format!("http://{addr}/api/v1/lineage");
    let events: Vec<String> = generate(args.http_events, 500)
        .into_iter()
        .take(args.http_events)
        .map(|e| e.event.to_string())
        .collect();
    let invalid: Vec<String> = events
        .iter()
        .map(|e| e.replacen("\"runId\":\"", "\"runId\":\"x", 1))
        .collect();
    let post = |bodies: Vec<String>, want: u16| {
        let url = url.clone();
        let token = token.clone();
        let concurrency = args.concurrency;
        async move {
            let client = reqwest::Client::new();
            let bodies = std::sync::Arc::new(bodies);
            let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (client, bodies, next, url, token) = (
                    client.clone(),
                    bodies.clone(),
                    next.clone(),
                    url.clone(),
                    token.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else { break };
                        let t = Instant::now();
                        let r = client
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await
                            .map_err(|e| e.to_string())?;
                        if r.status().as_u16() != want {
                            return Err(format!("status {} (wanted {want})", r.status()));
                        }
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok::<_, String>(latencies)
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.map_err(|e| e.to_string())??);
            }
            let seconds = started.elapsed().as_secs_f64();
            all.sort_by(f64::total_cmp);
            Ok::<_, String>((
                all.len() as f64 / seconds,
                percentile(&all, 50.0),
                percentile(&all, 99.0),
            ))
        }
    };
    // Warm up the connection pool and the topic.
    post(events[..events.len().min(50)].to_vec(), 201).await?;
    let accepted = post(events.clone(), 201).await;
    let refused = post(invalid, 400).await;
    let _ = child.kill();
    let _ = child.wait();
    let (accepted, refused) = (accepted?, refused?);
    println!(
        "HTTP ingest ({} clients): {:.0} RunEvents/s accepted (p50 {:.2} ms, p99 {:.2} ms, each after its durable append); {:.0}/s refused as invalid (p50 {:.2} ms): the append costs {:.1}x",
        args.concurrency,
        accepted.0,
        accepted.1,
        accepted.2,
        refused.0,
        refused.1,
        refused.0 / accepted.0
    );
    Ok(json!({
        "events": events.len(), "concurrency": args.concurrency,
        "accepted_per_second": accepted.0, "accepted_p50_ms": accepted.1, "accepted_p99_ms": accepted.2,
        "refused_per_second": refused.0, "refused_p50_ms": refused.1,
        "append_cost_ratio": refused.0 / accepted.0,
    }))
}
