//! The vector index: it keeps each entity's latest vector (older and
//! replayed events change nothing, removals take it out), meets the
//! processor contract (a restore or a restart at any event equals a
//! straight fold, by contents), restores from its snapshot with the same
//! answers and keeps inserting, refuses malformed vectors as bad input,
//! emits the topology telemetry, and on Febrl3 finds a duplicate's record
//! by its text (MRR@10) with the ANN's recall@10 against brute force
//! reported and held to an aim.

use conductor_engine::processor::{Processor, ProcessorErrorKind};
use conductor_engine::testing::check_processor_contract;
use conductor_processors::embeddings::config::EmbeddingsConfig;
use conductor_processors::er::quality::dataset_for_test;
use conductor_processors::vector_index::quality::{computed_event, measure_vector_search};
use conductor_processors::vector_index::{VectorIndexConfig, VectorIndexProcessor};
use conductor_schemas::{Event, EventData};

const MODEL: &str = "test-model@1";

fn unit(seed: usize, dims: usize) -> Vec<f32> {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

fn computed(tenant: &str, id: &str, version: i64, vector: Vec<f32>) -> Event {
    let mut e = computed_event(id, version, MODEL, vector);
    e.meta.tenant = tenant.into();
    e
}

fn removed(tenant: &str, id: &str, version: i64) -> Event {
    let mut e = computed(tenant, id, version, Vec::new());
    if let EventData::EmbeddingComputed(c) = &mut e.data {
        c.status = "removed".into();
        c.dims = 0;
    }
    e
}

fn index() -> VectorIndexProcessor {
    VectorIndexProcessor::new(VectorIndexConfig {
        compact_after_dead: 1, // a compaction happens within the contract's events
        ..Default::default()
    })
}

fn ids(p: &VectorIndexProcessor, tenant: &str, q: &[f32], k: usize) -> Vec<String> {
    p.search(tenant, MODEL, q, k)
        .into_iter()
        .map(|h| h.entity_id)
        .collect()
}

fn events() -> Vec<Event> {
    let mut out = Vec::new();
    for i in 0..12 {
        out.push(computed("acme", &format!("e{i}"), 1, unit(i, 16)));
    }
    out.push(computed("globex", "e0", 1, unit(100, 16)));
    out.push(computed("acme", "e3", 2, unit(200, 16))); // replaced
    out.push(computed("acme", "e3", 1, unit(3, 16))); // older: ignored
    out.push(removed("acme", "e4", 2));
    out.push(computed("acme", "e4", 1, unit(4, 16))); // older than its removal
    out.push(removed("acme", "e5", 2));
    out.push(removed("acme", "e6", 2));
    out.push(removed("acme", "e7", 2));
    for g in ["g1", "g2", "g3"] {
        out.push(computed(
            "globex",
            g,
            1,
            unit(g.len() * 37 + g.as_bytes()[1] as usize, 16),
        ));
    }
    out.push(removed("globex", "g1", 2));
    out.push(removed("globex", "g2", 2)); // dead 2 > live 2? no; > max(1, 2): no …
    out.push(removed("globex", "e0", 2)); // … dead 3 > max(1, live 1): globex compacts
    out.push(computed("acme", "e5", 3, unit(500, 16))); // back after its removal
    out.push(computed("acme", "bad", 1, vec![0.0; 16])); // a zero vector: bad input
    out
}

#[test]
fn keeps_each_entitys_latest_vector_and_forgets_removed_ones() {
    let mut p = index();
    let mut refused = 0;
    for e in events() {
        if let Err(err) = p.process(&e) {
            assert_eq!(err.kind, ProcessorErrorKind::InvalidInput);
            refused += 1;
        }
    }
    assert_eq!(refused, 1, "only the zero vector is refused");
    // Its own vector finds each live entity first.
    for i in [0, 1, 2, 8, 9, 10, 11] {
        assert_eq!(ids(&p, "acme", &unit(i, 16), 1), vec![format!("e{i}")]);
    }
    assert_eq!(ids(&p, "acme", &unit(200, 16), 1), vec!["e3"], "e3 moved");
    assert_eq!(
        ids(&p, "acme", &unit(500, 16), 1),
        vec!["e5"],
        "e5 came back"
    );
    let all = ids(&p, "acme", &unit(0, 16), 50);
    for gone in ["e4", "e6", "e7", "bad"] {
        assert!(!all.contains(&gone.to_string()), "{gone} is not indexed");
    }
    assert_eq!(all.len(), 9, "acme's live entities: {all:?}");
    assert_eq!(
        ids(&p, "globex", &unit(100, 16), 5),
        vec!["g3"],
        "tenants apart"
    );
    let stats = p.state.stats();
    assert_eq!(stats.len(), 2);
    assert_eq!((stats[0].tenant.as_str(), stats[0].vectors), ("acme", 9));
    assert_eq!(
        (
            stats[1].tenant.as_str(),
            stats[1].vectors,
            stats[1].dead_slots
        ),
        ("globex", 1, 0),
        "compacted"
    );
}

#[test]
fn meets_the_processor_contract() {
    check_processor_contract(index, &events());
}

#[test]
fn a_restored_index_gives_the_same_answers_and_keeps_inserting() {
    use conductor_engine::processor::ProcessorState;
    let mut p = index();
    for i in 0..400 {
        p.process(&computed("acme", &format!("e{i}"), 1, unit(i, 32)))
            .unwrap();
    }
    for i in 0..20 {
        p.process(&removed("acme", &format!("e{i}"), 2)).unwrap();
    }
    let bytes = p.state.snapshot();
    let mut r = index();
    r.state.restore(&bytes).unwrap();
    for q in 0..50 {
        let query = unit(1000 + q, 32);
        assert_eq!(ids(&p, "acme", &query, 10), ids(&r, "acme", &query, 10));
    }
    assert_eq!(p.state.stats(), r.state.stats());
    r.process(&computed("acme", "late", 1, unit(9999, 32)))
        .unwrap();
    assert_eq!(ids(&r, "acme", &unit(9999, 32), 1), vec!["late"]);
    // Another configuration's graphs are not used.
    let mut other = VectorIndexProcessor::new(VectorIndexConfig {
        max_connections: 8,
        ..Default::default()
    });
    assert!(other.state.restore(&bytes).is_err());
    assert!(r.state.restore(&bytes[..bytes.len() / 2]).is_err());
}

#[tokio::test]
async fn emits_the_topology_telemetry() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../topologies/vector_index.toml"),
    )
    .unwrap();
    let config = conductor_processors::parse_topology(&text).unwrap();
    let events: Vec<String> = (0..10)
        .map(|i| {
            let e = computed("acme", &format!("e{i}"), 1, unit(i, 16));
            String::from_utf8(conductor_schemas::codec::encode_json(&e)).unwrap()
        })
        .collect();
    conductor_engine::testing::assert_topology_telemetry(config, Box::new(index()), &events).await;
}

