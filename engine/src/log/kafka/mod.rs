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

mod client;
mod config;
mod partition_reader;
pub mod progress;
pub mod txn;
pub mod writer;

pub use config::{DEFAULT_PROGRESS_TOPIC, ExactlyOnceMode, KafkaConfig};
pub use txn::{TxnStep, TxnWriter};
pub use writer::{CrashPoint, ProgressWriter, RecoveryReport};

use super::*;
use client::{Clients, blocking, kafka_detail, kafka_error};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// State shared by a [`KafkaLog`] and the writers it opened.
pub(crate) struct Shared {
    pub(crate) clients: Clients,
    /// Partition count of the progress topic, once ensured.
    progress_partitions: OnceCell<i32>,
}

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
                Ok(_) => Ok(Shared {
                    clients,
                    progress_partitions: OnceCell::new(),
                }),
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

impl Shared {
    /// Partition count of `topic` (cached), `UnknownTopic` if it does not exist.
    pub(crate) async fn partition_count(self: &Arc<Self>, topic: &str) -> Result<i32, LogError> {
        if let Some(n) = self.clients.cached_partitions(topic) {
            return Ok(n);
        }
        self.refresh_partition_count(topic).await
    }

    async fn refresh_partition_count(self: &Arc<Self>, topic: &str) -> Result<i32, LogError> {
        let me = self.clone();
        let name = topic.to_string();
        let ids = blocking("fetching metadata", move || {
            me.clients.forget_topic(&name);
            client::fetch_topic_partitions(&me.clients, &name)
        })
        .await?;
        match ids {
            Some(ids) => Ok(ids.len() as i32),
            None => Err(LogError::UnknownTopic(topic.to_string())),
        }
    }

    /// Checks that `topic[partition]` exists (refreshing metadata once on a miss).
    pub(crate) async fn check_partition(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
    ) -> Result<(), LogError> {
        let mut n = self.partition_count(topic).await?;
        if partition >= n {
            n = self.refresh_partition_count(topic).await?;
        }
        if partition < 0 || partition >= n {
            return Err(LogError::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: n,
            });
        }
        Ok(())
    }

    pub(crate) async fn watermarks(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
    ) -> Result<(i64, i64), LogError> {
        let me = self.clone();
        let topic = topic.to_string();
        blocking("fetching watermarks", move || {
            client::fetch_watermarks(&me.clients, &topic, partition)
        })
        .await
    }

    /// Reads `[from, until)` (at most `max`) without further checks.
    pub(crate) async fn read_range(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        from: i64,
        until: i64,
        max: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let me = self.clone();
        let topic = topic.to_string();
        blocking("reading", move || {
            client::read_range(&me.clients, &topic, partition, from, until, max)
        })
        .await
    }

    /// The first offset with a timestamp `>= timestamp_ms` by binary search
    /// over the records (exact when timestamps do not decrease); used when the
    /// broker's time index gives an answer that does not hold.
    async fn search_timestamp(
        self: &Arc<Self>,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, LogError> {
        let (mut lo, high) = self.watermarks(topic, partition).await?;
        let mut hi = high; // invariant: every offset >= hi qualifies (or hi == high)
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let found = self.read_range(topic, partition, mid, high, 1).await?;
            let Some(r) = found.first() else { break };
            if r.record.timestamp_ms >= timestamp_ms {
                hi = r.offset.min(hi);
            } else {
                lo = r.offset + 1;
            }
        }
        Ok((hi < high).then_some(hi))
    }

    /// Creates a topic and waits until its metadata shows every partition.
    async fn create_topic(
        self: &Arc<Self>,
        topic: &str,
        config: &TopicConfig,
        extra: &[(&str, &str)],
    ) -> Result<(), LogError> {
        let operation = format!("creating topic `{topic}`");
        let retention_ms = config.retention_ms.map(|v| v.to_string());
        let retention_bytes = config.retention_bytes.map(|v| v.to_string());
        let mut new_topic = NewTopic::new(
            topic,
            config.partitions,
            TopicReplication::Fixed(self.clients.config.replication_factor),
        );
        if let Some(v) = &retention_ms {
            new_topic = new_topic.set("retention.ms", v);
        }
        if let Some(v) = &retention_bytes {
            new_topic = new_topic.set("retention.bytes", v);
        }
        for (k, v) in extra {
            new_topic = new_topic.set(k, v);
        }
        let timeout = self.clients.timeout();
        let options = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let results = self
            .clients
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| kafka_error(&operation, &e))?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(match code {
                    RDKafkaErrorCode::TopicAlreadyExists => LogError::TopicExists(name),
                    RDKafkaErrorCode::InvalidTopic => LogError::InvalidTopicName {
                        name,
                        reason: "the broker refused the name".into(),
                    },
                    RDKafkaErrorCode::InvalidPartitions
                    | RDKafkaErrorCode::InvalidReplicationFactor
                    | RDKafkaErrorCode::InvalidConfig => LogError::InvalidArgument(format!(
                        "the broker refused to create `{name}`: {code}"
                    )),
                    other => kafka_detail(&operation, format!("the broker answered {other}")),
                });
            }
        }
        // Creation is asynchronous on the broker: wait until it is visible.
        let deadline = Instant::now() + timeout;
        loop {
            match self.refresh_partition_count(topic).await {
                Ok(n) if n >= config.partitions => return Ok(()),
                Ok(_) | Err(LogError::UnknownTopic(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(n) => {
                    return Err(kafka_detail(
                        &operation,
                        format!(
                            "the topic shows {n} of {} partitions after creation",
                            config.partitions
                        ),
                    ));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Makes sure the progress topic exists; returns its partition count.
    pub(crate) async fn progress_partitions(self: &Arc<Self>) -> Result<i32, LogError> {
        self.progress_partitions
            .get_or_try_init(|| async {
                let topic = self.clients.config.progress_topic.clone();
                match self.refresh_partition_count(&topic).await {
                    Ok(n) => return Ok(n),
                    Err(LogError::UnknownTopic(_)) => {}
                    Err(e) => return Err(e),
                }
                // Not compacted: the protocol needs every Intent/Commit in
                // order (see `writer`), and nothing may expire.
                let config = TopicConfig::with_partitions(1);
                let extra = [("cleanup.policy", "delete"), ("retention.ms", "-1")];
                match self.create_topic(&topic, &config, &extra).await {
                    Ok(()) | Err(LogError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
                self.refresh_partition_count(&topic).await
            })
            .await
            .copied()
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
            client::fetch_topic_names(&me.clients)
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
        let outgoing: Vec<client::Outgoing<'_>> = records
            .iter()
            .map(|record| client::Outgoing {
                topic,
                partition,
                record,
                extra_headers: Vec::new(),
            })
            .collect();
        let clients = &self.shared.clients;
        let offsets = client::produce_all(clients, &clients.producer, &outgoing, "append").await?;
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
            partition_reader::read(&me.clients, &topic, partition, from, max_records)
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
            client::offset_for_time(&me.clients, &name, partition, timestamp_ms)
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
            client::fetch_group_offsets(&me.clients, &group, &topic, &partitions)
        })
        .await
    }
}

/// Checks a writer id and group name before they reach the broker.
pub(crate) fn validate_writer_names(group: &str, writer_id: &str) -> Result<(), LogError> {
    if group.trim().is_empty() {
        return Err(LogError::InvalidArgument(
            "the consumer group name is empty".into(),
        ));
    }
    if writer_id.trim().is_empty() {
        return Err(LogError::InvalidArgument("the writer id is empty".into()));
    }
    Ok(())
}
