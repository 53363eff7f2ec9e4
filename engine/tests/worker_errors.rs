//! How a running worker answers a failed batch: it retries what may pass
//! later (a store that is unavailable, a dependency that is down) with
//! backoff and loses or repeats nothing, and halts with a clear message on
//! what a retry can't change (a permanent store error). The decision keys off
//! the error's kind (`RuntimeError::disposition`).

use async_trait::async_trait;
use conductor_engine::log::memory::MemoryLog;
use conductor_engine::log::{InputPosition, Log};
use conductor_engine::processor::{Effect, Processor, ProcessorError};
use conductor_engine::projection::TableSpec;
use conductor_engine::runtime::worker::{Disposition, ensure_topic};
use conductor_engine::runtime::{RuntimeError, StatusHandle, TopologyState, Worker};
use conductor_engine::store::memory::MemoryStore;
use conductor_engine::store::{
    OutboxRecord, ProjectionStore, StateSnapshot, StoreCommit, StoreError, StoreErrorKind,
    StoreSnapshot, TopologyControl,
};
use conductor_engine::testing::{
    LatestVersionProcessor, entity_upserted_json, latest_version_topology, latest_versions_table,
    pipe_json,
};
use conductor_schemas::Event;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

const TOPIC: &str = "ig.ingest.entities";

/// A memory store whose first `failures` commits fail with `error()`.
struct FailingStore {
    inner: MemoryStore,
    failures: AtomicUsize,
    error: fn() -> StoreError,
    commits_refused: AtomicUsize,
}

#[async_trait]
impl ProjectionStore for FailingStore {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn migrate(&self, tables: &[TableSpec]) -> Result<(), StoreError> {
        self.inner.migrate(tables).await
    }
    async fn load_offsets(&self, t: &str) -> Result<BTreeMap<(String, i32), i64>, StoreError> {
        self.inner.load_offsets(t).await
    }
    async fn store_offsets(&self, t: &str, o: &[InputPosition]) -> Result<(), StoreError> {
        self.inner.store_offsets(t, o).await
    }
    async fn current_versions(
        &self,
        table: &TableSpec,
        keys: &[Vec<String>],
    ) -> Result<HashMap<Vec<String>, i64>, StoreError> {
        self.inner.current_versions(table, keys).await
    }
    async fn load_state(&self, t: &str, scope: &str) -> Result<Option<StateSnapshot>, StoreError> {
        self.inner.load_state(t, scope).await
    }
    async fn next_outbox_seq(&self, t: &str) -> Result<i64, StoreError> {
        self.inner.next_outbox_seq(t).await
    }
    async fn commit(&self, commit: StoreCommit) -> Result<(), StoreError> {
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            self.commits_refused.fetch_add(1, Ordering::SeqCst);
            return Err((self.error)());
        }
        self.inner.commit(commit).await
    }
    async fn read_outbox(
        &self,
        t: &str,
        from: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        self.inner.read_outbox(t, from, limit).await
    }
    async fn delete_outbox(&self, t: &str, s: std::ops::Range<i64>) -> Result<u64, StoreError> {
        self.inner.delete_outbox(t, s).await
    }
    async fn control(&self, t: &str) -> Result<TopologyControl, StoreError> {
        self.inner.control(t).await
    }
    async fn set_paused(&self, t: &str, p: bool) -> Result<TopologyControl, StoreError> {
        self.inner.set_paused(t, p).await
    }
    async fn dump_table(&self, table: &TableSpec) -> Result<Vec<serde_json::Value>, StoreError> {
        self.inner.dump_table(table).await
    }
    async fn snapshot(&self, t: &str, tables: &[TableSpec]) -> Result<StoreSnapshot, StoreError> {
        self.inner.snapshot(t, tables).await
    }
}

