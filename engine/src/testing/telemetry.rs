//! The telemetry compliance check every processor's tests call (after
//! Vector's `assert_sink_compliance`): run the processor's topology in the
//! test driver under a recording metrics recorder and check what it emitted
//! against `crate::metrics` and `docs/specs/telemetry.md`.

use crate::metrics::{ALL, DLQ_EVENTS_TOTAL, SINK_REQUIRED, TOPOLOGY_REQUIRED};
use crate::processor::Processor;
use crate::runtime::SinkRunner;
use crate::runtime::TopologyConfig;
use crate::runtime::driver::TopologyTestDriver;
use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use std::collections::{BTreeMap, BTreeSet};

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

    let emitted = declared_metrics(&snapshotter, &private);
    assert!(
        emitted.get(DLQ_EVENTS_TOTAL).is_some_and(|labels| labels
            .iter()
            .any(|(k, v)| k == "kind" && v == "invalid_json")),
        "the DLQ counter is labelled by kind"
    );
    for required in TOPOLOGY_REQUIRED.iter().chain([&DLQ_EVENTS_TOTAL]) {
        assert!(
            emitted.contains_key(*required),
            "a topology must emit `{required}`; emitted: {:?}",
            emitted.keys()
        );
    }
}

/// Runs a sink until it has written everything and checks its telemetry:
/// every metric a sink must emit, with declared names and labels only.
/// Returns the records written. Call it from the test's own task (the
/// recorder is this thread's).
pub async fn assert_sink_telemetry(runner: &mut SinkRunner) -> usize {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let written = runner.run_until_idle().await.expect("the sink writes");
    let emitted = declared_metrics(&snapshotter, &BTreeSet::new());
    for required in SINK_REQUIRED {
        assert!(
            emitted.contains_key(*required),
            "a sink must emit `{required}`; emitted: {:?}",
            emitted.keys()
        );
    }
    written
}

/// Every metric in the recorder, by name with its labels, after checking
/// that each is declared in `crate::metrics` with the labels it carries and
/// that no label value is one of `private` (subjects, tenants).
fn declared_metrics(
    snapshotter: &Snapshotter,
    private: &BTreeSet<String>,
) -> BTreeMap<String, Vec<(String, String)>> {
    let mut emitted: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (key, _, _, _) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let name = key.name().to_string();
        let declared = ALL
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("emits `{name}`, which crate::metrics does not declare"));
        let entry = emitted.entry(name.clone()).or_default();
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
            entry.push((label.key().to_string(), label.value().to_string()));
        }
    }
    emitted
}