#[test]
fn febrl3_vector_search_finds_a_duplicates_record() {
    let Some(data) = dataset_for_test("febrl3") else {
        return;
    };
    let q = measure_vector_search(
        &data,
        &EmbeddingsConfig::default(),
        &VectorIndexConfig::default(),
        3,
    );
    eprintln!(
        "{} {}: {} vectors, {} queries: MRR@10 {:.4}, hits@1 {:.4}, hits@10 {:.4}; a duplicate's original: MRR@10 {:.4} over {}; ANN recall@10 {:.4} (index {:.1}s, {:.0} searches/s, debug build)",
        q.dataset,
        q.model,
        q.vectors,
        q.queries,
        q.mrr_at_10,
        q.hits_at_1,
        q.hits_at_10,
        q.original_mrr_at_10,
        q.original_queries,
        q.ann_recall_at_10,
        q.index_seconds,
        q.searches_per_second
    );
    assert!(q.queries > 1000, "{} queries", q.queries);
    assert!(
        q.ann_recall_at_10 >= 0.97,
        "ANN recall@10 {:.4}",
        q.ann_recall_at_10
    );
    assert!(q.mrr_at_10 >= 0.95, "MRR@10 {:.4}", q.mrr_at_10);
    assert!(q.hits_at_10 >= 0.97, "hits@10 {:.4}", q.hits_at_10);
    assert!(
        q.original_queries > 500,
        "{} duplicates asked",
        q.original_queries
    );
    assert!(
        q.original_mrr_at_10 >= 0.8,
        "a duplicate's original: MRR@10 {:.4}",
        q.original_mrr_at_10
    );
}
