//! Shared by the integration tests: fixtures and proptest strategies.
#![allow(dead_code)] // each test binary uses a different part

use chrono::{DateTime, Utc};
use conductor_schemas::codec::decode_json;
use conductor_schemas::{
    AttributeValue, Attributes, Dataset, DatasetRegistered, EmbeddingComputed, EnrichmentRecorded,
    EntityDeleted, EntityUpserted, ErCandidate, Event, EventData, EventMetadata, Job,
    OpenLineageEvent, QuotaAlert, RelationshipUpserted, Run, RunEvent, RunEventType, UsageRecorded,
};
use proptest::prelude::*;

/// One valid event of every kind, one per line, in `encode_json` form.
pub const EVENTS_JSONL: &str = include_str!("../fixtures/events.jsonl");

/// The fixture lines.
pub fn fixture_lines() -> Vec<&'static str> {
    EVENTS_JSONL
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect()
}

/// The fixture events, decoded.
pub fn fixture_events() -> Vec<Event> {
    fixture_lines()
        .into_iter()
        .map(|line| decode_json(line.as_bytes(), None).expect("fixture is valid"))
        .collect()
}

/// The first fixture of a kind.
pub fn fixture(kind: &str) -> Event {
    fixture_events()
        .into_iter()
        .find(|event| event.kind() == kind)
        .expect("a fixture of every kind")
}

fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("(?s).{0,12}").expect("valid regex")
}

fn optional_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(text())
}

/// Instants RFC 3339 can write (years 1 to 9999), at microsecond precision.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800_000_000_i64..=253_402_300_799_999_999_i64)
        .prop_map(|micros| DateTime::from_timestamp_micros(micros).expect("in range"))
}

fn attribute_value() -> impl Strategy<Value = AttributeValue> {
    prop_oneof![
        Just(AttributeValue::Null),
        any::<bool>().prop_map(AttributeValue::Bool),
        any::<i64>().prop_map(AttributeValue::Long),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |x| x.is_finite())
            .prop_map(AttributeValue::Double),
        text().prop_map(AttributeValue::String),
    ]
}

fn attributes() -> impl Strategy<Value = Attributes> {
    proptest::collection::btree_map(text(), attribute_value(), 0..5)
}

fn datasets() -> impl Strategy<Value = Vec<Dataset>> {
    proptest::collection::vec(
        (text(), text()).prop_map(|(namespace, name)| Dataset { namespace, name }),
        0..3,
    )
}

