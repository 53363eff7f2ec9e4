//! Typed configuration of the Kafka backend.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How [`super::KafkaLog::open_writer`] makes read-process-write exactly-once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExactlyOnceMode {
    /// Broker-agnostic: idempotent producer, deterministic source tags on every
    /// output and progress records (fence / intent / commit) in
    /// [`KafkaConfig::progress_topic`]. Works on brokers without transactions
    /// (tansu). See `docs/design/2026-11-23-exactly-once-kafka.md`.
    #[default]
    Progress,
    /// Kafka transactions: outputs and the group's offsets commit in one broker
    /// transaction (`transactional.id` = writer id). Apache Kafka, Redpanda, …
    Transactions,
}

impl FromStr for ExactlyOnceMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "progress" => Ok(ExactlyOnceMode::Progress),
            "transactions" => Ok(ExactlyOnceMode::Transactions),
            other => Err(format!(
                "unknown exactly-once mode `{other}` (expected `progress` or `transactions`)"
            )),
        }
    }
}

impl fmt::Display for ExactlyOnceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExactlyOnceMode::Progress => "progress",
            ExactlyOnceMode::Transactions => "transactions",
        })
    }
}

/// Settings of [`super::KafkaLog`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]` of the brokers (librdkafka `bootstrap.servers`).
    pub bootstrap: String,
    /// Exactly-once strategy of transactional writers.
    #[serde(default)]
    pub exactly_once: ExactlyOnceMode,
    /// Topic holding the progress records of `progress` mode (and the writer
    /// epochs of both modes). Created with one partition when missing.
    #[serde(default = "default_progress_topic")]
    pub progress_topic: String,
    /// librdkafka `client.id` prefix, shown in broker logs.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// Upper bound of one broker round trip (metadata, watermarks, offsets, reads).
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long a produced record may wait for its acknowledgement before the
    /// append fails (librdkafka `message.timeout.ms`).
    #[serde(default = "default_delivery_timeout_ms")]
    pub delivery_timeout_ms: u64,
    /// Replication factor of topics created by `create_topic`; `-1` takes the
    /// broker's default.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// Most bytes one fetch returns (librdkafka `fetch.max.bytes` and
    /// `max.partition.fetch.bytes`; a first batch larger than this still comes
    /// whole). `read` asks for a bounded number of records, so fetching far
    /// ahead is wasted; brokers that build fetch responses slowly (tansu 0.6:
    /// tens of ms per KiB) need a small value.
    #[serde(default = "default_fetch_max_bytes")]
    pub fetch_max_bytes: u32,
    /// librdkafka debug contexts (e.g. `fetch,cgrp,protocol`), logged through
    /// `tracing` at debug level with target `librdkafka`. Consumers deliver
    /// their log lines when they are polled.
    #[serde(default)]
    pub librdkafka_debug: Option<String>,
}

/// Default name of the progress topic.
pub const DEFAULT_PROGRESS_TOPIC: &str = "__conductor_progress";

fn default_progress_topic() -> String {
    DEFAULT_PROGRESS_TOPIC.to_string()
}
fn default_client_id() -> String {
    "conductor".to_string()
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_delivery_timeout_ms() -> u64 {
    30_000
}
fn default_replication_factor() -> i32 {
    -1
}
fn default_fetch_max_bytes() -> u32 {
    64 * 1024
}

impl KafkaConfig {
    /// Defaults for everything but the bootstrap address.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap: bootstrap.into(),
            exactly_once: ExactlyOnceMode::default(),
            progress_topic: default_progress_topic(),
            client_id: default_client_id(),
            request_timeout_ms: default_request_timeout_ms(),
            delivery_timeout_ms: default_delivery_timeout_ms(),
            replication_factor: default_replication_factor(),
            fetch_max_bytes: default_fetch_max_bytes(),
            librdkafka_debug: None,
        }
    }

    /// Sets the exactly-once mode (builder style).
    pub fn with_exactly_once(mut self, mode: ExactlyOnceMode) -> Self {
        self.exactly_once = mode;
        self
    }

    /// Sets the progress topic (builder style).
    pub fn with_progress_topic(mut self, topic: impl Into<String>) -> Self {
        self.progress_topic = topic.into();
        self
    }

    pub(crate) fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.request_timeout_ms.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_once_modes() {
        assert_eq!("progress".parse(), Ok(ExactlyOnceMode::Progress));
        assert_eq!("Transactions".parse(), Ok(ExactlyOnceMode::Transactions));
        assert!("eos".parse::<ExactlyOnceMode>().is_err());
        assert_eq!(ExactlyOnceMode::default(), ExactlyOnceMode::Progress);
    }

    #[test]
    fn config_defaults_fill_missing_fields() {
        let c: KafkaConfig = serde_json::from_str(r#"{"bootstrap":"127.0.0.1:9092"}"#).unwrap();
        assert_eq!(c, KafkaConfig::new("127.0.0.1:9092"));
        assert_eq!(c.progress_topic, "__conductor_progress");
        let bad = serde_json::from_str::<KafkaConfig>(r#"{"bootstrap":"x","bogus":1}"#);
        assert!(bad.is_err());
    }
}
