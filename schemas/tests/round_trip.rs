//! Events survive every encoding unchanged.

mod common;

use apache_avro::Schema;
use common::{fixture, fixture_events, fixture_lines};
use conductor_schemas::codec::{
    CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, decode, decode_avro, decode_json, derive_event_id,
    encode_avro, encode_json, read_ocf, write_ocf,
};
use conductor_schemas::{AttributeValue, ErrorKind, EventData, SchemaRegistry};

#[test]
fn fixtures_cover_every_event_kind() {
    let kinds: std::collections::BTreeSet<_> = fixture_events()
        .iter()
        .map(|event| event.kind().to_owned())
        .collect();
    let registered: std::collections::BTreeSet<_> = SchemaRegistry::builtin()
        .names()
        .map(str::to_owned)
        .collect();
    assert_eq!(kinds, registered);
}

#[test]
fn json_to_event_to_avro_to_event_to_json_is_identity_for_every_kind() {
    for line in fixture_lines() {
        let decoded = decode_json(line.as_bytes(), None).expect("valid fixture");
        let avro = encode_avro(&decoded);
        let from_avro = decode_avro(&avro).expect("own encoding decodes");
        assert_eq!(from_avro, decoded, "Avro round trip of {line}");
        let json = encode_json(&from_avro);
        assert_eq!(String::from_utf8(json).expect("UTF-8"), line);
    }
}

#[test]
fn design_doc_example_decodes() {
    let line =
        br#"{"event_id":"ev-17","tenant":"acme","kind":"EntityUpserted","subject":"person-42",
       "occurred_at":"2026-02-01T12:00:00Z","actor":"ingest-svc","purpose":"investigation",
       "data":{"entity_type":"Person","version":3,
               "attributes":{"given_name":"Ada","surname":"Lovelace","postcode":"2000"}}}"#;
    let event = decode_json(line, None).expect("valid");
    assert_eq!(event.meta.event_id, "ev-17");
    assert_eq!(
        event.meta.occurred_at.to_rfc3339(),
        "2026-02-01T12:00:00+00:00"
    );
    let EventData::EntityUpserted(data) = &event.data else {
        panic!("wrong kind: {event:?}");
    };
    assert_eq!(data.version, 3);
    assert_eq!(
        data.attributes["surname"],
        AttributeValue::String("Lovelace".into())
    );
}

#[test]
fn encode_json_writes_metadata_in_schema_order_then_data() {
    let event = fixture("EntityUpserted");
    let json = String::from_utf8(encode_json(&event)).expect("UTF-8");
    let positions: Vec<usize> = [
        "\"event_id\"",
        "\"tenant\"",
        "\"kind\"",
        "\"subject\"",
        "\"occurred_at\"",
        "\"actor\"",
        "\"purpose\"",
        "\"data\"",
    ]
    .iter()
    .map(|key| json.find(key).unwrap_or_else(|| panic!("{key} in {json}")))
    .collect();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{json}");
    assert!(
        !json.contains(' ') || json.contains("Zoë"),
        "compact: {json}"
    );
}

#[test]
fn avro_encoding_starts_with_marker_and_schema_fingerprint() {
    let event = fixture("EntityDeleted");
    let bytes = encode_avro(&event);
    let schema = SchemaRegistry::builtin()
        .get("EntityDeleted")
        .expect("schema");
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    assert_eq!(&bytes[2..10], &schema.fingerprint.to_le_bytes());
}

#[test]
fn avro_encoding_is_readable_by_apache_avro_single_object_reader() {
    let event = fixture("RunEvent");
    let bytes = encode_avro(&event);
    let schema = &SchemaRegistry::builtin()
        .get("RunEvent")
        .expect("schema")
        .avro;
    let reader = apache_avro::GenericSingleObjectReader::builder()
        .schema(schema.clone())
        .build()
        .expect("reader");
    let value = reader
        .read_value(&mut &bytes[..])
        .expect("standard single-object encoding");
    assert!(matches!(value, apache_avro::types::Value::Record(_)));
}

#[test]
fn decode_picks_codec_by_content_type_or_by_sniffing() {
    let event = fixture("RelationshipUpserted");
    let json = encode_json(&event);
    let avro = encode_avro(&event);
    assert_eq!(decode(&json, Some(CONTENT_TYPE_JSON)).expect("json"), event);
    assert_eq!(
        decode(&json, Some("application/json; charset=utf-8")).expect("json"),
        event
    );
    assert_eq!(decode(&avro, Some(CONTENT_TYPE_AVRO)).expect("avro"), event);
    assert_eq!(decode(&json, None).expect("sniffed json"), event);
    assert_eq!(decode(&avro, None).expect("sniffed avro"), event);
    let error = decode(&json, Some("text/csv")).expect_err("unsupported");
    assert_eq!(error.kind(), ErrorKind::Unsupported);
}

