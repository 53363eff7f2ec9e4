//! Producing records to explicit partitions and awaiting every delivery:
//! appends, progress records and progress-mode outputs all go through
//! [`produce_all`].

use super::client::{Clients, Producer, lock};
use super::error::{kafka_detail, kafka_error};
use crate::log::{LogError, Record};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use std::time::Duration;

/// One record to produce to an explicit partition.
pub(crate) struct Outgoing<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub record: &'a Record,
    /// Headers added after the record's own.
    pub extra_headers: Vec<(&'static str, Vec<u8>)>,
}

/// Produces `records` with `producer`, in order, and awaits every delivery.
/// Returns each record's offset. Records to one partition are enqueued
/// contiguously, so the idempotent producer keeps them in order.
pub(crate) async fn produce_all(
    clients: &Clients,
    producer: &Producer,
    records: &[Outgoing<'_>],
    operation: &str,
) -> Result<Vec<i64>, LogError> {
    let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
    let mut enqueue_error = None;
    let mut next = 0;
    while next < records.len() && enqueue_error.is_none() {
        {
            let _guard = lock(&clients.produce_lock);
            while next < records.len() {
                let o = &records[next];
                let mut headers =
                    OwnedHeaders::new_with_capacity(o.record.headers.len() + o.extra_headers.len());
                for h in &o.record.headers {
                    headers = headers.insert(KHeader {
                        key: &h.key,
                        value: Some(&h.value),
                    });
                }
                for (k, v) in &o.extra_headers {
                    headers = headers.insert(KHeader {
                        key: k,
                        value: Some(v),
                    });
                }
                let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(o.topic)
                    .partition(o.partition)
                    .payload(o.record.value.as_slice())
                    .timestamp(o.record.timestamp_ms)
                    .headers(headers);
                if let Some(k) = &o.record.key {
                    fr = fr.key(k.as_slice());
                }
                match producer.send_result(fr) {
                    Ok(d) => {
                        deliveries.push(d);
                        next += 1;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => break,
                    Err((e, _)) => {
                        enqueue_error = Some(kafka_error(
                            format!("{operation} (to {}[{}])", o.topic, o.partition),
                            &e,
                        ));
                        break;
                    }
                }
            }
        }
        if next < records.len() && enqueue_error.is_none() {
            // The local queue is full: let librdkafka drain it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Await every enqueued record even after an error, so that the caller
    // knows nothing of this call is still in flight when it returns.
    let mut offsets = Vec::with_capacity(deliveries.len());
    let mut first_error = enqueue_error;
    for (i, d) in deliveries.into_iter().enumerate() {
        match d.await {
            Ok(Ok(delivery)) => offsets.push(delivery.offset),
            Ok(Err((e, _))) => {
                if first_error.is_none() {
                    let o = &records[i];
                    first_error = Some(delivery_error(operation, o.topic, o.partition, &e));
                }
            }
            Err(_) => {
                if first_error.is_none() {
                    first_error = Some(kafka_detail(operation, "the producer was closed"));
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(offsets),
    }
}

fn delivery_error(operation: &str, topic: &str, partition: i32, e: &KafkaError) -> LogError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            LogError::UnknownTopic(topic.to_string())
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => LogError::RecordTooLarge {
            size: 0,
            limit: crate::log::MAX_RECORD_BYTES,
        },
        _ => kafka_error(format!("{operation} (to {topic}[{partition}])"), e),
    }
}
