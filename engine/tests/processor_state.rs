//! Stateful processors: the state is snapshotted with the batches, restored
//! on start (or warmed up by replay when the snapshot can't be used), and a
//! restart at any batch boundary ends where a straight run ends.

use conductor_engine::log::Log;
use conductor_engine::log::memory::MemoryLog;
use conductor_engine::runtime::Worker;
use conductor_engine::runtime::worker::ensure_topic;
use conductor_engine::store::memory::MemoryStore;
use conductor_engine::store::{ProjectionStore, SCOPE_ALL, StateSnapshot, StoreCommit};
use conductor_engine::testing::*;
use conductor_schemas::Event;
use std::sync::Arc;

const TOPIC: &str = "ig.ingest.entities";

fn decoded(events: &[String]) -> Vec<Event> {
    events
        .iter()
        .map(|e| conductor_schemas::codec::decode_json(e.as_bytes(), None).unwrap())
        .collect()
}

#[test]
fn stateful_and_stateless_test_processors_meet_the_processor_contract() {
    let events = decoded(&counting_events(30, 4));
    check_processor_contract(CountsPerKeyProcessor::default, &events);
    check_processor_contract(|| LatestVersionProcessor, &events);
}

#[tokio::test]
async fn restart_at_any_batch_boundary_equals_a_straight_run_on_the_memory_store() {
    let runs = check_topology_restarts(
        RestartCheck {
            config: counts_topology("counts", TOPIC),
            events: counting_events(40, 6),
            partitions: 2,
        },
        |v| Box::new(CountsPerKeyProcessor::with_format_version(v)),
        |_| async { Arc::new(MemoryStore::new()) },
    )
    .await;
    assert!(runs > 10, "{runs} runs");
}

/// Folds the events with one worker and drains it, then starts a second
/// worker on the same store with `processor` and says how it restored.
async fn restart_with(
    store: Arc<MemoryStore>,
    events: &[String],
    tamper: impl AsyncFnOnce(&MemoryStore),
    processor: CountsPerKeyProcessor,
) -> conductor_engine::runtime::state::Restored {
    let log = MemoryLog::new();
    ensure_topic(&log, TOPIC, 2).await.unwrap();
    for e in events {
        pipe_json(&log, TOPIC, e).await;
    }
    let log: Arc<dyn Log> = Arc::new(log);
    let config = counts_topology("counts", TOPIC);
    let shared: Arc<dyn ProjectionStore> = store.clone();
    let mut first = Worker::start(
        config.clone(),
        Box::new(CountsPerKeyProcessor::default()),
        log.clone(),
        shared.clone(),
    )
    .await
    .unwrap();
    while first.step().await.unwrap().records > 0 {}
    first.drain().await.unwrap();
    tamper(&store).await;
    let second = Worker::start(config, Box::new(processor), log, shared)
        .await
        .unwrap();
    second.restored.clone()
}

#[tokio::test]
async fn restores_the_drained_snapshot_without_folding_anything_again() {
    let store = Arc::new(MemoryStore::new());
    let restored = restart_with(
        store,
        &counting_events(40, 6),
        async |_| {},
        CountsPerKeyProcessor::default(),
    )
    .await;
    assert!(restored.from_snapshot);
    assert_eq!(
        restored.warm_up_records, 0,
        "the drain snapshot is at the end"
    );
}

#[tokio::test]
async fn warms_up_from_the_log_when_the_snapshot_is_of_another_format_version() {
    let restored = restart_with(
        Arc::new(MemoryStore::new()),
        &counting_events(40, 6),
        async |_| {},
        CountsPerKeyProcessor::with_format_version(2),
    )
    .await;
    assert!(!restored.from_snapshot);
    assert_eq!(restored.warm_up_records, 40, "every record folded again");
}

#[tokio::test]
async fn warms_up_from_the_log_when_the_snapshot_is_unreadable() {
    let restored = restart_with(
        Arc::new(MemoryStore::new()),
        &counting_events(40, 6),
        async |store| {
            let stored = store
                .load_state("counts", SCOPE_ALL)
                .await
                .unwrap()
                .unwrap();
            store
                .commit(StoreCommit {
                    topology: "counts".into(),
                    state: Some(StateSnapshot {
                        bytes: b"\xff not json".to_vec(),
                        ..stored
                    }),
                    ..Default::default()
                })
                .await
                .unwrap();
        },
        CountsPerKeyProcessor::default(),
    )
    .await;
    assert!(!restored.from_snapshot);
    assert_eq!(restored.warm_up_records, 40);
}

#[tokio::test]
async fn folds_the_gap_after_an_older_snapshot() {
    // Positions move on past the snapshot (as between periodic snapshots).
    let restored = restart_with(
        Arc::new(MemoryStore::new()),
        &counting_events(40, 6),
        async |store| {
            let mut stored = store
                .load_state("counts", SCOPE_ALL)
                .await
                .unwrap()
                .unwrap();
            // Pretend the snapshot was taken when partition positions were 0
            // and the state empty: the restore must fold everything since.
            for pos in stored.positions.values_mut() {
                *pos = 0;
            }
            stored.bytes = b"[]".to_vec();
            store
                .commit(StoreCommit {
                    topology: "counts".into(),
                    state: Some(stored),
                    ..Default::default()
                })
                .await
                .unwrap();
        },
        CountsPerKeyProcessor::default(),
    )
    .await;
    assert!(restored.from_snapshot);
    assert_eq!(restored.warm_up_records, 40);
}

#[tokio::test]
async fn test_processors_emit_the_topology_telemetry() {
    assert_topology_telemetry(
        counts_topology("counts", TOPIC),
        Box::new(CountsPerKeyProcessor::default()),
        &counting_events(20, 3),
    )
    .await;
    assert_topology_telemetry(
        latest_version_topology("latest", TOPIC),
        Box::new(LatestVersionProcessor),
        &counting_events(20, 3),
    )
    .await;
}
