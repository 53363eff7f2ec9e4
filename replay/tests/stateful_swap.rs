//! `replay rebuild` and `swap` of a stateful topology: the rebuilt shadow
//! carries its own state snapshot, the swap moves it live with the rows, and
//! a worker started on the new live generation restores it — the counts go
//! on from where the rebuild ended, neither lost nor counted twice.

use conductor_engine::log::Log;
use conductor_engine::log::memory::MemoryLog;
use conductor_engine::runtime::Worker;
use conductor_engine::runtime::worker::ensure_topic;
use conductor_engine::store::memory::MemoryStore;
use conductor_engine::store::{ProjectionStore, SCOPE_ALL};
use conductor_engine::testing::*;
use conductor_replay::rebuild::{RebuildRequest, ReplayFrom, rebuild};
use conductor_replay::swap::swap;
use conductor_replay::{Generation, GenerationHome};
use std::sync::Arc;

mod support;

const TOPIC: &str = "ig.ingest.entities";

/// Folds everything in the log into `store` with a fresh worker and drains
/// it; returns how the worker restored its state on start.
async fn fold(
    log: &Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    format_version: u32,
) -> conductor_engine::runtime::state::Restored {
    let mut worker = Worker::start(
        counts_topology("counts", TOPIC),
        Box::new(CountsPerKeyProcessor::with_format_version(format_version)),
        log.clone(),
        store,
    )
    .await
    .unwrap();
    let restored = worker.restored.clone();
    while worker.step().await.unwrap().records > 0 {}
    worker.drain().await.unwrap();
    restored
}

#[tokio::test]
async fn a_swapped_in_generation_brings_its_own_state_snapshot_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let home = GenerationHome::sqlite(&dir.path().join("live.db"))
        .await
        .unwrap();
    scenario(home).await;
}

#[tokio::test]
async fn a_swapped_in_generation_brings_its_own_state_snapshot_on_postgres() {
    use futures::FutureExt;
    let Some((url, schema, creator)) = support::postgres_schema(
        "a_swapped_in_generation_brings_its_own_state_snapshot_on_postgres",
        "rs",
    )
    .await
    else {
        return;
    };
    let home = GenerationHome::postgres(&url).await.unwrap();
    let outcome = std::panic::AssertUnwindSafe(scenario(home))
        .catch_unwind()
        .await;
    support::drop_schemas(
        &creator,
        &[
            schema.clone(),
            format!("{schema}_shadow_counts"),
            format!("{schema}_previous_counts"),
        ],
    )
    .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(home: GenerationHome) {
    let memory = MemoryLog::new();
    ensure_topic(&memory, TOPIC, 2).await.unwrap();
    let events = counting_events(60, 5);
    for e in &events[..40] {
        pipe_json(&memory, TOPIC, e).await;
    }
    let log: Arc<dyn Log> = Arc::new(memory.clone());
    fold(&log, home.live(), 1).await;

    // The rebuild runs new code: its snapshots have format version 2.
    let config = counts_topology("counts", TOPIC);
    let request = RebuildRequest {
        from: ReplayFrom::Earliest,
        to_ms: None,
    };
    rebuild(
        log.clone(),
        &home,
        &config,
        Box::new(CountsPerKeyProcessor::with_format_version(2)),
        &request,
        |_, _| {},
    )
    .await
    .unwrap();
    // The live topology moves on before the swap: the swap catches the
    // shadow up from its own snapshot.
    for e in &events[40..50] {
        pipe_json(&memory, TOPIC, e).await;
    }
    fold(&log, home.live(), 1).await;
    swap(
        log.clone(),
        &home,
        &config,
        Box::new(CountsPerKeyProcessor::with_format_version(2)),
        Generation::Shadow,
        false,
    )
    .await
    .unwrap();
    let live = home.live();
    let snapshot = live
        .load_state("counts", SCOPE_ALL)
        .await
        .unwrap()
        .expect("the swapped-in snapshot");
    assert_eq!(
        snapshot.format_version, 2,
        "the shadow's snapshot, not the old live one"
    );
    assert_eq!(
        snapshot.positions.values().sum::<i64>(),
        50,
        "the snapshot is at the swapped positions"
    );

    for e in &events[50..] {
        pipe_json(&memory, TOPIC, e).await;
    }
    let restored = fold(&log, live.clone(), 2).await;
    assert!(restored.from_snapshot, "{restored:?}");
    assert_eq!(restored.warm_up_records, 0, "nothing folded again");

    let straight = Arc::new(MemoryStore::new());
    fold(&log, straight.clone(), 2).await;
    let table = key_counts_table();
    assert_eq!(
        live.dump_table(&table).await.unwrap(),
        straight.dump_table(&table).await.unwrap()
    );
    assert_eq!(
        live.load_state("counts", SCOPE_ALL)
            .await
            .unwrap()
            .map(|s| s.bytes),
        straight
            .load_state("counts", SCOPE_ALL)
            .await
            .unwrap()
            .map(|s| s.bytes)
    );
}
