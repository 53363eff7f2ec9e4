//! Faults beyond SIGKILL, on Postgres: while one `conductor run` folds the
//! `entities` topology (file log → Postgres), the server's connections are
//! cut mid-commit (`pg_terminate_backend`, the worker's and the relay's),
//! the server is restarted (`pg_ctl restart -m fast`, then `-m immediate`,
//! crash recovery included) and then kept down for 30 s. The same process
//! must ride it all out by itself — no restart — and end with the projection
//! and the changefeed of a straight run: nothing lost, nothing applied or
//! relayed twice. While the server is down its status says what it waits on.
//!
//! Runs on a Postgres of its own (`support::postgres_server`): the suite's
//! shared server is not restarted under the other tests. Size:
//! `FAULT_EVENTS` (default 40000); `soak/faults.sh` mixes more faults longer.

mod support;

use conductor_connectors::PostgresStore;
use std::time::{Duration, Instant};
use support::fold_run::*;
use support::postgres_server::PostgresServer;
use support::*;

/// Waits until the faulted run has folded `target` inputs (the store may be
/// away meanwhile: then it just waits on).
async fn wait_for_progress(run: &Run, target: i64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if run.progress_if_reachable().await.is_ok_and(|p| p >= target) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the topology did not reach {target} inputs within {within:?} (at {:?})",
            run.progress_if_reachable().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The topology's status as the running process reports it.
fn status(addr: &str, topology: &str) -> serde_json::Value {
    let (code, body) = http_get(addr, &format!("/v1/topologies/{topology}"));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_cut_connections_and_an_outage_lose_nothing_and_double_nothing() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let events = env_or("FAULT_EVENTS", 40_000);
    let tmp = tempfile::tempdir().unwrap();
    let workload = tmp.path().join("workload.jsonl");
    std::fs::write(&workload, entity_workload(events)).unwrap();
    let base = Store::Postgres { url: pg.url() };
    let (clean_dir, faulted_dir) = (tmp.path().join("clean"), tmp.path().join("faulted"));
    let clean = Run::new(
        clean_dir.clone(),
        base.for_dir(&clean_dir),
        LogBackend::File,
        "",
    )
    .with_max_batch(500);
    let faulted = Run::new(
        faulted_dir.clone(),
        base.for_dir(&faulted_dir),
        LogBackend::File,
        "",
    )
    .with_max_batch(500);
    for dir in [&clean_dir, &faulted_dir] {
        PostgresStore::connect(&pg.url(), Some(&schema_of(dir)))
            .await
            .unwrap();
    }
    clean.prepare(&workload);
    faulted.prepare(&workload);

    // The reference: a straight run, before any fault.
    let straight = clean
        .run_command()
        .arg("--exit-when-idle")
        .status()
        .unwrap();
    assert!(straight.success(), "the straight run failed");
    let total = clean.progress().await;
    assert_eq!(
        total as usize, events,
        "the straight run folded every input"
    );
    let reference = outcome(&clean).await;

    let (mut child, addr) = faulted.spawn_serving();
    let at = |share: f64| (total as f64 * share) as i64;

    // Connections cut while batches commit: the worker's and the relay's.
    wait_for_progress(&faulted, at(0.1), Duration::from_secs(120)).await;
    let mut cut = 0;
    for _ in 0..5 {
        cut += pg.terminate_backends();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(cut > 0, "no connection was cut");

    wait_for_progress(&faulted, at(0.3), Duration::from_secs(120)).await;
    pg.restart("fast");
    wait_for_progress(&faulted, at(0.5), Duration::from_secs(120)).await;
    pg.restart("immediate");
    wait_for_progress(&faulted, at(0.7), Duration::from_secs(120)).await;

    // Down for 30 s: the process waits, and says on what.
    pg.stop("immediate");
    let down = Instant::now();
    let mut waited_on = None;
    while down.elapsed() < Duration::from_secs(30) {
        let s = status(&addr, &faulted.topology);
        assert_ne!(s["state"], "failed", "the topology gave up: {s}");
        assert_ne!(s["relay"]["state"], "failed", "the relay gave up: {s}");
        for w in [&s["waiting_on"], &s["relay"]["waiting_on"]] {
            if let Some(w) = w.as_str() {
                waited_on = Some(w.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        waited_on.as_deref(),
        Some("postgres"),
        "while the server was down the status named what the topology waits on"
    );
    // And so does the CLI, asking the running process since the store is down.
    let cli = run_ok(
        faulted
            .cmd()
            .args(["topology", "status", "--listen", &addr, "--topologies"])
            .arg(&faulted.topologies),
    );
    assert!(cli.contains("waiting on postgres"), "{cli}");
    pg.start_again();

    // It resumes by itself: every input folded and every change relayed by
    // this same process.
    wait_for_progress(&faulted, total, Duration::from_secs(180)).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while faulted.changefeed_len().await < reference.change_ids.len() {
        assert!(
            Instant::now() < deadline,
            "the relay did not catch up after the outage: {} of {} changes relayed; status {}",
            faulted.changefeed_len().await,
            reference.change_ids.len(),
            status(&addr, &faulted.topology)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And says so: the status clears once its next attempts pass.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&addr, &faulted.topology);
        let clear = s["state"] == "running"
            && s["waiting_on"].is_null()
            && s["relay"]["state"] == "running"
            && s["relay"]["waiting_on"].is_null();
        if clear {
            assert!(
                s["relay"]["records_relayed"].as_u64().unwrap_or(0) > 0,
                "{s}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the status still reports the outage: {s}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "conductor run did not stop cleanly: {exit}");

    let after = outcome(&faulted).await;
    assert_same_outcome(&reference, &after, "through the Postgres faults");
    eprintln!(
        "{cut} connections cut, 2 restarts, 30 s down; {} changes, {} dead letters, as the straight run",
        after.change_ids.len(),
        after.dlq.len()
    );
}