#[test]
fn absent_optional_fields_take_schema_defaults() {
    let event = decode_json(
        br#"{"tenant":"t","kind":"EntityUpserted","subject":"s","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":1}}"#,
        None,
    )
    .expect("valid");
    assert_eq!(event.meta.actor, None);
    let EventData::EntityUpserted(data) = &event.data else {
        panic!("wrong kind");
    };
    assert!(data.attributes.is_empty());
}

#[test]
fn timestamps_accept_offsets_and_integer_micros_and_normalise_to_utc() {
    let with_offset = decode_json(
        br#"{"event_id":"e","tenant":"t","kind":"EntityDeleted","subject":"s","occurred_at":"2026-02-01T14:00:00+02:00","data":{"entity_type":"P","version":1}}"#,
        None,
    )
    .expect("valid");
    let as_micros = decode_json(
        br#"{"event_id":"e","tenant":"t","kind":"EntityDeleted","subject":"s","occurred_at":1769947200000000,"data":{"entity_type":"P","version":1}}"#,
        None,
    )
    .expect("valid");
    assert_eq!(with_offset, as_micros);
    assert!(
        String::from_utf8(encode_json(&as_micros))
            .expect("UTF-8")
            .contains(r#""occurred_at":"2026-02-01T12:00:00Z""#)
    );
}

#[test]
fn serde_deserialize_validates_like_decode_json() {
    let line = fixture_lines()[0];
    let event: conductor_schemas::Event = serde_json::from_str(line).expect("valid");
    assert_eq!(event, decode_json(line.as_bytes(), None).expect("valid"));
    let error = serde_json::from_str::<conductor_schemas::Event>(
        &line.replace(r#""version":3"#, r#""version":"3""#),
    )
    .expect_err("invalid");
    assert!(error.to_string().contains("data.version"), "{error}");
}

#[test]
fn missing_event_id_is_derived_from_the_payload() {
    let line = fixture_lines()[2];
    let without_id = line.replace(r#""event_id":"ev-19","#, "");
    let empty_id = line.replace(r#""event_id":"ev-19""#, r#""event_id":"""#);
    let derived = decode_json(without_id.as_bytes(), None).expect("valid");
    assert!(derived.meta.event_id.starts_with("b3-"));
    assert_eq!(derived.meta.event_id.len(), 3 + 32);
    assert_eq!(derived.meta.event_id, derive_event_id(&derived));
    let from_empty = decode_json(empty_id.as_bytes(), None).expect("valid");
    assert_eq!(from_empty.meta.event_id, derived.meta.event_id);
    // The producer's id is the dedupe key when given; the derived id does not depend on it.
    let given = decode_json(line.as_bytes(), None).expect("valid");
    assert_eq!(given.meta.event_id, "ev-19");
    assert_eq!(derive_event_id(&given), derived.meta.event_id);
}

#[test]
fn derived_event_id_is_pinned_for_the_design_example() {
    // Pinned so a change to the canonical form (which would break dedupe
    // across versions) cannot go unnoticed.
    let event = fixture("EntityUpserted");
    // Sorted keys at every level, no whitespace, no event_id.
    let canonical = concat!(
        r#"{"actor":"ingest-svc","data":{"attributes":{"given_name":"Ada","postcode":"2000","#,
        r#""surname":"Lovelace"},"entity_type":"Person","version":3},"kind":"EntityUpserted","#,
        r#""occurred_at":"2026-02-01T12:00:00Z","purpose":"investigation","subject":"person-42","#,
        r#""tenant":"acme"}"#
    );
    let expected = format!("b3-{}", &blake3::hash(canonical.as_bytes()).to_hex()[..32]);
    assert_eq!(derive_event_id(&event), expected);
    assert_eq!(expected, "b3-cc057a2b20d043a44534375c272aa5c7");
}

#[test]
fn avro_event_with_empty_event_id_gets_the_same_derived_id_as_json() {
    let mut event = fixture("UsageRecorded");
    event.meta.event_id.clear();
    let from_avro = decode_avro(&encode_avro(&event)).expect("valid");
    let from_json = decode_json(&encode_json(&event), None).expect("valid");
    assert_eq!(from_avro.meta.event_id, from_json.meta.event_id);
    assert!(from_avro.meta.event_id.starts_with("b3-"));
}

#[test]
fn container_file_round_trips_events_of_one_kind() {
    let events: Vec<_> = fixture_events()
        .into_iter()
        .filter(|event| event.kind() == "RunEvent")
        .collect();
    let bytes = write_ocf(&events, Vec::new()).expect("writes");
    let read: Vec<_> = read_ocf(&bytes[..], None)
        .expect("header")
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(read, events);
}

#[test]
fn container_file_refuses_mixed_kinds() {
    let events = fixture_events();
    let error = write_ocf(&events, Vec::new()).expect_err("mixed kinds");
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert!(error.to_string().contains("one file per kind"), "{error}");
}

/// UsageRecorded as an older producer wrote it: no `unit` yet.
const OLD_USAGE_SCHEMA: &str = r#"{"type":"record","name":"UsageRecorded","namespace":"ig.events","fields":[
  {"name":"event_id","type":"string"},{"name":"tenant","type":"string"},{"name":"kind","type":"string"},
  {"name":"subject","type":"string"},{"name":"occurred_at","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"actor","type":["null","string"],"default":null},{"name":"purpose","type":["null","string"],"default":null},
  {"name":"causation_id","type":["null","string"],"default":null},{"name":"correlation_id","type":["null","string"],"default":null},
  {"name":"source","type":["null","string"],"default":null},
  {"name":"data","type":{"type":"record","name":"UsageRecordedData","fields":[
    {"name":"usage_kind","type":"string"},{"name":"quantity","type":"QUANTITY"}]}}]}"#;

fn old_usage_value(quantity: apache_avro::types::Value) -> apache_avro::types::Value {
    use apache_avro::types::Value;
    let none = || Value::Union(0, Box::new(Value::Null));
    Value::Record(vec![
        ("event_id".into(), Value::String("u-1".into())),
        ("tenant".into(), Value::String("acme".into())),
        ("kind".into(), Value::String("UsageRecorded".into())),
        ("subject".into(), Value::String("meter".into())),
        (
            "occurred_at".into(),
            Value::TimestampMicros(1_769_947_200_000_000),
        ),
        ("actor".into(), none()),
        ("purpose".into(), none()),
        ("causation_id".into(), none()),
        ("correlation_id".into(), none()),
        ("source".into(), none()),
        (
            "data".into(),
            Value::Record(vec![
                ("usage_kind".into(), Value::String("events".into())),
                ("quantity".into(), quantity),
            ]),
        ),
    ])
}

fn container_with(schema_text: &str, value: apache_avro::types::Value) -> Vec<u8> {
    let schema = Schema::parse_str(schema_text).expect("test schema parses");
    let mut writer = apache_avro::Writer::new(&schema, Vec::new()).expect("writer");
    writer.append_value(value).expect("append");
    writer.into_inner().expect("flush")
}

#[test]
fn container_written_with_older_compatible_schema_is_resolved_to_ours() {
    // Written with int quantities and no unit: promoted to long, unit defaults to null.
    let bytes = container_with(
        &OLD_USAGE_SCHEMA.replace("QUANTITY", "int"),
        old_usage_value(apache_avro::types::Value::Int(42)),
    );
    let events: Vec<_> = read_ocf(&bytes[..], None)
        .expect("compatible")
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(events.len(), 1);
    let EventData::UsageRecorded(usage) = &events[0].data else {
        panic!("wrong kind");
    };
    assert_eq!(usage.quantity, 42);
    assert_eq!(usage.unit, None);
}

#[test]
fn container_with_incompatible_schema_is_refused_naming_the_field() {
    let bytes = container_with(
        &OLD_USAGE_SCHEMA.replace("QUANTITY", "string"),
        old_usage_value(apache_avro::types::Value::String("42".into())),
    );
    let error = read_ocf(&bytes[..], None).err().expect("incompatible");
    assert_eq!(error.kind(), ErrorKind::IncompatibleSchema);
    assert!(
        error
            .to_string()
            .contains("data.quantity: type changed from string to long"),
        "{error}"
    );
}

#[test]
fn container_with_unknown_record_name_needs_an_explicit_schema() {
    let renamed = OLD_USAGE_SCHEMA
        .replace("QUANTITY", "long")
        .replace(r#""name":"UsageRecorded""#, r#""name":"Metering""#);
    let bytes = container_with(
        &renamed,
        old_usage_value(apache_avro::types::Value::Long(7)),
    );
    let error = read_ocf(&bytes[..], None).err().expect("unknown");
    assert_eq!(error.kind(), ErrorKind::UnknownSchema);
    assert!(error.to_string().contains("ig.events.Metering"), "{error}");
    let events: Vec<_> = read_ocf(&bytes[..], Some("UsageRecorded"))
        .expect("named explicitly")
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(events.len(), 1);
}

#[test]
fn deflate_container_is_read() {
    let events = vec![fixture("EntityUpserted")];
    let schema = &SchemaRegistry::builtin()
        .get("EntityUpserted")
        .expect("schema")
        .avro;
    let mut writer = apache_avro::Writer::with_codec(
        schema,
        Vec::new(),
        apache_avro::Codec::Deflate(apache_avro::DeflateSettings::default()),
    )
    .expect("writer");
    // The Avro value of the event, taken from our own single-object encoding.
    let single = encode_avro(&events[0]);
    let reader = apache_avro::GenericSingleObjectReader::builder()
        .schema(schema.clone())
        .build()
        .expect("reader");
    let value = reader.read_value(&mut &single[..]).expect("decodes");
    writer.append_value(value).expect("append");
    let bytes = writer.into_inner().expect("flush");
    let read: Vec<_> = read_ocf(&bytes[..], None)
        .expect("header")
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(read, events);
}
