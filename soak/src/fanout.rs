//! `fanout`: N WebSocket subscribers on one `conductor serve` while events
//! are appended at a fixed rate.
//!
//! The server is the real binary (`conductor serve`, read-only on a file
//! log); this process is the writer and every client. Subscribers are
//! spread over tenants round robin and subscribe to the changefeed topic
//! with their tenant's token; event `i` belongs to tenant `i % tenants`, so
//! each event is owed to every subscriber of its tenant. Each event carries
//! its sequence number, so a client knows which events it lacks, holds
//! twice or got out of order; the writer notes when it started each append
//! and when the append returned, the clients when each event arrived.
//!
//! Reported per N: delivered vs expected (lost and duplicated must be 0);
//! fan-out latency p50/p95/p99/max from the append's acknowledgement to the
//! client's receipt, and end to end from before the append (which includes
//! the log write and its fsync); the server's own append → send histogram
//! from `/metrics`; server memory per subscriber
//! (RSS with N subscribers minus RSS with none, over N; idle and after the
//! load), and CPU used by the server and by this process.

use crate::{proc_stats, report};
use conductor_engine::log::file::{FileLog, FileLogOptions, FsyncPolicy};
use conductor_engine::log::{Log, Record, TopicConfig};
use conductor_replay::subscribe::auth::{Claims, SCOPE_CHANGES_READ, issue, now_secs};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const TOPIC: &str = "ig.changefeed.entities";
const SECRET: &str = "fanout-soak-secret-fanout-soak-secret-0123";
const CURSOR_KEY: &str = "fanout-soak-cursor-key-0123456789";
/// WebSocket handshakes in flight while subscribers connect.
const CONNECTING: usize = 64;
/// How long deliveries may trail the last append before the rest count as lost.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Sockets beyond the subscribers: the log's files, the runtime, stdio.
const SPARE_FILES: u64 = 512;

#[derive(clap::Args)]
pub struct Args {
    /// Subscriber counts, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    subscribers: Vec<usize>,
    /// Tenants the subscribers and the events are spread over.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Events appended per second (all tenants together).
    #[arg(long, default_value_t = 200)]
    rate: usize,
    /// Seconds of appending per run.
    #[arg(long, default_value_t = 20)]
    seconds: usize,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// The `conductor` binary [default: the one beside this binary].
    #[arg(long, value_name = "PATH")]
    conductor: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "target/soak-reports/fanout.json")]
    report: PathBuf,
}

pub async fn run(args: Args) -> Result<(), String> {
    if args.tenants == 0 || args.rate == 0 || args.seconds == 0 || args.partitions < 1 {
        return Err("--tenants, --rate, --seconds and --partitions must be at least 1".into());
    }
    let conductor = conductor_binary(args.conductor.clone())?;
    let most = args.subscribers.iter().copied().max().unwrap_or(0) as u64;
    let limit = proc_stats::open_file_limit()?;
    if limit < most + SPARE_FILES {
        return Err(format!(
            "the open-file limit is {limit}, and {most} subscribers need at least {}: raise it first (`ulimit -n 65536`; soak/fanout.sh does)",
            most + SPARE_FILES
        ));
    }
    println!(
        "fanout: {} events/s over {} tenants for {} s, to {:?} WebSocket subscribers of `conductor serve` ({})",
        args.rate,
        args.tenants,
        args.seconds,
        args.subscribers,
        conductor.display()
    );
    let mut runs = Vec::new();
    for &n in &args.subscribers {
        let r = run_one(&args, n, &conductor).await?;
        println!("{}", summary(&r));
        runs.push(r);
    }
    let report_json = json!({
        "scenario": "fanout",
        "transport": "json_ws",
        "rate_events_per_s": args.rate,
        "tenants": args.tenants,
        "seconds": args.seconds,
        "partitions": args.partitions,
        "runs": runs,
    });
    report::write(&args.report, &report_json)?;
    println!("report: {}", args.report.display());
    let lost: u64 = runs.iter().filter_map(|r| r["lost"].as_u64()).sum();
    let duplicated: u64 = runs.iter().filter_map(|r| r["duplicated"].as_u64()).sum();
    let misordered: u64 = runs.iter().filter_map(|r| r["out_of_order"].as_u64()).sum();
    if lost + duplicated + misordered > 0 {
        return Err(format!(
            "deliveries were wrong: {lost} lost, {duplicated} duplicated, {misordered} out of order"
        ));
    }
    Ok(())
}

