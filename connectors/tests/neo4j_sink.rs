//! The graph sink against a real Neo4j 5 (the one `ops/test.sh` starts):
//! after a fold, after a replayed batch and after SIGKILLs of the sink
//! mid-batch, the graph in Neo4j equals the SQL graph tables node for node
//! (stubs included) and relationship for relationship.
//!
//! The crash test's child is this same test binary, re-run with
//! `--ignored --exact neo4j_sink_crash_child`.
mod neo4j_support;

use conductor_connectors::SqliteStore;
use conductor_connectors::neo4j::image::{as_stored_in_neo4j, read_image};
use conductor_connectors::neo4j::{self, Neo4jConfig, Neo4jGraphSink};
use conductor_engine::graph::GraphImage;
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::log::{Log, StoredRecord};
use conductor_engine::runtime::driver::TopologyTestDriver;
use conductor_engine::runtime::worker::ensure_topic;
use conductor_engine::runtime::{
    SinkError, SinkRunner, SinkState, StatusHandle, TopicSink, Topology, WriteOutcome,
};
use conductor_engine::store::ProjectionStore;
use conductor_engine::testing::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const TOPIC: &str = "ig.ingest.entities";

/// The labels and relationship types [`GraphTestProcessor`] with `prefix` writes.
fn names(prefix: &str) -> (Vec<String>, Vec<String>) {
    (
        vec![format!("{prefix}Person"), format!("{prefix}Org")],
        vec![format!("{prefix}KNOWS"), format!("{prefix}WORKS_WITH")],
    )
}

async fn neo4j_image(config: &Neo4jConfig, prefix: &str) -> GraphImage {
    let graph = neo4j::connect(config).await.unwrap();
    let (labels, types) = names(prefix);
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let types: Vec<&str> = types.iter().map(String::as_str).collect();
    read_image(&graph, &labels, &types).await.unwrap()
}

async fn sql_image(store: &dyn ProjectionStore) -> GraphImage {
    let image = GraphImage::from_rows(
        &store.dump_table(&TEST_GRAPH.nodes()).await.unwrap(),
        &store.dump_table(&TEST_GRAPH.edges()).await.unwrap(),
    );
    as_stored_in_neo4j(&image)
}

/// Asserts the two graphs are equal, naming the first difference.
fn assert_same_graph(neo: &GraphImage, sql: &GraphImage, when: &str) {
    assert!(
        !sql.nodes.is_empty() && !sql.edges.is_empty(),
        "{when}: an empty graph proves nothing"
    );
    let first_diff = |a: &dyn Fn(&GraphImage) -> Vec<String>| {
        let (x, y) = (a(neo), a(sql));
        x.iter()
            .zip(&y)
            .find(|(p, q)| p != q)
            .map(|(p, q)| format!("neo4j {p} / sql {q}"))
            .unwrap_or_else(|| format!("neo4j has {}, sql {}", x.len(), y.len()))
    };
    assert!(
        neo.nodes == sql.nodes,
        "{when}: nodes differ: {}",
        first_diff(&|g| g.nodes.iter().map(|n| format!("{n:?}")).collect())
    );
    assert!(
        neo.stubs == sql.stubs,
        "{when}: stubs differ: {}",
        first_diff(&|g| g.stubs.iter().map(|n| format!("{n:?}")).collect())
    );
    assert!(
        neo.edges == sql.edges,
        "{when}: relationships differ: {}",
        first_diff(&|g| g.edges.iter().map(|n| format!("{n:?}")).collect())
    );
}