/// [`LatestVersionProcessor`] behind a dependency that is down for the first
/// `outages` calls.
struct BehindDependency {
    outages: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl Processor for BehindDependency {
    fn name(&self) -> &str {
        "latest_version"
    }
    fn tables(&self) -> Vec<TableSpec> {
        LatestVersionProcessor.tables()
    }
    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.outages.load(Ordering::SeqCst);
        if left > 0 {
            self.outages.store(left - 1, Ordering::SeqCst);
            return Err(ProcessorError::external(
                "embedder http://127.0.0.1:9",
                "connection refused",
            ));
        }
        LatestVersionProcessor.process(event)
    }
}

struct Running {
    log: MemoryLog,
    status: StatusHandle,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), RuntimeError>>,
}

async fn start(store: Arc<dyn ProjectionStore>, processor: Box<dyn Processor>) -> Running {
    let log = MemoryLog::new();
    ensure_topic(&log, TOPIC, 2).await.unwrap();
    for i in 0..20 {
        pipe_json(
            &log,
            TOPIC,
            &entity_upserted_json("acme", &format!("e{i}"), 1),
        )
        .await;
    }
    let shared: Arc<dyn Log> = Arc::new(log.clone());
    let config = latest_version_topology("errors", TOPIC);
    let worker = Worker::start(config, processor, shared, store)
        .await
        .unwrap();
    let status = worker.status.clone();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(worker.run(rx));
    Running {
        log,
        status,
        stop,
        task,
    }
}

async fn wait_until(what: &str, mut ok: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting until {what}");
}

#[test]
fn classifies_store_errors_by_kind_not_text() {
    let retry = RuntimeError::Store(StoreError::unavailable("commit", "connection reset"));
    let halt = RuntimeError::Store(StoreError::permanent("commit", "connection reset"));
    assert_eq!(retry.disposition(), Disposition::Retry);
    assert_eq!(
        halt.disposition(),
        Disposition::Halt,
        "same text, other kind"
    );
    assert_eq!(
        StoreError::UnknownTable("t".into()).kind(),
        StoreErrorKind::Permanent
    );
}

