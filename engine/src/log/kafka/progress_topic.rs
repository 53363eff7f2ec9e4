//! Reading and writing a writer id's records in the progress topic:
//! appending one ([`append_progress`]), folding them into a
//! [`WriterHistory`] ([`fold_progress`]), and the checkpoints that keep an
//! open from folding the whole history ([`write_checkpoint`],
//! [`latest_checkpoint`]). What the records mean is [`super::progress`]'s.

use super::error::kafka_detail;
use super::produce::{Outgoing, produce_all};
use super::progress::{ProgressRecord, WriterHistory};
use super::shared::Shared;
use crate::log::{LogError, Record, now_ms};
use std::sync::Arc;

/// Records read by the first step of the backward search for the latest
/// checkpoint; each further step reads twice as many, up to the maximum.
const CHECKPOINT_SCAN_FIRST_CHUNK: i64 = 64;
const CHECKPOINT_SCAN_MAX_CHUNK: i64 = 4096;

/// Records read per round trip when scanning.
pub(crate) const SCAN_CHUNK: usize = 5_000;

/// Appends a checkpoint of `history` (the fold through `through`). Only an
/// optimization of later opens: a failure is logged, not returned.
pub(crate) async fn write_checkpoint(
    shared: &Arc<Shared>,
    partition: i32,
    writer_id: &str,
    epoch: u64,
    history: &WriterHistory,
    through: i64,
) {
    let checkpoint = ProgressRecord::Checkpoint {
        writer_id: writer_id.to_string(),
        epoch,
        through,
        state: history.snapshot(),
        at_ms: now_ms(),
    };
    if let Err(error) = append_progress(shared, partition, &checkpoint).await {
        tracing::warn!(writer_id, %error, "could not write a progress checkpoint; the next open will scan further back");
    }
}

/// The latest checkpoint of `writer_id` in `[low, high)`, scanning backwards
/// chunk by chunk: its state and the offset it was folded through.
pub(crate) async fn latest_checkpoint(
    shared: &Arc<Shared>,
    partition: i32,
    writer_id: &str,
    low: i64,
    high: i64,
) -> Result<Option<(WriterHistory, i64)>, LogError> {
    let topic = &shared.clients.config.progress_topic;
    let mut end = high;
    let mut chunk = CHECKPOINT_SCAN_FIRST_CHUNK;
    while end > low {
        let start = (end - chunk).max(low);
        chunk = (chunk * 2).min(CHECKPOINT_SCAN_MAX_CHUNK);
        let mut from = start;
        let mut found = None;
        while from < end {
            let records = shared
                .read_range(topic, partition, from, end, SCAN_CHUNK)
                .await?;
            let Some(last) = records.last() else { break };
            from = last.offset + 1;
            for r in &records {
                if r.record.key.as_deref() != Some(writer_id.as_bytes()) {
                    continue;
                }
                if let Ok(ProgressRecord::Checkpoint {
                    writer_id: id,
                    through,
                    state,
                    ..
                }) = serde_json::from_slice::<ProgressRecord>(&r.record.value)
                    && id == writer_id
                {
                    found = Some((WriterHistory::from_snapshot(&state), through));
                }
            }
        }
        if found.is_some() {
            return Ok(found);
        }
        end = start;
    }
    Ok(None)
}

/// Appends one progress record; returns its offset.
pub(crate) async fn append_progress(
    shared: &Arc<Shared>,
    partition: i32,
    record: &ProgressRecord,
) -> Result<i64, LogError> {
    let value = serde_json::to_vec(record)
        .map_err(|e| kafka_detail("writing a progress record", e.to_string()))?;
    let record = Record::new(Some(record.writer_id().as_bytes().to_vec()), value);
    let outgoing = [Outgoing {
        topic: &shared.clients.config.progress_topic,
        partition,
        record: &record,
        extra_headers: Vec::new(),
    }];
    let clients = &shared.clients;
    let offsets = produce_all(
        clients,
        &clients.producer,
        &outgoing,
        "writing a progress record",
    )
    .await?;
    offsets
        .first()
        .copied()
        .ok_or_else(|| kafka_detail("writing a progress record", "no acknowledgement"))
}

/// Folds `writer_id`'s records of the progress partition in `[from, until)`
/// into `history`; returns `until`.
pub(crate) async fn fold_progress(
    shared: &Arc<Shared>,
    partition: i32,
    writer_id: &str,
    history: &mut WriterHistory,
    mut from: i64,
    until: i64,
) -> Result<i64, LogError> {
    let topic = &shared.clients.config.progress_topic;
    while from < until {
        let records = shared
            .read_range(topic, partition, from, until, SCAN_CHUNK)
            .await?;
        let Some(last) = records.last() else {
            return Err(kafka_detail(
                format!("reading progress topic {topic}[{partition}]"),
                format!(
                    "the partition ended at offset {from}, before the acknowledged offset {}",
                    until - 1
                ),
            ));
        };
        from = last.offset + 1;
        for r in &records {
            if r.record.key.as_deref() != Some(writer_id.as_bytes()) {
                continue;
            }
            let parsed: ProgressRecord =
                serde_json::from_slice(&r.record.value).map_err(|e| LogError::Corrupt {
                    location: format!("progress topic {topic}[{partition}] at offset {}", r.offset),
                    detail: format!("not a progress record: {e}"),
                })?;
            if parsed.writer_id() == writer_id {
                history.apply(r.offset, &parsed);
            }
        }
    }
    Ok(from.max(until))
}
