//! Rebuild → verify → swap → rollback of the `entities` topology, on SQLite
//! and on Postgres, while readers query the live projection continuously
//! and (for the last swap) a live worker keeps folding new input.

use conductor_engine::log::memory::MemoryLog;
use conductor_engine::log::{Log, Record, TopicConfig};
use conductor_engine::runtime::{TopologyConfig, Worker, parse_topology};
use conductor_engine::store::{ProjectionStore, table_digest};
use conductor_processors::entities::{EntitiesProcessor, entities_table};
use conductor_replay::rebuild::{RebuildReport, RebuildRequest, ReplayFrom, rebuild};
use conductor_replay::swap::{SwapReport, swap};
use conductor_replay::verify::{VerifyReport, verify};
use conductor_replay::{Generation, GenerationHome, ReplayError};
use futures::FutureExt;
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod support;

const TOPOLOGY: &str = include_str!("../../topologies/entities.toml");
const ENTITIES: &str = "ig.ingest.entities";
const RELS: &str = "ig.ingest.relationships";
/// Records of the first half carry timestamps below this; the rest above.
const MIDPOINT_MS: i64 = 50_000;

fn config() -> TopologyConfig {
    parse_topology(TOPOLOGY, &conductor_processors::names()).unwrap()
}

fn upsert(i: usize, ts: i64) -> Record {
    let id = format!("e{}", i % 300);
    let version = (i / 300 + 1) as i64;
    let json = format!(
        r#"{{"tenant":"acme","kind":"EntityUpserted","subject":"{id}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"Person","version":{version},"attributes":{{"n":{i}}}}}}}"#
    );
    Record {
        key: Some(id.into_bytes()),
        value: json.into_bytes(),
        headers: vec![],
        timestamp_ms: ts,
    }
}

/// Appends upserts `range` to the two partitions, with timestamps from `ts0`.
async fn append(log: &dyn Log, range: std::ops::Range<usize>, ts0: i64) {
    for i in range {
        let r = upsert(i, ts0 + i as i64);
        log.append(ENTITIES, (i % 2) as i32, vec![r]).await.unwrap();
    }
}

async fn fold_live(log: Arc<dyn Log>, live: Arc<dyn ProjectionStore>) {
    let mut w = Worker::start(config(), Box::new(EntitiesProcessor::default()), log, live)
        .await
        .unwrap();
    while w.step().await.unwrap().records > 0 {}
    w.flush().await.unwrap();
}

/// `(rows, sum of versions)` of the live `entities` table, as a reader sees it.
type Observation = (i64, i64);

/// Reads the live projection in a loop until stopped; returns every state
/// seen and every error met.
fn spawn_reader(
    query: impl Fn() -> futures::future::BoxFuture<'static, Result<Observation, String>>
    + Send
    + 'static,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(BTreeSet<Observation>, Vec<String>, usize)> {
    tokio::spawn(async move {
        let (mut seen, mut errors, mut reads) = (BTreeSet::new(), Vec::new(), 0);
        while !stop.load(Ordering::Relaxed) {
            match query().await {
                Ok(o) => {
                    seen.insert(o);
                }
                Err(e) => errors.push(e),
            }
            reads += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        (seen, errors, reads)
    })
}

const READ_SQL: &str =
    "SELECT count(*), CAST(coalesce(sum(\"version\"), 0) AS BIGINT) FROM \"entities\"";

async fn observe(live: &dyn ProjectionStore) -> Observation {
    let rows = live.dump_table(&entities_table()).await.unwrap();
    let sum = rows.iter().map(|r| r["version"].as_i64().unwrap()).sum();
    (rows.len() as i64, sum)
}

/// The replay operations of the scenario, on its log, store and topology.
struct Replay<'a> {
    log: Arc<dyn Log>,
    home: &'a GenerationHome,
    config: TopologyConfig,
}

