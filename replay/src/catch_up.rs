//! Folding a generation forward to given log positions, side effects off:
//! the shared step of rebuild, verify, swap and rollback.

use crate::ReplayError;
use conductor_engine::log::Log;
use conductor_engine::processor::Processor;
use conductor_engine::runtime::config::StartFrom;
use conductor_engine::runtime::{TopologyConfig, Worker, WorkerOptions};
use conductor_engine::store::ProjectionStore;
use std::collections::BTreeMap;
use std::sync::Arc;

/// (topic, partition) → offset.
pub type Positions = BTreeMap<(String, i32), i64>;

/// Batch limits for replays: far larger than live batches, no linger, so a
/// rebuild commits a few times a second rather than per event.
pub fn bulk_config(config: &TopologyConfig) -> TopologyConfig {
    let mut bulk = config.clone();
    bulk.changefeed.enabled = false;
    bulk.batch.max_events = 20_000;
    bulk.batch.max_bytes = 32 * 1024 * 1024;
    bulk.batch.linger_ms = 0;
    bulk
}

/// Every source partition of `config` with the position a topology that
/// stored nothing would start from.
pub async fn default_positions(
    log: &dyn Log,
    config: &TopologyConfig,
) -> Result<Positions, ReplayError> {
    let mut out = Positions::new();
    for topic in &config.sources.topics {
        for p in log.describe_topic(topic).await?.partitions {
            let start = match config.sources.start {
                StartFrom::Earliest => p.low_watermark,
                StartFrom::Latest => p.high_watermark,
            };
            out.insert((topic.clone(), p.partition), start);
        }
    }
    Ok(out)
}

/// Stored positions completed with the defaults for partitions never committed.
pub fn complete(stored: &Positions, defaults: &Positions) -> Positions {
    defaults
        .iter()
        .map(|(k, d)| (k.clone(), stored.get(k).copied().unwrap_or(*d)))
        .collect()
}

/// What one fold to an end did.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    pub records: u64,
    pub changes: u64,
    pub dead: u64,
}

/// Folds `store` (a generation other than live) forward to exactly `end`,
/// with side effects off (but the derived events kept when `emit_outputs`:
/// a migration's shadow, see `rebuild::Migration`). Refuses when the store is already past `end` on a
/// partition: a fold can't be undone.
pub async fn fold_to(
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    config: &TopologyConfig,
    processor: Box<dyn Processor>,
    end: &Positions,
    emit_outputs: bool,
    mut progress: impl FnMut(u64, u64),
) -> Result<Folded, ReplayError> {
    let defaults = default_positions(log.as_ref(), config).await?;
    let from = complete(&store.load_offsets(&config.name).await?, &defaults);
    for (k, at) in &from {
        if let Some(e) = end.get(k)
            && at > e
        {
            return Err(ReplayError::refused(
                format!(
                    "the generation is ahead of the target on {}[{}]: it is at offset {at}, the target is {e}",
                    k.0, k.1
                ),
                "the live topology is behind: let `conductor run` catch up, then try again",
            ));
        }
    }
    let options = WorkerOptions {
        end: Some(end.clone()),
        start: Some(from),
        side_effects: false,
        emit_outputs,
        store_starts_empty: false,
    };
    fold_with(log, store, config, processor, options, &mut progress).await
}

/// Runs a bounded worker to its end and counts what it folded.
pub async fn fold_with(
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    config: &TopologyConfig,
    processor: Box<dyn Processor>,
    options: WorkerOptions,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Folded, ReplayError> {
    // A generation that is not live may carry the paused flag of the live
    // store it was copied from; folding it is this call's whole point.
    if store.control(&config.name).await?.paused {
        store.set_paused(&config.name, false).await?;
    }
    let mut worker =
        Worker::start_with(bulk_config(config), processor, log, store, options).await?;
    let total = worker.remaining().unwrap_or(0).max(0) as u64;
    let mut done = Folded::default();
    progress(0, total);
    loop {
        let outcome = worker.step().await?;
        done.records += outcome.records as u64;
        done.changes += outcome.changes as u64;
        done.dead += outcome.dead as u64;
        progress(done.records, total);
        // An empty step has flushed; nothing readable is left below the end
        // (a Kafka partition may end in offsets that hold no record).
        if outcome.records == 0 || worker.reached_end() {
            worker.flush().await?;
            break;
        }
    }
    Ok(done)
}
