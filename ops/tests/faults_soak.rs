//! The fault soak (`soak/faults.sh`; ignored in the suite): for
//! `FAULT_SOAK_MINUTES` (default 30), round after round, one `conductor run`
//! folds the `entities` topology while faults drawn at random hit it — the
//! process SIGKILLed, Postgres connections cut, Postgres restarted (fast,
//! immediate) or kept down, the Kafka broker stopped (TERM, KILL), the file
//! log's fsync failing (libfiu), Neo4j killed under the graph sink. Rounds
//! take turns on four lanes: Kafka → Postgres in transactions mode, in
//! progress mode, file log → Postgres under `fiu-run`, and the entity graph
//! into SQLite and Neo4j (oracle: Neo4j equal to the SQL graph tables).
//!
//! The oracle knows what was acknowledged: the workload `conductor produce`
//! acknowledged, folded once straight through per lane (the reference). Each
//! round must fold every acknowledged input and end with the reference's
//! tables, changefeed (every change once, per-key order) and DLQ. The report
//! (faults per kind, recoveries, time to recover p50/p99, lost, duplicated)
//! goes to stdout and to `FAULT_SOAK_REPORT` (JSON); the test fails after
//! writing it if anything was lost, doubled or stalled.
//!
//! Time to recover: from the moment a fault is over (the process restarted,
//! the service back) until the fold commits past where it was when the fault
//! began. Knobs: `FAULT_SOAK_EVENTS` per round (default 200000),
//! `FAULT_SOAK_SEED` (printed; the same seed draws the same schedule),
//! `FAULT_SOAK_LANES` (comma-separated subset of the four).

mod support;

use conductor_connectors::PostgresStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::fold_run::*;
use support::postgres_server::PostgresServer;
use support::service::Service;
use support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    /// `conductor run` SIGKILLed, started again at once.
    KillConductor,
    /// `pg_terminate_backend` of every client connection, three times.
    CutConnections,
    PostgresRestartFast,
    PostgresRestartImmediate,
    /// `pg_ctl stop -m immediate`, started again 5–30 s later.
    PostgresDown,
    /// The broker SIGTERMed, started again 2–10 s later.
    KafkaTerm,
    /// The broker SIGKILLed, started again 2–10 s later.
    KafkaKill,
    /// The file log's fdatasync answers EIO: the process must stop with an
    /// error; it is started again on a healthy disk.
    FsyncFails,
    /// Neo4j SIGKILLed under the graph sink, started again 1–5 s later.
    KillNeo4j,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillConductor => "kill_conductor",
            Fault::CutConnections => "postgres_connections_cut",
            Fault::PostgresRestartFast => "postgres_restart_fast",
            Fault::PostgresRestartImmediate => "postgres_restart_immediate",
            Fault::PostgresDown => "postgres_down",
            Fault::KafkaTerm => "kafka_sigterm",
            Fault::KafkaKill => "kafka_sigkill",
            Fault::FsyncFails => "file_log_fsync_eio",
            Fault::KillNeo4j => "neo4j_sigkill",
        }
    }
}

const POSTGRES_FAULTS: [Fault; 5] = [
    Fault::KillConductor,
    Fault::CutConnections,
    Fault::PostgresRestartFast,
    Fault::PostgresRestartImmediate,
    Fault::PostgresDown,
];

/// One way of running the topology, with its straight-run reference.
struct Lane {
    name: String,
    log: LogBackend,
    input: String,
    faults: Vec<Fault>,
    /// `conductor run` under `fiu-run -x` (so fsyncs can be failed).
    under_fiu: bool,
    reference: Outcome,
    total: i64,
}

/// What one round ended with, against its lane's reference.
#[derive(Default)]
struct Tally {
    faults: BTreeMap<&'static str, usize>,
    recoveries: usize,
    recovery_ms: Vec<u128>,
    stalls: Vec<String>,
    lost: usize,
    duplicated: usize,
    rounds: usize,
    rounds_equal: usize,
    inputs_folded: i64,
    differences: Vec<String>,
}

struct Services {
    pg: PostgresServer,
    kafka: Option<Service>,
    neo4j: Option<Service>,
}

fn schema_base(pg: &PostgresServer) -> Store {
    Store::Postgres { url: pg.url() }
}

