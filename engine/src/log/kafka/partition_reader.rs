//! Partition readers: one consumer kept assigned to one partition between
//! reads, so that reading a partition forward (what a worker, a tail and a
//! rebuild do) continues from librdkafka's prefetched queue instead of
//! assigning, asking for watermarks and fetching again on every call.
//!
//! A read that continues where the previous one stopped costs no request:
//! it takes what librdkafka has queued. Only when the queue is empty does it
//! ask the broker for the high watermark, to tell "nothing more" (return
//! empty) from "more, still in flight" (wait for it). A read from anywhere
//! else repositions the consumer after checking the offset against the
//! watermarks, as a one-shot read does.
//!
//! Offsets that hold no record for a `read_committed` reader — transaction
//! markers (one after every transaction) and aborted records — are skipped
//! by librdkafka without a trace, so "the high watermark is ahead but
//! nothing comes" is normal on a transactional topic. The reader learns it
//! from librdkafka's end-of-partition event and remembers it (`eof_pending`,
//! `empty_until`), so that a tail sitting behind a marker answers "nothing
//! more" at once instead of waiting for a record that will never come.

use super::client::{
    Clients, Reader, TracingContext, consumer_error, fetch_watermarks, kafka_detail, kafka_error,
    lock, reader_config, to_stored,
};
use crate::log::{LogError, StoredRecord};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Partitions with a reader of their own; past this the least recently
/// used one is closed.
const MAX_PARTITION_READERS: usize = 64;
/// Bytes a partition reader may prefetch (librdkafka's local queue).
const PREFETCH_KBYTES: usize = 8 * 1024;
/// How long the broker may hold a fetch at the end of a partition.
const IDLE_FETCH_WAIT_MS: u64 = 100;

/// A consumer assigned to one partition and the offset it delivers next.
pub(crate) struct PartitionReader {
    reader: Reader,
    next: i64,
    last_used: Instant,
    /// librdkafka reported the end of the partition after the last record
    /// delivered: whatever lies between `next` and that end holds no record.
    eof_pending: bool,
    /// `Some(h)`: offsets `[next, h)` were found to hold no deliverable
    /// record (markers, aborted records). Only a hint to answer quickly;
    /// `next` itself never moves past an offset that was not delivered.
    empty_until: Option<i64>,
}

/// The partition readers of one [`Clients`], by (topic, partition). A read
/// takes its partition's reader out while it runs, so two concurrent reads
/// of one partition never share a consumer (the second makes its own).
#[derive(Default)]
pub(crate) struct PartitionReaders {
    readers: Mutex<HashMap<(String, i32), PartitionReader>>,
}

impl PartitionReaders {
    fn take(&self, topic: &str, partition: i32) -> Option<PartitionReader> {
        lock(&self.readers).remove(&(topic.to_string(), partition))
    }

    fn put(&self, topic: &str, partition: i32, reader: PartitionReader) {
        let mut readers = lock(&self.readers);
        if readers.len() >= MAX_PARTITION_READERS {
            let oldest = readers
                .iter()
                .min_by_key(|(_, r)| r.last_used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                readers.remove(&k);
            }
        }
        readers.insert((topic.to_string(), partition), reader);
    }
}

fn new_partition_reader(clients: &Clients) -> Result<Reader, LogError> {
    let mut c = reader_config(&clients.config);
    // Unlike one-shot readers, read ahead: the next read takes it from here.
    // At the end of the partition a fetch waits up to IDLE_FETCH_WAIT_MS
    // for new records; a shorter wait would have an idle partition's reader
    // ask the broker many times a second for nothing.
    c.set("queued.min.messages", "100000")
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES.to_string())
        .set("fetch.wait.max.ms", IDLE_FETCH_WAIT_MS.to_string());
    c.create_with_context::<_, Reader>(TracingContext)
        .map_err(|e| kafka_error("creating a consumer", &e))
}

fn assign(reader: &Reader, topic: &str, partition: i32, from: i64) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    reader.assign(&tpl)
}

