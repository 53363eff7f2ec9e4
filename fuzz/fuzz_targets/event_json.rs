//! The JSON event form (`conductor produce`, Kafka record values): any bytes
//! either decode to an event that round-trips, or are refused with an error.
#![no_main]
use conductor_fuzz::assert_event_round_trips;
use conductor_schemas::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(event) = codec::decode_json(bytes, None) {
        assert_event_round_trips(&event);
    }
    // What a Kafka record value goes through (plain OpenLineage included).
    if let Ok(event) = codec::decode_record_value(bytes, Some(codec::CONTENT_TYPE_JSON), None) {
        assert_event_round_trips(&event);
    }
});
