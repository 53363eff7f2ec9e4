//! Property tests: decoders never panic, valid events round-trip, derived
//! ids are stable.

mod common;

use conductor_schemas::SchemaRegistry;
use conductor_schemas::codec::{
    decode, decode_avro, decode_json, derive_event_id, encode_avro, encode_json,
};
use proptest::prelude::*;

/// Random bytes, and random bytes behind a valid Avro header so the body
/// decoder is reached too.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let fingerprints: Vec<u64> = SchemaRegistry::builtin()
        .iter()
        .map(|schema| schema.fingerprint)
        .collect();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        (
            proptest::sample::select(fingerprints),
            proptest::collection::vec(any::<u8>(), 0..512)
        )
            .prop_map(|(fingerprint, body)| {
                let mut bytes = vec![0xC3, 0x01];
                bytes.extend_from_slice(&fingerprint.to_le_bytes());
                bytes.extend_from_slice(&body);
                bytes
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in hostile_bytes()) {
        let _ = decode(&bytes, None);
        let _ = decode_json(&bytes, None);
        let _ = decode_json(&bytes, Some("RunEvent"));
        let _ = decode_avro(&bytes);
    }

    #[test]
    fn json_decoder_never_panics_on_arbitrary_json(json in "\\{(\"[a-z_]{1,10}\":(\"[^\"]{0,5}\"|[0-9.e-]{1,8}|null|true|\\{\\}|\\[\\]),?){0,6}\\}") {
        let _ = decode_json(json.as_bytes(), None);
        let _ = decode_json(json.as_bytes(), Some("EntityUpserted"));
    }

    #[test]
    fn valid_events_round_trip_through_avro(event in common::event()) {
        let decoded = decode_avro(&encode_avro(&event)).expect("own encoding decodes");
        prop_assert_eq!(decoded, event);
    }

    #[test]
    fn valid_events_round_trip_through_json(event in common::event()) {
        let decoded = decode_json(&encode_json(&event), None).expect("own encoding decodes");
        prop_assert_eq!(decoded, event);
    }

    #[test]
    fn derived_event_id_is_stable_and_ignores_event_id(event in common::event(), other_id in "[a-z]{0,8}") {
        let id = derive_event_id(&event);
        prop_assert_eq!(&id, &derive_event_id(&event.clone()));
        let mut renamed = event.clone();
        renamed.meta.event_id = other_id;
        prop_assert_eq!(&id, &derive_event_id(&renamed));
        prop_assert!(id.starts_with("b3-") && id.len() == 35);
        prop_assert!(id[3..].bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn derived_event_id_changes_with_the_payload(event in common::event()) {
        let mut other = event.clone();
        other.meta.tenant.push('!');
        prop_assert_ne!(derive_event_id(&event), derive_event_id(&other));
    }
}
