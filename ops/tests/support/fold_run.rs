//! Runs of the `entities` topology for the exactly-once tests (crashes,
//! faults): a clean reference run and a disturbed one on the same input,
//! each with its own data dir, store (SQLite, or a Postgres schema of its
//! own) and log (the file log, or topics of its own on a shared Kafka), and
//! what they ended with — table digests, the changefeed, the DLQ — to
//! compare.

use super::*;
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

/// Where a run's log lives.
#[derive(Clone)]
pub enum LogBackend {
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
pub struct Run {
    pub dir: PathBuf,
    pub store: Store,
    pub log: LogBackend,
    pub topology: String,
    pub topologies: PathBuf,
    pub input: String,
}

impl Run {
    pub fn new(dir: PathBuf, store: Store, log: LogBackend, kafka_input: &str) -> Run {
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

    /// The run with batches of at most `max_events` (the shipped topology
    /// closes a batch at 5,000): many commits, so a fault lands inside one,
    /// and a fold that lasts long enough to be disturbed several times.
    pub fn with_max_batch(mut self, max_events: usize) -> Run {
        let source = self.topologies.join(format!(
            "{}.toml",
            if matches!(self.log, LogBackend::File) {
                "entities"
            } else {
                self.topology.as_str()
            }
        ));
        let mut config: toml::Table =
            toml::from_str(&std::fs::read_to_string(source).unwrap()).unwrap();
        config["batch"]
            .as_table_mut()
            .unwrap()
            .insert("max_events".into(), (max_events as i64).into());
        let topologies = self.dir.join("topologies.small-batches");
        std::fs::create_dir_all(&topologies).unwrap();
        std::fs::write(
            topologies.join(format!("{}.toml", self.topology)),
            toml::to_string(&config).unwrap(),
        )
        .unwrap();
        self.topologies = topologies;
        self
    }

    /// A `conductor` command on this run's data dir, store and log.
    pub fn cmd(&self) -> std::process::Command {
        self.cmd_via(&[])
    }

    /// [`Self::cmd`] run by `wrapper` (see [`conductor_via`]).
    pub fn cmd_via(&self, wrapper: &[&str]) -> std::process::Command {
        let mut c = conductor_via(wrapper, &self.dir);
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

    pub fn run_command(&self) -> std::process::Command {
        let mut c = self.cmd();
        c.args(["run", "--listen", "127.0.0.1:0", "--topologies"])
            .arg(&self.topologies);
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    pub fn prepare(&self, workload: &Path) {
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

    pub async fn log(&self) -> Arc<dyn Log> {
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
    pub async fn progress(&self) -> i64 {
        self.progress_if_reachable()
            .await
            .unwrap_or_else(|e| panic!("reading the progress of {}: {e}", self.topology))
    }

    /// [`Self::progress`], or why the store can't say (it is down).
    pub async fn progress_if_reachable(&self) -> Result<i64, String> {
        let store = self.store.try_open(&self.dir).await?;
        let p = store.load_offsets(&self.topology).await;
        store.close().await;
        Ok(p.map_err(|e| e.to_string())?.values().sum())
    }

    /// `conductor run` on this run, serving on a free port: the child (killed
    /// on drop) and its address.
    pub fn spawn_serving(&self) -> (ServerProcess, String) {
        let mut c = self.cmd();
        c.args(["run", "--listen", "127.0.0.1:0", "--topologies"])
            .arg(&self.topologies);
        spawn_with_address(&mut c)
    }

    /// Change events on the run's changefeed now (committed ones, on Kafka
    /// in transactions mode).
    pub async fn changefeed_len(&self) -> usize {
        let log = self.log().await;
        let changefeed = format!("ig.changefeed.{}", self.topology);
        let Ok(d) = log.describe_topic(&changefeed).await else {
            return 0;
        };
        let mut n = 0;
        for p in d.partitions {
            let mut next = p.low_watermark;
            while next < p.high_watermark {
                let Ok(records) = log.read(&changefeed, p.partition, next, 5000).await else {
                    break;
                };
                let Some(last) = records.last() else { break };
                next = last.offset + 1;
                n += records.len();
            }
        }
        n
    }
}

/// Where a run's projections live: the embedded SQLite file of its data
/// dir, an SQLite file elsewhere (another disk), or a Postgres schema of its own.
#[derive(Clone)]
pub enum Store {
    Sqlite,
    SqliteFile(PathBuf),
    Postgres { url: String },
}

impl Store {
    /// A Postgres store in a fresh schema per data dir, or SQLite.
    pub fn for_dir(&self, dir: &Path) -> Store {
        match self {
            Store::Sqlite => Store::Sqlite,
            Store::SqliteFile(path) => Store::SqliteFile(path.clone()),
            Store::Postgres { url } => {
                let schema = schema_of(dir);
                let sep = if url.contains('?') { '&' } else { '?' };
                Store::Postgres {
                    url: format!("{url}{sep}options=-csearch_path%3D{schema}"),
                }
            }
        }
    }

    pub fn apply(&self, c: &mut std::process::Command) {
        match self {
            Store::Sqlite => {}
            Store::SqliteFile(path) => {
                c.env("CONDUCTOR_STORE", "sqlite").env(
                    "CONDUCTOR_DATABASE_URL",
                    format!("sqlite://{}", path.display()),
                );
            }
            Store::Postgres { url } => {
                c.env("CONDUCTOR_STORE", "postgres")
                    .env("CONDUCTOR_DATABASE_URL", url);
            }
        }
    }

    pub async fn open(&self, dir: &Path) -> Box<dyn ProjectionStore> {
        self.try_open(dir).await.unwrap()
    }

    pub async fn try_open(&self, dir: &Path) -> Result<Box<dyn ProjectionStore>, String> {
        Ok(match self {
            Store::Sqlite => Box::new(
                SqliteStore::open(&dir.join("projections.db"))
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            Store::SqliteFile(path) => {
                Box::new(SqliteStore::open(path).await.map_err(|e| e.to_string())?)
            }
            Store::Postgres { url } => Box::new(
                PostgresStore::connect(url, None)
                    .await
                    .map_err(|e| e.to_string())?,
            ),
        })
    }
}

/// The Postgres schema of a data dir: unique per test, since the tests of
/// this file run in parallel in one process and each drops its schemas at
/// the end (`<tempdir>/clean` and `<tempdir>/crashed`, so the temp dir's
/// name tells the tests apart).
pub fn schema_of(dir: &Path) -> String {
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

pub struct Outcome {
    pub digests: Vec<String>,
    /// (tenant/key) → versions in changefeed order.
    pub per_key: BTreeMap<String, Vec<i64>>,
    pub change_ids: Vec<String>,
    /// source partition/offset, table/key, version of every change, sorted.
    pub changes: Vec<String>,
    pub dlq: Vec<String>,
}

/// Every record of `topic`, partition by partition, once its ends stopped
/// moving: in transactions mode the last commit's markers are written by the
/// coordinator after `conductor run` has exited, and until then a
/// `read_committed` reader's end (the last stable offset) lags behind.
pub async fn read_topic(log: &dyn Log, topic: &str) -> Vec<StoredRecord> {
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

pub async fn outcome(run: &Run) -> Outcome {
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

/// Asserts that the disturbed run `b` ended exactly where the clean run `a`
/// did: the same tables, every change once in the same order per key, every
/// dead letter once. `what` says what disturbed it, for the messages.
pub fn assert_same_outcome(a: &Outcome, b: &Outcome, what: &str) {
    assert_eq!(
        a.digests, b.digests,
        "projection {what} differs from the clean run"
    );
    let mut ids = b.change_ids.clone();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "a change event was delivered twice");
    assert_eq!(
        b.changes, a.changes,
        "changefeed {what} is not the clean run's, exactly once"
    );
    assert_eq!(a.per_key, b.per_key, "per-key order of changes differs");
    assert_eq!(a.dlq, b.dlq, "DLQ differs (each bad record exactly once)");
    assert!(!a.dlq.is_empty() && !a.change_ids.is_empty());
}

/// The Postgres URL of the suite, or `None` (outside CI) when none answers.
pub async fn postgres() -> Option<String> {
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

/// The Kafka broker of the suite (ops/test.sh starts Apache Kafka and sets
/// KAFKA_BOOTSTRAP), or `None` (outside CI) when there is none.
pub fn kafka_bootstrap() -> Option<String> {
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

/// Drops the Postgres schemas of `runs` (live, shadow, previous).
pub async fn drop_schemas(base: &Store, runs: &[&Run]) {
    if let Store::Postgres { url } = base {
        for run in runs {
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

impl Run {
    /// Waits until the run has folded `target` inputs; the store may be away
    /// meanwhile (a fault test), then it just waits on.
    pub async fn wait_for_progress(&self, target: i64, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self
                .progress_if_reachable()
                .await
                .is_ok_and(|p| p >= target)
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not reach {target} inputs within {within:?} (at {:?})",
                self.topology,
                self.progress_if_reachable().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The topology's status as the running process at `addr` reports it.
    pub fn status(&self, addr: &str) -> serde_json::Value {
        let (code, body) = http_get(addr, &format!("/v1/topologies/{}", self.topology));
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// The two runs of a fault test on one workload: `clean`, already folded
/// straight through (its outcome is `reference`), and `faulted`, prepared
/// but not started. Both fold in batches of 500, so that faults land inside
/// commits and the fold lasts long enough to be disturbed several times.
pub struct FaultPair {
    pub clean: Run,
    pub faulted: Run,
    /// Inputs to fold.
    pub total: i64,
    pub reference: Outcome,
    /// The stores as given (before a schema per run), to clean up.
    bases: [Store; 2],
}

impl FaultPair {
    /// `events` of [`entity_workload`] under `dir`; the runs' stores are
    /// `clean` and `faulted` (a Postgres base gets a schema per run, made
    /// here); on Kafka both read one `input` topic.
    pub async fn prepare(
        dir: &Path,
        events: usize,
        clean: Store,
        faulted: Store,
        log: LogBackend,
        input: &str,
    ) -> FaultPair {
        let workload = dir.join("workload.jsonl");
        std::fs::write(&workload, entity_workload(events)).unwrap();
        let bases = [clean.clone(), faulted.clone()];
        let mut runs = Vec::new();
        for (name, store) in [("clean", clean), ("faulted", faulted)] {
            let run_dir = dir.join(name);
            if let Store::Postgres { url } = &store {
                PostgresStore::connect(url, Some(&schema_of(&run_dir)))
                    .await
                    .unwrap();
            }
            let store = store.for_dir(&run_dir);
            runs.push(Run::new(run_dir, store, log.clone(), input).with_max_batch(500));
        }
        let faulted = runs.pop().unwrap();
        let clean = runs.pop().unwrap();
        clean.prepare(&workload);
        if matches!(log, LogBackend::File) {
            faulted.prepare(&workload); // its own data dir, so its own log
        }
        let straight = clean
            .run_command()
            .arg("--exit-when-idle")
            .status()
            .unwrap();
        assert!(straight.success(), "the straight run failed");
        let total = clean.progress().await;
        assert_eq!(
            total as usize, events,
            "the straight run folded every input"
        );
        let reference = outcome(&clean).await;
        FaultPair {
            clean,
            faulted,
            total,
            reference,
            bases,
        }
    }

    /// An input count at `share` of the total.
    pub fn at(&self, share: f64) -> i64 {
        (self.total as f64 * share) as i64
    }

    /// Waits until the faulted run's changefeed holds every change of the
    /// straight run (it relayed everything, by itself).
    pub async fn wait_for_changefeed(&self, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        let want = self.reference.change_ids.len();
        loop {
            let got = self.faulted.changefeed_len().await;
            if got >= want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the relay did not catch up: {got} of {want} changes relayed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asserts the faulted run ended exactly where the straight run did, and
    /// drops their Postgres schemas.
    pub async fn assert_same_end(&self, what: &str) -> Outcome {
        let after = outcome(&self.faulted).await;
        assert_same_outcome(&self.reference, &after, what);
        for (run, base) in [
            (&self.clean, &self.bases[0]),
            (&self.faulted, &self.bases[1]),
        ] {
            drop_schemas(base, &[run]).await;
        }
        after
    }
}

/// Sends SIGTERM to `child` and asserts it stops cleanly.
pub fn stop_cleanly(child: &mut ServerProcess) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "conductor run did not stop cleanly: {exit}");
}
