//! Restoring a stateful processor's state, and when to snapshot it.
//!
//! On start (and after any failed batch, whose fold may have moved the state
//! past what is stored) the worker restores the state to exactly the stored
//! positions: the stored snapshot, then a fold of what came after it, with
//! side effects off. A snapshot that is missing, unreadable or of another
//! format version is not an error: the state is cleared and warmed up from
//! the start of the log, and the log says why. See
//! docs/design/2026-12-03-processor-contract-v2.md.

use super::config::TopologyConfig;
use super::fold;
use super::worker::RuntimeError;
use crate::log::Log;
use crate::processor::Processor;
use crate::store::{ProjectionStore, SCOPE_ALL, StateSnapshot};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How a restore went, for the log and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The stored snapshot was used (else the state was warmed up from scratch).
    pub from_snapshot: bool,
    /// Records folded with side effects off to reach the stored positions.
    pub warm_up_records: u64,
}

/// Brings `processor`'s state to the topology's stored positions.
/// A stateless processor is left alone.
pub async fn restore(
    processor: &mut dyn Processor,
    config: &TopologyConfig,
    log: &dyn Log,
    store: &dyn ProjectionStore,
) -> Result<Restored, RuntimeError> {
    let Some(state) = processor.state() else {
        return Ok(Restored::default());
    };
    let stored = store.load_offsets(&config.name).await?;
    let snapshot = store.load_state(&config.name, SCOPE_ALL).await?;
    let mut from_snapshot = false;
    let mut from: BTreeMap<(String, i32), i64> = BTreeMap::new();
    match snapshot {
        Some(s) if s.format_version != state.format_version() => {
            tracing::warn!(
                topology = %config.name,
                stored = s.format_version,
                expected = state.format_version(),
                "state snapshot is of another format version; warming up from the log"
            );
            state.clear();
        }
        Some(s) => match state.restore(&s.bytes) {
            Ok(()) => {
                from_snapshot = true;
                from = s.positions;
            }
            Err(error) => {
                tracing::warn!(topology = %config.name, error = %error, "state snapshot unreadable; warming up from the log");
                state.clear();
            }
        },
        None if stored.is_empty() => {
            // Nothing was ever committed: the empty state is the right one.
            state.clear();
        }
        None => {
            tracing::warn!(topology = %config.name, "no state snapshot stored; warming up from the log");
            state.clear();
        }
    }
    let warm_up_records = warm_up(processor, config, log, &from, &stored).await?;
    let restored = Restored {
        from_snapshot,
        warm_up_records,
    };
    tracing::info!(
        topology = %config.name,
        from_snapshot,
        warm_up_records,
        "processor state restored"
    );
    Ok(restored)
}

/// Folds every partition from `from` (or its first readable offset) up to
/// `to` into the processor's state, dropping the effects: they are stored
/// already. Partitions absent from `to` were never committed: nothing to do.
async fn warm_up(
    processor: &mut dyn Processor,
    config: &TopologyConfig,
    log: &dyn Log,
    from: &BTreeMap<(String, i32), i64>,
    to: &BTreeMap<(String, i32), i64>,
) -> Result<u64, RuntimeError> {
    let mut folded = 0u64;
    let chunk = config.batch.max_events.max(1);
    for ((topic, partition), end) in to {
        let low = log
            .describe_topic(topic)
            .await?
            .partitions
            .iter()
            .find(|p| p.partition == *partition)
            .map_or(0, |p| p.low_watermark);
        let mut at = from.get(&(topic.clone(), *partition)).copied().unwrap_or(0);
        if at < low {
            tracing::warn!(
                topology = %config.name,
                topic = %topic,
                partition,
                first_readable = low,
                "records the state needs were removed by retention; the state misses them"
            );
            at = low;
        }
        while at < *end {
            let want = chunk.min((end - at) as usize);
            let records = log.read(topic, *partition, at, want).await?;
            let Some(last) = records.last() else { break };
            at = last.offset + 1;
            let records: Vec<_> = records.into_iter().filter(|r| r.offset < *end).collect();
            folded += records.len() as u64;
            fold::fold(processor, config, records)?;
        }
    }
    Ok(folded)
}

/// A snapshot of the processor's state at `positions`, if it keeps one.
pub fn take(
    processor: &mut dyn Processor,
    positions: &BTreeMap<(String, i32), i64>,
) -> Option<StateSnapshot> {
    let state = processor.state()?;
    Some(StateSnapshot {
        scope: SCOPE_ALL.to_string(),
        format_version: state.format_version(),
        bytes: state.snapshot(),
        positions: positions.clone(),
    })
}

/// When the next snapshot is due: with the first batch, then after
/// `snapshot_every_batches` batches or `snapshot_every_ms`, whichever first.
#[derive(Debug)]
pub struct SnapshotCadence {
    every_batches: u64,
    every: Duration,
    batches_since: u64,
    last: Option<Instant>,
}

impl SnapshotCadence {
    pub fn new(config: &TopologyConfig) -> Self {
        SnapshotCadence {
            every_batches: config.state.snapshot_every_batches.max(1),
            every: Duration::from_millis(config.state.snapshot_every_ms),
            batches_since: 0,
            last: None,
        }
    }

    /// Whether the batch being committed should carry a snapshot.
    pub fn due(&self) -> bool {
        match self.last {
            None => true,
            Some(at) => self.batches_since + 1 >= self.every_batches || at.elapsed() >= self.every,
        }
    }

    /// Books a batch, with or without a snapshot.
    pub fn batch(&mut self, with_snapshot: bool) {
        if with_snapshot {
            self.batches_since = 0;
            self.last = Some(Instant::now());
        } else {
            self.batches_since += 1;
        }
    }

    /// Batches committed since the last snapshot (a drain snapshots if > 0).
    pub fn batches_since(&self) -> u64 {
        self.batches_since
    }
}
