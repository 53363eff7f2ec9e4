//! Crash test of a stateful processor: a child process folds a file log into
//! SQLite with the counting test processor (state in memory, snapshotted
//! every few batches) and is SIGKILLed mid-run, again and again. Restarts
//! restore the snapshot, or warm up from the log when the child runs with
//! another snapshot format version (as after an upgrade). The last child
//! runs to the end; its tables and state must equal a straight run's.
//!
//! The child is this same test binary, re-run with `--ignored --exact state_crash_child`.

use conductor_connectors::SqliteStore;
use conductor_engine::log::Log;
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::runtime::Worker;
use conductor_engine::runtime::worker::ensure_topic;
use conductor_engine::store::memory::MemoryStore;
use conductor_engine::store::{ProjectionStore, SCOPE_ALL};
use conductor_engine::testing::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const DIR_ENV: &str = "CONDUCTOR_STATE_CRASH_DIR";
const VERSION_ENV: &str = "CONDUCTOR_STATE_FORMAT_VERSION";
const TOPIC: &str = "ig.ingest.entities";
const EVENTS: usize = 6_000;
const KILLS: usize = 8;

fn config() -> conductor_engine::runtime::TopologyConfig {
    let mut config = counts_topology("counts", TOPIC);
    config.batch.max_events = 100;
    config.state.snapshot_every_batches = 4;
    config
}

/// Folds the log into `store` until idle, then drains (a final snapshot).
async fn fold_to_end(
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    format_version: u32,
    on_restored: impl FnOnce(&conductor_engine::runtime::state::Restored),
    mut after_batch: impl FnMut(usize),
) -> conductor_engine::runtime::state::Restored {
    let mut worker = Worker::start(
        config(),
        Box::new(CountsPerKeyProcessor::with_format_version(format_version)),
        log,
        store,
    )
    .await
    .unwrap();
    let restored = worker.restored.clone();
    on_restored(&restored);
    let mut batches = 0;
    while worker.step().await.unwrap().records > 0 {
        batches += 1;
        after_batch(batches);
    }
    worker.drain().await.unwrap();
    restored
}

/// The child: prints how it restored, then `BATCH n` after each batch, then `DONE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the crash test's child process; run by restores_state_after_sigkill_from_snapshot_and_from_warm_up"]
async fn state_crash_child() {
    let dir = std::path::PathBuf::from(std::env::var(DIR_ENV).expect(DIR_ENV));
    let version: u32 = std::env::var(VERSION_ENV).unwrap().parse().unwrap();
    let log: Arc<dyn Log> =
        Arc::new(FileLog::open(dir.join("log"), FileLogOptions::default()).unwrap());
    let store: Arc<dyn ProjectionStore> =
        Arc::new(SqliteStore::open(&dir.join("store.db")).await.unwrap());
    let restored = fold_to_end(
        log,
        store,
        version,
        |r| println!("RESTORED {} {}", r.from_snapshot, r.warm_up_records),
        |n| {
            println!("BATCH {n}");
            // Slow enough that a kill lands mid-run, on the fold or the commit.
            std::thread::sleep(Duration::from_millis(5));
        },
    )
    .await;
    let _ = restored;
    println!("DONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_state_after_sigkill_from_snapshot_and_from_warm_up() {
    let dir = tempfile::tempdir().unwrap();
    let events = counting_events(EVENTS, 97);
    {
        let log = FileLog::open(dir.path().join("log"), FileLogOptions::default()).unwrap();
        ensure_topic(&log, TOPIC, 2).await.unwrap();
        for e in &events {
            pipe_json(&log, TOPIC, e).await;
        }
    }
    // The straight run, in this process, on the same events in a memory log
    // (partitioned by key as in the file log).
    let straight = Arc::new(MemoryStore::new());
    let memory = conductor_engine::log::memory::MemoryLog::new();
    ensure_topic(&memory, TOPIC, 2).await.unwrap();
    for e in &events {
        pipe_json(&memory, TOPIC, e).await;
    }
    fold_to_end(Arc::new(memory), straight.clone(), 1, |_| {}, |_| {}).await;

    let exe = std::env::current_exe().unwrap();
    let run_child = |version: u32, kill_after_batches: Option<usize>| {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "state_crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(DIR_ENV, dir.path())
            .env(VERSION_ENV, version.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        for line in stdout.lines().map_while(Result::ok) {
            let batch = line
                .strip_prefix("BATCH ")
                .and_then(|n| n.parse::<usize>().ok());
            lines.push(line);
            if let (Some(n), Some(k)) = (batch, kill_after_batches)
                && n >= k
            {
                child.kill().unwrap(); // SIGKILL, mid-run
                break;
            }
        }
        child.wait().unwrap();
        lines
    };
    let mut restores: Vec<(bool, u64)> = Vec::new();
    let mut note_restores = |lines: &[String]| {
        for l in lines {
            // libtest's `test state_crash_child ... ` may share the line.
            if let Some(rest) = l.find("RESTORED ").map(|at| &l[at + "RESTORED ".len()..]) {
                let (a, b) = rest.split_once(' ').unwrap();
                restores.push((a == "true", b.parse().unwrap()));
            }
        }
    };
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    for kill in 0..KILLS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Every third child reads another snapshot format: it must warm up.
        let version = if kill % 3 == 2 { 2 } else { 1 };
        let lines = run_child(version, Some(2 + (seed % 6) as usize));
        note_restores(&lines);
        assert!(
            !lines.iter().any(|l| l == "DONE"),
            "child {kill} finished before it was killed; raise EVENTS"
        );
    }
    let last = run_child(1, None);
    assert!(last.iter().any(|l| l == "DONE"), "{last:?}");
    note_restores(&last);
    eprintln!("restores (from snapshot, records warmed up): {restores:?}");
    assert_eq!(restores.len(), KILLS + 1, "{restores:?}");
    assert!(
        restores
            .iter()
            .skip(1)
            .any(|(snap, n)| *snap && (*n as usize) < EVENTS),
        "some restart restored a snapshot and folded only the gap: {restores:?}"
    );
    assert!(
        restores.iter().skip(1).any(|(snap, n)| !*snap && *n > 0),
        "some restart warmed up from the log: {restores:?}"
    );

    let store = SqliteStore::open(&dir.path().join("store.db"))
        .await
        .unwrap();
    let table = key_counts_table();
    let rows = store.dump_table(&table).await.unwrap();
    assert_eq!(rows.len(), 97);
    assert_eq!(
        rows,
        straight.dump_table(&table).await.unwrap(),
        "tables equal a straight run"
    );
    assert_eq!(
        store
            .load_state("counts", SCOPE_ALL)
            .await
            .unwrap()
            .map(|s| s.bytes),
        straight
            .load_state("counts", SCOPE_ALL)
            .await
            .unwrap()
            .map(|s| s.bytes),
        "state equals a straight run's"
    );
    let offsets = store.load_offsets("counts").await.unwrap();
    assert_eq!(offsets.values().sum::<i64>(), EVENTS as i64);
}
