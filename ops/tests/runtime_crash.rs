//! Exactly-once under crashes: `conductor run` folding ≥ 100k events is
//! SIGKILLed at random points ≥ 10 times and restarted; the final projection
//! must equal a clean run's (blake3 digest per table), the changefeed must
//! hold every change exactly once, in the same order per key, and a full
//! `conductor replay rebuild` must verify equal to it. On the embedded
//! defaults (file log + SQLite), on Postgres with the file log, and on the
//! production pair, Kafka (the Apache Kafka ops/test.sh starts) + Postgres,
//! in both exactly-once modes (progress records; Kafka transactions).
//! Sizes: `CRASH_EVENTS` (default 100000) and `CRASH_KILLS` (default 10);
//! `soak/crash.sh` runs the long version (1M events, 30 kills).

mod support;

use conductor_connectors::{PostgresStore, SqliteStore};
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::log::kafka::{KafkaConfig, KafkaLog};
use conductor_engine::log::{Log, StoredRecord};
use conductor_engine::store::{ProjectionStore, table_digest};
use conductor_processors::entities::{entities_table, relationships_table};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use support::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where a run's log lives.
#[derive(Clone)]
enum LogBackend {
    File,
    /// `exactly_once`: `progress` or `transactions` (CONDUCTOR_KAFKA_EXACTLY_ONCE).
    Kafka {
        bootstrap: String,
        exactly_once: &'static str,
    },
}

/// One run (the clean reference or the crashed one): its data dir, store,
/// log and topology. On Kafka both runs share one broker: each gets a
/// topology of its own name (so its own changefeed, DLQ and offsets), and
/// both read one input topic, produced once.
struct Run {
    dir: PathBuf,
    store: Store,
    log: LogBackend,
    topology: String,
    topologies: PathBuf,
    input: String,
}

