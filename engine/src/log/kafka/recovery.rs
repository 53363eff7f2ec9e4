//! Opening a writer id, for both writers: checking the names, taking over
//! from the previous incarnation (fold its progress records, append an
//! effective `Fence`), and — for a `progress`-mode writer — finding what that
//! incarnation left behind: outputs of a torn batch already in the log, and
//! group offsets that lag behind its `Commit` records. The protocol these
//! steps belong to is described in [`super::writer`].

use super::client::blocking;
use super::error::kafka_detail;
use super::groups::fetch_group_offsets;
use super::progress::{
    HEADER_SOURCE, HEADER_WRITER, PartitionOffsets, ProgressRecord, WriterHistory,
};
use super::progress_topic::{
    SCAN_CHUNK, append_progress, fold_progress, latest_checkpoint, write_checkpoint,
};
use super::shared::Shared;
use crate::log::{LogError, now_ms, partition_for_key};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How many times open retries when concurrent openers race for the same id.
const OPEN_ATTEMPTS: usize = 5;

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

/// Opens incarnation `max epoch + 1` of `writer_id`: folds its progress
/// records, appends an effective `Fence`. Returns the history folded through
/// the `Fence`, the progress partition, the next offset to fold and the epoch.
pub(crate) async fn take_over(
    shared: &Arc<Shared>,
    group: &str,
    writer_id: &str,
) -> Result<(WriterHistory, i32, i64, u64), LogError> {
    let partitions = shared.progress_partitions().await?;
    let partition = partition_for_key(writer_id.as_bytes(), partitions);
    let topic = &shared.clients.config.progress_topic;
    let (low, high) = shared.watermarks(topic, partition).await?;
    let (mut history, from) =
        match latest_checkpoint(shared, partition, writer_id, low, high).await? {
            Some((history, through)) => (history, through + 1),
            None => (WriterHistory::default(), low),
        };
    let mut next = fold_progress(shared, partition, writer_id, &mut history, from, high).await?;
    for _ in 0..OPEN_ATTEMPTS {
        let epoch = history.max_epoch + 1;
        let fence = ProgressRecord::Fence {
            writer_id: writer_id.to_string(),
            epoch,
            group: group.to_string(),
            at_ms: now_ms(),
        };
        let at = append_progress(shared, partition, &fence).await?;
        next = fold_progress(shared, partition, writer_id, &mut history, next, at + 1).await?;
        if history.live_fence_offset == Some(at) {
            write_checkpoint(shared, partition, writer_id, epoch, &history, next - 1).await;
            return Ok((history, partition, next, epoch));
        }
        tracing::info!(
            writer_id,
            epoch,
            "another incarnation opened concurrently; retrying"
        );
    }
    Err(kafka_detail(
        format!("opening writer `{writer_id}`"),
        format!(
            "{OPEN_ATTEMPTS} concurrent openers kept taking over the same writer id; is it shared by several processes?"
        ),
    ))
}

/// Step 3 of open: where the outputs `writer_id` wrote in `ranges` (each
/// from its start to the current high watermark) landed, by source tag —
/// the outputs of a torn batch that already reached the log.
pub(crate) async fn landed_outputs(
    shared: &Arc<Shared>,
    writer_id: &str,
    ranges: &PartitionOffsets,
) -> Result<HashMap<String, (String, i32, i64)>, LogError> {
    let mut landed = HashMap::new();
    for (topic, partitions) in ranges {
        for (&partition, &start) in partitions {
            let (low, high) = match shared.watermarks(topic, partition).await {
                Ok(w) => w,
                // The topic is gone: nothing of it can be duplicated.
                Err(LogError::UnknownTopic(_)) => continue,
                Err(e) => return Err(e),
            };
            let mut from = start.max(low);
            while from < high {
                let records = shared
                    .read_range(topic, partition, from, high, SCAN_CHUNK)
                    .await?;
                let Some(last) = records.last() else { break };
                from = last.offset + 1;
                for r in records {
                    if r.record.header(HEADER_WRITER) != Some(writer_id.as_bytes()) {
                        continue;
                    }
                    let Some(tag) = r.record.header(HEADER_SOURCE) else {
                        continue;
                    };
                    let tag = String::from_utf8_lossy(tag).into_owned();
                    landed
                        .entry(tag)
                        .or_insert((r.topic.clone(), r.partition, r.offset));
                }
            }
        }
    }
    Ok(landed)
}

/// Step 4 of open: the positions of `ours` (what the writer's counted
/// `Commit`s committed) whose group offset is absent or behind.
pub(crate) async fn lagging_group_offsets(
    shared: &Arc<Shared>,
    group: &str,
    ours: &BTreeMap<(String, i32), i64>,
) -> Result<BTreeMap<(String, i32), i64>, LogError> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in ours.keys() {
        by_topic.entry(topic.as_str()).or_default().push(*partition);
    }
    let mut lagging = BTreeMap::new();
    for (topic, partitions) in by_topic {
        let me = shared.clone();
        let (group, topic_owned) = (group.to_string(), topic.to_string());
        let committed = blocking("reading committed offsets", move || {
            fetch_group_offsets(&me.clients, &group, &topic_owned, &partitions)
        })
        .await?;
        for ((t, p), &next) in
            ours.range((topic.to_string(), i32::MIN)..=(topic.to_string(), i32::MAX))
        {
            if committed.get(p).is_none_or(|&g| g < next) {
                lagging.insert((t.clone(), *p), next);
            }
        }
    }
    Ok(lagging)
}
