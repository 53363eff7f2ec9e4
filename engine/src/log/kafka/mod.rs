//! Kafka backend of the [`Log`]: any Kafka-protocol broker through rdkafka.
//!
//! * Topics, metadata and watermarks map one to one onto Kafka's; `list_topics`
//!   hides internal topics (names starting with `__`).
//! * `append` uses one idempotent producer (`enable.idempotence=true`,
//!   `acks=all`) with an explicit partition and awaits every delivery. A batch
//!   that fits one producer request (`batch.size`, 1 MB by default) is appended
//!   atomically by the broker; a larger one may land partly if the call fails.
//! * `read` goes through a consumer kept assigned to the partition
//!   (`isolation.level=read_committed`, `auto.offset.reset=error`): a read
//!   that continues where the last one stopped takes what librdkafka has
//!   prefetched; one from elsewhere repositions it after checking the offset
//!   against the watermarks, so reading below the low one is
//!   [`LogError::OffsetOutOfRange`], never a silent jump (see
//!   `partition_reader`). Internal scans use one-shot pooled consumers.
//! * `committed_positions` are the consumer group's committed offsets.
//!
//! # Exactly-once read-process-write
//!
//! [`KafkaLog::open_writer`] returns one of two [`TransactionalWriter`]s,
//! chosen by [`KafkaConfig::exactly_once`]:
//!
//! * [`ExactlyOnceMode::Transactions`] ([`txn::TxnWriter`]): Kafka transactions,
//!   `transactional.id` = writer id. Opening calls `init_transactions`, which
//!   fences older producers with the same id; a commit is `begin_transaction`,
//!   produce, `send_offsets_to_transaction`, `commit_transaction`.
//! * [`ExactlyOnceMode::Progress`] ([`writer::ProgressWriter`], the default):
//!   no broker transactions, so it works on brokers that refuse them (tansu).
//!   A commit appends an `Intent` record to the progress topic, writes the
//!   outputs tagged with their deterministic source (`ig-src`), appends a
//!   `Commit` record with the input positions and then mirrors them into the
//!   consumer group. Opening a writer appends a `Fence` (new epoch) and
//!   recovers a torn batch by scanning its output partitions for the source
//!   tags that already landed, which the re-processed batch then skips.
//!   The protocol, its invariants and its remaining window are described in
//!   [`writer`] and `docs/design/2026-11-23-exactly-once-kafka.md`.
//!
//! In both modes opening a writer appends a `Fence` to the progress topic with
//! the highest epoch seen for its id plus one, so
//! [`TransactionalWriter::epoch`] grows with every open.
//!
//! Against tansu (the second test broker) some settings matter; they are explained in
//! `docs/design/2026-11-23-exactly-once-kafka.md` ("tansu 0.6 notes").
//!
//! # Modules
//!
//! One job each. [`KafkaLog`] and the two writers sit on top; the modules
//! below them are leaves that never import them (or this one) back:
//!
//! * `config`; `error` (Kafka failures as [`LogError`]); `client` (the
//!   librdkafka clients and their settings); `shared` (what a log shares
//!   with its writers: cached metadata, one-shot reads, topic creation);
//! * `metadata`; `scan` (one-shot range reads); `partition_reader` (reads
//!   that continue where the last one stopped); `produce`; `groups`
//!   (consumer-group offsets);
//! * [`progress`] (progress records and their fold); `progress_topic`
//!   (appending, folding and checkpointing them); `recovery` (opening a
//!   writer id: the `Fence`, a torn batch, lagging group offsets);
//! * [`writer`] (`progress` mode) and [`txn`] (`transactions` mode).

mod client;
mod config;
mod error;
mod groups;
mod metadata;
mod partition_reader;
mod produce;
pub mod progress;
mod progress_topic;
mod recovery;
mod scan;
mod shared;
pub mod txn;
pub mod writer;

pub use config::{DEFAULT_PROGRESS_TOPIC, ExactlyOnceMode, KafkaConfig};
pub use txn::{TxnStep, TxnWriter};
pub use writer::{CrashPoint, ProgressWriter, RecoveryReport};

use super::*;
use client::{Clients, blocking};
use error::kafka_detail;
use produce::Outgoing;
use rdkafka::consumer::Consumer;
use shared::Shared;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A [`Log`] on a Kafka-protocol broker. Cloning shares the clients.
#[derive(Clone)]
pub struct KafkaLog {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KafkaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaLog")
            .field("bootstrap", &self.shared.clients.config.bootstrap)
            .field("exactly_once", &self.shared.clients.config.exactly_once)
            .finish()
    }
}

impl KafkaLog {
    /// Creates the clients and checks that a broker answers a metadata request
    /// within `request_timeout_ms`.
    pub async fn connect(config: KafkaConfig) -> Result<KafkaLog, LogError> {
        if config.bootstrap.trim().is_empty() {
            return Err(LogError::InvalidArgument(
                "the Kafka bootstrap address is empty (set `bootstrap`, e.g. 127.0.0.1:9092)"
                    .into(),
            ));
        }
        validate_topic_name(&config.progress_topic)?;
        let bootstrap = config.bootstrap.clone();
        let timeout_ms = config.request_timeout_ms;
        let shared = blocking("connect", move || {
            let clients = Clients::new(config)?;
            let reader = clients.take_reader()?;
            let answered = reader.fetch_metadata(None, clients.timeout());
            clients.put_reader(reader);
            match answered {
                Ok(_) => Ok(Shared::new(clients)),
                Err(e) => Err(kafka_detail(
                    "connect",
                    format!(
                        "no Kafka broker answered at `{bootstrap}` within {timeout_ms} ms ({e}); \
                         hint: start one (e.g. `ops/start-tansu.sh DIR PORT`) or point KAFKA_BOOTSTRAP at a running broker"
                    ),
                )),
            }
        })
        .await?;
        Ok(KafkaLog {
            shared: Arc::new(shared),
        })
    }