/// Reads up to `max` records of one partition from `from` (see the module doc).
pub(crate) fn read(
    clients: &Clients,
    topic: &str,
    partition: i32,
    from: i64,
    max: usize,
) -> Result<Vec<StoredRecord>, LogError> {
    let operation = || format!("reading {topic}[{partition}] from offset {from}");
    if max == 0 {
        return Ok(Vec::new());
    }
    let mut known_high = None;
    let mut reader = match clients.partition_readers.take(topic, partition) {
        Some(r) if r.next == from => r,
        taken => {
            let (low, high) = fetch_watermarks(clients, topic, partition)?;
            if from < low || from > high {
                if let Some(r) = taken {
                    clients.partition_readers.put(topic, partition, r);
                }
                return Err(LogError::OffsetOutOfRange {
                    topic: topic.to_string(),
                    partition,
                    requested: from,
                    low,
                    high,
                });
            }
            known_high = Some(high);
            let consumer = match taken {
                Some(r) => r.reader,
                None => new_partition_reader(clients)?,
            };
            assign(&consumer, topic, partition, from).map_err(|e| kafka_error(operation(), &e))?;
            PartitionReader {
                reader: consumer,
                next: from,
                last_used: Instant::now(),
                eof_pending: false,
                empty_until: None,
            }
        }
    };
    let result = poll(clients, &mut reader, topic, partition, max, known_high);
    if result.is_ok() {
        reader.last_used = Instant::now();
        clients.partition_readers.put(topic, partition, reader);
    }
    result
}

/// After an end-of-partition event while the broker reports more, how long
/// to wait for a record before taking the rest for offsets that hold none
/// (transaction markers).
const AFTER_EOF: Duration = Duration::from_millis(250);

/// Takes what is queued, waiting only for records known to exist.
fn poll(
    clients: &Clients,
    r: &mut PartitionReader,
    topic: &str,
    partition: i32,
    max: usize,
    mut known_high: Option<i64>,
) -> Result<Vec<StoredRecord>, LogError> {
    let from = r.next;
    let operation = || format!("reading {topic}[{partition}] from offset {from}");
    let mut out: Vec<StoredRecord> = Vec::new();
    // Fails only when nothing arrives for a whole timeout although records exist.
    let mut deadline = Instant::now() + clients.timeout();
    let mut eof_at: Option<Instant> = None;
    while out.len() < max {
        // Wait only while records are known to be ahead; else just drain.
        let ahead = known_high.is_some_and(|h| h > r.next);
        let wait = if ahead {
            Duration::from_millis(20)
        } else {
            Duration::ZERO
        };
        match r.reader.poll(wait) {
            Some(Ok(m)) => {
                if m.topic() != topic || m.partition() != partition || m.offset() < r.next {
                    continue; // left over from an earlier assignment
                }
                r.next = m.offset() + 1;
                r.eof_pending = false;
                r.empty_until = None;
                out.push(to_stored(&m));
                deadline = Instant::now() + clients.timeout();
                eof_at = None;
            }
            // May be stale (queued before later records): only a hint.
            Some(Err(KafkaError::PartitionEOF(_))) => {
                r.eof_pending = true;
                if ahead {
                    eof_at.get_or_insert_with(Instant::now);
                }
            }
            Some(Err(e)) => {
                return Err(consumer_error(
                    clients,
                    topic,
                    partition,
                    r.next,
                    &e,
                    operation(),
                ));
            }
            None if ahead => {
                if eof_at.is_some_and(|t| t.elapsed() >= AFTER_EOF) {
                    // The offsets left hold no records (markers, aborted ones).
                    r.empty_until = known_high;
                    return Ok(out);
                }
                if Instant::now() >= deadline {
                    if !out.is_empty() {
                        return Ok(out); // a partial read; the caller continues from there
                    }
                    return Err(kafka_detail(
                        operation(),
                        format!(
                            "no record arrived within {} ms although the high watermark is {}",
                            clients.config.request_timeout_ms,
                            known_high.unwrap_or_default()
                        ),
                    ));
                }
            }
            None => {
                // Nothing queued and no record known ahead: what we have is
                // all, unless the broker holds more than the last fetch saw.
                if !out.is_empty() {
                    return Ok(out);
                }
                let (_, high) = fetch_watermarks(clients, topic, partition)?;
                if high <= r.next || r.empty_until.is_some_and(|e| e >= high) {
                    return Ok(out);
                }
                known_high = Some(high);
                if r.eof_pending {
                    // The end was reported before this read (and no record
                    // since): give in-flight records AFTER_EOF to show up.
                    eof_at.get_or_insert_with(Instant::now);
                }
            }
        }
    }
    Ok(out)
}
