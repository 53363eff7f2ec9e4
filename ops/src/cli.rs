//! The command-line surface of `conductor` (clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "conductor",
    version,
    about = "Conductor: event-sourced stream processing for IntelGraph"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

/// Backends and paths. Each option also comes from a `CONDUCTOR_*` variable
/// and from the `--config` file; precedence: flag, then environment, then
/// file, then the built-in default (see `settings.rs`).
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalOptions {
    /// A TOML config file (keys as in `conductor.example.toml`).
    #[arg(long, global = true, env = "CONDUCTOR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the file log and the embedded stores [default: ./data].
    #[arg(long, global = true, env = "CONDUCTOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log backend [default: file].
    #[arg(long = "log", global = true, env = "CONDUCTOR_LOG", value_enum)]
    pub log: Option<LogBackend>,
    /// Kafka bootstrap servers (with `--log kafka`).
    #[arg(
        long,
        global = true,
        env = "CONDUCTOR_KAFKA_BOOTSTRAP",
        value_name = "HOST:PORT"
    )]
    pub kafka_bootstrap: Option<String>,
    /// Exactly-once mode on Kafka: `progress` (any broker) or `transactions` (Apache Kafka, Redpanda) [default: progress].
    #[arg(long, global = true, env = "CONDUCTOR_KAFKA_EXACTLY_ONCE")]
    pub kafka_exactly_once: Option<String>,
    /// When the file log forces appends to disk: `every_batch` or `interval:<ms>` [default: every_batch].
    #[arg(long, global = true, env = "CONDUCTOR_FSYNC")]
    pub fsync: Option<String>,
    /// Projection store [default: sqlite, in <data-dir>/projections.db].
    #[arg(long, global = true, env = "CONDUCTOR_STORE", value_enum)]
    pub store: Option<StoreBackend>,
    /// Database URL of the projection store (postgres://… or sqlite://…).
    #[arg(
        long,
        global = true,
        env = "CONDUCTOR_DATABASE_URL",
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// Neo4j to apply topologies' graphs to (bolt://HOST:PORT); without it a
    /// graph lives only in its SQL tables.
    #[arg(long, global = true, env = "CONDUCTOR_NEO4J_URI", value_name = "URI")]
    pub neo4j_uri: Option<String>,
    /// Neo4j user [default: neo4j]. The password comes from
    /// CONDUCTOR_NEO4J_PASSWORD or the config file, never a flag.
    #[arg(long, global = true, env = "CONDUCTOR_NEO4J_USER", value_name = "USER")]
    pub neo4j_user: Option<String>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// A SQLite file (the embedded default).
    Sqlite,
    /// A Postgres server (`--database-url`).
    Postgres,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// Run the topologies against the configured backends until Ctrl-C.
    Run(RunArgs),
    /// Serve subscriptions (GraphQL over WebSocket, JSON WebSocket, SSE),
    /// metrics and health off the log without running topologies. Read-only
    /// on the file log: several can follow one `conductor run`.
    Serve(ServeArgs),
    /// Validate, inspect and operate topologies.
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Inspect and redrive dead-lettered records.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Rebuild a topology's projections from the log into a shadow, verify
    /// it against live, swap it in, roll back.
    #[command(subcommand)]
    Replay(ReplayCommand),
    /// Query topics and projection tables with SQL (DataFusion). A topic is a
    /// table named by the topic, quoted: SELECT kind, count(*) FROM
    /// "ig.ingest.entities" GROUP BY kind; projections by their names.
    Sql(SqlArgs),
    /// Generate a sample dataset, fold it with the shipped topologies on the
    /// embedded defaults, and show what to try next.
    Demo(DemoArgs),
    /// Entity resolution: why a candidate pair was (or was not) proposed.
    #[command(subcommand)]
    Er(ErCommand),
    /// Search a tenant's entities by text: keyword (the entities'
    /// full-text index), vector (the vector_index topology's HNSW state) or
    /// hybrid (both, fused; the default).
    Search(SearchArgs),
    /// Lineage of a dataset or job from the lineage topology's graph:
    /// `conductor lineage dataset:NS:NAME`, or `conductor lineage impact
    /// NODE` for everything downstream that a change to NODE touches.
    Lineage(LineageArgs),
    /// The dataset catalog: register datasets with their licence, purposes,
    /// retention and region; list and search them; check that the
    /// topologies only touch registered ones.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