fn runner(
    log: Arc<dyn Log>,
    config: &Neo4jConfig,
    topology: &str,
    max_records: usize,
) -> SinkRunner {
    let sink: Box<dyn TopicSink> = Box::new(Neo4jGraphSink::new(config.clone(), topology));
    let mut r = SinkRunner::new(
        topology,
        &conductor_engine::graph::graph_topic(topology),
        log,
        sink,
        StatusHandle::new(topology, "graph_test"),
    );
    r.max_records = max_records;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_equals_the_sql_graph_after_a_fold_and_after_replayed_batches() {
    let Some(config) = neo4j_support::config() else {
        return;
    };
    let prefix = neo4j_support::unique_label("G");
    let topology = prefix.to_lowercase();
    let events = graph_events(120, 42);
    let (first, second) = events.split_at(events.len() / 2);
    let mut driver = TopologyTestDriver::new(
        graph_topology(&topology, TOPIC, 23),
        Box::new(GraphTestProcessor {
            prefix: prefix.clone(),
        }),
    )
    .await
    .unwrap();
    for e in first {
        driver.pipe_json(TOPIC, e).await;
    }
    driver.run_until_idle().await.unwrap();
    let log: Arc<dyn Log> = Arc::new(driver.log.clone());
    let mut sink = runner(log.clone(), &config, &topology, 37);
    let written = assert_sink_telemetry(&mut sink).await;
    assert!(written > 0);
    assert_same_graph(
        &neo4j_image(&config, &prefix).await,
        &sql_image(&driver.store).await,
        "after the first fold",
    );

    // More history on top: the sink picks up where it stopped.
    for e in second {
        driver.pipe_json(TOPIC, e).await;
    }
    driver.run_until_idle().await.unwrap();
    sink.run_until_idle().await.unwrap();
    let expected = sql_image(&driver.store).await;
    let after_fold = neo4j_image(&config, &prefix).await;
    assert_same_graph(&after_fold, &expected, "after the second fold");

    // A batch applied again (its records, positions as stored) changes nothing.
    let graph_topic = conductor_engine::graph::graph_topic(&topology);
    let mut raw = Neo4jGraphSink::new(config.clone(), &topology);
    let stored = raw.load_positions(&graph_topic).await.unwrap();
    let highs: BTreeMap<i32, i64> = {
        let d = log.describe_topic(&graph_topic).await.unwrap();
        d.partitions
            .iter()
            .map(|p| (p.partition, p.high_watermark))
            .collect()
    };
    assert_eq!(
        stored, highs,
        "the sink's position in Neo4j is the topic's end"
    );
    for partition in 0..3 {
        let batch = log.read(&graph_topic, partition, 5, 40).await.unwrap();
        raw.write(&graph_topic, &batch, &stored).await.unwrap();
    }
    assert_same_graph(
        &neo4j_image(&config, &prefix).await,
        &after_fold,
        "after a replayed batch",
    );

    // The whole topic again from offset 0 (positions removed by hand).
    let graph = neo4j::connect(&config).await.unwrap();
    graph
        .run(
            neo4rs::query("MATCH (p:ConductorPosition {sink: $sink}) DELETE p")
                .param("sink", topology.as_str()),
        )
        .await
        .unwrap();
    let mut again = runner(log.clone(), &config, &topology, 500);
    let replayed = again.run_until_idle().await.unwrap();
    assert_eq!(
        replayed as i64,
        highs.values().sum::<i64>(),
        "replayed the whole topic"
    );
    assert_same_graph(
        &neo4j_image(&config, &prefix).await,
        &after_fold,
        "after a replay of the whole topic",
    );
}

#[tokio::test]
async fn a_sink_whose_target_is_down_waits_and_says_on_what() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = Neo4jConfig::new(
        format!("bolt://127.0.0.1:{port}"),
        "neo4j",
        "secret-password",
    );
    config.connect_timeout_ms = 500;
    let log = conductor_engine::log::memory::MemoryLog::new();
    ensure_topic(&log, "ig.graph.down", 1).await.unwrap();
    let status = StatusHandle::new("down", "graph_test");
    let sink = SinkRunner::new(
        "down",
        "ig.graph.down",
        Arc::new(log),
        Box::new(Neo4jGraphSink::new(config, "down")),
        status.clone(),
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sink.run(rx));
    let mut waited = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = status.snapshot().sinks[0].clone();
        if s.state == SinkState::Waiting {
            waited = Some(s);
            break;
        }
    }
    let s = waited.expect("the sink reports it is waiting");
    assert_eq!(
        s.waiting_on.as_deref(),
        Some(format!("neo4j bolt://127.0.0.1:{port}").as_str())
    );
    assert!(!s.error.unwrap_or_default().contains("secret-password"));
    stop.send(true).unwrap();
    task.await
        .unwrap()
        .expect("a sink stopped while waiting ends cleanly");
}

const DIR_ENV: &str = "CONDUCTOR_NEO4J_CRASH_DIR";
const TOPOLOGY_ENV: &str = "CONDUCTOR_NEO4J_CRASH_TOPOLOGY";

/// The Neo4j sink, saying on stdout when each write starts and ends, so the
/// parent can kill the child inside a write and tell that it did.
struct Announced(Neo4jGraphSink);

