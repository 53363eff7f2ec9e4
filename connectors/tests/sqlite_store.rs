//! The SQLite projection store against the engine's store contract, plus what
//! the contract cannot see: durability across reopen and process abort,
//! chunking under the parameter limit, snapshot reads during commits.

mod support;

use conductor_connectors::SqliteStore;
use conductor_engine::projection::SqlValue;
use conductor_engine::store::{ProjectionStore, StoreCommit, StoreError};
use std::path::Path;
use std::time::Instant;
use support::*;

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).await.expect("open sqlite store")
}

#[tokio::test]
async fn sqlite_store_meets_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db")).await;
    conductor_engine::testing::store_contract(&store, "contract", "contract_rows").await;
}

#[tokio::test]
async fn sqlite_store_searches_keywords_with_fts5() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db")).await;
    conductor_engine::testing::keyword_search_contract(&store, "keyword_rows").await;
}

#[tokio::test]
async fn in_memory_sqlite_store_meets_the_store_contract() {
    let store = SqliteStore::open_url("sqlite::memory:")
        .await
        .expect("open in-memory store");
    conductor_engine::testing::store_contract(&store, "contract", "contract_rows").await;
}

/// A BLOB that is not a whole number of f32s fails the dump with a message
/// naming the column, rather than panicking or truncating.
#[tokio::test]
async fn a_vector_of_a_bad_length_is_a_dump_error_naming_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path).await;
    let table = conductor_engine::testing::vectors_table("bad_length");
    store.migrate(std::slice::from_ref(&table)).await.unwrap();
    let other = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO bad_length_vectors (tenant_id, id, version, embedding) \
         VALUES ('acme', 'x', 1, X'0000803f00')",
    )
    .execute(&other)
    .await
    .unwrap();
    other.close().await;
    let err = store.dump_table(&table).await.unwrap_err().to_string();
    assert!(
        err.contains("`embedding`") && err.contains("5 bytes long, not a multiple of 4"),
        "{err}"
    );
    store.close().await;
}

#[tokio::test]
async fn open_creates_missing_parent_directories_and_uses_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("nested").join("store.db");
    let store = open(&path).await;
    assert!(path.exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(
            &sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().await;
}

#[tokio::test]
async fn committed_batch_survives_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let table = spec("durable_rows");
    {
        let store = open(&path).await;
        store.migrate(std::slice::from_ref(&table)).await.unwrap();
        store
            .commit(StoreCommit {
                topology: "durable".into(),
                upserts: rows("durable_rows", 50, 3),
                outbox: vec![outbox(0), outbox(1), outbox(2)],
                offsets: vec![position(0, 42), position(1, 7)],
                epoch: None,
                state: None,
            })
            .await
            .unwrap();
        store.set_paused("durable", true).await.unwrap();
        // Dropped without close(): nothing may depend on a graceful shutdown.
    }
    let store = open(&path).await;
    store.migrate(std::slice::from_ref(&table)).await.unwrap();
    let dumped = store.dump_table(&table).await.unwrap();
    assert_eq!(dumped.len(), 50);
    assert_eq!(dumped[49]["id"], "id-00049");
    assert_eq!(dumped[49]["version"], 3);
    let offsets = store.load_offsets("durable").await.unwrap();
    assert_eq!(
        offsets.get(&("ig.ingest.entities".to_string(), 0)),
        Some(&42)
    );
    assert_eq!(
        offsets.get(&("ig.ingest.entities".to_string(), 1)),
        Some(&7)
    );
    assert_eq!(
        store.read_outbox("durable", 0, 10).await.unwrap(),
        vec![outbox(0), outbox(1), outbox(2)]
    );
    assert_eq!(store.next_outbox_seq("durable").await.unwrap(), 3);
    assert!(store.control("durable").await.unwrap().paused);
}

/// Set in the child process of the abort test: the database path to write.
const ABORT_CHILD_ENV: &str = "CONDUCTOR_TEST_SQLITE_ABORT_CHILD";

