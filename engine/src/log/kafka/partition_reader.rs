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
//! markers (one after every transaction) and aborted records — are never
//! delivered, so "the high watermark is ahead but nothing comes" is normal
//! on a transactional topic. librdkafka does move the consumer's position
//! past a marker when `poll` consumes it (and past the aborted records
//! before it), so a read that finds the queue empty and the position at the
//! high watermark knows there is nothing more, at once, without guessing
//! from timing.

use super::client::{Clients, Reader, TracingContext, is_connection_trouble, lock, reader_config};
use super::error::{kafka_detail, kafka_error};
use super::metadata::fetch_watermarks;
use super::scan::{consumer_error, to_stored};
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
}

/// The partition readers of one [`KafkaLog`](super::KafkaLog), by (topic,
/// partition); kept beside its [`Clients`], not in them, so that this
/// module depends on the clients and never the other way round. A read
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

/// Reads up to `max` records of one partition from `from` with the reader
/// `readers` keeps for it (see the module doc).
pub(crate) fn read(
    clients: &Clients,
    readers: &PartitionReaders,
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
    let mut reader = match readers.take(topic, partition) {
        Some(r) if r.next == from => r,
        taken => {
            let (low, high) = fetch_watermarks(clients, topic, partition)?;
            if from < low || from > high {
                if let Some(r) = taken {
                    readers.put(topic, partition, r);
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
            }
        }
    };
    let result = poll(clients, &mut reader, topic, partition, max, known_high);
    if result.is_ok() {
        reader.last_used = Instant::now();
        readers.put(topic, partition, reader);
    }
    result
}

/// Where the consumer stands in the partition: after the last record
/// delivered and after any transaction marker (with the aborted records
/// before it) that `poll` consumed since. Local, no request.
fn consumed_position(r: &PartitionReader, topic: &str, partition: i32) -> Option<i64> {
    let tpl = r.reader.position().ok()?;
    match tpl.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

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
    // Offsets before this hold nothing more to deliver (records taken,
    // markers and aborted records passed).
    let passed = |r: &PartitionReader| {
        consumed_position(r, topic, partition).map_or(r.next, |p| p.max(r.next))
    };
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
                out.push(to_stored(&m));
                deadline = Instant::now() + clients.timeout();
            }
            // The position tells the same, exactly.
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            // News of the connection, not of this read (see
            // `is_connection_trouble`): the watermark fetch or the deadline
            // below fails the read if the broker stays away.
            Some(Err(e)) if is_connection_trouble(&e) && Instant::now() < deadline => {}
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
                if known_high.is_some_and(|h| passed(r) >= h) {
                    return Ok(out); // the offsets left held no records
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
                if high <= passed(r) {
                    return Ok(out);
                }
                known_high = Some(high);
            }
        }
    }
    Ok(out)
}