fn event_data() -> impl Strategy<Value = EventData> {
    prop_oneof![
        (text(), any::<i64>(), attributes()).prop_map(|(entity_type, version, attributes)| {
            EventData::EntityUpserted(EntityUpserted {
                entity_type,
                version,
                attributes,
            })
        }),
        (text(), any::<i64>()).prop_map(|(entity_type, version)| {
            EventData::EntityDeleted(EntityDeleted {
                entity_type,
                version,
            })
        }),
        (text(), text(), text(), text(), any::<i64>(), attributes()).prop_map(
            |(rel_id, src, dst, rel_type, version, attributes)| {
                EventData::RelationshipUpserted(RelationshipUpserted {
                    rel_id,
                    src,
                    dst,
                    rel_type,
                    version,
                    attributes,
                })
            }
        ),
        (
            proptest::sample::select(RunEventType::ALL.to_vec()),
            instant(),
            text(),
            (text(), text()),
            datasets(),
            datasets(),
            optional_text(),
        )
            .prop_map(
                |(event_type, event_time, run_id, (namespace, name), inputs, outputs, producer)| {
                    EventData::RunEvent(RunEvent {
                        event_type,
                        event_time,
                        run: Run { run_id },
                        job: Job { namespace, name },
                        inputs,
                        outputs,
                        producer,
                    })
                }
            ),
        (text(), any::<i64>(), optional_text()).prop_map(|(usage_kind, quantity, unit)| {
            EventData::UsageRecorded(UsageRecorded {
                usage_kind,
                quantity,
                unit,
            })
        }),
        (
            (text(), text(), text(), text()),
            (-1.0e9f64..1.0e9, any::<i64>()),
            proptest::collection::vec(text(), 0..3),
            proptest::collection::btree_map(text(), 0.0f64..1.0, 0..3),
        )
            .prop_map(
                |(
                    (entity_type, left_id, right_id, status),
                    (score, version),
                    methods,
                    features,
                )| {
                    EventData::ErCandidate(ErCandidate {
                        entity_type,
                        left_id,
                        right_id,
                        status,
                        score,
                        version,
                        methods,
                        features,
                    })
                }
            ),
        (
            (text(), text(), text(), text(), text()),
            (any::<i64>(), proptest::collection::vec(-1.0f32..1.0, 0..8)),
        )
            .prop_map(
                |(
                    (entity_type, entity_id, status, model, input_hash),
                    (entity_version, vector),
                )| {
                    EventData::EmbeddingComputed(EmbeddingComputed {
                        entity_type,
                        entity_id,
                        status,
                        entity_version,
                        model,
                        dims: vector.len() as i32,
                        vector,
                        input_hash,
                    })
                }
            ),
        (
            (text(), text(), optional_text(), text()),
            (any::<i32>(), any::<i64>(), any::<i64>()),
        )
            .prop_map(
                |((usage_kind, period, unit, action), (threshold_percent, used, limit))| {
                    EventData::QuotaAlert(QuotaAlert {
                        usage_kind,
                        period,
                        threshold_percent,
                        used,
                        limit,
                        unit,
                        action,
                    })
                }
            ),
        (
            "[a-z_]{1,12}",
            proptest::sample::select(RunEventType::ALL.to_vec())
        )
            .prop_map(|(job, event_type)| {
                EventData::OpenLineageEvent(OpenLineageEvent {
                    event: serde_json::json!({
                        "eventType": event_type.symbol(),
                        "eventTime": "2026-02-01T12:00:00Z",
                        "producer": "https://example.com/producer",
                        "schemaURL": conductor_schemas::openlineage::SPEC_URL,
                        "run": {"runId": "0176a8c2-fe01-7439-87e6-56a1a1b4029f"},
                        "job": {"namespace": "etl", "name": job},
                    })
                    .to_string(),
                })
            }),
        (text(), text(), optional_text(), optional_text()).prop_map(
            |(enrichment, content_hash, result, error)| {
                EventData::EnrichmentRecorded(EnrichmentRecorded {
                    enrichment,
                    content_hash,
                    result,
                    error,
                })
            }
        ),
        (
            (text(), text(), optional_text(), optional_text()),
            (
                optional_text(),
                optional_text(),
                proptest::collection::vec(text(), 0..3)
            ),
        )
            .prop_map(
                |((dataset_id, name, license, retention), (region, contract_version, purpose))| {
                    EventData::DatasetRegistered(DatasetRegistered {
                        dataset_id,
                        name,
                        license,
                        purpose,
                        retention,
                        region,
                        contract_version,
                    })
                }
            ),
    ]
}

/// Any valid event with a non-empty event_id.
pub fn event() -> impl Strategy<Value = Event> {
    (
        "[a-z0-9-]{1,12}",
        text(),
        text(),
        instant(),
        (
            optional_text(),
            optional_text(),
            optional_text(),
            optional_text(),
            optional_text(),
        ),
        event_data(),
    )
        .prop_map(|(event_id, tenant, subject, occurred_at, optional, data)| {
            let (actor, purpose, causation_id, correlation_id, source) = optional;
            let meta = EventMetadata {
                event_id,
                tenant,
                kind: String::new(),
                subject,
                occurred_at,
                actor,
                purpose,
                causation_id,
                correlation_id,
                source,
            };
            Event::new(meta, data)
        })
}