fn conductor_binary(given: Option<PathBuf>) -> Result<PathBuf, String> {
    let path = match given {
        Some(p) => p,
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("conductor"),
    };
    if !path.is_file() {
        return Err(format!(
            "no conductor binary at {}: build it (`cargo build --release -p conductor`) or pass --conductor PATH",
            path.display()
        ));
    }
    Ok(path)
}

fn tenant(t: usize) -> String {
    format!("tenant-{t:03}")
}

fn token(tenant: &str) -> String {
    issue(
        SECRET.as_bytes(),
        &Claims {
            tenant: tenant.into(),
            scopes: vec![SCOPE_CHANGES_READ.into()],
            scope: None,
            exp: now_secs() + 24 * 3600,
            tier: Some("gold".into()),
        },
    )
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A change event like the runtime's, numbered `seq`.
fn change(seq: usize, tenant: &str) -> Record {
    let value = json!({
        "change_id": format!("fanout-{seq}"), "table": "entities", "op": "upsert",
        "tenant": tenant, "key": {"tenant_id": tenant, "entity_id": format!("e{seq}")},
        "version": 1, "row": {"kind": "Person", "attributes": {"given_name": "Ada"}},
        "seq": seq,
    });
    Record::new(
        Some(format!("{tenant}/e{seq}").into_bytes()),
        value.to_string().into_bytes(),
    )
    .with_header("ig-tenant", tenant.as_bytes())
}

/// `conductor serve` on a data dir, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(conductor: &Path, data: &Path, config: &Path) -> Result<Server, String> {
        let mut child = Command::new(conductor)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("CONDUCTOR_JWT_SECRET", SECRET)
            .env("CONDUCTOR_CURSOR_KEY", CURSOR_KEY)
            .env_remove("CONDUCTOR_LOG")
            .env_remove("CONDUCTOR_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", conductor.display()))?;
        let mut stderr = std::io::BufReader::new(child.stderr.take().ok_or("no stderr")?);
        let mut line = String::new();
        let _ = stderr.read_line(&mut line);
        let Some(addr) = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
        else {
            let _ = child.kill();
            return Err(format!("conductor serve did not start: {line}"));
        };
        let addr = addr.to_string();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::stderr()));
        Ok(Server { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects, subscribes from the end of the topic, waits for `subscribed`.
async fn subscribe(addr: &str, token: &str) -> Result<Ws, String> {
    // Clients receive small messages: a small read buffer keeps 10k of
    // them from costing this process a gigabyte.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/v1/subscribe"),
        Some(config),
        true,
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let msg = json!({"op": "subscribe", "topic": TOPIC, "from": "latest", "token": token});
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
                return if v["type"] == "subscribed" {
                    Ok(ws)
                } else {
                    Err(format!("refused: {t}"))
                };
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => return Err(format!("closed before subscribed: {other:?}")),
            Err(_) => return Err("no `subscribed` within 30 s".into()),
        }
    }
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    event: Option<SoakEvent>,
}

#[derive(Deserialize)]
struct SoakEvent {
    seq: u32,
}

#[derive(Default)]
struct ClientStats {
    tenant: usize,
    seqs: Vec<u32>,
    /// When each of `seqs` arrived (µs since the epoch).
    received_us: Vec<u64>,
    error: Option<String>,
}

