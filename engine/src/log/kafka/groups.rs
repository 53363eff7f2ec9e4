//! Consumer-group offsets: reading and committing them through a group
//! client that never subscribes (`committed_positions`, the progress-mode
//! mirror, the transactions-mode offsets).

use super::client::Clients;
use super::error::{kafka_detail, kafka_error};
use crate::log::LogError;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::BTreeMap;

/// The committed offsets of `group` on the given partitions of `topic`.
pub(crate) fn fetch_group_offsets(
    clients: &Clients,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, LogError> {
    let operation = || format!("reading committed offsets of group `{group}` on `{topic}`");
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    let consumer = clients.group_client(group)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition(topic, *p);
    }
    // The group client reads `read_committed`, so the broker answers only
    // stable offsets: while a transaction that sent offsets for this group is
    // open (e.g. its writer was killed mid-transaction) the answer waits.
    let committed = consumer
        .committed_offsets(tpl, clients.timeout())
        .map_err(|e| match e.rdkafka_error_code() {
            Some(RDKafkaErrorCode::OperationTimedOut) => kafka_detail(
                operation(),
                format!(
                    "{e}; hint: if a transactions-mode writer of this group died mid-transaction, \
                     its offsets stay unstable until a new incarnation opens (which aborts the \
                     transaction) or the broker's transaction timeout passes"
                ),
            ),
            _ => kafka_error(operation(), &e),
        })?;
    let mut out = BTreeMap::new();
    for e in committed.elements_for_topic(topic) {
        if let Err(err) = e.error() {
            return Err(kafka_error(operation(), &err));
        }
        if let Offset::Offset(o) = e.offset() {
            out.insert(e.partition(), o);
        }
    }
    Ok(out)
}

/// Commits `positions` ((topic, partition) → next offset) for `group`.
pub(crate) fn commit_group_offsets(
    clients: &Clients,
    group: &str,
    positions: &BTreeMap<(String, i32), i64>,
) -> Result<(), LogError> {
    if positions.is_empty() {
        return Ok(());
    }
    let operation = || format!("committing offsets of group `{group}`");
    let consumer = clients.group_client(group)?;
    let tpl = positions_tpl(positions).map_err(|e| kafka_error(operation(), &e))?;
    consumer
        .commit(&tpl, CommitMode::Sync)
        .map_err(|e| kafka_error(operation(), &e))
}

/// `positions` ((topic, partition) → next offset) as a partition list.
pub(crate) fn positions_tpl(
    positions: &BTreeMap<(String, i32), i64>,
) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in positions {
        tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
    }
    Ok(tpl)
}
