//! One-shot reads of a range of a partition through the reader pool: what
//! internal scans use (the progress fold, torn-batch recovery, the timestamp
//! search). Also the conversions every consumer shares: a message as a
//! [`StoredRecord`], a consumer error as a [`LogError`].

use super::client::{Clients, is_connection_trouble};
use super::error::{kafka_detail, kafka_error};
use super::metadata::fetch_watermarks;
use crate::log::{Header, LogError, Record, StoredRecord};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

/// Reads `[from, until)` of one partition, at most `max` records, stopping
/// early at the end of the committed data. The caller checked `from` against
/// the watermarks.
pub(crate) fn read_range(
    clients: &Clients,
    topic: &str,
    partition: i32,
    from: i64,
    until: i64,
    max: usize,
) -> Result<Vec<StoredRecord>, LogError> {
    let operation = || format!("reading {topic}[{partition}] from offset {from}");
    if max == 0 || from >= until {
        return Ok(Vec::new());
    }
    let reader = clients.take_reader()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| kafka_error(operation(), &e))?;
    if let Err(e) = reader.assign(&tpl) {
        return Err(kafka_error(operation(), &e));
    }
    // Fails only when nothing arrives for a whole timeout, however long a
    // big read takes overall.
    let mut deadline = Instant::now() + clients.timeout();
    let mut out: Vec<StoredRecord> = Vec::new();
    let result = loop {
        let next = out.last().map_or(from, |r| r.offset + 1);
        if out.len() >= max || next >= until {
            break Ok(());
        }
        if Instant::now() >= deadline {
            break if out.is_empty() {
                Err(kafka_detail(
                    operation(),
                    format!(
                        "no record arrived within {} ms although the high watermark is {until} \
                         (hint: a slow broker may need a smaller fetch_max_bytes)",
                        clients.config.request_timeout_ms
                    ),
                ))
            } else {
                Ok(()) // a partial read; the caller continues from there
            };
        }
        match reader.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                if m.topic() != topic || m.partition() != partition || m.offset() < next {
                    continue; // left over from an earlier assignment
                }
                out.push(to_stored(&m));
                deadline = Instant::now() + clients.timeout();
            }
            Some(Err(KafkaError::PartitionEOF(p))) if p == partition => break Ok(()),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            // Keep waiting: librdkafka reconnects (see `is_connection_trouble`).
            Some(Err(e)) if is_connection_trouble(&e) => {}
            Some(Err(e)) => {
                break Err(consumer_error(
                    clients,
                    topic,
                    partition,
                    next,
                    &e,
                    operation(),
                ));
            }
        }
    };
    // A reader that failed may hold more events of the failure: not pooled.
    if result.is_ok() {
        clients.put_reader(reader);
    }
    result.map(|()| out)
}

/// A consumer's error while reading `topic[partition]` at `requested`: an
/// offset out of range (retention removed the data between the watermark
/// check and the fetch) becomes [`LogError::OffsetOutOfRange`] with the
/// current watermarks; anything else a Kafka error of `operation`.
pub(crate) fn consumer_error(
    clients: &Clients,
    topic: &str,
    partition: i32,
    requested: i64,
    e: &KafkaError,
    operation: String,
) -> LogError {
    let code = e.rdkafka_error_code();
    if code == Some(RDKafkaErrorCode::OffsetOutOfRange)
        || code == Some(RDKafkaErrorCode::AutoOffsetReset)
    {
        let (low, high) = fetch_watermarks(clients, topic, partition).unwrap_or((-1, -1));
        LogError::OffsetOutOfRange {
            topic: topic.to_string(),
            partition,
            requested,
            low,
            high,
        }
    } else {
        kafka_error(operation, e)
    }
}

pub(crate) fn to_stored<M: Message>(m: &M) -> StoredRecord {
    let headers = m
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_string(),
                    value: h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    StoredRecord {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        record: Record {
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers,
            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
        },
    }
}