/// A run of `lane` in `dir`, its Postgres schema made and (file log) its
/// input produced.
async fn new_run(
    dir: &Path,
    lane_log: &LogBackend,
    input: &str,
    base: &Store,
    workload: &Path,
) -> Run {
    if let Store::Postgres { url } = base {
        PostgresStore::connect(url, Some(&schema_of(dir)))
            .await
            .unwrap();
    }
    let run = Run::new(
        dir.to_path_buf(),
        base.for_dir(dir),
        lane_log.clone(),
        input,
    )
    .with_max_batch(500);
    if matches!(lane_log, LogBackend::File) {
        run.prepare(workload);
    }
    run
}

async fn prepare_lane(
    name: &str,
    dir: &Path,
    services: &Services,
    workload: &Path,
    events: usize,
) -> Lane {
    let base = schema_base(&services.pg);
    let (log, input, mut faults, under_fiu) = match name {
        "file" => (
            LogBackend::File,
            String::new(),
            vec![Fault::FsyncFails],
            true,
        ),
        "kafka-progress" | "kafka-transactions" => {
            let bootstrap =
                services.kafka.as_ref().expect("a broker").env["KAFKA_BOOTSTRAP"].clone();
            let exactly_once = if name == "kafka-progress" {
                "progress"
            } else {
                "transactions"
            };
            let log = LogBackend::Kafka {
                bootstrap,
                exactly_once,
            };
            (
                log,
                format!("soak.{exactly_once}.entities"),
                vec![Fault::KafkaTerm, Fault::KafkaKill],
                false,
            )
        }
        other => panic!(
            "FAULT_SOAK_LANES: no lane {other} (lanes: kafka-transactions, kafka-progress, file, neo4j)"
        ),
    };
    faults.extend(POSTGRES_FAULTS);
    let clean_dir = dir.join(format!("{}_clean", name.replace('-', "_")));
    let clean = new_run(&clean_dir, &log, &input, &base, workload).await;
    if !matches!(log, LogBackend::File) {
        clean.prepare(workload); // the input topic every round of the lane reads
    }
    let straight = clean
        .run_command()
        .arg("--exit-when-idle")
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        straight.status.success(),
        "{name}: the straight run failed: {}",
        String::from_utf8_lossy(&straight.stderr)
    );
    let total = clean.progress().await;
    assert_eq!(
        total as usize, events,
        "{name}: the straight run folded every input"
    );
    let reference = outcome(&clean).await;
    drop_schemas(&base, &[&clean]).await;
    eprintln!(
        "lane {name}: straight run of {total} inputs, {} changes, {} dead letters",
        reference.change_ids.len(),
        reference.dlq.len()
    );
    Lane {
        name: name.to_string(),
        log,
        input,
        faults,
        under_fiu,
        reference,
        total,
    }
}

fn spawn(run: &Run, lane: &Lane) -> ServerProcess {
    let wrapper: &[&str] = if lane.under_fiu {
        &["fiu-run", "-x"]
    } else {
        &[]
    };
    let mut cmd = run.cmd_via(wrapper);
    cmd.args(["run", "--listen", "127.0.0.1:0", "--topologies"])
        .arg(&run.topologies);
    spawn_with_address(&mut cmd).0
}

