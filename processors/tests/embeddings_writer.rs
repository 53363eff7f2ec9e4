//! The embedding writer's stage and fold together, in memory: the stage
//! embeds each distinct text once, the fold keeps one vector per entity for
//! its latest version, updates that don't touch the text embed nothing,
//! deletes remove, tenants not opted in are skipped — and no attribute
//! value appears in anything either writes.

use conductor_engine::enrich::EnrichStage;
use conductor_engine::processor::{Effect, Processor};
use conductor_engine::projection::SqlValue;
use conductor_engine::testing::check_processor_contract;
use conductor_processors::embeddings::config::EmbeddingsConfig;
use conductor_processors::embeddings::{EMBEDDINGS_TOPIC, EmbedEnrichment, EmbeddingsProcessor};
use conductor_schemas::codec::decode_json;
use conductor_schemas::{Event, EventData};
use std::collections::BTreeMap;

fn config() -> EmbeddingsConfig {
    EmbeddingsConfig {
        dims: 64,
        template: "{given_name} {surname} {suburb}".into(),
        tenants: vec!["acme".into(), "globex".into()],
        ..Default::default()
    }
}

fn upsert(tenant: &str, id: &str, version: i64, attrs: &[(&str, &str)]) -> Event {
    let attrs: serde_json::Map<String, serde_json::Value> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let json = serde_json::json!({
        "tenant": tenant, "kind": "EntityUpserted", "subject": id,
        "event_id": format!("{tenant}-{id}-{version}"),
        "occurred_at": "2026-02-01T12:00:00Z",
        "data": {"entity_type": "Person", "version": version, "attributes": attrs}
    });
    decode_json(json.to_string().as_bytes(), None).unwrap()
}

fn delete(tenant: &str, id: &str, version: i64) -> Event {
    let json = serde_json::json!({
        "tenant": tenant, "kind": "EntityDeleted", "subject": id,
        "event_id": format!("{tenant}-{id}-{version}-del"),
        "occurred_at": "2026-02-01T12:00:01Z",
        "data": {"entity_type": "Person", "version": version}
    });
    decode_json(json.to_string().as_bytes(), None).unwrap()
}

/// Entity events: two entities share a text, an update keeps the text, one
/// changes it, one deletes, a tenant is not opted in.
fn entity_events() -> Vec<Event> {
    vec![
        upsert(
            "acme",
            "p1",
            1,
            &[
                ("given_name", "Zebulon"),
                ("surname", "Quartermaine"),
                ("suburb", "Yarralumla"),
            ],
        ),
        upsert(
            "acme",
            "p2",
            1,
            &[
                ("given_name", "Zebulon"),
                ("surname", "Quartermaine"),
                ("suburb", "Yarralumla"),
            ],
        ),
        upsert(
            "globex",
            "p1",
            1,
            &[("given_name", "Ottoline"), ("surname", "Vanderbilt")],
        ),
        upsert(
            "initech",
            "p9",
            1,
            &[("given_name", "Peregrine"), ("surname", "Xanthopoulos")],
        ),
        // Same text, another attribute: nothing to embed, the row's version moves.
        upsert(
            "acme",
            "p1",
            2,
            &[
                ("given_name", "Zebulon"),
                ("surname", "Quartermaine"),
                ("suburb", "Yarralumla"),
                ("note", "Marmaduke"),
            ],
        ),
        upsert(
            "acme",
            "p2",
            2,
            &[
                ("given_name", "Zebulon"),
                ("surname", "Quartermayne"),
                ("suburb", "Yarralumla"),
            ],
        ),
        delete("globex", "p1", 2),
    ]
}

/// Runs the stage over `events` as one live batch; returns its records.
async fn stage_records(events: &[Event]) -> Vec<Event> {
    stage_emits(events)
        .await
        .into_iter()
        .filter(|(topic, _)| topic == "ig.enriched.embeddings")
        .map(|(_, e)| e)
        .collect()
}

/// Runs the stage over `events` as one live batch; returns what it emits
/// (records, usage), by topic.
async fn stage_emits(events: &[Event]) -> Vec<(String, Event)> {
    let mut stage = EnrichStage::new("embeddings_enrich", EmbedEnrichment::new(config()));
    let refs: Vec<&Event> = events.iter().collect();
    stage.prepare(&refs).unwrap().await.unwrap();
    let mut out = Vec::new();
    for e in events {
        for effect in stage.process(e).unwrap() {
            let Effect::Emit(emit) = effect else {
                panic!("the stage only emits")
            };
            out.push((emit.topic, emit.event));
        }
    }
    out
}

/// Entity events with the stage's records interleaved: each record right
/// after the event that caused it, or (`late`) all records at the end.
fn interleave(events: &[Event], records: &[Event], late: bool) -> Vec<Event> {
    if late {
        return events.iter().chain(records).cloned().collect();
    }
    let mut out = Vec::new();
    for e in events {
        out.push(e.clone());
        out.extend(
            records
                .iter()
                .filter(|r| r.meta.causation_id.as_deref() == Some(&e.meta.event_id))
                .cloned(),
        );
    }
    out
}

/// A row's version and vector (`None`: removed).
type Row = (i64, Option<Vec<f32>>);

struct Outcome {
    /// (tenant, entity) → (version, vector or None when removed).
    rows: BTreeMap<(String, String), Row>,
    /// (entity, status, entity_version) of each EmbeddingComputed.
    announced: Vec<(String, String, i64)>,
    /// Everything written, as text, to look for attribute values in.
    written: String,
}