#[tokio::test]
async fn retries_an_unavailable_store_and_commits_every_event_once() {
    let store = Arc::new(FailingStore {
        inner: MemoryStore::new(),
        failures: AtomicUsize::new(3),
        error: || StoreError::unavailable("commit", "connection reset by peer"),
        commits_refused: AtomicUsize::new(0),
    });
    let run = start(store.clone(), Box::new(LatestVersionProcessor)).await;
    let table = latest_versions_table();
    wait_until("all 20 rows are stored", async || {
        store.dump_table(&table).await.unwrap().len() == 20
    })
    .await;
    assert_eq!(store.commits_refused.load(Ordering::SeqCst), 3);
    let offsets = store.load_offsets("errors").await.unwrap();
    let stored: i64 = offsets.values().sum();
    assert_eq!(stored, 20, "positions cover every record once: {offsets:?}");
    let status = run.status.snapshot();
    assert_eq!(status.state, TopologyState::Running);
    assert_eq!(status.waiting_on, None, "cleared after the retry passed");
    assert_eq!(status.events_processed, 20, "each event counted once");
    run.stop.send(true).unwrap();
    run.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn halts_on_a_permanent_store_error_with_its_message() {
    let store = Arc::new(FailingStore {
        inner: MemoryStore::new(),
        failures: AtomicUsize::new(usize::MAX),
        error: || {
            StoreError::permanent(
                "commit (upsert into `latest_versions`)",
                "null value in column \"entity_type\" violates not-null constraint (code 23502)",
            )
        },
        commits_refused: AtomicUsize::new(0),
    });
    let run = start(store.clone(), Box::new(LatestVersionProcessor)).await;
    let result = tokio::time::timeout(Duration::from_secs(10), run.task)
        .await
        .expect("a permanent error halts instead of retrying forever")
        .unwrap();
    let error = result.expect_err("the worker halts");
    assert_eq!(error.disposition(), Disposition::Halt);
    assert_eq!(
        store.commits_refused.load(Ordering::SeqCst),
        1,
        "tried once, not retried"
    );
    let status = run.status.snapshot();
    assert_eq!(status.state, TopologyState::Failed);
    let message = status.error.unwrap();
    assert!(
        message.contains("latest_versions") && message.contains("not-null"),
        "{message}"
    );
    assert!(
        store
            .dump_table(&latest_versions_table())
            .await
            .unwrap()
            .is_empty()
    );
    drop(run.log);
}

#[tokio::test]
async fn retries_an_external_dependency_with_backoff_and_never_dead_letters() {
    let store = Arc::new(MemoryStore::new());
    let outages = Arc::new(AtomicUsize::new(4));
    let calls = Arc::new(AtomicUsize::new(0));
    let processor = BehindDependency {
        outages: outages.clone(),
        calls: calls.clone(),
    };
    let run = start(store.clone(), Box::new(processor)).await;
    wait_until("the status names what it waits on", async || {
        run.status.snapshot().waiting_on.as_deref() == Some("embedder http://127.0.0.1:9")
    })
    .await;
    let table = latest_versions_table();
    wait_until("all 20 rows are stored", async || {
        store.dump_table(&table).await.unwrap().len() == 20
    })
    .await;
    assert_eq!(outages.load(Ordering::SeqCst), 0);
    assert!(
        calls.load(Ordering::SeqCst) >= 24,
        "4 refused calls, then 20"
    );
    let status = run.status.snapshot();
    assert_eq!(status.state, TopologyState::Running);
    assert_eq!(status.dlq_events, 0, "an outage is not bad input");
    assert_eq!(status.waiting_on, None);
    assert_eq!(status.error, None);
    let dlq = run.log.describe_topic("ig.dlq.errors").await.unwrap();
    assert!(
        dlq.partitions.iter().all(|p| p.high_watermark == 0),
        "{dlq:?}"
    );
    run.stop.send(true).unwrap();
    run.task.await.unwrap().unwrap();
}

/// A failed commit leaves a stateful processor's state ahead of the store
/// (the batch was folded); the worker restores it before folding again, so
/// the counts are not inflated by the retries.
#[tokio::test]
async fn a_failed_commit_restores_the_state_before_the_retry() {
    use conductor_engine::testing::{
        CountsPerKeyProcessor, counting_events, counts_topology, key_counts_table,
    };
    async fn run(store: Arc<dyn ProjectionStore>) {
        let log = MemoryLog::new();
        ensure_topic(&log, TOPIC, 2).await.unwrap();
        for e in counting_events(30, 4) {
            pipe_json(&log, TOPIC, &e).await;
        }
        let shared: Arc<dyn Log> = Arc::new(log);
        let worker = Worker::start(
            counts_topology("counts", TOPIC),
            Box::new(CountsPerKeyProcessor::default()),
            shared,
            store.clone(),
        )
        .await
        .unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(worker.run(rx));
        let done = async || {
            let offsets = store.load_offsets("counts").await.unwrap();
            offsets.values().sum::<i64>() == 30
        };
        wait_until("every record is committed", done).await;
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
    }
    let straight = Arc::new(MemoryStore::new());
    run(straight.clone()).await;
    let failing = Arc::new(FailingStore {
        inner: MemoryStore::new(),
        failures: AtomicUsize::new(3),
        error: || StoreError::unavailable("commit", "connection reset by peer"),
        commits_refused: AtomicUsize::new(0),
    });
    run(failing.clone()).await;
    assert_eq!(failing.commits_refused.load(Ordering::SeqCst), 3);
    let table = key_counts_table();
    let rows = failing.dump_table(&table).await.unwrap();
    assert_eq!(rows, straight.dump_table(&table).await.unwrap());
    assert!(
        rows.iter().any(|r| r["count"].as_i64() > Some(1)),
        "{rows:?}"
    );
}