/// The stored progress, waiting while the store is away.
async fn progress(run: &Run) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(p) = run.progress_if_reachable().await {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "the store stayed unreachable for 120 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Injects `fault`; returns once it is over (the process restarted, the
/// service back), or `None` if it could not land (the fold ended first).
async fn inject(
    fault: Fault,
    services: &mut Services,
    child: &mut ServerProcess,
    run: &Run,
    lane: &Lane,
    rng: &mut StdRng,
) -> Option<()> {
    match fault {
        Fault::KillConductor => {
            let _ = Command::new("kill")
                .args(["-KILL", &child.id().to_string()])
                .status();
            let _ = child.wait();
            *child = spawn(run, lane);
        }
        Fault::CutConnections => {
            for _ in 0..3 {
                services.pg.terminate_backends();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Fault::PostgresRestartFast => services.pg.restart("fast"),
        Fault::PostgresRestartImmediate => services.pg.restart("immediate"),
        Fault::PostgresDown => {
            services.pg.stop("immediate");
            tokio::time::sleep(Duration::from_secs(rng.random_range(5..=30))).await;
            services.pg.start_again();
        }
        Fault::KillNeo4j => unreachable!("the Neo4j lane injects its own faults"),
        Fault::KafkaTerm | Fault::KafkaKill => {
            let kafka = services.kafka.as_mut().expect("a broker");
            kafka.stop(if fault == Fault::KafkaTerm {
                "TERM"
            } else {
                "KILL"
            });
            tokio::time::sleep(Duration::from_secs(rng.random_range(2..=10))).await;
            kafka.start_again();
        }
        Fault::FsyncFails => {
            let point = "name=posix/io/sync/fdatasync";
            let enabled = Command::new("fiu-ctrl")
                .args(["-c", &format!("enable {point},failinfo=5")])
                .arg(child.id().to_string())
                .status()
                .unwrap();
            assert!(enabled.success(), "fiu-ctrl could not reach conductor run");
            let deadline = Instant::now() + Duration::from_secs(60);
            let exit = loop {
                if let Some(status) = child.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let Some(exit) = exit else {
                // Nothing was written for a minute: the fold had ended.
                let _ = Command::new("fiu-ctrl")
                    .args(["-c", &format!("disable {point}")])
                    .arg(child.id().to_string())
                    .status();
                assert!(
                    progress(run).await >= lane.total,
                    "conductor run went on for 60 s after its log failed to fsync"
                );
                return None;
            };
            assert!(
                !exit.success(),
                "a failed fsync must stop conductor run with an error: {exit}"
            );
            let said = child.log();
            assert!(
                said.contains("could not fsync"),
                "the error names the call: {said}"
            );
            *child = spawn(run, lane);
        }
    }
    Some(())
}

/// How many of `a` are not in `b`, counting repeats (multisets).
fn missing(a: &[String], b: &[String]) -> usize {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for x in a {
        *counts.entry(x).or_default() += 1;
    }
    for x in b {
        *counts.entry(x).or_default() -= 1;
    }
    counts.values().filter(|n| **n > 0).sum::<i64>() as usize
}

async fn round(
    k: usize,
    lane: &Lane,
    dir: &Path,
    workload: &Path,
    services: &mut Services,
    rng: &mut StdRng,
    tally: &mut Tally,
) {
    let base = schema_base(&services.pg);
    // Topology names (made from the directory name) take `_`, not `-`.
    let run_dir = dir.join(format!("{}_r{k}", lane.name.replace('-', "_")));
    let run = new_run(&run_dir, &lane.log, &lane.input, &base, workload).await;
    let started = Instant::now();
    let mut child = spawn(&run, lane);
    let mut injected = 0;
    loop {
        // A fault every 0.2–2 s of folding: several land in every round.
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
        let mark = progress(&run).await;
        // The last tenth folds undisturbed: a fault after the end proves nothing.
        if mark >= lane.total * 9 / 10 {
            break;
        }
        let fault = lane.faults[rng.random_range(0..lane.faults.len())];
        if inject(fault, services, &mut child, &run, lane, rng)
            .await
            .is_none()
        {
            break;
        }
        injected += 1;
        *tally.faults.entry(fault.name()).or_default() += 1;
        let over = Instant::now();
        let deadline = over + Duration::from_secs(300);
        loop {
            let p = run.progress_if_reachable().await.unwrap_or(mark);
            if p > mark || p >= lane.total {
                tally.recoveries += 1;
                tally.recovery_ms.push(over.elapsed().as_millis());
                break;
            }
            if Instant::now() > deadline {
                let log = child.log();
                tally.stalls.push(format!(
                    "round {k} ({}): no progress past {mark} for 300 s after {}; its log ends:\n{}",
                    lane.name,
                    fault.name(),
                    &log[log.len().saturating_sub(3000)..]
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every acknowledged input folded and every change relayed, by itself.
    let deadline = Instant::now() + Duration::from_secs(300);
    while progress(&run).await < lane.total
        || run.changefeed_len().await < lane.reference.change_ids.len()
    {
        if Instant::now() > deadline {
            tally.stalls.push(format!(
                "round {k} ({}): at {} of {} inputs, {} of {} changes after 300 s",
                lane.name,
                progress(&run).await,
                lane.total,
                run.changefeed_len().await,
                lane.reference.change_ids.len()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_cleanly(&mut child);

    let after = outcome(&run).await;
    let reference = &lane.reference;
    let lost = missing(&reference.changes, &after.changes);
    let mut ids = after.change_ids.clone();
    ids.sort();
    ids.dedup();
    let duplicated =
        (after.change_ids.len() - ids.len()).max(missing(&after.changes, &reference.changes));
    let equal = after.digests == reference.digests
        && after.per_key == reference.per_key
        && after.dlq == reference.dlq
        && lost == 0
        && duplicated == 0;
    if !equal {
        tally.differences.push(format!(
            "round {k} ({}): tables equal {}, per-key order equal {}, DLQ equal {}, lost {lost}, duplicated {duplicated}",
            lane.name,
            after.digests == reference.digests,
            after.per_key == reference.per_key,
            after.dlq == reference.dlq
        ));
    }
    tally.lost += lost;
    tally.duplicated += duplicated;
    tally.rounds += 1;
    tally.rounds_equal += usize::from(equal);
    tally.inputs_folded += lane.total;
    drop_schemas(&base, &[&run]).await;
    let _ = std::fs::remove_dir_all(&run_dir);
    eprintln!(
        "round {k} ({}): {injected} faults, {:.0} s, {}",
        lane.name,
        started.elapsed().as_secs_f64(),
        if equal {
            "ended as the straight run"
        } else {
            "DIFFERS"
        }
    );
}

/// The topology's status as the running process reports it.
fn topology_status(addr: &str, topology: &str) -> serde_json::Value {
    let (code, body) = http_get(addr, &format!("/v1/topologies/{topology}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Inputs still to fold plus graph writes still to make (`None` before the
/// topology reports its partitions).
fn graph_backlog(status: &serde_json::Value) -> Option<u64> {
    let partitions = status["partitions"].as_array().filter(|p| !p.is_empty())?;
    let folding: u64 = partitions
        .iter()
        .map(|p| p["lag"].as_u64().unwrap_or(0))
        .sum();
    Some(folding + status["sinks"][0]["lag"].as_u64()?)
}

/// A round of the Neo4j lane: the entity graph folded into SQLite and
/// written by the graph sink to the soak's Neo4j, while Neo4j is SIGKILLed
/// (started again 1–5 s later) and `conductor run` is SIGKILLed. The oracle
/// is the SQL graph tables (exactly once themselves: the other lanes check
/// the fold): Neo4j must end equal to them, node for node, edge for edge.
/// Each round writes nodes of a label of its own.
async fn neo4j_round(
    k: usize,
    dir: &Path,
    workload: &Path,
    events: usize,
    neo4j: &mut Service,
    rng: &mut StdRng,
    tally: &mut Tally,
) {
    let config = conductor_connectors::neo4j::Neo4jConfig::new(
        neo4j.env["NEO4J_URI"].clone(),
        neo4j.env["NEO4J_USER"].clone(),
        neo4j.env["NEO4J_PASSWORD"].clone(),
    );
    // A clean Neo4j for every round. Rounds fold the same workload, so the
    // same relationship ids, and the sink matches relationships by type and
    // id whatever their ends' labels (see docs/guide/graphs-neo4j.md); and a
    // fresh data dir on a Neo4j that holds the sink's positions from an
    // earlier log would resume from those.
    let graph = conductor_connectors::neo4j::connect(&config).await.unwrap();
    loop {
        let mut rows = graph
            .execute(neo4rs::query(
                "MATCH (n) WITH n LIMIT 10000 DETACH DELETE n RETURN count(*) AS deleted",
            ))
            .await
            .unwrap();
        let deleted: i64 = match rows.next().await.unwrap() {
            Some(row) => row.get("deleted").unwrap_or(0),
            None => 0,
        };
        if deleted == 0 {
            break;
        }
    }
    let data = dir.join(format!("neo4j_r{k}"));
    let topologies = data.join("topologies");
    std::fs::create_dir_all(&topologies).unwrap();
    let (name, label, rel_type) = ("soak_graph", format!("SoakRound{k}"), "KNOWS");
    std::fs::write(
        topologies.join("graph.toml"),
        format!(
            "name = \"{name}\"\nprocessor = \"entities\"\n[sources]\ntopics = [\"ig.ingest.entities\"]\n\
             [batch]\nmax_events = 200\nlinger_ms = 5\n[processor_config]\ngraph = true\ngraph_node_label = \"{label}\"\n"
        ),
    )
    .unwrap();
    run_ok(conductor(&data).args(["topic", "create", "ig.ingest.entities", "--partitions", "3"]));
    run_ok(
        conductor(&data)
            .args(["produce", "--topic", "ig.ingest.entities"])
            .arg(workload),
    );
    let spawn = || {
        let mut cmd = conductor(&data);
        cmd.args(["--neo4j-uri", &config.uri, "--neo4j-user", &config.user])
            .env("CONDUCTOR_NEO4J_PASSWORD", &config.password)
            .args(["run", "--listen", "127.0.0.1:0", "--topologies"])
            .arg(&topologies);
        spawn_with_address(&mut cmd)
    };
    let started = Instant::now();
    let (mut child, mut addr) = spawn();
    let mut injected = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..2000))).await;
        let status = topology_status(&addr, name);
        // The last tenth is written undisturbed.
        if graph_backlog(&status).is_some_and(|b| b <= events as u64 / 10) {
            break;
        }
        let fault = if rng.random_bool(0.6) {
            Fault::KillNeo4j
        } else {
            Fault::KillConductor
        };
        let mark = match fault {
            Fault::KillNeo4j => {
                let written = status["sinks"][0]["records_written"].as_u64().unwrap_or(0);
                neo4j.stop("KILL");
                tokio::time::sleep(Duration::from_secs(rng.random_range(1..=5))).await;
                neo4j.start_again();
                written
            }
            _ => {
                let _ = Command::new("kill")
                    .args(["-KILL", &child.id().to_string()])
                    .status();
                let _ = child.wait();
                (child, addr) = spawn();
                0 // a new process counts its writes from 0
            }
        };
        injected += 1;
        *tally.faults.entry(fault.name()).or_default() += 1;
        let over = Instant::now();
        loop {
            let s = topology_status(&addr, name);
            assert_ne!(
                s["sinks"][0]["state"], "failed",
                "the graph sink gave up: {s}"
            );
            let written = s["sinks"][0]["records_written"].as_u64().unwrap_or(0);
            if written > mark || graph_backlog(&s) == Some(0) {
                tally.recoveries += 1;
                tally.recovery_ms.push(over.elapsed().as_millis());
                break;
            }
            if over.elapsed() > Duration::from_secs(300) {
                tally.stalls.push(format!(
                    "round {k} (neo4j): the graph sink wrote nothing for 300 s after {}: {s}",
                    fault.name()
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = topology_status(&addr, name);
        if graph_backlog(&s) == Some(0) && s["sinks"][0]["state"] == "running" {
            break;
        }
        if Instant::now() > deadline {
            tally
                .stalls
                .push(format!("round {k} (neo4j): did not catch up in 300 s: {s}"));
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop_cleanly(&mut child);

    let sql = conductor_connectors::neo4j::image::as_stored_in_neo4j(
        &conductor_engine::graph::GraphImage::from_rows(
            &sql_rows(&data, &topologies, "entity_graph_nodes"),
            &sql_rows(&data, &topologies, "entity_graph_edges"),
        ),
    );
    let neo = conductor_connectors::neo4j::image::read_image(&graph, &[&label], &[rel_type])
        .await
        .unwrap();
    // Lost: what the tables hold that Neo4j lacks (or holds at another
    // version); doubled: what Neo4j holds beyond them.
    let lost = sql
        .nodes
        .iter()
        .filter(|(key, v)| neo.nodes.get(*key) != Some(*v))
        .count()
        + sql
            .edges
            .iter()
            .filter(|(key, v)| neo.edges.get(*key) != Some(*v))
            .count();
    let extra = neo
        .nodes
        .keys()
        .filter(|key| !sql.nodes.contains_key(*key))
        .count()
        + neo
            .edges
            .keys()
            .filter(|key| !sql.edges.contains_key(*key))
            .count();
    let equal = neo == sql && !sql.nodes.is_empty();
    if !equal {
        tally.differences.push(format!(
            "round {k} (neo4j): Neo4j {} / SQL {}; lost {lost}, extra {extra}",
            neo.summary(),
            sql.summary()
        ));
    }
    tally.lost += lost;
    tally.duplicated += extra;
    tally.rounds += 1;
    tally.rounds_equal += usize::from(equal);
    tally.inputs_folded += events as i64;
    let _ = std::fs::remove_dir_all(&data);
    eprintln!(
        "round {k} (neo4j): {injected} faults, {:.0} s, {}",
        started.elapsed().as_secs_f64(),
        if equal {
            "Neo4j equal to the SQL graph"
        } else {
            "DIFFERS"
        }
    );
}

fn percentile(sorted: &[u128], q: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the fault soak, minutes long: soak/faults.sh runs it"]
async fn fault_soak_loses_nothing_and_doubles_nothing() {
    let minutes = env_or("FAULT_SOAK_MINUTES", 30);
    let events = env_or("FAULT_SOAK_EVENTS", 200_000);
    let seed = std::env::var("FAULT_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    let lanes_wanted = std::env::var("FAULT_SOAK_LANES")
        .unwrap_or_else(|_| "kafka-transactions,kafka-progress,file,neo4j".into());
    let lane_names: Vec<&str> = lanes_wanted.split(',').map(str::trim).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    eprintln!(
        "fault soak: {minutes} min, {events} inputs per round, lanes {lanes_wanted}, seed {seed}"
    );

    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let needs_kafka = lane_names.iter().any(|l| l.starts_with("kafka"));
    let kafka = if needs_kafka {
        let Some(kafka) = Service::kafka() else {
            return;
        };
        Some(kafka)
    } else {
        None
    };
    let neo4j = if lane_names.contains(&"neo4j") {
        let Some(neo4j) = Service::neo4j() else {
            return;
        };
        Some(neo4j)
    } else {
        None
    };
    let mut services = Services { pg, kafka, neo4j };
    let tmp = tempfile::tempdir().unwrap();
    let workload: PathBuf = tmp.path().join("workload.jsonl");
    std::fs::write(&workload, entity_workload(events)).unwrap();
    let mut lanes = Vec::new();
    for name in &lane_names {
        lanes.push(if *name == "neo4j" {
            None
        } else {
            Some(prepare_lane(name, tmp.path(), &services, &workload, events).await)
        });
    }

    let started = Instant::now();
    let mut tally = Tally::default();
    let mut k = 0;
    while started.elapsed() < Duration::from_secs(minutes as u64 * 60) && tally.stalls.is_empty() {
        match &lanes[k % lanes.len()] {
            Some(lane) => {
                round(
                    k,
                    lane,
                    tmp.path(),
                    &workload,
                    &mut services,
                    &mut rng,
                    &mut tally,
                )
                .await
            }
            None => {
                let neo4j = services.neo4j.as_mut().expect("a Neo4j");
                neo4j_round(
                    k,
                    tmp.path(),
                    &workload,
                    events,
                    neo4j,
                    &mut rng,
                    &mut tally,
                )
                .await
            }
        }
        k += 1;
    }

    let mut ms = tally.recovery_ms.clone();
    ms.sort();
    let injected: usize = tally.faults.values().sum();
    let report = serde_json::json!({
        "command": format!(
            "FAULT_SOAK_MINUTES={minutes} FAULT_SOAK_EVENTS={events} FAULT_SOAK_SEED={seed} FAULT_SOAK_LANES={lanes_wanted} soak/faults.sh"
        ),
        "minutes": (started.elapsed().as_secs_f64() / 60.0 * 10.0).round() / 10.0,
        "rounds": tally.rounds,
        "rounds_equal_to_the_straight_run": tally.rounds_equal,
        "inputs_folded": tally.inputs_folded,
        "faults_injected": injected,
        "faults_per_kind": tally.faults,
        "recoveries": tally.recoveries,
        "time_to_recover_ms": {
            "p50": percentile(&ms, 0.5),
            "p99": percentile(&ms, 0.99),
            "max": ms.last().copied().unwrap_or(0),
        },
        "lost": tally.lost,
        "duplicated": tally.duplicated,
        "stalls": tally.stalls.len(),
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    if let Ok(path) = std::env::var("FAULT_SOAK_REPORT") {
        std::fs::write(&path, format!("{text}\n")).unwrap();
    }
    assert!(
        tally.stalls.is_empty(),
        "stalled:\n{}",
        tally.stalls.join("\n\n")
    );
    assert!(
        tally.differences.is_empty(),
        "rounds that did not end as the straight run:\n{}",
        tally.differences.join("\n")
    );
    assert!(tally.rounds > 0 && injected > 0, "nothing was tested");
    assert_eq!(tally.recoveries, injected, "every fault was recovered from");
}