#[tokio::test]
async fn committed_batch_survives_abort_of_the_writing_process() {
    let table = spec("abort_rows");
    if let Ok(path) = std::env::var(ABORT_CHILD_ENV) {
        // Child: commit, then die without unwinding, closing or checkpointing.
        let store = open(Path::new(&path)).await;
        store.migrate(std::slice::from_ref(&table)).await.unwrap();
        store
            .commit(StoreCommit {
                topology: "abort".into(),
                upserts: rows("abort_rows", 100, 1),
                outbox: vec![outbox(0)],
                offsets: vec![position(0, 100)],
                epoch: None,
                state: None,
            })
            .await
            .unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "committed_batch_survives_abort_of_the_writing_process",
            "--nocapture",
        ])
        .env(ABORT_CHILD_ENV, &path)
        .status()
        .expect("run child test process");
    assert!(!status.success(), "the child must have aborted");
    let store = open(&path).await;
    assert_eq!(
        store.dump_table(&table).await.unwrap().len(),
        100,
        "rows of the committed batch"
    );
    assert_eq!(
        store
            .load_offsets("abort")
            .await
            .unwrap()
            .get(&("ig.ingest.entities".to_string(), 0)),
        Some(&100)
    );
    assert_eq!(
        store.read_outbox("abort", 0, 10).await.unwrap(),
        vec![outbox(0)]
    );
}

#[tokio::test]
async fn second_migrate_with_an_extra_table_keeps_the_first_tables_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (a, b) = (spec("first_rows"), spec("second_rows"));
    let store = open(&path).await;
    store.migrate(std::slice::from_ref(&a)).await.unwrap();
    store
        .commit(StoreCommit {
            topology: "m".into(),
            upserts: rows("first_rows", 10, 1),
            ..Default::default()
        })
        .await
        .unwrap();
    let err = store
        .commit(StoreCommit {
            topology: "m".into(),
            upserts: rows("second_rows", 1, 1),
            ..Default::default()
        })
        .await;
    assert!(
        matches!(err, Err(StoreError::UnknownTable(t)) if t == "second_rows"),
        "not migrated yet"
    );

    store.migrate(&[a.clone(), b.clone()]).await.unwrap();
    store
        .commit(StoreCommit {
            topology: "m".into(),
            upserts: rows("second_rows", 5, 1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.dump_table(&a).await.unwrap().len(), 10);
    assert_eq!(store.dump_table(&b).await.unwrap().len(), 5);

    // Another process opening the same file migrates the same tables again.
    let other = open(&path).await;
    other.migrate(&[a.clone(), b]).await.unwrap();
    assert_eq!(other.dump_table(&a).await.unwrap().len(), 10);
}

#[tokio::test]
async fn migrate_refuses_a_table_that_exists_without_a_declared_column() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db")).await;
    let old = spec("shaped_rows");
    store.migrate(std::slice::from_ref(&old)).await.unwrap();
    let mut new = old.clone();
    new.columns.push(conductor_engine::projection::ColumnSpec {
        name: "added",
        ty: conductor_engine::projection::ColumnType::Text,
        nullable: true,
    });
    let err = store.migrate(&[new]).await.unwrap_err().to_string();
    assert!(err.contains("without column(s) `added`"), "{err}");
}

#[tokio::test]
async fn reading_a_table_nobody_migrated_is_an_unknown_table() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db")).await;
    let missing = spec("never_migrated");
    assert!(
        matches!(store.dump_table(&missing).await, Err(StoreError::UnknownTable(t)) if t == "never_migrated")
    );
    let keys = vec![vec!["acme".to_string(), "x".to_string()]];
    assert!(matches!(
        store.current_versions(&missing, &keys).await,
        Err(StoreError::UnknownTable(_))
    ));
}

