//! Every class of bad input gets the right error kind and a message that
//! names the field.

mod common;

use common::{fixture, fixture_lines};
use conductor_schemas::codec::{MAX_EVENT_BYTES, decode, decode_avro, decode_json, encode_avro};
use conductor_schemas::{ErrorKind, SchemaError, SchemaRegistry};

fn json_error(input: &str) -> SchemaError {
    decode_json(input.as_bytes(), None).expect_err("input is invalid")
}

/// The first fixture (the DESIGN.md example) with `from` replaced by `to`.
fn design_example_with(from: &str, to: &str) -> String {
    let line = fixture_lines()[0];
    assert!(line.contains(from), "{from} not in {line}");
    line.replacen(from, to, 1)
}

#[test]
fn rejects_invalid_json_with_line_and_column() {
    let error = json_error("{\"tenant\":\n  }");
    assert_eq!(error.kind(), ErrorKind::InvalidJson);
    assert!(error.to_string().contains("line 2 column 3"), "{error}");
}

#[test]
fn rejects_json_that_is_not_an_object() {
    let error = json_error("[1, 2]");
    assert_eq!(error.kind(), ErrorKind::InvalidJson);
    assert!(
        error.to_string().contains("expected a JSON object"),
        "{error}"
    );
}

#[test]
fn rejects_two_events_in_one_message_with_a_hint() {
    let line = fixture_lines()[0];
    let error = json_error(&format!("{line}\n{line}"));
    assert_eq!(error.kind(), ErrorKind::InvalidJson);
    assert!(
        error.hint().is_some_and(|hint| hint.contains("one event")),
        "{error}"
    );
}

#[test]
fn rejects_wrong_field_type_with_path() {
    let error = json_error(&design_example_with(r#""version":3"#, r#""version":"3""#));
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "data.version");
    assert_eq!(
        error.to_string(),
        r#"data.version: expected a long (integer), got string "3""#
    );
}

#[test]
fn rejects_wrong_metadata_type_with_path() {
    let error = json_error(&design_example_with(
        r#""actor":"ingest-svc""#,
        r#""actor":7"#,
    ));
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "actor");
    assert!(error.message().contains("got number 7"), "{error}");
}