fn fold(events: &[Event]) -> Outcome {
    let mut p = EmbeddingsProcessor::new(config());
    let mut out = Outcome {
        rows: BTreeMap::new(),
        announced: Vec::new(),
        written: String::new(),
    };
    for e in events {
        for effect in p.process(e).unwrap() {
            match effect {
                Effect::Upsert(u) => {
                    out.written.push_str(&format!("{:?}\n", u.values));
                    let vector = u.values.iter().find_map(|v| match v {
                        SqlValue::Vector(v) => Some(v.clone()),
                        _ => None,
                    });
                    let key = (u.key[0].clone(), u.key[1].clone());
                    if out.rows.get(&key).is_none_or(|(v, _)| *v < u.version) {
                        out.rows.insert(key, (u.version, vector));
                    }
                }
                Effect::Emit(emit) => {
                    assert_eq!(emit.topic, EMBEDDINGS_TOPIC);
                    out.written
                        .push_str(&serde_json::to_string(&emit.event).unwrap());
                    let EventData::EmbeddingComputed(c) = &emit.event.data else {
                        panic!("only EmbeddingComputed")
                    };
                    out.announced
                        .push((c.entity_id.clone(), c.status.clone(), c.entity_version));
                }
                Effect::Graph(_) => panic!("no graph"),
            }
        }
    }
    out
}

#[tokio::test]
async fn the_stage_embeds_each_distinct_text_once_and_records_no_text() {
    let events = entity_events();
    let emits = stage_emits(&events).await;
    let records = stage_records(&events).await;
    let usage: Vec<_> = emits
        .iter()
        .filter(|(t, _)| t == "ig.ingest.usage")
        .map(|(_, e)| match &e.data {
            EventData::UsageRecorded(u) => (
                e.meta.tenant.clone(),
                u.usage_kind.clone(),
                u.quantity,
                u.unit.clone(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    // One usage record a call, charged to the asking tenant in words
    // (hashed-ngrams' tokens): "zebulon quartermaine yarralumla" is 3.
    let usage_of = |tenant: &str, n: i64| {
        (
            tenant.to_string(),
            "embeddings".to_string(),
            n,
            Some("tokens".to_string()),
        )
    };
    assert_eq!(
        usage,
        vec![
            usage_of("acme", 3),
            usage_of("globex", 2),
            usage_of("acme", 3)
        ]
    );
    assert_eq!(emits.len(), 6, "records and usage, no alert without a cap");
    // Distinct texts of opted-in tenants: p1/p2's shared text, globex p1,
    // p2's changed surname. initech is not opted in; p1 v2 is the same text.
    assert_eq!(records.len(), 3, "{records:#?}");
    let written = serde_json::to_string(&emits).unwrap().to_lowercase();
    for value in [
        "zebulon",
        "quartermaine",
        "yarralumla",
        "ottoline",
        "vanderbilt",
        "quartermayne",
    ] {
        assert!(
            !written.contains(value),
            "the results topic carries `{value}`"
        );
    }
}

#[tokio::test]
async fn the_fold_keeps_one_vector_per_entity_for_its_latest_version() {
    let events = entity_events();
    let records = stage_records(&events).await;
    for late in [false, true] {
        let out = fold(&interleave(&events, &records, late));
        let row = |t: &str, id: &str| out.rows.get(&(t.to_string(), id.to_string())).cloned();
        let (v1, p1) = row("acme", "p1").expect("acme p1 embedded");
        let (v2, p2) = row("acme", "p2").expect("acme p2 embedded");
        assert_eq!((v1, v2), (2, 2), "latest versions (late results: {late})");
        let (p1, p2) = (p1.unwrap(), p2.unwrap());
        assert_eq!(p1.len(), 64);
        let cos: f32 = p1.iter().zip(&p2).map(|(a, b)| a * b).sum();
        assert!(
            cos > 0.5 && cos < 0.999,
            "a one-letter change stays close: {cos}"
        );
        assert_eq!(row("globex", "p1"), Some((2, None)), "deleted: no vector");
        assert_eq!(row("initech", "p9"), None, "not opted in: skipped");
        let mut announced = out.announced.clone();
        announced.sort();
        // Results right behind their events: one event per change, and the
        // same-text update announces nothing. Results after all the events:
        // only the versions still current when they arrive are announced.
        let expected: Vec<(String, String, i64)> = if late {
            vec![
                ("p1".into(), "computed".into(), 2),
                ("p1".into(), "removed".into(), 2),
                ("p2".into(), "computed".into(), 2),
            ]
        } else {
            vec![
                ("p1".into(), "computed".into(), 1),
                ("p1".into(), "computed".into(), 1),
                ("p1".into(), "removed".into(), 2),
                ("p2".into(), "computed".into(), 1),
                ("p2".into(), "computed".into(), 2),
            ]
        };
        assert_eq!(announced, expected, "late results: {late}");
        let written = out.written.to_lowercase();
        for value in [
            "zebulon",
            "quartermaine",
            "yarralumla",
            "ottoline",
            "marmaduke",
        ] {
            assert!(!written.contains(value), "the fold wrote `{value}`");
        }
    }
}

#[tokio::test]
async fn the_fold_meets_the_processor_contract() {
    let events = entity_events();
    let records = stage_records(&events).await;
    check_processor_contract(
        || EmbeddingsProcessor::new(config()),
        &interleave(&events, &records, false),
    );
    check_processor_contract(
        || EmbeddingsProcessor::new(config()),
        &interleave(&events, &records, true),
    );
}
