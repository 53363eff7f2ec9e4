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

use std::time::{Duration, Instant};
use support::fold_run::*;
use support::postgres_server::PostgresServer;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarts_cut_connections_and_an_outage_lose_nothing_and_double_nothing() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = Store::Postgres { url: pg.url() };
    let pair = FaultPair::prepare(
        tmp.path(),
        env_or("FAULT_EVENTS", 40_000),
        base.clone(),
        base,
        LogBackend::File,
        "",
    )
    .await;
    let faulted = &pair.faulted;
    let (mut child, addr) = faulted.spawn_serving();

    // Connections cut while batches commit: the worker's and the relay's.
    faulted
        .wait_for_progress(pair.at(0.1), Duration::from_secs(120))
        .await;
    let mut cut = 0;
    for _ in 0..5 {
        cut += pg.terminate_backends();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(cut > 0, "no connection was cut");

    faulted
        .wait_for_progress(pair.at(0.3), Duration::from_secs(120))
        .await;
    pg.restart("fast");
    faulted
        .wait_for_progress(pair.at(0.5), Duration::from_secs(120))
        .await;
    pg.restart("immediate");
    faulted
        .wait_for_progress(pair.at(0.7), Duration::from_secs(120))
        .await;

    // Down for 30 s: the process waits, and says on what.
    pg.stop("immediate");
    let down = Instant::now();
    let mut waited_on = None;
    while down.elapsed() < Duration::from_secs(30) {
        let s = faulted.status(&addr);
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
    faulted
        .wait_for_progress(pair.total, Duration::from_secs(180))
        .await;
    pair.wait_for_changefeed(Duration::from_secs(120)).await;
    // And says so: the status clears once its next attempts pass.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = faulted.status(&addr);
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
    stop_cleanly(&mut child);

    let after = pair.assert_same_end("through the Postgres faults").await;
    eprintln!(
        "{cut} connections cut, 2 restarts, 30 s down; {} changes, {} dead letters, as the straight run",
        after.change_ids.len(),
        after.dlq.len()
    );
}
