//! Exactly-once of the stateful `er_candidates` topology (behind its
//! repartition-by-tenant topology) under crashes: `conductor run` indexing the demo generator's people (originals, typo'd
//! duplicates, updates, deletes) is SIGKILLed mid-run several times and
//! restarted — from its state snapshot, or warming up from the log — and
//! must end with the `er_candidates` table and the `ig.er.candidates` topic
//! of a straight run: the same rows, every event exactly once. Then a
//! `replay rebuild` of it verifies equal. Sizes: `CRASH_ER_RECORDS`
//! (default 20000; `soak/crash.sh`-style long runs set 100000) and
//! `CRASH_ER_KILLS` (default 5).

mod support;

use conductor_connectors::SqliteStore;
use conductor_engine::log::Log;
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::store::{ProjectionStore, table_digest};
use conductor_processors::er::{ER_CANDIDATES_TOPIC, candidates_table};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn run_to_end(dir: &Path) -> String {
    let out = conductor(dir)
        .args([
            "run",
            "--only",
            "er_by_tenant",
            "--only",
            "er_candidates",
            "--listen",
            "127.0.0.1:0",
            "--exit-when-idle",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "conductor run failed: {stderr}");
    stderr
}

/// Every record of the candidates topic as (key, value), sorted.
async fn candidate_events(dir: &Path) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    let log = FileLog::open_read_only(dir.join("log"), FileLogOptions::default()).unwrap();
    let mut out = Vec::new();
    for p in log
        .describe_topic(ER_CANDIDATES_TOPIC)
        .await
        .unwrap()
        .partitions
    {
        for r in log
            .read(ER_CANDIDATES_TOPIC, p.partition, 0, usize::MAX)
            .await
            .unwrap()
        {
            out.push((r.record.key, r.record.value));
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn er_candidates_after_sigkills_equal_a_straight_run() {
    let records = env_or("CRASH_ER_RECORDS", 20_000);
    let kills = env_or("CRASH_ER_KILLS", 5);
    let base = tempfile::tempdir().unwrap();
    let base = base.path();
    let input = base.join("people.jsonl");
    std::fs::write(&input, demo_entity_workload(records)).unwrap();
    let (straight, crashed) = (base.join("straight"), base.join("crashed"));
    produce_entities(&straight, &input);
    produce_entities(&crashed, &input);

    let started = std::time::Instant::now();
    run_to_end(&straight);
    let straight_secs = started.elapsed().as_secs_f64();

    // Kill at spread points of a run as long as the straight one.
    for k in 0..kills {
        let mut child = ServerProcess::new(
            conductor(&crashed)
                .args(["run", "--only", "er_by_tenant", "--only", "er_candidates"])
                .args(["--listen", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let at =
            straight_secs * (0.15 + 0.7 * ((k * 7 + 3) % 10) as f64 / 10.0) / kills as f64 + 0.5;
        tokio::time::sleep(Duration::from_secs_f64(at)).await;
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
    }
    let last = run_to_end(&crashed);
    assert!(last.contains("er_candidates"), "{last}");

    let digest = |dir: std::path::PathBuf| async move {
        let store = SqliteStore::open(&dir.join("projections.db"))
            .await
            .unwrap();
        let rows = store.dump_table(&candidates_table()).await.unwrap().len();
        let d = table_digest(&store, &candidates_table()).await.unwrap();
        store.close().await;
        (rows, d)
    };
    let (rows, want) = digest(straight.clone()).await;
    assert!(
        rows > records / 20,
        "the workload proposes pairs: {rows} rows"
    );
    let (_, got) = digest(crashed.clone()).await;
    assert_eq!(
        got, want,
        "er_candidates after {kills} SIGKILLs differs from a straight run"
    );
    let (a, b) = (
        candidate_events(&straight).await,
        candidate_events(&crashed).await,
    );
    assert!(!a.is_empty());
    let mut dedup = b.clone();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        b.len(),
        "an ErCandidate event was emitted twice"
    );
    assert!(
        a == b,
        "ig.er.candidates differs: {} events straight, {} after kills",
        a.len(),
        b.len()
    );

    // A rebuild of the crashed run's topology verifies equal to it.
    run_ok(conductor(&crashed).args(["replay", "rebuild", "--topology", "er_candidates"]));
    let verified =
        run_ok(conductor(&crashed).args(["replay", "verify", "--topology", "er_candidates"]));
    assert!(verified.contains("EQUAL"), "{verified}");
}
