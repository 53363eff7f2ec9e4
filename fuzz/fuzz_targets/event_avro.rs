//! The Avro single-object encoding (`C3 01`, fingerprint, datum).
#![no_main]
use conductor_fuzz::assert_event_round_trips;
use conductor_schemas::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(event) = codec::decode_avro(bytes) {
        assert_event_round_trips(&event);
    }
    // Sniffing without a content type must agree with the explicit decoder.
    if bytes.starts_with(&codec::AVRO_SINGLE_OBJECT_MARKER) {
        assert_eq!(
            codec::decode(bytes, None).is_ok(),
            codec::decode_avro(bytes).is_ok(),
            "sniffed and explicit Avro decoding agree"
        );
    }
});
