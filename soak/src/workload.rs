//! Deterministic entity workloads for scenarios.

use conductor_engine::envelope::{Encoding, event_key, event_record};
use conductor_engine::log::{Record, partition_for_key};

/// `n` EntityUpserted events over `entities` keys, versions rising per key.
/// Returns (partition, record) with records stamped at append time later.
/// `n` people of the demo's generator (originals and typo'd duplicates,
/// updates, deletes) as decoded `EntityUpserted` / `EntityDeleted` events.
pub fn er_people(n: usize) -> Vec<conductor_schemas::Event> {
    let mut people = n;
    loop {
        let events: Vec<conductor_schemas::Event> =
            conductor_processors::demo_data::generate(people, 0x5EED)
                .into_iter()
                .filter(|e| e.topic == conductor_processors::demo_data::ENTITIES_TOPIC)
                .filter_map(|e| conductor_schemas::codec::decode_json(e.line.as_bytes(), None).ok())
                .take(n)
                .collect();
        if events.len() >= n {
            return events;
        }
        people += n / 2 + 1;
    }
}

pub fn entity_records(n: usize, entities: usize, partitions: i32) -> Vec<(i32, Record)> {
    entity_json_lines(n, entities)
        .map(|line| {
            let event = conductor_schemas::codec::decode_json(line.as_bytes(), None)
                .unwrap_or_else(|e| panic!("workload event invalid: {e}"));
            (
                partition_for_key(event_key(&event).as_bytes(), partitions),
                event_record(&event, Encoding::Json),
            )
        })
        .collect()
}

/// The same events as JSON lines, the form `conductor produce` reads.
pub fn entity_json_lines(n: usize, entities: usize) -> impl Iterator<Item = String> {
    let mut x: u64 = 0x5eed_1234;
    (0..n).map(move |i| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = x % entities as u64;
        let tenant = if x.is_multiple_of(3) { "globex" } else { "acme" };
        format!(
            r#"{{"tenant":"{tenant}","kind":"EntityUpserted","subject":"e{id}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"Person","version":{},"attributes":{{"given_name":"name{}","surname":"surname{}","postcode":"{}"}}}}}}"#,
            i / entities + 1,
            x % 997,
            x % 991,
            2000 + x % 7000
        )
    })
}
