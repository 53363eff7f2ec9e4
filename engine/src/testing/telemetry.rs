//! The telemetry compliance check every processor's tests call (after
//! Vector's `assert_sink_compliance`): run the processor's topology in the
//! test driver under a recording metrics recorder and check what it emitted
//! against `crate::metrics` and `docs/specs/telemetry.md`.

use crate::metrics::{ALL, DLQ_EVENTS_TOTAL, TOPOLOGY_REQUIRED};
use crate::processor::Processor;
use crate::runtime::TopologyConfig;
use crate::runtime::driver::TopologyTestDriver;
use metrics_util::debugging::DebuggingRecorder;
use std::collections::BTreeSet;

/// Runs `events` (JSON) and one undecodable record through the topology and
/// checks that it emits every metric a topology must, only declared names,
/// only declared labels, `conductor_dlq_events_total` with its `kind`, and
/// no label value that is an event's subject or tenant (bounded
/// cardinality). Call it from a current-thread runtime (the
/// `#[tokio::test]` default): the recorder is this thread's.
pub async fn assert_topology_telemetry(
    config: TopologyConfig,
    processor: Box<dyn Processor>,
    events: &[String],
) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let topic = config.sources.topics[0].clone();
    let mut driver = TopologyTestDriver::new(config, processor)
        .await
        .expect("topology starts");
    let mut private = BTreeSet::new();
    for e in events {
        let event = conductor_schemas::codec::decode_json(e.as_bytes(), None).expect("valid event");
        private.insert(event.meta.subject.clone());
        private.insert(event.meta.tenant.clone());
        driver.pipe_json(&topic, e).await;
    }
    driver.pipe_raw(&topic, b"{not json").await;
    driver.run_until_idle().await.expect("topology folds");

    let mut emitted = BTreeSet::new();
    for (key, _, _, _) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let name = key.name().to_string();
        let declared = ALL
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("emits `{name}`, which crate::metrics does not declare"));
        for label in key.labels() {
            assert!(
                declared.labels.contains(&label.key()),
                "`{name}` has label `{}`, not declared (declared: {:?})",
                label.key(),
                declared.labels
            );
            assert!(
                !private.contains(label.value()),
                "`{name}{{{}=\"{}\"}}` carries an event's subject or tenant: unbounded cardinality",
                label.key(),
                label.value()
            );
        }
        if name == DLQ_EVENTS_TOTAL {
            assert!(
                key.labels()
                    .any(|l| l.key() == "kind" && l.value() == "invalid_json"),
                "the DLQ counter is labelled by kind"
            );
        }
        emitted.insert(name);
    }
    for required in TOPOLOGY_REQUIRED.iter().chain([&DLQ_EVENTS_TOTAL]) {
        assert!(
            emitted.contains(*required),
            "a topology must emit `{required}`; emitted: {emitted:?}"
        );
    }
}
