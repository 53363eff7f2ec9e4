//! Exactly-once under crashes, on the embedded defaults (file log + SQLite):
//! `conductor run` folding ≥ 100k events is SIGKILLed at random points ≥ 10
//! times and restarted; the final projection must equal a clean run's (blake3
//! digest per table) and the changefeed must hold every change exactly once,
//! in the same order per key, and a full `conductor replay rebuild` must
//! verify equal to it. Sizes: `CRASH_EVENTS` (default 100000) and
//! `CRASH_KILLS` (default 10); soak/ runs the long version.

mod support;

use conductor_connectors::{PostgresStore, SqliteStore};
use conductor_engine::log::Log;
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::store::{ProjectionStore, table_digest};
use conductor_processors::entities::{entities_table, relationships_table};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn prepare(dir: &Path, workload: &Path) {
    run_ok(conductor(dir).args(["topic", "create", "ig.ingest.entities", "--partitions", "3"]));
    run_ok(conductor(dir).args([
        "topic",
        "create",
        "ig.ingest.relationships",
        "--partitions",
        "3",
    ]));
    let out = run_ok(
        conductor(dir)
            .args(["produce", "--topic", "ig.ingest.entities"])
            .arg(workload),
    );
    assert!(out.contains("appended"), "{out}");
}

/// Where a run's projections live: the embedded SQLite file of its data
/// dir, or a Postgres schema of its own.
#[derive(Clone)]
enum Store {
    Sqlite,
    Postgres { url: String },
}

impl Store {
    /// A Postgres store in a fresh schema per data dir, or SQLite.
    fn for_dir(&self, dir: &Path) -> Store {
        match self {
            Store::Sqlite => Store::Sqlite,
            Store::Postgres { url } => {
                let schema = schema_of(dir);
                let sep = if url.contains('?') { '&' } else { '?' };
                Store::Postgres {
                    url: format!("{url}{sep}options=-csearch_path%3D{schema}"),
                }
            }
        }
    }

    fn apply(&self, c: &mut std::process::Command) {
        if let Store::Postgres { url } = self {
            c.env("CONDUCTOR_STORE", "postgres")
                .env("CONDUCTOR_DATABASE_URL", url);
        }
    }

    async fn open(&self, dir: &Path) -> Box<dyn ProjectionStore> {
        match self {
            Store::Sqlite => Box::new(
                SqliteStore::open(&dir.join("projections.db"))
                    .await
                    .unwrap(),
            ),
            Store::Postgres { url } => Box::new(PostgresStore::connect(url, None).await.unwrap()),
        }
    }
}

/// The Postgres schema of a data dir (unique per test run).
fn schema_of(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    format!("crash_{}_{name}", std::process::id())
}

/// A `conductor` command on `dir` with `store`.
fn cmd(dir: &Path, store: &Store) -> std::process::Command {
    let mut c = conductor(dir);
    store.apply(&mut c);
    c
}

fn run_command(dir: &Path, store: &Store) -> std::process::Command {
    let mut c = cmd(dir, store);
    c.args(["run", "--listen", "127.0.0.1:0", "--topologies"])
        .arg(repo().join("topologies"));
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Sum of the stored input positions (how far the topology got).
async fn progress(dir: &Path, store: &Store) -> i64 {
    let store = store.open(dir).await;
    let p = store.load_offsets("entities").await.unwrap().values().sum();
    store.close().await;
    p
}

struct Outcome {
    digests: Vec<String>,
    /// (tenant/key) → versions in changefeed order.
    per_key: BTreeMap<String, Vec<i64>>,
    change_ids: Vec<String>,
    dlq: Vec<String>,
}

async fn outcome(dir: &Path, store: &Store) -> Outcome {
    let store = store.open(dir).await;
    let digests = vec![
        table_digest(store.as_ref(), &entities_table())
            .await
            .unwrap(),
        table_digest(store.as_ref(), &relationships_table())
            .await
            .unwrap(),
    ];
    store.close().await;
    let log = FileLog::open_read_only(dir.join("log"), FileLogOptions::default()).unwrap();
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut change_ids = Vec::new();
    for p in log
        .describe_topic("ig.changefeed.entities")
        .await
        .unwrap()
        .partitions
    {
        let mut next = p.low_watermark;
        while next < p.high_watermark {
            for r in log
                .read("ig.changefeed.entities", p.partition, next, 5000)
                .await
                .unwrap()
            {
                let v: serde_json::Value = serde_json::from_slice(&r.record.value).unwrap();
                let key = format!(
                    "{}/{}",
                    v["table"],
                    String::from_utf8_lossy(r.record.key.as_deref().unwrap_or_default())
                );
                per_key
                    .entry(key)
                    .or_default()
                    .push(v["version"].as_i64().unwrap());
                change_ids.push(v["change_id"].as_str().unwrap().to_string());
                next = r.offset + 1;
            }
        }
    }
    let mut dlq = Vec::new();
    let (low, high) = log.watermarks("ig.dlq.entities", 0).await.unwrap();
    let mut next = low;
    while next < high {
        for r in log.read("ig.dlq.entities", 0, next, 5000).await.unwrap() {
            let src = |k: &str| {
                String::from_utf8_lossy(r.record.header(k).unwrap_or_default()).into_owned()
            };
            dlq.push(format!(
                "{}/{}/{}",
                src("ig-dlq-source-topic"),
                src("ig-dlq-source-partition"),
                src("ig-dlq-source-offset")
            ));
            next = r.offset + 1;
        }
    }
    dlq.sort();
    Outcome {
        digests,
        per_key,
        change_ids,
        dlq,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_repeatedly_and_ends_with_the_clean_projection_and_changefeed() {
    crash_scenario(Store::Sqlite).await;
}

/// The same on Postgres (file log): rows, outbox and offsets in one
/// Postgres transaction per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_conductor_run_on_postgres_and_ends_with_the_clean_projection_and_changefeed() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    if let Err(e) = PostgresStore::connect(&url, None).await {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "Postgres not reachable at {url} ({e}); ops/test.sh provides one"
        );
        eprintln!("*** NOT RUN: Postgres not reachable at {url} ({e}) ***");
        return;
    }
    crash_scenario(Store::Postgres { url }).await;
}