#[derive(Subcommand, Debug)]
pub enum CatalogCommand {
    /// Register a dataset (or register it again, replacing what was said).
    Register {
        /// `dataset:NAMESPACE:NAME`, as `conductor lineage` names it.
        dataset_id: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        /// A name people use for it [default: its name in the id].
        #[arg(long)]
        name: Option<String>,
        /// Licence or terms of use (CC-BY-4.0, internal, …).
        #[arg(long)]
        license: Option<String>,
        /// A purpose it may be processed for (repeatable).
        #[arg(long = "purpose")]
        purpose: Vec<String>,
        /// How long records are kept, an ISO 8601 duration (P365D).
        #[arg(long)]
        retention: Option<String>,
        /// Where it is stored (eu-west-1, …).
        #[arg(long)]
        region: Option<String>,
        /// The data contract version it follows.
        #[arg(long)]
        contract_version: Option<String>,
    },
    /// List datasets, registered and discovered by lineage.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        filter: crate::commands::catalog::CatalogFilter,
        /// Only datasets lineage found that nobody registered.
        #[arg(long)]
        unregistered: bool,
        #[arg(long)]
        json: bool,
    },
    /// Datasets whose id or name contains TEXT.
    Search {
        text: String,
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        filter: crate::commands::catalog::CatalogFilter,
        #[arg(long)]
        json: bool,
    },
    /// Exit 1 when a topology reads or writes a dataset that is not
    /// registered (the datasets Conductor reports in its own lineage).
    Check {
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
        /// The tenant whose registrations count (Conductor's own runs are
        /// reported for `default`).
        #[arg(long, default_value = "default")]
        tenant: String,
    },
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  conductor lineage dataset:sqlite:entities --direction upstream\n  conductor lineage job:conductor:entities --depth 2 --dot | dot -Tsvg > lineage.svg\n  conductor lineage impact dataset:kafka:ig.ingest.entities"
)]
pub struct LineageArgs {
    /// `NODE` (`dataset:NAMESPACE:NAME` or `job:NAMESPACE:NAME`), or
    /// `impact NODE`.
    #[arg(value_name = "NODE", num_args = 1..=2, required = true)]
    pub node: Vec<String>,
    /// The tenant whose lineage is asked (`default` is the tenant of
    /// OpenLineage events that name none).
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// Edges to walk from NODE.
    #[arg(long, default_value_t = 20)]
    pub depth: usize,
    /// Which way to walk: upstream (what NODE is made from), downstream
    /// (what is made from it) or both.
    #[arg(long, default_value = "both")]
    pub direction: String,
    /// The lineage topology.
    #[arg(long, default_value = "lineage")]
    pub topology: String,
    /// Marquez's JSON shape (`{"graph": [...]}`).
    #[arg(long, conflicts_with = "dot")]
    pub json: bool,
    /// Graphviz dot.
    #[arg(long)]
    pub dot: bool,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// What to look for, as an entity's text reads: names, a date, an address.
    pub text: Option<String>,
    /// The tenant whose entities are searched.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Answers to return (1 to 1000).
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// How to match.
    #[arg(long, value_enum, default_value = "hybrid")]
    pub mode: SearchMode,
    /// Hybrid: the weight of the keyword score (0–1); the vector score
    /// weighs `1 − alpha`. Both are min-max normalised first.
    #[arg(long, default_value_t = 0.7)]
    pub alpha: f64,
    /// Time allowed to the vector stage (embedding the query, searching
    /// the graph), in ms; past it the answer is the keyword stage's.
    #[arg(long, default_value_t = 150)]
    pub budget_ms: u64,
    /// Print each index's figures (vectors, dims, dead slots, a digest of
    /// its contents) instead of searching.
    #[arg(long)]
    pub stats: bool,
    /// The vector_index topology.
    #[arg(long, default_value = "vector_index")]
    pub index_topology: String,
    /// The embedding writer's topology (its embedder embeds the query).
    #[arg(long, default_value = "embeddings")]
    pub embeddings_topology: String,
    /// Directory of topology files (every *.toml in it) [default: the
    /// built-in topologies, or `topologies` in the config file].
    #[arg(long, value_name = "DIR")]
    pub topologies: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// `conductor search --mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchMode {
    /// Words of the text in the entities' attributes (full-text index).
    Keyword,
    /// Nearest vectors (cosine) in the tenant's HNSW index.
    Vector,
    /// Both, fused: alpha·keyword + (1 − alpha)·vector.
    Hybrid,
}

