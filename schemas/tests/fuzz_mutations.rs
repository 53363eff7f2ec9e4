//! Fuzz-style: every single-byte mutation, deletion and truncation of valid
//! encodings is either decoded or rejected with a routed error kind; never a
//! panic. Whatever decodes must re-encode to an equivalent event.

mod common;

use conductor_schemas::codec::{decode, decode_avro, decode_json, encode_avro, encode_json};
use conductor_schemas::{ErrorKind, Event};

fn mutations(bytes: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    (0..bytes.len()).flat_map(move |at| {
        let original = bytes[at];
        let replacements = [
            0x00,
            0xFF,
            original ^ 0x01,
            original ^ 0x80,
            original.wrapping_add(1),
            b'"',
            b'{',
            b'9',
        ];
        let replaced = replacements.into_iter().map(move |byte| {
            let mut mutated = bytes.to_vec();
            mutated[at] = byte;
            mutated
        });
        let deleted = std::iter::once({
            let mut mutated = bytes.to_vec();
            mutated.remove(at);
            mutated
        });
        replaced.chain(deleted)
    })
}

/// A decoded mutant is a valid event: it survives both encodings.
fn assert_consistent(event: &Event) {
    assert_eq!(
        &decode_avro(&encode_avro(event)).expect("re-encodes"),
        event
    );
    assert_eq!(
        &decode_json(&encode_json(event), None).expect("re-encodes"),
        event
    );
}

#[test]
fn mutated_avro_is_decoded_or_rejected_as_corrupt_or_invalid() {
    let mut rejected = 0;
    for event in common::fixture_events() {
        let bytes = encode_avro(&event);
        for mutant in mutations(&bytes) {
            match decode_avro(&mutant) {
                Ok(decoded) => assert_consistent(&decoded),
                Err(error) => {
                    rejected += 1;
                    assert!(
                        matches!(
                            error.kind(),
                            ErrorKind::CorruptAvro
                                | ErrorKind::UnknownSchema
                                | ErrorKind::InvalidField
                        ),
                        "unexpected kind {:?}: {error}",
                        error.kind()
                    );
                }
            }
            let _ = decode(&mutant, None);
        }
    }
    assert!(rejected > 0, "mutations must be able to fail");
}

#[test]
fn mutated_json_is_decoded_or_rejected_with_a_json_or_field_error() {
    let mut rejected = 0;
    for event in common::fixture_events() {
        let bytes = encode_json(&event);
        for mutant in mutations(&bytes) {
            match decode_json(&mutant, None) {
                Ok(decoded) => assert_consistent(&decoded),
                Err(error) => {
                    rejected += 1;
                    assert!(
                        matches!(
                            error.kind(),
                            ErrorKind::InvalidJson
                                | ErrorKind::InvalidField
                                | ErrorKind::UnknownSchema
                        ),
                        "unexpected kind {:?}: {error}",
                        error.kind()
                    );
                }
            }
        }
    }
    assert!(rejected > 0, "mutations must be able to fail");
}

#[test]
fn truncated_json_is_rejected() {
    for event in common::fixture_events() {
        let bytes = encode_json(&event);
        for len in 0..bytes.len() {
            let error = decode_json(&bytes[..len], None).expect_err("truncated");
            assert_eq!(
                error.kind(),
                ErrorKind::InvalidJson,
                "length {len}: {error}"
            );
        }
    }
}

#[test]
fn mutated_container_files_never_panic() {
    let events: Vec<_> = common::fixture_events()
        .into_iter()
        .filter(|event| event.kind() == "EntityUpserted")
        .collect();
    let bytes = conductor_schemas::codec::write_ocf(&events, Vec::new()).expect("writes");
    for mutant in mutations(&bytes).chain((0..bytes.len()).map(|len| bytes[..len].to_vec())) {
        if let Ok(records) = conductor_schemas::codec::read_ocf(&mutant[..], None) {
            // The iterator stops after its first error; what came before is valid.
            for event in records.map_while(Result::ok) {
                assert_consistent(&event);
            }
        }
    }
}
