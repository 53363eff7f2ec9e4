//! "Restart at any batch boundary = straight run", on a real store.
//!
//! Runs a topology straight through, then again for every batch boundary k:
//! k batches, the worker dropped without draining (as a crash leaves it),
//! and a new worker with a fresh processor finishing the run — once
//! restoring the stored snapshot, once forced to warm up (the new processor
//! reads another snapshot format version). Every run must end with the same
//! tables and the same state as the straight one. Every store runs it.

use crate::log::Log;
use crate::log::memory::MemoryLog;
use crate::processor::Processor;
use crate::projection::TableSpec;
use crate::runtime::worker::ensure_topic;
use crate::runtime::{TopologyConfig, Worker};
use crate::store::{ProjectionStore, SCOPE_ALL};
use std::future::Future;
use std::sync::Arc;

/// What [`check_topology_restarts`] runs.
pub struct RestartCheck {
    pub config: TopologyConfig,
    /// JSON events piped into the first source topic.
    pub events: Vec<String>,
    /// Source partitions.
    pub partitions: i32,
}

/// See the module doc. `make_processor(format_version)` builds a fresh
/// processor whose snapshots carry `format_version`; `make_store(run)` a
/// fresh, empty store for each run (closed once compared; run `n` may drop
/// what run `n - 1` left). Returns the number of runs compared.
pub async fn check_topology_restarts<S, F>(
    check: RestartCheck,
    make_processor: impl Fn(u32) -> Box<dyn Processor>,
    make_store: impl Fn(usize) -> F,
) -> usize
where
    S: ProjectionStore,
    F: Future<Output = Arc<S>>,
{
    let log = MemoryLog::new();
    let topic = check.config.sources.topics[0].clone();
    ensure_topic(&log, &topic, check.partitions).await.unwrap();
    for e in &check.events {
        super::pipe_json(&log, &topic, e).await;
    }
    let log: Arc<dyn Log> = Arc::new(log);
    let tables = make_processor(1).tables();

    let straight_store = make_store(0).await;
    let (batches, straight) = run_to_end(
        &check.config,
        make_processor(1),
        &log,
        straight_store.clone(),
        None,
    )
    .await;
    let straight_tables = dump(straight_store.as_ref(), &tables).await;
    // Each run's store is closed once compared: Postgres connections are few.
    straight_store.close().await;
    assert!(
        batches > 1,
        "the check needs several batches; lower batch.max_events"
    );

    let mut runs = 1;
    for k in 1..batches {
        for (warm_up, format_version) in [(false, 1), (true, 2)] {
            let store = make_store(runs).await;
            runs += 1;
            run_to_end(
                &check.config,
                make_processor(1),
                &log,
                store.clone(),
                Some(k),
            )
            .await;
            let (_, state) = run_to_end(
                &check.config,
                make_processor(format_version),
                &log,
                store.clone(),
                None,
            )
            .await;
            let how = if warm_up { "warm-up" } else { "snapshot" };
            assert_eq!(
                dump(store.as_ref(), &tables).await,
                straight_tables,
                "tables after a restart at batch {k} ({how}) differ from a straight run"
            );
            assert_eq!(
                state, straight,
                "state after a restart at batch {k} ({how}) differs from a straight run"
            );
            store.close().await;
        }
    }
    runs
}

/// Runs a worker until its input is folded (or for `stop_after` batches,
/// then drops it undrained). Returns the batches run and, after a full run,
/// the state bytes of the drain snapshot.
async fn run_to_end<S: ProjectionStore>(
    config: &TopologyConfig,
    processor: Box<dyn Processor>,
    log: &Arc<dyn Log>,
    store: Arc<S>,
    stop_after: Option<usize>,
) -> (usize, Option<Vec<u8>>) {
    let mut config = config.clone();
    config.batch.linger_ms = 0;
    let shared: Arc<dyn ProjectionStore> = store.clone();
    let mut worker = Worker::start(config.clone(), processor, log.clone(), shared)
        .await
        .expect("worker starts");
    let mut batches = 0;
    loop {
        if stop_after == Some(batches) {
            worker.flush().await.expect("flush");
            return (batches, None); // dropped as a crash leaves it: no drain
        }
        let outcome = worker.step().await.expect("step");
        if outcome.records == 0 {
            break;
        }
        batches += 1;
    }
    worker.drain().await.expect("drain");
    let state = store
        .load_state(&config.name, SCOPE_ALL)
        .await
        .unwrap()
        .map(|s| s.bytes);
    (batches, state)
}

async fn dump<S: ProjectionStore>(store: &S, tables: &[TableSpec]) -> Vec<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for t in tables {
        out.push(store.dump_table(t).await.unwrap());
    }
    out
}
