//! In-memory log for tests and the topology test driver. Same semantics as
//! the file log, nothing persisted.

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Partition {
    /// Offset of `records[0]`.
    low: i64,
    records: Vec<Record>,
}

impl Partition {
    fn high(&self) -> i64 {
        self.low + self.records.len() as i64
    }
}

#[derive(Default)]
struct State {
    topics: BTreeMap<String, Vec<Partition>>,
    /// (group, topic) → partition → next offset.
    positions: HashMap<(String, String), BTreeMap<i32, i64>>,
    /// writer id → current epoch.
    epochs: HashMap<String, u64>,
}

/// A [`Log`] held in memory. Cloning shares the same log.
#[derive(Clone, Default)]
pub struct MemoryLog {
    state: Arc<Mutex<State>>,
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops every record below `offset` (what retention does), for tests of expiry.
    pub fn truncate_before(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), LogError> {
        let mut st = self.lock();
        let p = partition_mut(&mut st, topic, partition)?;
        let drop = (offset - p.low).clamp(0, p.records.len() as i64) as usize;
        p.records.drain(..drop);
        p.low += drop as i64;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a single push/insert), so recover from poisoning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn partition_mut<'a>(
    st: &'a mut State,
    topic: &str,
    partition: i32,
) -> Result<&'a mut Partition, LogError> {
    let parts = st
        .topics
        .get_mut(topic)
        .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?;
    let n = parts.len() as i32;
    parts
        .get_mut(usize::try_from(partition).unwrap_or(usize::MAX))
        .ok_or(LogError::UnknownPartition {
            topic: topic.to_string(),
            partition,
            partitions: n,
        })
}

#[async_trait]
impl Log for MemoryLog {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn create_topic(&self, topic: &str, config: &TopicConfig) -> Result<(), LogError> {
        validate_topic_name(topic)?;
        if config.partitions < 1 {
            return Err(LogError::InvalidArgument(format!(
                "partitions must be at least 1, got {}",
                config.partitions
            )));
        }
        let mut st = self.lock();
        if st.topics.contains_key(topic) {
            return Err(LogError::TopicExists(topic.to_string()));
        }
        let parts = (0..config.partitions)
            .map(|_| Partition::default())
            .collect();
        st.topics.insert(topic.to_string(), parts);
        Ok(())
    }

    async fn list_topics(&self) -> Result<Vec<String>, LogError> {
        Ok(self.lock().topics.keys().cloned().collect())
    }

    async fn describe_topic(&self, topic: &str) -> Result<TopicDescription, LogError> {
        let st = self.lock();
        let parts = st
            .topics
            .get(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_string()))?;
        Ok(TopicDescription {
            topic: topic.to_string(),
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, p)| PartitionInfo {
                    partition: i as i32,
                    low_watermark: p.low,
                    high_watermark: p.high(),
                })
                .collect(),
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
        let mut st = self.lock();
        let p = partition_mut(&mut st, topic, partition)?;
        let first = p.high();
        p.records.extend(records);
        Ok(AppendedRange {
            first,
            last: p.high() - 1,
        })
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        max_records: usize,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let mut st = self.lock();
        let p = partition_mut(&mut st, topic, partition)?;
        if from < p.low || from > p.high() {
            return Err(LogError::OffsetOutOfRange {
                topic: topic.to_string(),
                partition,
                requested: from,
                low: p.low,
                high: p.high(),
            });
        }
        let start = (from - p.low) as usize;
        Ok(p.records[start..]
            .iter()
            .take(max_records)
            .enumerate()
            .map(|(i, r)| StoredRecord {
                topic: topic.to_string(),
                partition,
                offset: from + i as i64,
                record: r.clone(),
            })
            .collect())
    }

    async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), LogError> {
        let mut st = self.lock();
        let p = partition_mut(&mut st, topic, partition)?;
        Ok((p.low, p.high()))
    }

    async fn offset_for_timestamp(
        &self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, LogError> {
        let mut st = self.lock();
        let p = partition_mut(&mut st, topic, partition)?;
        Ok(p.records
            .iter()
            .position(|r| r.timestamp_ms >= timestamp_ms)
            .map(|i| p.low + i as i64))
    }

    async fn open_writer(
        &self,
        group: &str,
        writer_id: &str,
    ) -> Result<Box<dyn TransactionalWriter>, LogError> {
        let mut st = self.lock();
        let epoch = st.epochs.entry(writer_id.to_string()).or_insert(0);
        *epoch += 1;
        Ok(Box::new(MemoryWriter {
            log: self.clone(),
            group: group.to_string(),
            writer_id: writer_id.to_string(),
            epoch: *epoch,
        }))
    }

    async fn committed_positions(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<BTreeMap<i32, i64>, LogError> {
        Ok(self
            .lock()
            .positions
            .get(&(group.to_string(), topic.to_string()))
            .cloned()
            .unwrap_or_default())
    }
}

struct MemoryWriter {
    log: MemoryLog,
    group: String,
    writer_id: String,
    epoch: u64,
}

#[async_trait]
impl TransactionalWriter for MemoryWriter {
    fn writer_id(&self) -> &str {
        &self.writer_id
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn commit(&mut self, txn: Transaction) -> Result<Vec<(String, i32, i64)>, LogError> {
        let mut st = self.log.lock();
        if st.epochs.get(&self.writer_id).copied() != Some(self.epoch) {
            return Err(LogError::Fenced {
                writer_id: self.writer_id.clone(),
                epoch: self.epoch,
            });
        }
        // Validate everything before mutating anything: all or nothing.
        for o in &txn.outputs {
            validate_records(std::slice::from_ref(&o.record))?;
            partition_mut(&mut st, &o.topic, o.partition)?;
        }
        let mut offsets = Vec::with_capacity(txn.outputs.len());
        for o in txn.outputs {
            let p = partition_mut(&mut st, &o.topic, o.partition)?;
            offsets.push((o.topic, o.partition, p.high()));
            p.records.push(o.record);
        }
        for pos in txn.positions {
            st.positions
                .entry((self.group.clone(), pos.topic))
                .or_default()
                .insert(pos.partition, pos.next_offset);
        }
        Ok(offsets)
    }
}
