//! Exactly-once of the stateful `er_candidates` topology (behind its
//! repartition-by-tenant topology, with the embedding writer feeding its
//! ANN signal) under crashes: `conductor run` indexing the demo generator's
//! people (originals, typo'd duplicates, updates, deletes) is SIGKILLed
//! mid-run several times and restarted — from its state snapshot, or
//! warming up from the log.
//!
//! What is promised, and checked:
//! - the repartition topic holds every input event (entities and
//!   embeddings) exactly once, each source partition's events in their order;
//! - `er_candidates` ends with the table and `ig.er.candidates` topic of a
//!   straight run over that same repartition topic: the same rows, every
//!   event exactly once. (The interleaving of the *source* partitions in
//!   the repartition topic depends on timing, as in Kafka Streams; ER's
//!   candidates depend on record order, so the reference must read the same
//!   repartitioned order. When the crashed run's repartition topic equals
//!   the straight run's, the straight run is the reference; otherwise the
//!   reference is a straight `er_candidates` run over a copy of it.)
//! - a `replay rebuild` of it verifies EQUAL.
//!
//! Sizes: `CRASH_ER_RECORDS` (default 12000; `soak/crash.sh`-style long runs
//! set 100000) and `CRASH_ER_KILLS` (default 5).

mod support;

use conductor_connectors::SqliteStore;
use conductor_engine::log::Log;
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::log::{Record, TopicConfig};
use conductor_engine::store::{ProjectionStore, table_digest};
use conductor_processors::er::{ER_CANDIDATES_TOPIC, candidates_table};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::*;

const BY_TENANT: &str = "ig.repartition.er_candidates.by_tenant";
const INGEST: &str = "ig.ingest.entities";
const EMBEDDINGS: &str = "ig.embeddings";
/// The topologies run: the embedding writer (whose vectors are the ANN
/// signal), the repartition and the candidates.
const TOPOLOGIES: [&str; 4] = [
    "embeddings_enrich",
    "embeddings",
    "er_by_tenant",
    "er_candidates",
];

fn run_to_end(dir: &Path) -> String {
    run_topologies_to_end(dir, &TOPOLOGIES)
}

/// Every committed record of each partition of `topic`, in offset order.
async fn partitions_of(dir: &Path, topic: &str) -> BTreeMap<i32, Vec<Record>> {
    let log = FileLog::open_read_only(dir.join("log"), FileLogOptions::default()).unwrap();
    let mut out = BTreeMap::new();
    for p in log.describe_topic(topic).await.unwrap().partitions {
        let records = log.read(topic, p.partition, 0, usize::MAX).await.unwrap();
        out.insert(p.partition, records.into_iter().map(|r| r.record).collect());
    }
    out
}

fn event_id(record: &Record) -> String {
    conductor_schemas::codec::decode(&record.value, None)
        .unwrap()
        .meta
        .event_id
}

/// A source partition: (index of its topic among the inputs, partition).
type Source = (usize, i32);