#[tokio::test]
async fn commits_a_five_thousand_row_batch_in_parameter_limited_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db")).await;
    let table = spec("big_rows");
    store.migrate(std::slice::from_ref(&table)).await.unwrap();
    let outbox_records: Vec<_> = (0..5_000).map(outbox).collect();

    // 5,000 rows × 8 columns = 40,000 parameters: more than one statement may bind.
    let started = Instant::now();
    store
        .commit(StoreCommit {
            topology: "big".into(),
            upserts: rows("big_rows", 5_000, 1),
            outbox: outbox_records,
            offsets: vec![position(0, 5_000)],
            epoch: None,
            state: None,
        })
        .await
        .unwrap();
    let insert = started.elapsed();
    let started = Instant::now();
    store
        .commit(StoreCommit {
            topology: "big".into(),
            upserts: rows("big_rows", 5_000, 2),
            outbox: vec![],
            offsets: vec![position(0, 10_000)],
            epoch: None,
            state: None,
        })
        .await
        .unwrap();
    let update = started.elapsed();
    eprintln!(
        "sqlite: 5,000-row commit (+5,000 outbox records) {insert:?}; 5,000-row update commit {update:?}"
    );

    let dumped = store.dump_table(&table).await.unwrap();
    assert_eq!(dumped.len(), 5_000);
    assert!(dumped.iter().all(|r| r["version"] == 2));
    assert_eq!(store.next_outbox_seq("big").await.unwrap(), 5_000);
    assert_eq!(
        store.read_outbox("big", 4_990, 100).await.unwrap().len(),
        10
    );

    let keys: Vec<Vec<String>> = (0..6_000)
        .map(|i| vec!["acme".to_string(), format!("id-{i:05}")])
        .collect();
    let started = Instant::now();
    let versions = store.current_versions(&table, &keys).await.unwrap();
    eprintln!(
        "sqlite: current_versions of 6,000 keys {:?}",
        started.elapsed()
    );
    assert_eq!(versions.len(), 5_000, "keys past id-04999 are absent");
    assert!(versions.values().all(|v| *v == 2));
}

#[tokio::test]
async fn a_statement_failing_mid_batch_leaves_nothing_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path).await;
    let (a, z) = (spec("aaa_rows"), spec("zzz_rows"));
    store.migrate(&[a.clone(), z.clone()]).await.unwrap();
    store
        .commit(StoreCommit {
            topology: "mid".into(),
            upserts: rows("aaa_rows", 3, 1),
            outbox: vec![outbox(0)],
            offsets: vec![position(0, 1)],
            epoch: None,
            state: None,
        })
        .await
        .unwrap();

    // Drop the second table behind the store's back: the batch's first
    // statement (aaa_rows) succeeds, the second fails.
    let raw = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE zzz_rows")
        .execute(&raw)
        .await
        .unwrap();
    raw.close().await;

    let mut upserts = rows("aaa_rows", 3, 2);
    upserts.extend(rows("zzz_rows", 3, 1));
    let err = store
        .commit(StoreCommit {
            topology: "mid".into(),
            upserts,
            outbox: vec![outbox(1)],
            offsets: vec![position(0, 2)],
            epoch: None,
            state: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Database { operation, .. } if operation.contains("zzz_rows")),
        "{err}"
    );
    assert!(
        store
            .dump_table(&a)
            .await
            .unwrap()
            .iter()
            .all(|r| r["version"] == 1),
        "first table's upserts rolled back"
    );
    assert_eq!(
        store
            .load_offsets("mid")
            .await
            .unwrap()
            .get(&("ig.ingest.entities".to_string(), 0)),
        Some(&1)
    );
    assert_eq!(store.next_outbox_seq("mid").await.unwrap(), 1);
    assert_eq!(store.read_outbox("mid", 0, 10).await.unwrap().len(), 1);
}