#[async_trait::async_trait]
impl TopicSink for Announced {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn target(&self) -> String {
        self.0.target()
    }
    async fn load_positions(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>, SinkError> {
        self.0.load_positions(topic).await
    }
    async fn write(
        &mut self,
        topic: &str,
        records: &[StoredRecord],
        positions: &BTreeMap<i32, i64>,
    ) -> Result<WriteOutcome, SinkError> {
        println!("WRITE");
        let out = self.0.write(topic, records, positions).await;
        println!("WROTE");
        out
    }
}

/// The child: follows the graph topic of the file log in DIR into Neo4j in
/// small batches, announcing each write, then prints `DONE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the crash test's child process; run by neo4j_sink_loses_nothing_and_repeats_nothing_after_sigkills"]
async fn neo4j_sink_crash_child() {
    let dir = std::path::PathBuf::from(std::env::var(DIR_ENV).expect(DIR_ENV));
    let topology = std::env::var(TOPOLOGY_ENV).expect(TOPOLOGY_ENV);
    let config = neo4j_support::config().expect("Neo4j");
    let log: Arc<dyn Log> =
        Arc::new(FileLog::open_read_only(dir.join("log"), FileLogOptions::default()).unwrap());
    let sink = Announced(Neo4jGraphSink::new(config, &topology));
    let mut runner = SinkRunner::new(
        &topology,
        &conductor_engine::graph::graph_topic(&topology),
        log,
        Box::new(sink),
        StatusHandle::new(&topology, "graph_test"),
    );
    runner.max_records = 25;
    while runner.step().await.unwrap() > 0 {}
    println!("DONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_sink_loses_nothing_and_repeats_nothing_after_sigkills() {
    let Some(config) = neo4j_support::config() else {
        return;
    };
    let prefix = neo4j_support::unique_label("K");
    let topology = prefix.to_lowercase();
    let dir = tempfile::tempdir().unwrap();
    // The fold, into a file log and SQLite, in this process.
    let store = Arc::new(
        SqliteStore::open(&dir.path().join("store.db"))
            .await
            .unwrap(),
    );
    {
        let log: Arc<dyn Log> =
            Arc::new(FileLog::open(dir.path().join("log"), FileLogOptions::default()).unwrap());
        ensure_topic(log.as_ref(), TOPIC, 3).await.unwrap();
        for e in graph_events(200, 9) {
            pipe_json(log.as_ref(), TOPIC, &e).await;
        }
        let (mut worker, mut relay) = Topology::prepare(
            graph_topology(&topology, TOPIC, 50),
            Box::new(GraphTestProcessor {
                prefix: prefix.clone(),
            }),
            log,
            store.clone(),
        )
        .await
        .unwrap();
        while worker.step().await.unwrap().records > 0 {}
        worker.drain().await.unwrap();
        while relay.step().await.unwrap() > 0 {}
    }

    let exe = std::env::current_exe().unwrap();
    // Runs a child; with `kill`, SIGKILLs it `delay_ms` after the start of
    // its `writes`th write. Returns whether it ran to the end and whether
    // the kill landed inside a write (before the write announced its end).
    let run_child = |kill: Option<(usize, u64)>| {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "neo4j_sink_crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(DIR_ENV, dir.path())
            .env(TOPOLOGY_ENV, &topology)
            .env("NEO4J_URI", &config.uri)
            .env("NEO4J_USER", &config.user)
            .env("NEO4J_PASSWORD", &config.password)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .map_while(Result::ok);
        let mut writes = 0;
        let mut done = false;
        let mut mid_write = false;
        for line in lines.by_ref() {
            done |= line == "DONE";
            if line != "WRITE" {
                continue;
            }
            writes += 1;
            if let Some((k, delay_ms)) = kill
                && writes == k
            {
                std::thread::sleep(Duration::from_millis(delay_ms));
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        if kill.is_some() {
            // Whatever the child printed before it died: did the write end?
            mid_write = !lines.any(|l| l == "WROTE");
        }
        let _ = child.wait();
        (done, mid_write)
    };
    let mut mid_writes = 0;
    let kills = [
        (3, 0),
        (5, 4),
        (2, 9),
        (7, 2),
        (4, 14),
        (6, 6),
        (3, 20),
        (5, 1),
    ];
    for kill in kills {
        let (done, mid_write) = run_child(Some(kill));
        assert!(
            !done,
            "the child finished before its kill: give it more to do"
        );
        mid_writes += mid_write as usize;
    }
    let (done, _) = run_child(None);
    assert!(done, "the last child ran to the end");
    eprintln!(
        "{} of {} kills landed inside a Neo4j write",
        mid_writes,
        kills.len()
    );
    assert!(
        mid_writes >= kills.len() / 2,
        "only {mid_writes} kills landed inside a write: the test would not see a torn batch"
    );
    let sql = sql_image(store.as_ref()).await;
    let neo = neo4j_image(&config, &prefix).await;
    assert_same_graph(&neo, &sql, "after SIGKILLs of the sink inside its writes");
    let graph_topic = conductor_engine::graph::graph_topic(&topology);
    let stored = Neo4jGraphSink::new(config.clone(), &topology)
        .load_positions(&graph_topic)
        .await
        .unwrap();
    let log = FileLog::open_read_only(dir.path().join("log"), FileLogOptions::default()).unwrap();
    let d = log.describe_topic(&graph_topic).await.unwrap();
    let highs: BTreeMap<i32, i64> = d
        .partitions
        .iter()
        .map(|p| (p.partition, p.high_watermark))
        .collect();
    assert_eq!(stored, highs, "the position in Neo4j is the topic's end");
}
