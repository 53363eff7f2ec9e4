//! Metadata requests: a topic's partitions (cached in [`Clients`]), the
//! topic names, a partition's watermarks, the offset for a timestamp. Each
//! borrows a reader of the pool and blocks; callers run them on the
//! blocking pool.

use super::client::Clients;
use super::error::{kafka_detail, kafka_error};
use crate::log::LogError;
use rdkafka::consumer::Consumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Partition ids of `topic` from fresh metadata; `None` if the topic does not exist.
pub(crate) fn fetch_topic_partitions(
    clients: &Clients,
    topic: &str,
) -> Result<Option<Vec<i32>>, LogError> {
    let reader = clients.take_reader()?;
    let result = reader.fetch_metadata(Some(topic), clients.timeout());
    clients.put_reader(reader);
    let metadata =
        result.map_err(|e| kafka_error(format!("fetching metadata of `{topic}`"), &e))?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if let Some(err) = t.error() {
        let code = RDKafkaErrorCode::from(err);
        return match code {
            RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic => Ok(None),
            // A topic that is being created has no leader yet: report it as
            // absent so that callers wait or fail clearly.
            RDKafkaErrorCode::LeaderNotAvailable => Ok(None),
            other => Err(kafka_detail(
                format!("fetching metadata of `{topic}`"),
                format!("broker reported {other}"),
            )),
        };
    }
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort_unstable();
    if ids.is_empty() {
        return Ok(None);
    }
    clients.cache_partitions(topic, ids.len() as i32);
    Ok(Some(ids))
}

/// Names of all topics, from fresh metadata.
pub(crate) fn fetch_topic_names(clients: &Clients) -> Result<Vec<String>, LogError> {
    let reader = clients.take_reader()?;
    let result = reader.fetch_metadata(None, clients.timeout());
    clients.put_reader(reader);
    let metadata = result.map_err(|e| kafka_error("listing topics", &e))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name().to_string())
        .collect())
}

/// `(low, high)` watermarks of one partition.
pub(crate) fn fetch_watermarks(
    clients: &Clients,
    topic: &str,
    partition: i32,
) -> Result<(i64, i64), LogError> {
    // A partition whose leader is still being elected (a topic created a
    // moment ago, a broker restart) answers "not leader" for a while: wait
    // for the election within the client timeout instead of failing.
    let deadline = std::time::Instant::now() + clients.timeout();
    loop {
        let reader = clients.take_reader()?;
        let result = reader.fetch_watermarks(topic, partition, clients.timeout());
        clients.put_reader(reader);
        match result {
            Ok(marks) => return Ok(marks),
            Err(e)
                if e.rdkafka_error_code().is_some_and(is_leader_moving)
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                return Err(kafka_error(
                    format!("fetching watermarks of {topic}[{partition}]"),
                    &e,
                ));
            }
        }
    }
}

/// Answers a broker gives while a partition's leadership is in transition.
fn is_leader_moving(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::FencedLeaderEpoch
            | RDKafkaErrorCode::UnknownLeaderEpoch
    )
}

/// The first offset with a timestamp `>= timestamp_ms`, `None` past the end.
pub(crate) fn offset_for_time(
    clients: &Clients,
    topic: &str,
    partition: i32,
    timestamp_ms: i64,
) -> Result<Option<i64>, LogError> {
    let operation = || format!("looking up {topic}[{partition}] by timestamp {timestamp_ms}");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(timestamp_ms))
        .map_err(|e| kafka_error(operation(), &e))?;
    let reader = clients.take_reader()?;
    let result = reader.offsets_for_times(tpl, clients.timeout());
    clients.put_reader(reader);
    let found = result.map_err(|e| kafka_error(operation(), &e))?;
    let Some(elem) = found.find_partition(topic, partition) else {
        return Err(kafka_detail(
            operation(),
            "the broker returned no answer for the partition",
        ));
    };
    if let Err(e) = elem.error() {
        return Err(kafka_error(operation(), &e));
    }
    Ok(match elem.offset() {
        Offset::Offset(o) if o >= 0 => Some(o),
        _ => None,
    })
}
