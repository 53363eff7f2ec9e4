//! Exactly-once under crashes: `conductor run` folding ≥ 100k events is
//! SIGKILLed at random points ≥ 10 times and restarted; the final projection
//! must equal a clean run's (blake3 digest per table), the changefeed must
//! hold every change exactly once, in the same order per key, and a full
//! `conductor replay rebuild` must verify equal to it. On the embedded
//! defaults (file log + SQLite), on Postgres with the file log, and on the
//! production pair, Kafka (the Apache Kafka ops/test.sh starts) + Postgres,
//! in both exactly-once modes (progress records; Kafka transactions).
//! Sizes: `CRASH_EVENTS` (default 100000) and `CRASH_KILLS` (default 10);
//! `soak/crash.sh` runs the long version (1M events, 30 kills).

mod support;

use conductor_connectors::PostgresStore;
use std::time::Duration;
use support::fold_run::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_repeatedly_and_ends_with_the_clean_projection_and_changefeed() {
    crash_scenario(Store::Sqlite, LogBackend::File).await;
}

/// The same on Postgres (file log): rows, outbox and offsets in one
/// Postgres transaction per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_on_postgres_and_ends_with_the_clean_projection_and_changefeed() {
    let Some(url) = postgres().await else { return };
    crash_scenario(Store::Postgres { url }, LogBackend::File).await;
}

/// The production pair: Kafka in progress mode (intent and commit records,
/// fencing, recovery of a torn relay batch; any Kafka-protocol broker) and
/// Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_on_kafka_and_postgres_and_ends_with_the_clean_projection_and_changefeed()
 {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    let Some(url) = postgres().await else { return };
    let log = LogBackend::Kafka {
        bootstrap,
        exactly_once: "progress",
    };
    crash_scenario(Store::Postgres { url }, log).await;
}

/// The same in transactions mode: the relay commits each outbox batch as a
/// Kafka transaction (`transactional.id` per topology), a killed relay's open
/// transaction is aborted by the next incarnation, and the changefeed is read
/// `read_committed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_on_kafka_transactions_and_postgres_and_ends_with_the_clean_projection_and_changefeed()
 {
    let Some(bootstrap) = kafka_bootstrap() else {
        return;
    };
    assert!(
        std::env::var("KAFKA_BROKER").as_deref() != Ok("tansu"),
        "this test needs a broker with transactions; tansu has none (soak/kafka-suite.sh skips it there)"
    );
    let Some(url) = postgres().await else { return };
    let log = LogBackend::Kafka {
        bootstrap,
        exactly_once: "transactions",
    };
    crash_scenario(Store::Postgres { url }, log).await;
}

async fn crash_scenario(base: Store, log: LogBackend) {
    let events = env_or("CRASH_EVENTS", 100_000);
    let kills = env_or("CRASH_KILLS", 10);
    let tmp = tempfile::tempdir().unwrap();
    let workload = tmp.path().join("workload.jsonl");
    std::fs::write(&workload, entity_workload(events)).unwrap();
    let (clean_dir, crashed_dir) = (tmp.path().join("clean"), tmp.path().join("crashed"));
    let mode = match &log {
        LogBackend::File => "file",
        LogBackend::Kafka { exactly_once, .. } => exactly_once,
    };
    let kafka_input = format!(
        "crash.{mode}.{}_{}.entities",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let clean = Run::new(
        clean_dir.clone(),
        base.for_dir(&clean_dir),
        log.clone(),
        &kafka_input,
    );
    let crashed = Run::new(
        crashed_dir.clone(),
        base.for_dir(&crashed_dir),
        log,
        &kafka_input,
    );
    if let Store::Postgres { url } = &base {
        for dir in [&clean_dir, &crashed_dir] {
            // The schema the run's URL points at must exist before it connects.
            PostgresStore::connect(url, Some(&schema_of(dir)))
                .await
                .unwrap();
        }
    }
    clean.prepare(&workload);
    if matches!(crashed.log, LogBackend::File) {
        crashed.prepare(&workload); // its own data dir, so its own log
    }

    // The reference: one uninterrupted run.
    let status = clean
        .run_command()
        .arg("--exit-when-idle")
        .status()
        .unwrap();
    assert!(status.success(), "clean run failed");
    let total = clean.progress().await;
    assert_eq!(total as usize, events, "the clean run folded every input");

    // The crash run: SIGKILL at random points while it is folding.
    let mut seed: u64 = 0xC0FF_EE00 ^ events as u64;
    let mut mid_batch_kills = 0;
    let mut attempts = 0;
    while mid_batch_kills < kills {
        attempts += 1;
        assert!(
            attempts < kills * 4,
            "could not land {kills} kills while folding (the run finished too fast); raise CRASH_EVENTS"
        );
        // Aim each kill at a random point of the next share of what is left,
        // by progress rather than by time, so the kills land while folding
        // however fast or slow this machine is at the moment.
        let before = crashed.progress().await;
        let share = ((total - before) / (kills - mid_batch_kills + 1) as i64).max(1);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target = before + 1 + (seed % share as u64) as i64;
        // Killed on drop too: a failed assertion below mustn't leave it running.
        let mut child = ServerProcess::new(crashed.run_command().spawn().unwrap());
        let started = std::time::Instant::now();
        while crashed.progress().await < target && started.elapsed() < Duration::from_secs(180) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // And somewhere inside the batch after it.
        tokio::time::sleep(Duration::from_millis(seed % 60)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let done = crashed.progress().await;
        eprintln!("kill {attempts}: {done}/{total} inputs committed");
        if done < total {
            mid_batch_kills += 1;
        } else {
            break;
        }
    }
    assert!(
        mid_batch_kills >= kills,
        "only {mid_batch_kills} kills landed while folding"
    );
    let status = crashed
        .run_command()
        .arg("--exit-when-idle")
        .status()
        .unwrap();
    assert!(status.success(), "final run after the kills failed");

    let (a, b) = (outcome(&clean).await, outcome(&crashed).await);
    assert_same_outcome(&a, &b, "after crashes");
    // A full rebuild from the log equals the projection built through the crashes.
    let rebuilt = run_ok(
        crashed
            .cmd()
            .args([
                "replay",
                "rebuild",
                "--topology",
                &crashed.topology,
                "--topologies",
            ])
            .arg(&crashed.topologies),
    );
    assert!(rebuilt.contains(&format!("{events} records")), "{rebuilt}");
    let verified = run_ok(
        crashed
            .cmd()
            .args([
                "replay",
                "verify",
                "--topology",
                &crashed.topology,
                "--topologies",
            ])
            .arg(&crashed.topologies),
    );
    assert!(
        verified.matches("EQUAL").count() == 2 && !verified.contains("DIFFERENT"),
        "{verified}"
    );
    eprintln!(
        "{mid_batch_kills} kills while folding; {} changes, {} dead letters, digests {:?}",
        a.change_ids.len(),
        a.dlq.len(),
        a.digests
    );
    drop_schemas(&base, &[&clean, &crashed]).await;
}