    /// The configuration this log was connected with.
    pub fn config(&self) -> &KafkaConfig {
        &self.shared.clients.config
    }

    /// Opens a `progress`-mode writer whatever the configured mode, with its
    /// concrete type (recovery report, crash-point hook for tests).
    pub async fn open_progress_writer(
        &self,
        group: &str,
        writer_id: &str,
    ) -> Result<ProgressWriter, LogError> {
        ProgressWriter::open(self.shared.clone(), group, writer_id).await
    }

    /// Opens a `transactions`-mode writer whatever the configured mode.
    pub async fn open_transactional_writer(
        &self,
        group: &str,
        writer_id: &str,
    ) -> Result<TxnWriter, LogError> {
        TxnWriter::open(self.shared.clone(), group, writer_id).await
    }
}

#[async_trait]
impl Log for KafkaLog {
    fn backend(&self) -> &'static str {
        "kafka"
    }

    async fn create_topic(&self, topic: &str, config: &TopicConfig) -> Result<(), LogError> {
        validate_topic_name(topic)?;
        if config.partitions < 1 {
            return Err(LogError::InvalidArgument(format!(
                "partitions must be at least 1, got {}",
                config.partitions
            )));
        }
        self.shared.create_topic(topic, config, &[]).await
    }

    async fn list_topics(&self) -> Result<Vec<String>, LogError> {
        let me = self.shared.clone();
        let mut names = blocking("listing topics", move || {
            metadata::fetch_topic_names(&me.clients)
        })
        .await?;
        names.retain(|n| !n.starts_with("__"));
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, LogError> {
        let n = self.shared.refresh_partition_count(topic).await?;
        let mut partitions = Vec::with_capacity(n as usize);
        for partition in 0..n {
            let (low, high) = self.shared.watermarks(topic, partition).await?;
            partitions.push(PartitionInfo {
                partition,
                low_watermark: low,
                high_watermark: high,
            });
        }
        Ok(TopicDescription {
            topic: topic.to_string(),
            partitions,
        })
    }

    async fn append(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<Record>,
    ) -> Result<AppendedRange, LogError> {
        validate_records(&records)?;
        if records.is_empty() {
            return Err(LogError::InvalidArgument(
                "cannot append an empty batch".into(),
            ));
        }
        self.shared.check_partition(topic, partition).await?;
        let outgoing: Vec<Outgoing<'_>> = records
            .iter()
            .map(|record| Outgoing {
                topic,
                partition,
                record,
                extra_headers: Vec::new(),
            })
            .collect();
        let clients = &self.shared.clients;
        let offsets = produce::produce_all(clients, &clients.producer, &outgoing, "append").await?;
        match (offsets.first(), offsets.last()) {
            (Some(&first), Some(&last)) => Ok(AppendedRange { first, last }),
            _ => Err(kafka_detail("append", "the broker acknowledged no record")),
        }
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max_records: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        self.shared.check_partition(topic, partition).await?;
        let me = self.shared.clone();
        let topic = topic.to_string();
        blocking("reading", move || {
            partition_reader::read(
                &me.clients,
                &me.partition_readers,
                &topic,
                partition,
                from,
                max_records,
            )
        })
        .await
    }

    async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        self.shared.check_partition(topic, partition).await?;
        self.shared.watermarks(topic, partition).await
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, LogError> {
        self.shared.check_partition(topic, partition).await?;
        let me = self.shared.clone();
        let name = topic.to_string();
        let answer = blocking("offset lookup by timestamp", move || {
            metadata::offset_for_time(&me.clients, &name, partition, timestamp_ms)
        })
        .await?;
        // Trust but verify: some brokers (tansu 0.6) answer the low watermark
        // instead of "none" for a timestamp after the last record.
        if let Some(offset) = answer {
            let (_, high) = self.shared.watermarks(topic, partition).await?;
            let at = self
                .shared
                .read_range(topic, partition, offset, high, 1)
                .await?;
            if at
                .first()
                .is_some_and(|r| r.record.timestamp_ms >= timestamp_ms)
            {
                return Ok(answer);
            }
        }
        self.shared
            .search_timestamp(topic, partition, timestamp_ms)
            .await
    }

    async fn open_writer(
        &self,
        group: &str,
        writer_id: &str,
    ) -> Result<Box<dyn TransactionalWriter>, LogError> {
        Ok(match self.shared.clients.config.exactly_once {
            ExactlyOnceMode::Progress => {
                Box::new(self.open_progress_writer(group, writer_id).await?)
            }
            ExactlyOnceMode::Transactions => {
                Box::new(self.open_transactional_writer(group, writer_id).await?)
            }
        })
    }

    async fn committed_positions(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<i32, i64>, LogError> {
        let n = match self.shared.refresh_partition_count(topic).await {
            Ok(n) => n,
            // Like the other backends: no topic, no positions.
            Err(LogError::UnknownTopic(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e),
        };
        let me = self.shared.clone();
        let (group, topic) = (group.to_string(), topic.to_string());
        blocking("reading committed offsets", move || {
            let partitions: Vec<i32> = (0..n).collect();
            groups::fetch_group_offsets(&me.clients, &group, &topic, &partitions)
        })
        .await
    }
}
