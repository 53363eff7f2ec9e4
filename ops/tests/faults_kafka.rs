//! Faults beyond SIGKILL, on Kafka: while one `conductor run` folds the
//! `entities` topology from Kafka into Postgres and relays its changefeed
//! back to Kafka, the broker is stopped (SIGTERM, then later SIGKILL) and
//! started again. The same process must wait and resume by itself, and end
//! with the projection and changefeed of a straight run — for a
//! `read_committed` reader in transactions mode — in both exactly-once
//! modes. While the broker is away the status says the topology waits on it.
//!
//! On an Apache Kafka of the test's own (`support::service`, started with
//! `ops/start-kafka.sh`), so the suite's broker is never bounced under the
//! other tests; Postgres is the suite's. Size: `FAULT_EVENTS` (default 30000).

mod support;

use std::time::Duration;
use support::fold_run::*;
use support::service::Service;
use support::*;

/// Stops the broker with `signal`, keeps it down for `down` and starts it
/// again, watching what the running topology reports all along (a client
/// notices an outage only when a request times out, seconds in) and for a
/// while after; what it waited on.
fn bounce(
    kafka: &mut Service,
    signal: &str,
    down: Duration,
    addr: &str,
    topology: &str,
) -> Vec<String> {
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let (watching, addr, topology) = (watching.clone(), addr.to_string(), topology.to_string());
        std::thread::spawn(move || {
            let mut waited_on = Vec::new();
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let (code, body) = http_get(&addr, &format!("/v1/topologies/{topology}"));
                assert_eq!(code, 200, "{body}");
                let s: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_ne!(s["state"], "failed", "the topology gave up: {s}");
                assert_ne!(s["relay"]["state"], "failed", "the relay gave up: {s}");
                for w in [&s["waiting_on"], &s["relay"]["waiting_on"]] {
                    if let Some(w) = w.as_str() {
                        waited_on.push(w.to_string());
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            waited_on
        })
    };
    kafka.stop(signal);
    std::thread::sleep(down);
    kafka.start_again();
    std::thread::sleep(Duration::from_secs(10));
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap()
}

async fn broker_bounces_during_fold_and_relay(
    kafka: &mut Service,
    url: &str,
    exactly_once: &'static str,
) {
    let bootstrap = kafka.env["KAFKA_BOOTSTRAP"].clone();
    let tmp = tempfile::tempdir().unwrap();
    let base = Store::Postgres {
        url: url.to_string(),
    };
    let log = LogBackend::Kafka {
        bootstrap,
        exactly_once,
    };
    let pair = FaultPair::prepare(
        tmp.path(),
        env_or("FAULT_EVENTS", 30_000),
        base.clone(),
        base,
        log,
        &format!("faults.{exactly_once}.entities"),
    )
    .await;
    let faulted = &pair.faulted;
    let (mut child, addr) = faulted.spawn_serving();
    faulted
        .wait_for_progress(pair.at(0.25), Duration::from_secs(120))
        .await;
    let mut waited_on = bounce(
        kafka,
        "TERM",
        Duration::from_secs(5),
        &addr,
        &faulted.topology,
    );
    faulted
        .wait_for_progress(pair.at(0.6), Duration::from_secs(180))
        .await;
    waited_on.extend(bounce(
        kafka,
        "KILL",
        Duration::from_secs(5),
        &addr,
        &faulted.topology,
    ));
    assert!(
        waited_on.iter().any(|w| w == "kafka"),
        "while the broker was down the status named it: {waited_on:?}"
    );

    faulted
        .wait_for_progress(pair.total, Duration::from_secs(240))
        .await;
    pair.wait_for_changefeed(Duration::from_secs(180)).await;
    stop_cleanly(&mut child);
    let after = pair
        .assert_same_end(&format!("through broker bounces ({exactly_once})"))
        .await;
    eprintln!(
        "{exactly_once}: broker stopped twice (TERM, KILL); {} changes, {} dead letters, as the straight run",
        after.change_ids.len(),
        after.dlq.len()
    );
}
/// Both modes on one broker of the test's own, one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_bounces_lose_nothing_and_double_nothing_in_both_exactly_once_modes() {
    let Some(url) = postgres().await else { return };
    let Some(mut kafka) = Service::kafka() else {
        return;
    };
    broker_bounces_during_fold_and_relay(&mut kafka, &url, "progress").await;
    broker_bounces_during_fold_and_relay(&mut kafka, &url, "transactions").await;
}