#[tokio::test]
async fn rejects_outbox_seqs_with_a_gap_inside_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db")).await;
    let err = store
        .commit(StoreCommit {
            topology: "gap".into(),
            outbox: vec![outbox(0), outbox(2)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::OutboxSequence {
                expected: 1,
                got: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(store.next_outbox_seq("gap").await.unwrap(), 0);
}

#[tokio::test]
async fn dumps_equal_the_memory_stores_for_tricky_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db")).await;
    assert_same_as_memory(&store, &spec("tricky_rows"), tricky_commits("tricky_rows")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_whole_batches_while_a_writer_commits() {
    const KEYS: usize = 300;
    const BATCHES: i64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store.db")).await;
    let table = spec("snapshot_rows");
    store.migrate(std::slice::from_ref(&table)).await.unwrap();

    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for version in 1..=BATCHES {
                let mut upserts = rows("snapshot_rows", KEYS, version);
                for u in &mut upserts {
                    u.values[0] = SqlValue::Text(format!("batch {version}"));
                }
                store
                    .commit(StoreCommit {
                        topology: "snap".into(),
                        upserts,
                        outbox: vec![],
                        offsets: vec![position(0, version)],
                        epoch: None,
                        state: None,
                    })
                    .await
                    .unwrap();
            }
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut dumps = 0;
    while !writer.is_finished() {
        let dumped = store.dump_table(&table).await.unwrap();
        dumps += 1;
        assert!(
            dumped.is_empty() || dumped.len() == KEYS,
            "a dump saw {} of {KEYS} rows of a batch",
            dumped.len()
        );
        if let Some(first) = dumped.first() {
            let version = first["version"].as_i64().unwrap();
            let label = format!("batch {version}");
            assert!(
                dumped
                    .iter()
                    .all(|r| r["version"] == version && r["label"] == label.as_str()),
                "a dump mixed two batches"
            );
            seen.insert(version);
        }
    }
    writer.await.unwrap();
    eprintln!(
        "sqlite: {dumps} dumps during {BATCHES} commits saw {} distinct batches",
        seen.len()
    );
    assert_eq!(
        store.dump_table(&table).await.unwrap()[0]["version"],
        BATCHES
    );
}

/// A permanent store error — here the projection table dropped under a
/// running topology — halts the worker with a message naming the table,
/// instead of retrying the batch forever.
#[tokio::test]
async fn a_running_topology_halts_when_its_table_is_dropped() {
    use conductor_engine::log::Log;
    use conductor_engine::log::memory::MemoryLog;
    use conductor_engine::runtime::worker::ensure_topic;
    use conductor_engine::runtime::{TopologyState, Worker};
    use conductor_engine::testing::*;
    use std::sync::Arc;
    use std::time::Duration;
    const TOPIC: &str = "ig.ingest.entities";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("halt.db");
    let store = Arc::new(open(&path).await);
    let log = MemoryLog::new();
    ensure_topic(&log, TOPIC, 1).await.unwrap();
    pipe_json(&log, TOPIC, &entity_upserted_json("acme", "e1", 1)).await;
    let shared: Arc<dyn Log> = Arc::new(log.clone());
    let worker = Worker::start(
        latest_version_topology("halts", TOPIC),
        Box::new(LatestVersionProcessor),
        shared,
        store.clone(),
    )
    .await
    .unwrap();
    let status = worker.status.clone();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.run(rx));
    let table = latest_versions_table();
    for _ in 0..200 {
        if store.dump_table(&table).await.unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(store.dump_table(&table).await.unwrap().len(), 1);
    let other = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE latest_versions")
        .execute(&other)
        .await
        .unwrap();
    pipe_json(&log, TOPIC, &entity_upserted_json("acme", "e2", 1)).await;
    let result = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("a permanent error halts the worker instead of retrying forever")
        .unwrap();
    assert!(result.is_err());
    let status = status.snapshot();
    assert_eq!(status.state, TopologyState::Failed);
    let message = status.error.unwrap_or_default();
    assert!(message.contains("latest_versions"), "{message}");
}

/// The state contract on SQLite: snapshots stored with their batch, and a
/// restart at any batch boundary (from the snapshot, or warmed up) ends with
/// the tables and the state of a straight run.
#[tokio::test]
async fn stateful_restart_at_any_batch_boundary_equals_a_straight_run() {
    use conductor_engine::testing::*;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let runs = check_topology_restarts(
        RestartCheck {
            config: counts_topology("counts", "ig.ingest.entities"),
            events: counting_events(40, 6),
            partitions: 2,
        },
        |v| Box::new(CountsPerKeyProcessor::with_format_version(v)),
        |run| {
            let path = root.join(format!("run{run}.db"));
            async move { Arc::new(open(&path).await) }
        },
    )
    .await;
    assert!(runs > 10, "{runs} runs");
}
