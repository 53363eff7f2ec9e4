//! Exactly-once of the embedding writer (`embeddings_enrich` → its recorded
//! vectors → `embeddings`) under crashes: `conductor run` embedding the demo
//! generator's people (originals, typo'd duplicates, updates that touch and
//! don't touch the embedded attributes, deletes) is SIGKILLed mid-run
//! several times and restarted. Afterwards `entity_embeddings` equals a
//! straight run's, every live entity has one vector for its latest version,
//! each distinct text was recorded exactly once on `ig.enriched.embeddings`
//! (the set a straight run records), and `ig.embeddings` holds no event
//! twice; the usage records on `ig.ingest.usage` are one per call, none twice; the vector index downstream holds the same contents as a
//! straight run's, one vector per live entity. Sizes: `CRASH_EMB_RECORDS` (default 10000), `CRASH_EMB_KILLS` (5).

mod support;

use conductor_connectors::SqliteStore;
use conductor_engine::store::{ProjectionStore, table_digest};
use conductor_processors::embeddings::{EMBEDDINGS_TOPIC, embeddings_table};
use conductor_schemas::EventData;
use conductor_schemas::codec::decode_json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

const RESULTS_TOPIC: &str = "ig.enriched.embeddings";
const TOPOLOGIES: [&str; 3] = ["embeddings_enrich", "embeddings", "vector_index"];

fn run_to_end(dir: &Path) {
    run_topologies_to_end(dir, &TOPOLOGIES);
}

/// Content hashes recorded on the results topic, with how often each was.
async fn recorded_hashes(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in topic_events(dir, RESULTS_TOPIC).await {
        let EventData::EnrichmentRecorded(r) = e.data else {
            panic!("only EnrichmentRecorded on {RESULTS_TOPIC}")
        };
        *out.entry(r.content_hash).or_insert(0) += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_after_sigkills_equal_a_straight_run() {
    let records = env_or("CRASH_EMB_RECORDS", 10_000);
    let kills = env_or("CRASH_EMB_KILLS", 5);
    let base = tempfile::tempdir().unwrap();
    let base = base.path();
    let input = base.join("people.jsonl");
    let lines = demo_entity_workload(records);
    std::fs::write(&input, &lines).unwrap();
    let (straight, crashed) = (base.join("straight"), base.join("crashed"));
    produce_entities(&straight, &input);
    produce_entities(&crashed, &input);

    let started = std::time::Instant::now();
    run_to_end(&straight);
    let straight_secs = started.elapsed().as_secs_f64();

    for k in 0..kills {
        let mut child = ServerProcess::new(
            conductor(&crashed)
                .arg("run")
                .args(TOPOLOGIES.iter().flat_map(|t| ["--only", t]))
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
    run_to_end(&crashed);

    // The table: equal to the straight run's, one vector per live entity
    // for its latest version.
    let dump = |dir: std::path::PathBuf| async move {
        let store = SqliteStore::open(&dir.join("projections.db"))
            .await
            .unwrap();
        let rows = store.dump_table(&embeddings_table()).await.unwrap();
        let d = table_digest(&store, &embeddings_table()).await.unwrap();
        store.close().await;
        (rows, d)
    };
    let (rows, want) = dump(straight.clone()).await;
    let (_, got) = dump(crashed.clone()).await;
    assert_eq!(
        got, want,
        "entity_embeddings after {kills} SIGKILLs differs from a straight run"
    );
    let mut latest: BTreeMap<(String, String), (i64, bool)> = BTreeMap::new();
    for line in lines.lines() {
        let e = decode_json(line.as_bytes(), None).unwrap();
        let (version, live) = match &e.data {
            EventData::EntityUpserted(u) => (u.version, true),
            EventData::EntityDeleted(d) => (d.version, false),
            _ => continue,
        };
        let slot = latest
            .entry((e.meta.tenant.clone(), e.meta.subject.clone()))
            .or_insert((version, live));
        if version > slot.0 {
            *slot = (version, live);
        }
    }
    let live_rows: BTreeMap<(String, String), i64> = rows
        .iter()
        .filter(|r| r["deleted"] != true)
        .map(|r| {
            assert_eq!(r["dims"], 256);
            assert_eq!(r["vector"].as_array().map(Vec::len), Some(256));
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (
                (s("tenant_id"), s("entity_id")),
                r["version"].as_i64().unwrap(),
            )
        })
        .collect();
    let live_entities: BTreeMap<(String, String), i64> = latest
        .into_iter()
        .filter(|(_, (_, live))| *live)
        .map(|(k, (v, _))| (k, v))
        .collect();
    assert_eq!(
        live_rows.len(),
        live_entities.len(),
        "one vector per live entity"
    );
    assert!(
        live_rows == live_entities,
        "each vector is its entity's latest version"
    );

    // Each distinct text recorded once, and the same set as a straight run.
    let (a, b) = (
        recorded_hashes(&straight).await,
        recorded_hashes(&crashed).await,
    );
    assert!(
        a.len() > records / 3,
        "the workload embeds: {} texts",
        a.len()
    );
    assert!(
        b.values().all(|n| *n == 1),
        "a text was recorded twice after kills"
    );
    assert_eq!(
        a.keys().collect::<BTreeSet<_>>(),
        b.keys().collect::<BTreeSet<_>>(),
        "the recorded texts differ from a straight run's"
    );

    // Usage: one record per call, none twice, the same total as a straight
    // run's (which tenant pays for a text two tenants share depends on who
    // asked first, so compare the total).
    let usage = |dir: std::path::PathBuf| async move {
        let mut ids = BTreeSet::new();
        let mut tokens = 0;
        for e in topic_events(&dir, "ig.ingest.usage").await {
            let EventData::UsageRecorded(u) = &e.data else {
                panic!("only UsageRecorded on ig.ingest.usage")
            };
            assert!(ids.insert(e.meta.event_id.clone()), "usage recorded twice");
            tokens += u.quantity;
        }
        (ids.len(), tokens)
    };
    let (want, got) = (usage(straight.clone()).await, usage(crashed.clone()).await);
    assert_eq!(want.0, a.len(), "one usage record per embedder call");
    assert_eq!(
        got, want,
        "usage (records, tokens) after {kills} SIGKILLs differs from a straight run's"
    );

    // The vector index: the same contents as a straight run's (a digest of
    // its (entity, version, vector) triples), one vector per live entity.
    let index_stats = |dir: std::path::PathBuf| {
        let out = run_ok(conductor(&dir).args(["search", "--stats", "--json"]));
        let mut v = serde_json::from_str::<serde_json::Value>(&out).unwrap();
        // Dead slots depend on when compactions ran, which depends on how
        // the partitions of ig.embeddings interleaved: not contents.
        for s in v.as_array_mut().unwrap() {
            s.as_object_mut().unwrap().remove("dead_slots");
        }
        v
    };
    let (want, got) = (index_stats(straight.clone()), index_stats(crashed.clone()));
    assert_eq!(
        got, want,
        "the vector index after {kills} SIGKILLs differs from a straight run's"
    );
    let indexed: u64 = got
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["vectors"].as_u64().unwrap())
        .sum();
    assert_eq!(
        indexed as usize,
        live_entities.len(),
        "one indexed vector per live entity"
    );

    // ig.embeddings: no event twice.
    let announced = topic_events(&crashed, EMBEDDINGS_TOPIC).await;
    let ids: BTreeSet<&str> = announced.iter().map(|e| e.meta.event_id.as_str()).collect();
    assert!(!announced.is_empty());
    assert_eq!(
        ids.len(),
        announced.len(),
        "an EmbeddingComputed was emitted twice"
    );
}