/// Reads events until `stop`, noting each one's sequence number and arrival.
async fn client(
    mut ws: Ws,
    tenant: usize,
    delivered: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> ClientStats {
    let mut stats = ClientStats {
        tenant,
        ..Default::default()
    };
    loop {
        tokio::select! {
            biased;
            m = ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    let now = now_us();
                    match serde_json::from_str::<Incoming>(t.as_str()) {
                        Ok(Incoming { kind, event: Some(e) }) if kind == "event" => {
                            stats.seqs.push(e.seq);
                            stats.received_us.push(now);
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => stats.error = Some(format!("unexpected message: {t}")),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    stats.error = Some(e.to_string());
                    break;
                }
                None => {
                    stats.error = Some("closed by the server".into());
                    break;
                }
            },
            _ = stop.changed() => break,
        }
    }
    stats
}

/// `GET path` over plain HTTP/1.0; the body.
async fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .await
        .map_err(|e| e.to_string())?;
    Ok(text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// Quantiles of the server's `conductor_fanout_latency_seconds{mode="live"}`
/// histogram, as the upper bound (ms) of the bucket each falls in.
fn server_histogram(metrics: &str) -> Value {
    let mut buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter(|l| l.starts_with("conductor_fanout_latency_seconds_bucket{mode=\"live\""))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
    let at = |q: f64| {
        buckets
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| {
                if le.is_finite() {
                    json!(le * 1000.0)
                } else {
                    json!("+Inf")
                }
            })
            .unwrap_or(Value::Null)
    };
    json!({"count": total, "p50_le_ms": at(0.50), "p95_le_ms": at(0.95), "p99_le_ms": at(0.99)})
}

async fn run_one(args: &Args, n: usize, conductor: &Path) -> Result<Value, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let log = FileLog::open(
        dir.path().join("log"),
        FileLogOptions {
            fsync: FsyncPolicy::IntervalMs(100),
            ..Default::default()
        },
    )
    .map_err(|e| e.to_string())?;
    log.create_topic(TOPIC, &TopicConfig::with_partitions(args.partitions))
        .await
        .map_err(|e| e.to_string())?;
    let config = dir.path().join("conductor.toml");
    std::fs::write(
        &config,
        format!(
            "[subscriptions]\nmax_subscriptions_per_tenant = {}\nsubscribes_per_second = 100000\nsubscribe_burst = 100000\n",
            n.max(1)
        ),
    )
    .map_err(|e| e.to_string())?;
    let server = Server::start(conductor, dir.path(), &config)?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_none, _) = proc_stats::memory_kib(server.pid())?;

    // N subscribers, round robin over the tenants.
    let tokens: Vec<String> = (0..args.tenants).map(|t| token(&tenant(t))).collect();
    let connect_started = Instant::now();
    let gate = Arc::new(Semaphore::new(CONNECTING));
    let mut handshakes = Vec::with_capacity(n);
    for i in 0..n {
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let (addr, token) = (server.addr.clone(), tokens[i % args.tenants].clone());
        handshakes.push(tokio::spawn(async move {
            let ws = subscribe(&addr, &token).await;
            drop(permit);
            ws
        }));
    }
    let delivered = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = Vec::with_capacity(n);
    for (i, h) in handshakes.into_iter().enumerate() {
        let ws = h
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("subscriber {i}: {e}"))?;
        clients.push(tokio::spawn(client(
            ws,
            i % args.tenants,
            delivered.clone(),
            stop_rx.clone(),
        )));
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_subscribed, _) = proc_stats::memory_kib(server.pid())?;

    // Append at the fixed rate; event i belongs to tenant i % tenants.
    let server_cpu_before = proc_stats::cpu_seconds(server.pid())?;
    let own_cpu_before = proc_stats::cpu_seconds(std::process::id())?;
    let total = args.rate * args.seconds;
    let mut per_tenant = vec![0u64; args.tenants];
    // When each append started and returned (µs since the epoch).
    let (mut sent_us, mut acked_us) = (vec![0u64; total], vec![0u64; total]);
    let started = Instant::now();
    for seq in 0..total {
        let due = started + Duration::from_secs_f64(seq as f64 / args.rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let t = seq % args.tenants;
        per_tenant[t] += 1;
        let partition = (seq % args.partitions as usize) as i32;
        let record = change(seq, &tenant(t));
        sent_us[seq] = now_us();
        log.append(TOPIC, partition, vec![record])
            .await
            .map_err(|e| e.to_string())?;
        acked_us[seq] = now_us();
    }
    let append_secs = started.elapsed().as_secs_f64();
    let subscribers_of = |t: usize| (n + args.tenants - 1 - t) / args.tenants;
    let expected: u64 = (0..args.tenants)
        .map(|t| per_tenant[t] * subscribers_of(t) as u64)
        .sum();
    let drain_started = Instant::now();
    while delivered.load(Ordering::Relaxed) < expected && drain_started.elapsed() < DRAIN_TIMEOUT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy_secs = started.elapsed().as_secs_f64();
    let server_cpu = proc_stats::cpu_seconds(server.pid())? - server_cpu_before;
    let own_cpu = proc_stats::cpu_seconds(std::process::id())? - own_cpu_before;
    let (rss_loaded, rss_peak) = proc_stats::memory_kib(server.pid())?;
    let server_side = match http_get(&server.addr, "/metrics").await {
        Ok(m) => server_histogram(&m),
        Err(e) => json!({"error": e}),
    };
    let _ = stop_tx.send(true);

    // Check every subscriber's deliveries against what its tenant was sent.
    let (mut got, mut lost, mut duplicated, mut out_of_order, mut foreign) = (0u64, 0, 0, 0, 0);
    let mut fanout_us: Vec<u64> = Vec::with_capacity(expected as usize);
    let mut end_to_end_us: Vec<u64> = Vec::with_capacity(expected as usize);
    let mut errors = Vec::new();
    for c in clients {
        let s = c.await.map_err(|e| e.to_string())?;
        if let Some(e) = s.error {
            errors.push(e);
        }
        got += s.seqs.len() as u64;
        foreign += s
            .seqs
            .iter()
            .filter(|q| **q as usize % args.tenants != s.tenant)
            .count() as u64;
        let mut last = vec![-1i64; args.partitions as usize];
        for q in &s.seqs {
            let p = *q as usize % args.partitions as usize;
            if i64::from(*q) <= last[p] {
                out_of_order += 1;
            }
            last[p] = i64::from(*q);
        }
        let mut unique = s.seqs.clone();
        unique.sort_unstable();
        unique.dedup();
        duplicated += (s.seqs.len() - unique.len()) as u64;
        lost += per_tenant[s.tenant].saturating_sub(unique.len() as u64);
        for (q, at) in s.seqs.iter().zip(&s.received_us) {
            let q = *q as usize;
            if q < total {
                // An event may be read before its append returns (the fsync).
                fanout_us.push(at.saturating_sub(acked_us[q]));
                end_to_end_us.push(at.saturating_sub(sent_us[q]));
            }
        }
    }
    let quantiles = |mut us: Vec<u64>| {
        us.sort_unstable();
        let ms: Vec<f64> = us.iter().map(|v| *v as f64 / 1000.0).collect();
        json!({
            "p50": report::percentile(&ms, 50.0),
            "p95": report::percentile(&ms, 95.0),
            "p99": report::percentile(&ms, 99.0),
            "max": ms.last().copied().unwrap_or(f64::NAN),
        })
    };
    let kib_per = |rss: u64| (rss.saturating_sub(rss_none)) as f64 / n.max(1) as f64;
    errors.truncate(5);
    Ok(json!({
        "subscribers": n,
        "events_appended": total,
        "append_rate_achieved": total as f64 / append_secs,
        "connect_seconds": connect_secs,
        "expected": expected,
        "delivered": got,
        "lost": lost,
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "foreign_tenant": foreign,
        "deliveries_per_s": got as f64 / busy_secs,
        "latency_ms": quantiles(fanout_us),
        "end_to_end_ms": quantiles(end_to_end_us),
        "server_append_to_send": server_side,
        "server_rss_kib": {"no_subscribers": rss_none, "subscribed_idle": rss_subscribed,
                           "after_load": rss_loaded, "peak": rss_peak},
        "server_kib_per_subscriber": {"idle": kib_per(rss_subscribed), "after_load": kib_per(rss_loaded)},
        "server_cpu_cores": server_cpu / busy_secs,
        "clients_cpu_cores": own_cpu / busy_secs,
        "client_errors": errors,
    }))
}