async fn crash_scenario(base: Store) {
    let events = env_or("CRASH_EVENTS", 100_000);
    let kills = env_or("CRASH_KILLS", 10);
    let tmp = tempfile::tempdir().unwrap();
    let workload = tmp.path().join("workload.jsonl");
    std::fs::write(&workload, entity_workload(events)).unwrap();
    let (clean, crashed) = (tmp.path().join("clean"), tmp.path().join("crashed"));
    prepare(&clean, &workload);
    prepare(&crashed, &workload);
    let (clean_store, crashed_store) = (base.for_dir(&clean), base.for_dir(&crashed));
    if let Store::Postgres { url } = &base {
        for dir in [&clean, &crashed] {
            // The schema the run's URL points at must exist before it connects.
            PostgresStore::connect(url, Some(&schema_of(dir)))
                .await
                .unwrap();
        }
    }

    // The reference: one uninterrupted run.
    let status = run_command(&clean, &clean_store)
        .arg("--exit-when-idle")
        .status()
        .unwrap();
    assert!(status.success(), "clean run failed");
    let total = progress(&clean, &clean_store).await;
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
        let before = progress(&crashed, &crashed_store).await;
        let share = ((total - before) / (kills - mid_batch_kills + 1) as i64).max(1);
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let target = before + 1 + (seed % share as u64) as i64;
        let mut child = run_command(&crashed, &crashed_store).spawn().unwrap();
        let started = std::time::Instant::now();
        while progress(&crashed, &crashed_store).await < target
            && started.elapsed() < Duration::from_secs(120)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // And somewhere inside the batch after it.
        tokio::time::sleep(Duration::from_millis(seed % 60)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let done = progress(&crashed, &crashed_store).await;
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
    let status = run_command(&crashed, &crashed_store)
        .arg("--exit-when-idle")
        .status()
        .unwrap();
    assert!(status.success(), "final run after the kills failed");

    let (a, b) = (
        outcome(&clean, &clean_store).await,
        outcome(&crashed, &crashed_store).await,
    );
    assert_eq!(
        a.digests, b.digests,
        "projection after crashes differs from the clean run"
    );
    let mut ids = b.change_ids.clone();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "a change event was delivered twice");
    let mut clean_ids = a.change_ids.clone();
    clean_ids.sort();
    assert_eq!(
        ids, clean_ids,
        "changefeed after crashes is not the clean run's, exactly once"
    );
    assert_eq!(a.per_key, b.per_key, "per-key order of changes differs");
    assert_eq!(a.dlq, b.dlq, "DLQ differs (each bad record exactly once)");
    assert!(!a.dlq.is_empty() && !a.change_ids.is_empty());

    // A full rebuild from the log equals the projection built through the crashes.
    let topologies = repo().join("topologies");
    let rebuilt = run_ok(
        cmd(&crashed, &crashed_store)
            .args([
                "replay",
                "rebuild",
                "--topology",
                "entities",
                "--topologies",
            ])
            .arg(&topologies),
    );
    assert!(rebuilt.contains(&format!("{events} records")), "{rebuilt}");
    let verified = run_ok(
        cmd(&crashed, &crashed_store)
            .args(["replay", "verify", "--topology", "entities", "--topologies"])
            .arg(&topologies),
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
    if let Store::Postgres { url } = &base {
        for dir in [&clean, &crashed] {
            let schema = schema_of(dir);
            for s in [
                schema.clone(),
                format!("{schema}_shadow_entities"),
                format!("{schema}_previous_entities"),
            ] {
                if let Ok(store) = PostgresStore::connect(url, Some(&s)).await {
                    let _ = store.drop_schema().await;
                }
            }
        }
    }
}
