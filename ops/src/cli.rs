//! The command-line surface of `conductor` (clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "conductor", version, about = "Conductor: event-sourced stream processing for IntelGraph")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the log and the embedded stores live.
#[derive(Args, Debug, Clone)]
pub struct GlobalOptions {
    /// Directory of the file log and the embedded stores.
    #[arg(long, global = true, env = "CONDUCTOR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Log backend.
    #[arg(long = "log", global = true, env = "CONDUCTOR_LOG", value_enum, default_value_t = LogBackend::File)]
    pub log: LogBackend,
    /// Kafka bootstrap servers (with `--log kafka`).
    #[arg(long, global = true, env = "CONDUCTOR_KAFKA_BOOTSTRAP", value_name = "HOST:PORT")]
    pub kafka_bootstrap: Option<String>,
    /// Exactly-once mode on Kafka: `progress` (any broker) or `transactions` (Apache Kafka, Redpanda).
    #[arg(long, global = true, env = "CONDUCTOR_KAFKA_EXACTLY_ONCE", default_value = "progress")]
    pub kafka_exactly_once: String,
    /// When the file log forces appends to disk: `every_batch` or `interval:<ms>`.
    #[arg(long, global = true, env = "CONDUCTOR_FSYNC", default_value = "every_batch")]
    pub fsync: String,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogBackend {
    /// Segment files under `<data-dir>/log` (the embedded default).
    File,
    /// A Kafka-protocol broker (`--kafka-bootstrap`).
    Kafka,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create, list and describe topics.
    #[command(subcommand)]
    Topic(TopicCommand),
    /// Append events (one JSON event per line, or an Avro container file) to a topic.
    Produce(ProduceArgs),
    /// Print a topic's events as JSON lines, each with the cursor that resumes after it.
    Consume(ConsumeArgs),
    /// Inspect and check event schemas.
    #[command(subcommand)]
    Schema(SchemaCommand),
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// Delete records older than this many milliseconds (default: keep forever).
        #[arg(long)]
        retention_ms: Option<i64>,
        /// Keep at most this many bytes per partition (default: unbounded).
        #[arg(long)]
        retention_bytes: Option<u64>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions and watermarks.
    Describe {
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON event per line (the form in DESIGN.md).
    Json,
    /// An Avro object container file whose records are events.
    Avro,
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    #[arg(long)]
    pub topic: String,
    #[arg(long, value_enum, default_value_t = InputFormat::Json)]
    pub format: InputFormat,
    /// Validate every event against this schema (default: the schema named by each event's `kind`).
    #[arg(long)]
    pub schema: Option<String>,
    /// Put every event on this partition (default: by key `tenant/subject`).
    #[arg(long)]
    pub partition: Option<i32>,
    /// Input file; `-` or nothing reads standard input.
    #[arg(default_value = "-")]
    pub file: String,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    #[arg(long)]
    pub topic: String,
    /// `earliest`, `latest`, or a cursor printed by an earlier consume.
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Only this tenant's events; cursors are bound to it.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Keep waiting for new events instead of stopping at the end.
    #[arg(long)]
    pub follow: bool,
}

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// Check that NEW may replace OLD under a compatibility mode.
    Check {
        old: PathBuf,
        new: PathBuf,
        #[arg(long, default_value = "backward")]
        mode: String,
    },
    /// List the built-in event schemas.
    List,
    /// Print a built-in schema (.avsc).
    Show { name: String },
}
