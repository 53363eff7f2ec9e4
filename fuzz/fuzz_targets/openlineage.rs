//! OpenLineage events: the body of `POST /api/v1/lineage` (parsed as JSON,
//! then checked against the spec and turned into an event) and the plain
//! events OpenLineage clients write to Kafka. An event accepted is a valid
//! event of the log.
#![no_main]
use conductor_fuzz::assert_event_round_trips;
use conductor_schemas::openlineage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    // What the HTTP handler does with a body.
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) {
        if let Ok(event) = openlineage::to_event(&json, "acme") {
            assert_eq!(
                event.meta.tenant, "acme",
                "the principal's tenant is the event's"
            );
            assert_event_round_trips(&event);
        }
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(parsed) = openlineage::parse_str(text) {
            let _ = (parsed.subject(), parsed.identity(), parsed.event_time());
            // What the lineage processor reads of every dataset.
            let datasets = match &parsed {
                openlineage::LineageEvent::Run(r) => r.inputs.iter().chain(&r.outputs).collect(),
                openlineage::LineageEvent::Job(j) => j.inputs.iter().chain(&j.outputs).collect(),
                openlineage::LineageEvent::Dataset(d) => vec![&d.dataset],
            };
            for dataset in datasets {
                let _ = dataset.column_lineage();
            }
        }
    }
});