impl Run {
    fn new(dir: PathBuf, store: Store, log: LogBackend, kafka_input: &str) -> Run {
        match &log {
            LogBackend::File => Run {
                dir,
                store,
                log,
                topology: "entities".into(),
                topologies: repo().join("topologies"),
                input: "ig.ingest.entities".into(),
            },
            LogBackend::Kafka { .. } => {
                // Unique on a broker that outlives test runs; short (see schema_of).
                let tag = format!(
                    "{}_{}",
                    dir.file_name().unwrap().to_string_lossy(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_millis()
                );
                let topology = format!("crash_{tag}");
                let input = kafka_input.to_string();
                let topologies = dir.join("topologies");
                std::fs::create_dir_all(&topologies).unwrap();
                // The shipped topology with this run's name and input.
                let shipped =
                    std::fs::read_to_string(repo().join("topologies/entities.toml")).unwrap();
                let mut config: toml::Table = toml::from_str(&shipped).unwrap();
                config.insert("name".into(), topology.clone().into());
                config["sources"]
                    .as_table_mut()
                    .unwrap()
                    .insert("topics".into(), vec![input.clone()].into());
                std::fs::write(
                    topologies.join(format!("{topology}.toml")),
                    toml::to_string(&config).unwrap(),
                )
                .unwrap();
                Run {
                    dir,
                    store,
                    log,
                    topology,
                    topologies,
                    input,
                }
            }
        }
    }

    /// A `conductor` command on this run's data dir, store and log.
    fn cmd(&self) -> std::process::Command {
        let mut c = conductor(&self.dir);
        self.store.apply(&mut c);
        if let LogBackend::Kafka {
            bootstrap,
            exactly_once,
        } = &self.log
        {
            c.env("CONDUCTOR_LOG", "kafka")
                .env("CONDUCTOR_KAFKA_BOOTSTRAP", bootstrap)
                .env("CONDUCTOR_KAFKA_EXACTLY_ONCE", exactly_once);
        }
        c
    }

    fn run_command(&self) -> std::process::Command {
        let mut c = self.cmd();
        c.args(["run", "--listen", "127.0.0.1:0", "--topologies"])
            .arg(&self.topologies);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    fn prepare(&self, workload: &Path) {
        let mut topics = vec![self.input.clone()];
        if matches!(self.log, LogBackend::File) {
            topics.push("ig.ingest.relationships".into());
        }
        for t in &topics {
            run_ok(self.cmd().args(["topic", "create", t, "--partitions", "3"]));
        }
        let out = run_ok(
            self.cmd()
                .args(["produce", "--topic", &self.input])
                .arg(workload),
        );
        assert!(out.contains("appended"), "{out}");
    }

    async fn log(&self) -> Arc<dyn Log> {
        match &self.log {
            LogBackend::File => Arc::new(
                FileLog::open_read_only(self.dir.join("log"), FileLogOptions::default()).unwrap(),
            ),
            LogBackend::Kafka { bootstrap, .. } => Arc::new(
                KafkaLog::connect(KafkaConfig::new(bootstrap.clone()))
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Sum of the stored input positions (how far the topology got).
    async fn progress(&self) -> i64 {
        let store = self.store.open(&self.dir).await;
        let p = store
            .load_offsets(&self.topology)
            .await
            .unwrap()
            .values()
            .sum();
        store.close().await;
        p
    }
}

/// Where a run's projections live: the embedded SQLite file of its data
/// dir, or a Postgres schema of its own.
#[derive(Clone)]
enum Store {
    Sqlite,
    Postgres { url: String },
}

impl Store {
    /// A Postgres store in a fresh schema per data dir, or SQLite.
    fn for_dir(&self, dir: &Path) -> Store {
        match self {
            Store::Sqlite => Store::Sqlite,
            Store::Postgres { url } => {
                let schema = schema_of(dir);
                let sep = if url.contains('?') { '&' } else { '?' };
                Store::Postgres {
                    url: format!("{url}{sep}options=-csearch_path%3D{schema}"),
                }
            }
        }
    }

    fn apply(&self, c: &mut std::process::Command) {
        if let Store::Postgres { url } = self {
            c.env("CONDUCTOR_STORE", "postgres")
                .env("CONDUCTOR_DATABASE_URL", url);
        }
    }

    async fn open(&self, dir: &Path) -> Box<dyn ProjectionStore> {
        match self {
            Store::Sqlite => Box::new(
                SqliteStore::open(&dir.join("projections.db"))
                    .await
                    .unwrap(),
            ),
            Store::Postgres { url } => Box::new(PostgresStore::connect(url, None).await.unwrap()),
        }
    }
}

/// The Postgres schema of a data dir: unique per test, since the tests of
/// this file run in parallel in one process and each drops its schemas at
/// the end (`<tempdir>/clean` and `<tempdir>/crashed`, so the temp dir's
/// name tells the tests apart).
fn schema_of(dir: &Path) -> String {
    let part = |p: &Path| -> String {
        p.file_name()
            .unwrap()
            .to_string_lossy()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    // Short: a rebuild's shadow schema is `<schema>_shadow_<topology>`,
    // and Postgres names are at most 63 bytes.
    format!("crash_{}_{}", part(dir.parent().unwrap()), part(dir))
}

struct Outcome {
    digests: Vec<String>,
    /// (tenant/key) → versions in changefeed order.
    per_key: BTreeMap<String, Vec<i64>>,
    change_ids: Vec<String>,
    /// source partition/offset, table/key, version of every change, sorted.
    changes: Vec<String>,
    dlq: Vec<String>,
}

/// Every record of `topic`, partition by partition, once its ends stopped
/// moving: in transactions mode the last commit's markers are written by the
/// coordinator after `conductor run` has exited, and until then a
/// `read_committed` reader's end (the last stable offset) lags behind.
async fn read_topic(log: &dyn Log, topic: &str) -> Vec<StoredRecord> {
    let ends = || async {
        let d = log.describe_topic(topic).await.unwrap();
        d.partitions
            .iter()
            .map(|p| p.high_watermark)
            .collect::<Vec<_>>()
    };
    let mut last = ends().await;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = ends().await;
        if now == last {
            break;
        }
        last = now;
    }
    let mut out = Vec::new();
    for p in log.describe_topic(topic).await.unwrap().partitions {
        let mut next = p.low_watermark;
        while next < p.high_watermark {
            let records = log.read(topic, p.partition, next, 5000).await.unwrap();
            let Some(last) = records.last() else { break };
            next = last.offset + 1;
            out.extend(records);
        }
    }
    out
}

async fn outcome(run: &Run) -> Outcome {
    let store = run.store.open(&run.dir).await;
    let digests = vec![
        table_digest(store.as_ref(), &entities_table())
            .await
            .unwrap(),
        table_digest(store.as_ref(), &relationships_table())
            .await
            .unwrap(),
    ];
    store.close().await;
    let log = run.log().await;
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut change_ids = Vec::new();
    let mut changes = Vec::new();
    let changefeed = format!("ig.changefeed.{}", run.topology);
    for r in read_topic(log.as_ref(), &changefeed).await {
        let v: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
        let key = format!(
            "{}/{}",
            v["table"],
            String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default())
        );
        per_key
            .entry(key.clone())
            .or_default()
            .push(v["version"].as_i64().unwrap());
        change_ids.push(v["change_id"].as_str().unwrap().to_string());
        // Change ids name the topology and its input topic, which differ
        // between the two runs on one broker: compare what they stand for.
        changes.push(format!(
            "{}/{}/{key}/{}",
            v["source"]["partition"], v["source"]["offset"], v["version"]
        ));
    }
    changes.sort();
    let mut dlq = Vec::new();
    for r in read_topic(log.as_ref(), &format!("ig.dlq.{}", run.topology)).await {
        let src =
            |k: &str| String::from_utf8_lossy(r.record.header(k).unwrap_or_default()).into_owned();
        dlq.push(format!(
            "{}/{}",
            src("ig-dlq-source-partition"),
            src("ig-dlq-source-offset")
        ));
    }
    dlq.sort();
    Outcome {
        digests,
        per_key,
        change_ids,
        changes,
        dlq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_repeatedly_and_ends_with_the_clean_projection_and_changefeed() {
    crash_scenario(Store::Sqlite, LogBackend::File).await;
}

/// The Postgres URL of the suite, or `None` (outside CI) when none answers.
async fn postgres() -> Option<String> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    if let Err(e) = PostgresStore::connect(&url, None).await {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Postgres not reachable at {url} ({e}); ops/test.sh provides one"
        );
        eprintln!("*** NOT RUN: Postgres not reachable at {url} ({e}) ***");
        return None;
    }
    Some(url)
}

/// The same on Postgres (file log): rows, outbox and offsets in one
/// Postgres transaction per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_on_postgres_and_ends_with_the_clean_projection_and_changefeed() {
    let Some(url) = postgres().await else { return };
    crash_scenario(Store::Postgres { url }, LogBackend::File).await;
}

/// The Kafka broker of the suite (ops/test.sh starts Apache Kafka and sets
/// KAFKA_BOOTSTRAP), or `None` (outside CI) when there is none.
fn kafka_bootstrap() -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "KAFKA_BOOTSTRAP is not set; ops/test.sh starts a broker and sets it"
            );
            eprintln!("*** NOT RUN: KAFKA_BOOTSTRAP is not set ***");
            None
        }
    }
}

