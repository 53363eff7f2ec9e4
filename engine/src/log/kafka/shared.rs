//! What a [`KafkaLog`](super::KafkaLog) shares with the writers it opened:
//! the clients and partition readers, and the async face of the blocking
//! metadata and scan calls — cached partition counts, watermarks, one-shot
//! reads, topic creation and the progress topic.

use super::client::{Clients, blocking};
use super::error::{kafka_detail, kafka_error};
use super::partition_reader::PartitionReaders;
use super::{metadata, scan};
use crate::log::{LogError, StoredRecord, TopicConfig};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// State shared by a [`KafkaLog`](super::KafkaLog) and the writers it opened.
pub(crate) struct Shared {
    pub(crate) clients: Clients,
    /// Consumers kept assigned to one partition each, for `Log::read`.
    pub(crate) partition_readers: PartitionReaders,
    /// Partition count of the progress topic, once ensured.
    progress_partitions: OnceCell<i32>,
}

impl Shared {
    pub(super) fn new(clients: Clients) -> Shared {
        Shared {
            clients,
            partition_readers: PartitionReaders::default(),
            progress_partitions: OnceCell::new(),
        }
    }

    /// Partition count of `topic` (cached), `UnknownTopic` if it does not exist.
    pub(crate) async fn partition_count(self: &Arc<Self>, topic: &str) -> Result<i32, LogError> {
        if let Some(n) = self.clients.cached_partitions(topic) {
            return Ok(n);
        }
        self.refresh_partition_count(topic).await
    }

    pub(super) async fn refresh_partition_count(
        self: &Arc<Self>,
        topic: &str,
    ) -> Result<i32, LogError> {
        let me = self.clone();
        let name = topic.to_string();
        let ids = blocking("fetching metadata", move || {
            me.clients.forget_topic(&name);
            metadata::fetch_topic_partitions(&me.clients, &name)
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
            metadata::fetch_watermarks(&me.clients, &topic, partition)
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
            scan::read_range(&me.clients, &topic, partition, from, until, max)
        })
        .await
    }

    /// The first offset with a timestamp `>= timestamp_ms` by binary search
    /// over the records (exact when timestamps do not decrease); used when the
    /// broker's time index gives an answer that does not hold.
    pub(super) async fn search_timestamp(
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
    pub(super) async fn create_topic(
        self: &Arc<Self>,
        topic: &str,
        config: &TopicConfig,
        extra: &[(&str, &str)],
    ) -> Result<(), LogError> {
        let operation = format!("creating topic `{topic}`");
        // `None` keeps forever, as on the file log: an event log is replayed
        // from its start, and the broker's default (7 days, judged by record
        // timestamps — an imported history's are old) would delete it.
        let retention_ms = match config.retention_ms {
            Some(v) => Some(v.to_string()),
            None if extra.iter().any(|(k, _)| *k == "retention.ms") => None,
            None => Some("-1".to_string()),
        };
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
