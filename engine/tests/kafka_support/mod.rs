//! Finding (or starting) a Kafka-protocol broker for the Kafka backend tests.
//!
//! * `KAFKA_BOOTSTRAP` set: that broker must answer, or the test fails.
//! * unset: a throwaway tansu is started once per test binary with
//!   `ops/start-tansu.sh` (storage in a temporary directory, a free loopback
//!   port) and stopped by a watchdog when the test binary exits.
//! * no tansu installed: under `CI=true` the test fails with instructions;
//!   otherwise it prints a loud notice and returns without testing anything.
#![allow(dead_code)]

use conductor_engine::log::kafka::{KafkaConfig, KafkaLog};
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

fn tools_dir() -> PathBuf {
    std::env::var_os("CONDUCTOR_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/conductor-tools")
        })
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().unwrap().port()
}

/// Starts tansu with ops/start-tansu.sh; a watchdog stops it when this process exits.
fn start_tansu() -> Result<String, String> {
    let bin = tools_dir().join("bin/tansu");
    if !bin.exists() {
        return Err(format!(
            "no KAFKA_BOOTSTRAP and tansu not found at {} (install with ops/install-tansu.sh)",
            bin.display()
        ));
    }
    let dir = std::env::temp_dir().join(format!(
        "conductor-tansu-{}-{}",
        std::process::id(),
        free_port()
    ));
    let port = free_port();
    let out = Command::new(repo_root().join("ops/start-tansu.sh"))
        .arg(&dir)
        .arg(port.to_string())
        .output()
        .map_err(|e| format!("running ops/start-tansu.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ops/start-tansu.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Stop the broker (and remove its data) when the test binary is gone.
    let watchdog = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 0.5; done; kill {pid} 2>/dev/null; sleep 1; rm -rf '{dir}'",
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
        .map_err(|e| format!("starting the tansu watchdog: {e}"))?;
    eprintln!(
        "started tansu (pid {pid}) on 127.0.0.1:{port}, data in {}",
        dir.display()
    );
    Ok(format!("127.0.0.1:{port}"))
}

fn broker() -> &'static Broker {
    BROKER.get_or_init(|| match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) if !b.trim().is_empty() => Broker::Ready(b),
        _ => match start_tansu() {
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
                 Set KAFKA_BOOTSTRAP=host:port or run ops/install-tansu.sh.\n\
                 ==============================================================\n"
            );
            None
        }
    }
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
