//! Finding (or starting) a Kafka-protocol broker for the Kafka backend tests.
//!
//! * `KAFKA_BOOTSTRAP` set: that broker must answer, or the test fails.
//!   `KAFKA_BROKER=tansu` says it is tansu, which has no transactions (the
//!   transactions-mode tests then check that the refusal is clear); any other
//!   value or none means a broker with transactions (Apache Kafka, Redpanda).
//! * unset: a throwaway Apache Kafka is started once per test binary with
//!   `ops/start-kafka.sh` (Maven Central; storage in a temporary directory, a
//!   free loopback port) and stopped by a watchdog when the test binary exits.
//! * that fails: under `CI=true` the test fails with the reason; otherwise it
//!   prints a loud notice and returns without testing anything.
#![allow(dead_code)]

pub mod eos;

use conductor_engine::log::kafka::{KafkaConfig, KafkaLog};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Where the tests found a broker, or why not.
enum Broker {
    Ready(String),
    Missing(String),
}

static BROKER: OnceLock<Broker> = OnceLock::new();

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Starts Apache Kafka with ops/start-kafka.sh; a watchdog stops it when this process exits.
fn start_kafka() -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!(
        "conductor-kafka-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let out = Command::new(repo_root().join("ops/start-kafka.sh"))
        .arg(&dir)
        .output()
        .map_err(|e| format!("running ops/start-kafka.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ops/start-kafka.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let vars: HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (Some(bootstrap), Some(pid)) = (vars.get("KAFKA_BOOTSTRAP"), vars.get("KAFKA_PID")) else {
        return Err(format!(
            "ops/start-kafka.sh printed no KAFKA_BOOTSTRAP / KAFKA_PID: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    };
    // Stop the broker (and remove its data) when the test binary is gone.
    let watchdog = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill -9 {pid} 2>/dev/null; sleep 1; rm -rf '{dir}'",
        parent = std::process::id(),
        dir = dir.display()
    );
    Command::new("bash")
        .arg("-c")
        .arg(watchdog)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the Kafka watchdog: {e}"))?;
    eprintln!(
        "started Apache Kafka (pid {pid}) on {bootstrap}, data in {}",
        dir.display()
    );
    Ok(bootstrap.clone())
}

fn broker() -> &'static Broker {
    BROKER.get_or_init(|| match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => Broker::Ready(b),
        _ => match start_kafka() {
            Ok(b) => Broker::Ready(b),
            Err(why) => Broker::Missing(why),
        },
    })
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The bootstrap address of the test broker, or `None` (after a loud notice)
/// when there is none and we are not in CI.
pub fn bootstrap() -> Option<String> {
    match broker() {
        Broker::Ready(b) => Some(b.clone()),
        Broker::Missing(why) => {
            if in_ci() {
                panic!("CI=true but no Kafka-protocol broker for the Kafka log tests: {why}");
            }
            eprintln!(
                "\n==============================================================\n\
                 SKIPPED: Kafka log test not run: {why}.\n\
                 Set KAFKA_BOOTSTRAP=host:port or install Java 17 and Maven (ops/start-kafka.sh).\n\
                 ==============================================================\n"
            );
            None
        }
    }
}

/// Whether the test broker has Kafka transactions: every broker but tansu
/// (`KAFKA_BROKER=tansu`), whose `EndTxn` is refused.
pub fn has_transactions() -> bool {
    std::env::var("KAFKA_BROKER").map_or(true, |b| b.trim() != "tansu")
}

/// A connected `KafkaLog` with `config` adjusted by `tune`, or `None` (skip).
pub async fn connect_with(tune: impl FnOnce(KafkaConfig) -> KafkaConfig) -> Option<KafkaLog> {
    let bootstrap = bootstrap()?;
    let config = tune(KafkaConfig::new(bootstrap.clone()));
    match KafkaLog::connect(config).await {
        Ok(log) => Some(log),
        Err(e) => panic!("the Kafka broker at {bootstrap} does not answer: {e}"),
    }
}

/// A connected `KafkaLog` with the default configuration, or `None` (skip).
pub async fn connect() -> Option<KafkaLog> {
    connect_with(|c| c).await
}

/// A name no other test (or earlier run) uses.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}-{}-{nanos}-{}",
        std::process::id(),
        rand::random::<u32>()
    )
}