impl Replay<'_> {
    async fn rebuild(&self, request: &RebuildRequest) -> Result<RebuildReport, ReplayError> {
        rebuild(
            self.log.clone(),
            self.home,
            &self.config,
            Box::new(EntitiesProcessor::default()),
            request,
            |_, _| {},
        )
        .await
    }

    async fn verify(&self) -> Result<VerifyReport, ReplayError> {
        verify(
            self.log.clone(),
            self.home,
            &self.config,
            Box::new(EntitiesProcessor::default()),
            5,
        )
        .await
    }

    async fn swap(&self, incoming: Generation, rewind: bool) -> Result<SwapReport, ReplayError> {
        swap(
            self.log.clone(),
            self.home,
            &self.config,
            Box::new(EntitiesProcessor::default()),
            incoming,
            rewind,
        )
        .await
    }
}

/// The whole scenario against one backend. `reader` opens a fresh reader
/// query on the live projection.
async fn scenario(
    home: GenerationHome,
    reader: impl Fn() -> futures::future::BoxFuture<'static, Result<Observation, String>>
    + Send
    + Sync
    + Clone
    + 'static,
) {
    let config = config();
    let log: Arc<dyn Log> = Arc::new(MemoryLog::new());
    log.create_topic(ENTITIES, &TopicConfig::with_partitions(2))
        .await
        .unwrap();
    log.create_topic(RELS, &TopicConfig::with_partitions(1))
        .await
        .unwrap();
    append(log.as_ref(), 0..1200, 1_000).await;
    append(log.as_ref(), 1200..2400, MIDPOINT_MS + 1_000).await;
    let live = home.live();
    let r = Replay {
        log: log.clone(),
        home: &home,
        config: config.clone(),
    };
    fold_live(log.clone(), live.clone()).await;
    let full = observe(live.as_ref()).await;
    assert_eq!(full.0, 300);

    // 1. A full rebuild equals the incrementally built live projection.
    let request = RebuildRequest {
        from: ReplayFrom::Earliest,
        to_ms: None,
    };
    let report = r.rebuild(&request).await.unwrap();
    assert_eq!(report.folded.records, 2400);
    let v = r.verify().await.unwrap();
    assert!(v.equal(), "{v:#?}");
    assert_eq!(v.caught_up_records, 0);

    // 2. Live moves on; verify brings the shadow to live's positions first.
    append(log.as_ref(), 2400..2700, MIDPOINT_MS + 10_000).await;
    fold_live(log.clone(), live.clone()).await;
    let v = r.verify().await.unwrap();
    assert!(v.equal(), "{v:#?}");
    assert_eq!(v.caught_up_records, 300);
    let full = observe(live.as_ref()).await;

    // 3. A point-in-time shadow (records up to the midpoint): verify and a
    //    plain swap refuse it; swap --rewind puts it live, rollback back.
    //    Readers query live throughout the rebuild, the swap and the rollback.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| spawn_reader(reader.clone(), stop.clone()))
        .collect();
    let pit = RebuildRequest {
        from: ReplayFrom::Earliest,
        to_ms: Some(MIDPOINT_MS),
    };
    let report = r.rebuild(&pit).await.unwrap();
    assert_eq!(
        report.folded.records, 1200,
        "only the first half is as of the midpoint"
    );
    let refused = r.verify().await;
    assert!(
        matches!(refused, Err(ReplayError::Refused { .. })),
        "{refused:?}"
    );
    let refused = r.swap(Generation::Shadow, false).await;
    assert!(
        matches!(refused, Err(ReplayError::Refused { .. })),
        "{refused:?}"
    );
    assert!(
        !live.control("entities").await.unwrap().paused,
        "a refused swap leaves live running"
    );

    tokio::time::sleep(Duration::from_millis(100)).await;
    let swapped = r.swap(Generation::Shadow, true).await.unwrap();
    let half = observe(live.as_ref()).await;
    assert_eq!(
        half,
        (300, 300 * 4),
        "as of the midpoint every entity has version 4"
    );
    let mid_offsets: i64 = swapped.positions.values().sum();
    assert_eq!(mid_offsets, 1200, "the offsets moved back with the shadow");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rolled = r.swap(Generation::Previous, true).await.unwrap();
    assert_eq!(rolled.positions.values().sum::<i64>(), 2700);
    assert_eq!(
        observe(live.as_ref()).await,
        full,
        "rollback restores the live state"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let (seen, errors, reads) = r.await.unwrap();
        assert!(errors.is_empty(), "readers saw errors: {errors:?}");
        assert!(reads > 10, "readers ran ({reads} reads)");
        assert!(
            seen.iter().all(|o| *o == full || *o == half),
            "a reader saw a state that is neither before nor after a swap: {seen:?} (full {full:?}, half {half:?})"
        );
        assert!(seen.contains(&half) && seen.contains(&full), "{seen:?}");
    }

    // 4. Swap while a live worker folds new input: nothing is lost or doubled.
    let report = r.rebuild(&request).await.unwrap();
    assert_eq!(report.folded.records, 2700);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let worker = Worker::start(
        config.clone(),
        Box::new(EntitiesProcessor::default()),
        log.clone(),
        live.clone(),
    )
    .await
    .unwrap();
    let running = tokio::spawn(worker.run(rx));
    let producing = {
        let log = log.clone();
        tokio::spawn(async move {
            for chunk in 0..20 {
                let from = 2700 + chunk * 30;
                append(log.as_ref(), from..from + 30, MIDPOINT_MS + 20_000).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let swapped = r.swap(Generation::Shadow, false).await.unwrap();
    assert!(
        !swapped.control.paused,
        "the swap leaves live running as it was"
    );
    producing.await.unwrap();
    // Let the worker fold the rest, then stop it.
    for _ in 0..200 {
        let at: i64 = live.load_offsets("entities").await.unwrap().values().sum();
        if at == 3300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tx.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(
        live.load_offsets("entities")
            .await
            .unwrap()
            .values()
            .sum::<i64>(),
        3300
    );
    let report = r.rebuild(&request).await.unwrap();
    assert_eq!(report.folded.records, 3300);
    let v = r.verify().await.unwrap();
    assert!(
        v.equal(),
        "after a swap under load, live equals a fresh rebuild: {v:#?}"
    );

    // 5. A difference is found and shown by key.
    let digest_before = table_digest(live.as_ref(), &entities_table())
        .await
        .unwrap();
    tamper(&home).await;
    let v = r.verify().await.unwrap();
    assert!(!v.equal());
    let t = &v.tables[0];
    assert_ne!(t.live_digest, digest_before);
    assert_eq!(t.differing_rows, 1, "{t:#?}");
    let d = &t.first_differences[0];
    assert!(
        d.live_digest.is_some() && d.live_digest != d.shadow_digest,
        "{d:?}"
    );
    assert_eq!(
        t.first_differences[0].key,
        vec![serde_json::json!("acme"), serde_json::json!("e7")]
    );
}

/// Changes one live row behind the runtime's back.
async fn tamper(home: &GenerationHome) {
    let sql = r#"UPDATE "entities" SET "version" = "version" + 100 WHERE "entity_id" = 'e7'"#;
    match home {
        GenerationHome::Sqlite { path, .. } => {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        GenerationHome::Postgres { live, .. } => {
            sqlx::query(sql).execute(live.pool()).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_rebuild_verify_swap_rollback_under_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projections.db");
    let home = GenerationHome::sqlite(&path).await.unwrap();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(3)
        .connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let reader = move || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(READ_SQL)
                .fetch_one(&pool)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    };
    scenario(home, reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_rebuild_verify_swap_rollback_under_readers() {
    let Some((url, schema, creator)) =
        support::postgres_schema("postgres_rebuild_verify_swap_rollback_under_readers", "rp").await
    else {
        return;
    };
    let home = GenerationHome::postgres(&url).await.unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .connect(&url)
        .await
        .unwrap();
    let reader = move || {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i64)>(READ_SQL)
                .fetch_one(&pool)
                .await
                .map_err(|e| e.to_string())
        }
        .boxed()
    };
    let outcome = AssertUnwindSafe(scenario(home, reader))
        .catch_unwind()
        .await;
    support::drop_schemas(
        &creator,
        &[
            schema.clone(),
            format!("{schema}_shadow_entities"),
            format!("{schema}_previous_entities"),
        ],
    )
    .await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