/// The production pair: Kafka in progress mode (intent and commit records,
/// fencing, recovery of a torn relay batch; any Kafka-protocol broker) and
/// Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_on_kafka_and_postgres_and_ends_with_the_clean_projection_and_changefeed()
 {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let Some(url) = postgres().await else { return };
    let log = LogBackend::Kafka {
        bootstrap,
        exactly_once: "progress",
    };
    crash_scenario(Store::Postgres { url }, log).await;
}

/// The same in transactions mode: the relay commits each outbox batch as a
/// Kafka transaction (`transactional.id` per topology), a killed relay's open
/// transaction is aborted by the next incarnation, and the changefeed is read
/// `read_committed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_on_kafka_transactions_and_postgres_and_ends_with_the_clean_projection_and_changefeed()
 {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    assert!(
        std::env::var("KAFKA_BROKER").as_deref() != Ok("tansu"),
        "this test needs a broker with transactions; tansu has none (soak/kafka-suite.sh skips it there)"
    );
    let Some(url) = postgres().await else { return };
    let log = LogBackend::Kafka {
        bootstrap,
        exactly_once: "transactions",
    };
    crash_scenario(Store::Postgres { url }, log).await;
}

async fn crash_scenario(base: Store, log: LogBackend) {
    let events = env_or("CRASH_EVENTS", 100_000);
    let kills = env_or("CRASH_KILLS", 10);
    let tmp = tempfile::tempdir().unwrap();
    let workload = tmp.path().join("workload.jsonl");
    std::fs::write(&workload, entity_workload(events)).unwrap();
    let (clean_dir, crashed_dir) = (tmp.path().join("clean"), tmp.path().join("crashed"));
    let mode = match &log {
        LogBackend::File => "file",
        LogBackend::Kafka { exactly_once, .. } => exactly_once,
    };
    let kafka_input = format!(
        "crash.{mode}.{}_{}.entities",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let clean = Run::new(
        clean_dir.clone(),
        base.for_dir(&clean_dir),
        log.clone(),
        &kafka_input,
    );
    let crashed = Run::new(
        crashed_dir.clone(),
        base.for_dir(&crashed_dir),
        log,
        &kafka_input,
    );
    if let Store::Postgres { url } = &base {
        for dir in [&clean_dir, &crashed_dir] {
            // The schema the run's URL points at must exist before it connects.
            PostgresStore::connect(url, Some(&schema_of(dir)))
                .await
                .unwrap();
        }
    }
    clean.prepare(&workload);
    if matches!(crashed.log, LogBackend::File) {
        crashed.prepare(&workload); // its own data dir, so its own log
    }

    // The reference: one uninterrupted run.
    let status = clean
        .run_command()
        .arg("--exit-when-idle")
        .status()
        .unwrap();
    assert!(status.success(), "clean run failed");
    let total = clean.progress().await;
    assert_eq!(total as usize, events, "the clean run folded every input");

    // The crash run: SIGKILL at random points while it is folding.
    let mut seed: u64 = 0xC0FF_EE00 ^ events as u64;
    let mut mid_batch_kills = 0;
    let mut attempts = 0;
    while mid_batch_kills < kills {
        attempts += 1;
        assert!(
            attempts < kills * 4,
            "could not land {kills} kills while folding (the run finished too fast); raise CRASH_EVENTS"
        );
        // Aim each kill at a random point of the next share of what is left,
        // by progress rather than by time, so the kills land while folding
        // however fast or slow this machine is at the moment.
        let before = crashed.progress().await;
        let share = ((total - before) / (kills - mid_batch_kills + 1) as i64).max(1);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target = before + 1 + (seed % share as u64) as i64;
        // Killed on drop too: a failed assertion below mustn't leave it running.
        let mut child = ServerProcess::new(crashed.run_command().spawn().unwrap());
        let started = std::time::Instant::now();
        while crashed.progress().await < target && started.elapsed() < Duration::from_secs(180) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // And somewhere inside the batch after it.
        tokio::time::sleep(Duration::from_millis(seed % 60)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let done = crashed.progress().await;
        eprintln!("kill {attempts}: {done}/{total} inputs committed");
        if done < total {
            mid_batch_kills += 1;
        } else {
            break;
        }
    }
    assert!(
        mid_batch_kills >= kills,
        "only {mid_batch_kills} kills landed while folding"
    );
    let status = crashed
        .run_command()
        .arg("--exit-when-idle")
        .status()
        .unwrap();
    assert!(status.success(), "final run after the kills failed");

    let (a, b) = (outcome(&clean).await, outcome(&crashed).await);
    assert_eq!(
        a.digests, b.digests,
        "projection after crashes differs from the clean run"
    );
    let mut ids = b.change_ids.clone();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "a change event was delivered twice");
    assert_eq!(
        b.changes, a.changes,
        "changefeed after crashes is not the clean run's, exactly once"
    );
    assert_eq!(a.per_key, b.per_key, "per-key order of changes differs");
    assert_eq!(a.dlq, b.dlq, "DLQ differs (each bad record exactly once)");
    assert!(!a.dlq.is_empty() && !a.change_ids.is_empty());

    // A full rebuild from the log equals the projection built through the crashes.
    let rebuilt = run_ok(
        crashed
            .cmd()
            .args([
                "replay",
                "rebuild",
                "--topology",
                &crashed.topology,
                "--topologies",
            ])
            .arg(&crashed.topologies),
    );
    assert!(rebuilt.contains(&format!("{events} records")), "{rebuilt}");
    let verified = run_ok(
        crashed
            .cmd()
            .args([
                "replay",
                "verify",
                "--topology",
                &crashed.topology,
                "--topologies",
            ])
            .arg(&crashed.topologies),
    );
    assert!(
        verified.matches("EQUAL").count() == 2 && !verified.contains("DIFFERENT"),
        "{verified}"
    );
    eprintln!(
        "{mid_batch_kills} kills while folding; {} changes, {} dead letters, digests {:?}",
        a.change_ids.len(),
        a.dlq.len(),
        a.digests
    );
    if let Store::Postgres { url } = &base {
        for run in [&clean, &crashed] {
            let schema = schema_of(&run.dir);
            for s in [
                schema.clone(),
                format!("{schema}_shadow_{}", run.topology),
                format!("{schema}_previous_{}", run.topology),
            ] {
                if let Ok(store) = PostgresStore::connect(url, Some(&s)).await {
                    let _ = store.drop_schema().await;
                }
            }
        }
    }
}
