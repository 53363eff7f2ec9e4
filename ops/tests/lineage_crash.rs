//! Exactly-once of the lineage topology under crashes: `conductor run`
//! folding OpenLineage run events (runs out of order, clients' retries,
//! failures; see `lineage::workload`) is SIGKILLed mid-run several times and
//! restarted. Afterwards the SQL graph tables, the runs and the column
//! lineage equal a straight run's, every run has the status its events say,
//! `ig.graph.lineage` holds no mutation twice (the same set as a straight
//! run's), and a `replay rebuild` verifies EQUAL. (`conductor run`'s own
//! runs, reported under tenant `default`, are left out of the comparison:
//! each killed process is a run of its own.) Sizes:
//! `CRASH_LINEAGE_EVENTS` (default 30000), `CRASH_LINEAGE_KILLS` (5).

mod support;

use conductor_connectors::SqliteStore;
use conductor_engine::store::{ProjectionStore, rows_digest};
use conductor_processors::lineage::workload::{envelope_lines, generate};
use conductor_processors::lineage::{
    LINEAGE_GRAPH, column_lineage_table, datasets_table, runs_table,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn produce_runs(dir: &Path, input: &Path) {
    run_ok(conductor(dir).args(["topic", "create", "ig.ingest.runs", "--partitions", "3"]));
    run_ok(
        conductor(dir)
            .args(["produce", "--topic", "ig.ingest.runs"])
            .arg(input),
    );
}

/// Whether a row is the workload's: `conductor run` reports its own runs
/// under tenant `default` (one per process: the crashed run has more).
fn of_workload(row: &serde_json::Value) -> bool {
    match row["tenant_id"].as_str() {
        Some(tenant) => tenant != "default",
        None => !row["id"].as_str().unwrap_or("").starts_with("default/"),
    }
}

async fn digests(dir: &Path) -> Vec<(String, String, usize)> {
    let store = SqliteStore::open(&dir.join("projections.db"))
        .await
        .unwrap();
    let mut out = Vec::new();
    for table in [
        LINEAGE_GRAPH.nodes(),
        LINEAGE_GRAPH.edges(),
        runs_table(),
        column_lineage_table(),
        datasets_table(),
    ] {
        let rows: Vec<serde_json::Value> = store
            .dump_table(&table)
            .await
            .unwrap()
            .into_iter()
            .filter(of_workload)
            .collect();
        out.push((table.name.to_string(), rows_digest(&rows), rows.len()));
    }
    store.close().await;
    out
}

/// The graph topic's records as (key, version): each once.
async fn graph_mutations(dir: &Path) -> BTreeSet<(String, i64)> {
    let records = topic_records(dir, "ig.graph.lineage").await;
    let mut set = BTreeSet::new();
    for r in &records {
        let m: serde_json::Value = serde_json::from_slice(&r.value).unwrap();
        let key = String::from_utf8(r.key.clone().unwrap()).unwrap();
        if key.contains("/default/") {
            continue; // `conductor run`'s own runs
        }
        assert!(
            set.insert((key.clone(), m["version"].as_i64().unwrap())),
            "graph mutation {key} v{} published twice",
            m["version"]
        );
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_after_sigkills_equals_a_straight_run() {
    let events = env_or("CRASH_LINEAGE_EVENTS", 30_000);
    let kills = env_or("CRASH_LINEAGE_KILLS", 5);
    let base = tempfile::tempdir().unwrap();
    let base = base.path();
    let workload = generate(events, 400);
    let input = base.join("runs.jsonl");
    std::fs::write(&input, envelope_lines(&workload)).unwrap();
    let (straight, crashed) = (base.join("straight"), base.join("crashed"));
    produce_runs(&straight, &input);
    produce_runs(&crashed, &input);

    let started = std::time::Instant::now();
    run_topologies_to_end(&straight, &["lineage"]);
    let straight_secs = started.elapsed().as_secs_f64();

    for k in 0..kills {
        let mut child = ServerProcess::new(
            conductor(&crashed)
                .args(["run", "--only", "lineage", "--listen", "127.0.0.1:0"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let at =
            straight_secs * (0.15 + 0.7 * ((k * 7 + 3) % 10) as f64 / 10.0) / kills as f64 + 0.4;
        tokio::time::sleep(Duration::from_secs_f64(at)).await;
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
    }
    run_topologies_to_end(&crashed, &["lineage"]);

    let want = digests(&straight).await;
    let got = digests(&crashed).await;
    assert_eq!(
        got, want,
        "lineage tables after {kills} SIGKILLs differ from a straight run's"
    );

    // What the events say: a run per run id, FAIL every tenth, COMPLETE
    // otherwise, whatever order its events came in.
    let db = crashed.join("projections.db");
    let statuses = sqlite_rows(
        &db,
        "SELECT status, count(*) FROM lineage_runs WHERE tenant_id <> 'default' GROUP BY status ORDER BY status",
        &[],
    );
    let runs: BTreeSet<(&str, String)> = workload
        .iter()
        .map(|e| {
            (
                e.tenant,
                e.event["run"]["runId"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let failed = runs
        .iter()
        .filter(|(_, id)| usize::from_str_radix(&id[24..], 16).unwrap() % 10 == 9)
        .count();
    assert_eq!(
        statuses,
        [
            format!("COMPLETE|{}", runs.len() - failed),
            format!("FAIL|{failed}")
        ]
    );
    assert_eq!(
        sqlite_rows(
            &db,
            "SELECT count(*) FROM lineage_runs WHERE tenant_id <> 'default' AND (started_at IS NULL OR ended_at IS NULL)",
            &[]
        ),
        ["0"],
        "every run has its start and its end"
    );

    // The graph topic: each applied mutation once, the same as a straight run's.
    let (a, b) = (
        graph_mutations(&straight).await,
        graph_mutations(&crashed).await,
    );
    assert!(!a.is_empty());
    assert_eq!(b, a, "ig.graph.lineage differs from a straight run's");

    // A rebuild from the log verifies equal.
    run_ok(conductor(&crashed).args(["replay", "rebuild", "--topology", "lineage"]));
    let verified = run_ok(conductor(&crashed).args(["replay", "verify", "--topology", "lineage"]));
    assert_eq!(verified.matches("EQUAL").count(), 5, "{verified}");
    eprintln!(
        "lineage crash: {} events, {} runs, straight run {straight_secs:.1} s, {kills} SIGKILLs",
        workload.len(),
        runs.len()
    );
}