#[test]
fn rejects_missing_field_with_path() {
    let error = json_error(&design_example_with(r#""subject":"person-42","#, ""));
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "subject");
    assert_eq!(
        error.to_string(),
        "subject: missing required field (a string)"
    );
}

#[test]
fn rejects_missing_nested_field_with_path() {
    let error = json_error(&design_example_with(r#""entity_type":"Person","#, ""));
    assert_eq!(error.path(), "data.entity_type");
    assert!(
        error.message().starts_with("missing required field"),
        "{error}"
    );
}

#[test]
fn rejects_unknown_field_naming_it_and_the_allowed_ones() {
    let error = json_error(&design_example_with(
        r#""version":3"#,
        r#""version":3,"colour":"red""#,
    ));
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "data.colour");
    assert_eq!(
        error.to_string(),
        "data.colour: unknown field; allowed fields are entity_type, version, attributes"
    );
}

#[test]
fn rejects_misspelt_field_suggesting_the_right_name() {
    let error = json_error(&design_example_with(r#""tenant""#, r#""tennant""#));
    assert_eq!(error.path(), "tennant");
    assert_eq!(error.hint(), Some("did you mean \"tenant\"?"));
}

#[test]
fn rejects_nested_attribute_value_with_flatten_hint() {
    let error = json_error(&design_example_with(
        r#""postcode":"2000""#,
        r#""address":{"postcode":"2000"}"#,
    ));
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "data.attributes.address");
    assert!(
        error.hint().is_some_and(|hint| hint.contains("flatten")),
        "{error}"
    );
}

#[test]
fn rejects_timestamp_that_is_not_rfc3339() {
    let error = json_error(&design_example_with("2026-02-01T12:00:00Z", "01/02/2026"));
    assert_eq!(error.path(), "occurred_at");
    assert!(error.message().contains("RFC 3339"), "{error}");
}

#[test]
fn rejects_unknown_kind_listing_known_kinds() {
    let error = json_error(&design_example_with(
        r#""kind":"EntityUpserted""#,
        r#""kind":"EntityMerged""#,
    ));
    assert_eq!(error.kind(), ErrorKind::UnknownSchema);
    assert_eq!(error.path(), "kind");
    assert!(error.to_string().contains("EntityMerged"), "{error}");
    assert!(
        error
            .hint()
            .is_some_and(|hint| hint.contains("EntityUpserted"))
    );
}

#[test]
fn rejects_missing_kind_without_schema() {
    let error = json_error(&design_example_with(r#""kind":"EntityUpserted","#, ""));
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "kind");
}

#[test]
fn uses_given_schema_when_kind_is_absent() {
    let line = design_example_with(r#""kind":"EntityUpserted","#, "");
    let event = decode_json(line.as_bytes(), Some("ig.events.EntityUpserted")).expect("valid");
    assert_eq!(event.kind(), "EntityUpserted");
    assert_eq!(event.meta.kind, "EntityUpserted");
}

#[test]
fn rejects_kind_that_contradicts_the_given_schema() {
    let line = fixture_lines()[0];
    let error = decode_json(line.as_bytes(), Some("EntityDeleted")).expect_err("mismatch");
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "kind");
}

#[test]
fn rejects_unknown_schema_name() {
    let line = fixture_lines()[0];
    let error = decode_json(line.as_bytes(), Some("Nope")).expect_err("unknown");
    assert_eq!(error.kind(), ErrorKind::UnknownSchema);
}

#[test]
fn rejects_oversized_input_before_parsing_it() {
    let mut big = vec![b' '; MAX_EVENT_BYTES + 1];
    big[0] = b'{';
    assert_eq!(
        decode_json(&big, None).unwrap_err().kind(),
        ErrorKind::Oversized
    );
    assert_eq!(decode_avro(&big).unwrap_err().kind(), ErrorKind::Oversized);
    assert_eq!(decode(&big, None).unwrap_err().kind(), ErrorKind::Oversized);
}

#[test]
fn rejects_avro_without_the_single_object_marker() {
    let mut bytes = encode_avro(&fixture("EntityDeleted"));
    bytes[0] = 0x00;
    let error = decode_avro(&bytes).expect_err("bad marker");
    assert_eq!(error.kind(), ErrorKind::CorruptAvro);
    assert!(error.to_string().contains("C3 01"), "{error}");
}

#[test]
fn rejects_every_truncation_of_avro_as_corrupt() {
    for event in common::fixture_events() {
        let bytes = encode_avro(&event);
        for len in 0..bytes.len() {
            let error = decode_avro(&bytes[..len]).expect_err("truncated");
            assert_eq!(
                error.kind(),
                ErrorKind::CorruptAvro,
                "length {len}: {error}"
            );
        }
    }
}

#[test]
fn rejects_trailing_bytes_after_avro_event() {
    let mut bytes = encode_avro(&fixture("EntityDeleted"));
    bytes.push(0);
    let error = decode_avro(&bytes).expect_err("trailing");
    assert_eq!(error.kind(), ErrorKind::CorruptAvro);
    assert!(error.to_string().contains("1 unexpected bytes"), "{error}");
}

#[test]
fn rejects_unknown_fingerprint_showing_it_in_hex() {
    let mut bytes = encode_avro(&fixture("EntityDeleted"));
    bytes[2..10].copy_from_slice(&0x0123_4567_89ab_cdef_u64.to_le_bytes());
    let error = decode_avro(&bytes).expect_err("unknown");
    assert_eq!(error.kind(), ErrorKind::UnknownSchema);
    assert!(error.to_string().contains("0x0123456789abcdef"), "{error}");
}

#[test]
fn rejects_hostile_string_length_without_allocating_it() {
    let schema = SchemaRegistry::builtin()
        .get("EntityDeleted")
        .expect("schema");
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend_from_slice(&schema.fingerprint.to_le_bytes());
    // event_id length: zig-zag varint of 2^40 (a terabyte) followed by nothing.
    bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    let error = decode_avro(&bytes).expect_err("hostile");
    assert_eq!(error.kind(), ErrorKind::CorruptAvro);
    assert!(error.to_string().contains("event_id"), "{error}");
}

#[test]
fn rejects_avro_attribute_that_json_cannot_carry() {
    let event = fixture("EntityUpserted");
    let mut with_double = event.clone();
    let conductor_schemas::EventData::EntityUpserted(data) = &mut with_double.data else {
        panic!("wrong kind");
    };
    data.attributes.insert(
        "score".into(),
        conductor_schemas::AttributeValue::Double(1.5),
    );
    let mut bytes = encode_avro(&with_double);
    let needle = 1.5f64.to_le_bytes();
    let at = bytes
        .windows(8)
        .position(|window| window == needle)
        .expect("double in encoding");
    bytes[at..at + 8].copy_from_slice(&f64::NAN.to_le_bytes());
    let error = decode_avro(&bytes).expect_err("NaN");
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "data.attributes.score");
}

#[test]
fn rejects_avro_whose_kind_field_contradicts_its_schema() {
    let event = fixture("EntityDeleted");
    // Same length as "EntityDeleted", so only the string's bytes change.
    let mut bytes = encode_avro(&event);
    let at = bytes
        .windows(13)
        .position(|window| window == b"EntityDeleted")
        .expect("kind in encoding");
    bytes[at..at + 13].copy_from_slice(b"EntityRemoved");
    let error = decode_avro(&bytes).expect_err("kind mismatch");
    assert_eq!(error.kind(), ErrorKind::InvalidField);
    assert_eq!(error.path(), "kind");
}

#[test]
fn rejects_unsupported_content_type() {
    let error = decode(b"{}", Some("application/xml")).expect_err("unsupported");
    assert_eq!(error.kind(), ErrorKind::Unsupported);
    assert!(error.to_string().contains("application/xml"), "{error}");
}

#[test]
fn error_messages_are_one_line() {
    let errors = [
        json_error("{"),
        json_error(&design_example_with(r#""version":3"#, r#""version":"3""#)),
        decode_avro(&[0xC3, 0x01, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
    ];
    for error in errors {
        assert!(!error.to_string().contains('\n'), "{error}");
    }
}