#[derive(Subcommand, Debug)]
pub enum ErCommand {
    /// The keys two records share, each field's similarity, the score
    /// against the floor and the rank of each among the other's candidates,
    /// from the er_candidates topology's state.
    Explain {
        /// The tenant of both records.
        #[arg(long)]
        tenant: String,
        /// One record id (subject).
        left: String,
        /// The other record id.
        right: String,
        /// The ER topology.
        #[arg(long, default_value = "er_candidates")]
        topology: String,
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Directory of topology files (every *.toml in it) [default: the
    /// built-in topologies, or `topologies` in the config file].
    #[arg(long, value_name = "DIR")]
    pub topologies: Option<PathBuf>,
    /// Address of the HTTP server (health, metrics, status) [default: 127.0.0.1:8080].
    #[arg(long, env = "CONDUCTOR_LISTEN", value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Run only these topologies (repeatable).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
    /// Exit once every input is folded and the outbox relayed (batch jobs, tests).
    #[arg(long)]
    pub exit_when_idle: bool,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address of the HTTP server [default: 127.0.0.1:8080].
    #[arg(long, env = "CONDUCTOR_LISTEN", value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Directory of topology files (every *.toml in it; `/v1/search` finds
    /// the vector_index and embeddings topologies there) [default: the
    /// built-in topologies, or `topologies` in the config file].
    #[arg(long, value_name = "DIR")]
    pub topologies: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// People to generate (each with updates, some duplicates, relationships).
    #[arg(long, default_value_t = 5000)]
    pub people: usize,
    /// Delete the data directory's log and projections first.
    #[arg(long)]
    pub fresh: bool,
    /// Keep running (HTTP server, topologies) after the dataset is folded.
    #[arg(long)]
    pub serve: bool,
    /// Address of the HTTP server [default: 127.0.0.1:8080].
    #[arg(long, env = "CONDUCTOR_LISTEN", value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Directory of topology files (every *.toml in it) [default: the
    /// built-in topologies, or `topologies` in the config file].
    #[arg(long, value_name = "DIR")]
    pub topologies: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum TopologyCommand {
    /// List the topologies: the built-in ones, or the files of --topologies DIR.
    List {
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
    },
    /// Check topology files, reporting every problem at once.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Positions, lag and control state of topologies (from the store and
    /// the log), and what a running `conductor run` reports of them: its
    /// state and what it waits on (also when the store is down).
    Status {
        name: Option<String>,
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
        /// Where the running `conductor run` serves HTTP [default: the
        /// config's `listen`, else 127.0.0.1:8080].
        #[arg(long, env = "CONDUCTOR_LISTEN", value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        #[arg(long)]
        json: bool,
    },
    /// Pause a topology (a running worker stops consuming within a second).
    Pause { name: String },
    /// Resume a paused topology.
    Resume { name: String },
    /// Move a stopped topology's input positions.
    ResetOffsets {
        name: String,
        /// `earliest`, `latest`, or an RFC 3339 time (first record at or after it).
        #[arg(long)]
        to: String,
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// One SQL statement.
    pub query: String,
    #[arg(long, value_enum, default_value_t = SqlFormat::Table)]
    pub format: SqlFormat,
    /// Write the result to this file instead of stdout (required for parquet).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print how long loading and the query took (to stderr).
    #[arg(long)]
    pub timing: bool,
    /// Directory of topology files (every *.toml in it; their
    /// `[processor_config]` names tables, e.g. a graph or `entities_v2`)
    /// [default: the built-in topologies, or `topologies` in the config file].
    #[arg(long, value_name = "DIR")]
    pub topologies: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFormat {
    Table,
    Csv,
    /// JSON lines, one object per row.
    Json,
    Parquet,
}

#[derive(Subcommand, Debug)]
pub enum ReplayCommand {
    /// Fold the topology's sources again into a fresh shadow generation (a
    /// Postgres schema or a SQLite file beside the live one), in bulk, with
    /// changefeed and DLQ suppressed. Live keeps running.
    Rebuild {
        #[arg(long)]
        topology: String,
        /// `earliest`, an RFC 3339 time (first record at or after it), or a
        /// cursor from `conductor consume` (with --tenant).
        #[arg(long, default_value = "earliest")]
        from: String,
        /// Point in time: fold only records up to this RFC 3339 time.
        #[arg(long)]
        to: Option<String>,
        /// Tenant a --from cursor was issued to.
        #[arg(long, default_value = "")]
        tenant: String,
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
    },
    /// Compare shadow and live at the same log positions (blake3 digest per
    /// table, the first differing rows). Exit code 0: equal; 1: different.
    Verify {
        #[arg(long)]
        topology: String,
        /// How many differing rows to show per table.
        #[arg(long, default_value_t = 5)]
        max_diffs: usize,
        #[arg(long)]
        json: bool,
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
    },
    /// Make the shadow live in one transaction (offsets move with it); the
    /// old live generation is kept for `rollback`.
    Swap {
        #[arg(long)]
        topology: String,
        /// Allow swapping in a point-in-time shadow: the topology's offsets
        /// move back to the shadow's and live folds again from there.
        #[arg(long)]
        rewind: bool,
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
    },
    /// Put the previous generation back (after a swap).
    Rollback {
        #[arg(long)]
        topology: String,
        /// Allow the offsets to move with the previous generation (after a
        /// `swap --rewind`, the previous generation is ahead of live).
        #[arg(long)]
        rewind: bool,
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// One line per dead-lettered record: offset, source, error kind, reason.
    List {
        topology: String,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Everything about one dead-lettered record, with its original bytes.
    Inspect { topology: String, offset: i64 },
    /// Append dead-lettered records back to their source topics (after a fix).
    Redrive {
        topology: String,
        /// Only the record at this DLQ offset.
        #[arg(long, conflicts_with = "all")]
        offset: Option<i64>,
        /// Every record in the DLQ.
        #[arg(long)]
        all: bool,
    },
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
        /// On a breaking change, list who consumes the schema — the
        /// topologies reading a topic that carries it, and everything
        /// downstream of them in the lineage graph — and fail only if
        /// someone does (a CI gate).
        #[arg(long)]
        impact: bool,
        /// Directory of topology files (every *.toml in it) [default: the
        /// built-in topologies, or `topologies` in the config file].
        #[arg(long, value_name = "DIR")]
        topologies: Option<PathBuf>,
    },
    /// List the built-in event schemas.
    List,
    /// Print a built-in schema (.avsc).
    Show { name: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of every (sub)command, with the command's path.
    fn every_arg(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for arg in command.get_arguments() {
            out.push((path.to_string(), arg.clone()));
        }
        for sub in command.get_subcommands() {
            every_arg(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn help_states_the_real_defaults() {
        let mut args = Vec::new();
        every_arg(&Cli::command(), "conductor", &mut args);
        let topologies: Vec<_> = args
            .iter()
            .filter(|(_, a)| a.get_id() == "topologies")
            .collect();
        assert!(topologies.len() >= 10, "{}", topologies.len());
        for (path, arg) in topologies {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            // The shipped topologies are compiled in: no directory is read by default.
            assert!(
                help.contains("[default: the built-in topologies"),
                "`{path} --topologies` says {help:?}"
            );
        }
        for (path, arg) in &args {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(
                !help.contains("./topologies"),
                "`{path} --{}` says {help:?}",
                arg.get_id()
            );
            // A default both in the text and from clap would be shown twice.
            assert!(
                !help.contains("[default:") || arg.get_default_values().is_empty(),
                "`{path} --{}` states its default twice: {help:?}",
                arg.get_id()
            );
        }
    }
}
