//! The event log: one trait, three backends.
//!
//! A [`Log`] holds named topics, each split into partitions; a partition is an
//! append-only sequence of [`Record`]s addressed by a dense offset (0, 1, 2, …).
//! Every backend — [`memory::MemoryLog`] for tests, [`file::FileLog`] as the
//! embedded default and [`kafka::KafkaLog`] for production — passes the same
//! conformance suite (`engine/tests/conformance/`).
//!
//! Read-process-write goes through a [`TransactionalWriter`]: one commit appends
//! the outputs of a batch to any number of partitions *and* moves the consumer
//! group's input positions, atomically. A writer is opened under a `writer_id`;
//! opening a new writer with the same id fences the old one (a "zombie" that
//! keeps running after it was replaced gets [`LogError::Fenced`] on commit).

pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
mod partitioner;
mod types;

pub use partitioner::partition_for_key;
pub use types::*;

use async_trait::async_trait;
use std::collections::BTreeMap;

/// An append-only, partitioned, replayable log.
#[async_trait]
pub trait Log: Send + Sync + 'static {
    /// Short backend name for messages and metrics labels: `memory`, `file`, `kafka`.
    fn backend(&self) -> &'static str;

    /// Creates a topic. Fails with [`LogError::TopicExists`] if it already exists.
    async fn create_topic(&self, topic: &str, config: &TopicConfig) -> Result<(), LogError>;

    /// Names of all topics, sorted.
    async fn list_topics(&self) -> Result<Vec<String>, LogError>;

    /// Partitions of a topic with their watermarks.
    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, LogError>;

    /// Appends a batch to one partition, all or nothing; returns the offsets given.
    async fn append(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<Record>,
    ) -> Result<AppendedRange, LogError>;

    /// Reads up to `max_records` records starting at offset `from`.
    ///
    /// Returns an empty vector at the end of the partition. Reading below the
    /// low watermark (data removed by retention) is [`LogError::OffsetOutOfRange`],
    /// never a silent jump forward.
    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max_records: usize,
    ) -> Result<Vec<StoredRecord>, LogError>;

    /// `(low, high)`: the first readable offset and the offset the next append gets.
    async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError>;

    /// The first offset whose record timestamp is `>= timestamp_ms`, or `None`
    /// when every record is older.
    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, LogError>;

    /// Opens the transactional writer `writer_id` committing positions for
    /// consumer group `group`. Recovers whatever a previous incarnation left
    /// half-done and fences it.
    async fn open_writer(
        &self,
        group: &str,
        writer_id: &str,
    ) -> Result<Box<dyn TransactionalWriter>, LogError>;

    /// The input positions (next offset to read, per partition) committed for
    /// `group` on `topic`. Partitions with no committed position are absent.
    async fn committed_positions(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<i32, i64>, LogError>;
}

/// Commits outputs and input positions together (read-process-write).
#[async_trait]
pub trait TransactionalWriter: Send {
    /// The id this writer was opened with.
    fn writer_id(&self) -> &str;

    /// The fencing epoch: grows each time a writer with this id is opened.
    fn epoch(&self) -> u64;

    /// Appends every output and moves every position, atomically: after a
    /// crash at any point either all of it is visible or none of it is.
    /// Returns the offsets given to the outputs, in order.
    async fn commit(&mut self, txn: Transaction) -> Result<Vec<(String, i32, i64)>, LogError>;
}