/// The repartition topic holds every event of the inputs exactly once, and
/// each source partition's events in their source order.
fn assert_repartitioned_exactly_once(
    inputs: &[BTreeMap<i32, Vec<Record>>],
    by_tenant: &BTreeMap<i32, Vec<Record>>,
) {
    let mut source_of = std::collections::HashMap::new();
    for (t, input) in inputs.iter().enumerate() {
        for (p, records) in input {
            for (i, r) in records.iter().enumerate() {
                source_of.insert(event_id(r), ((t, *p), i));
            }
        }
    }
    let mut seen = HashSet::new();
    for records in by_tenant.values() {
        // The last position taken from each source partition, per tenant key.
        let mut last: BTreeMap<(Option<Vec<u8>>, Source), usize> = BTreeMap::new();
        for r in records {
            let id = event_id(r);
            assert!(seen.insert(id.clone()), "event {id} repartitioned twice");
            let (p, i) = source_of[&id];
            if let Some(prev) = last.insert((r.key.clone(), p), i) {
                assert!(
                    prev < i,
                    "event {id} overtook an earlier one of its source partition"
                );
            }
        }
    }
    assert_eq!(seen.len(), source_of.len(), "events lost in repartitioning");
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
    let records = env_or("CRASH_ER_RECORDS", 12_000);
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
    eprintln!("[{straight_secs:.1}s] straight run ended");

    // Kill at spread points of a run as long as the straight one.
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
    eprintln!(
        "[{:.1}s] killed {kills} times",
        started.elapsed().as_secs_f64()
    );
    let last = run_to_end(&crashed);
    eprintln!(
        "[{:.1}s] crashed run ended",
        started.elapsed().as_secs_f64()
    );
    assert!(last.contains("er_candidates"), "{last}");

    // The repartitioning lost and doubled nothing.
    let inputs = [
        partitions_of(&crashed, INGEST).await,
        partitions_of(&crashed, EMBEDDINGS).await,
    ];
    assert!(
        !inputs[1].values().all(Vec::is_empty),
        "the embeddings came"
    );
    let crashed_by_tenant = partitions_of(&crashed, BY_TENANT).await;
    assert_repartitioned_exactly_once(&inputs, &crashed_by_tenant);
    eprintln!(
        "[{:.1}s] repartition checked",
        started.elapsed().as_secs_f64()
    );

    // The reference reads the crashed run's repartitioned order.
    let straight_by_tenant = partitions_of(&straight, BY_TENANT).await;
    let same_order = |a: &BTreeMap<i32, Vec<Record>>, b: &BTreeMap<i32, Vec<Record>>| {
        a.len() == b.len()
            && a.iter().zip(b).all(|((_, x), (_, y))| {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|(r, s)| r.key == s.key && r.value == s.value)
            })
    };
    let reference = if same_order(&straight_by_tenant, &crashed_by_tenant) {
        straight.clone()
    } else {
        eprintln!("the source partitions interleaved differently; the reference reads a copy");
        let reference = base.join("reference");
        let log = FileLog::open(reference.join("log"), FileLogOptions::default()).unwrap();
        let partitions = crashed_by_tenant.len() as i32;
        log.create_topic(BY_TENANT, &TopicConfig::with_partitions(partitions))
            .await
            .unwrap();
        for (p, records) in crashed_by_tenant {
            for chunk in records.chunks(500) {
                log.append(BY_TENANT, p, chunk.to_vec()).await.unwrap();
            }
        }
        drop(log);
        run_topologies_to_end(&reference, &["er_candidates"]);
        reference
    };

    let digest = |dir: std::path::PathBuf| async move {
        let store = SqliteStore::open(&dir.join("projections.db"))
            .await
            .unwrap();
        let rows = store.dump_table(&candidates_table()).await.unwrap().len();
        let d = table_digest(&store, &candidates_table()).await.unwrap();
        store.close().await;
        (rows, d)
    };
    eprintln!("[{:.1}s] reference ready", started.elapsed().as_secs_f64());
    let (rows, want) = digest(reference.clone()).await;
    assert!(
        rows > records / 20,
        "the workload proposes pairs: {rows} rows"
    );
    let by_ann = sqlite_rows(
        &reference.join("projections.db"),
        "SELECT count(*) FROM er_candidates WHERE methods LIKE '%\"ann\"%'",
        &[],
    );
    assert!(
        by_ann[0].parse::<usize>().unwrap() > 0,
        "the ANN signal proposed pairs"
    );
    let (_, got) = digest(crashed.clone()).await;
    assert_eq!(
        got, want,
        "er_candidates after {kills} SIGKILLs differs from a straight run over the same repartitioned order"
    );
    let (a, b) = (
        candidate_events(&reference).await,
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

    eprintln!("[{:.1}s] compared", started.elapsed().as_secs_f64());
    // A rebuild of the crashed run's topology verifies equal to it.
    run_ok(conductor(&crashed).args(["replay", "rebuild", "--topology", "er_candidates"]));
    let verified =
        run_ok(conductor(&crashed).args(["replay", "verify", "--topology", "er_candidates"]));
    assert!(verified.contains("EQUAL"), "{verified}");
}
