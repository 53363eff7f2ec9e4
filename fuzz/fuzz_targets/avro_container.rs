//! Avro object container files (`conductor produce --format avro`): the
//! header, blocks and records of any bytes are read without panicking, and
//! every record accepted is a valid event.
#![no_main]
use conductor_fuzz::assert_event_round_trips;
use conductor_schemas::codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(records) = codec::read_ocf(bytes, None) else {
        return;
    };
    for record in records.take(10_000) {
        match record {
            Ok(event) => assert_event_round_trips(&event),
            Err(_) => break,
        }
    }
});