fn summary(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    format!(
        "  N={:>5}: delivered {}/{} (lost {}, dup {}, misordered {}), fan-out p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms (end to end p99 {:.1}); server {:.1} KiB/subscriber idle, {:.1} after load; CPU server {:.2} cores, clients {:.2}",
        r["subscribers"],
        r["delivered"],
        r["expected"],
        r["lost"],
        r["duplicated"],
        r["out_of_order"],
        f(&r["latency_ms"]["p50"]),
        f(&r["latency_ms"]["p95"]),
        f(&r["latency_ms"]["p99"]),
        f(&r["latency_ms"]["max"]),
        f(&r["end_to_end_ms"]["p99"]),
        f(&r["server_kib_per_subscriber"]["idle"]),
        f(&r["server_kib_per_subscriber"]["after_load"]),
        f(&r["server_cpu_cores"]),
        f(&r["clients_cpu_cores"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_quantiles_off_the_server_histogram() {
        let m = "conductor_fanout_latency_seconds_bucket{mode=\"live\",le=\"0.001\"} 10\n\
                 conductor_fanout_latency_seconds_bucket{mode=\"live\",le=\"0.01\"} 90\n\
                 conductor_fanout_latency_seconds_bucket{mode=\"live\",le=\"0.1\"} 99\n\
                 conductor_fanout_latency_seconds_bucket{mode=\"live\",le=\"+Inf\"} 100\n\
                 conductor_fanout_latency_seconds_bucket{mode=\"catchup\",le=\"+Inf\"} 5\n";
        let h = server_histogram(m);
        assert_eq!(h["count"], 100.0);
        assert_eq!(h["p50_le_ms"], 10.0);
        assert_eq!(h["p95_le_ms"], 100.0);
        assert_eq!(h["p99_le_ms"], 100.0);
    }
}
