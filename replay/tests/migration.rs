//! A migration: a processor whose output depends on its configuration in a
//! way two generations must never mix (`Processor::output_generation`, the
//! embedding writer's model). A store remembers the generation it was made
//! under; a worker of another refuses to start on it, a running worker
//! stops folding once a swap brought one in, and `replay rebuild` under a
//! new one says it is a migration. (The embedding writer's whole flow, with
//! its derived events published at the swap, is
//! `ops/tests/embeddings_model_change.rs`.)

use conductor_engine::log::Log;
use conductor_engine::log::memory::MemoryLog;
use conductor_engine::processor::{Effect, Processor, ProcessorError, ProcessorState};
use conductor_engine::projection::TableSpec;
use conductor_engine::runtime::worker::{Disposition, ensure_topic};
use conductor_engine::runtime::{RuntimeError, Worker};
use conductor_engine::testing::*;
use conductor_replay::rebuild::{Migration, RebuildRequest, ReplayFrom, rebuild};
use conductor_replay::swap::swap;
use conductor_replay::{Generation, GenerationHome};
use conductor_schemas::Event;
use std::sync::Arc;

const TOPIC: &str = "ig.ingest.entities";

/// [`CountsPerKeyProcessor`] whose output is said to be made by `model`.
struct Modelled {
    inner: CountsPerKeyProcessor,
    model: &'static str,
}

fn modelled(model: &'static str) -> Box<dyn Processor> {
    Box::new(Modelled {
        inner: CountsPerKeyProcessor::with_format_version(1),
        model,
    })
}

impl Processor for Modelled {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn tables(&self) -> Vec<TableSpec> {
        self.inner.tables()
    }
    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        self.inner.process(event)
    }
    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        self.inner.state()
    }
    fn output_generation(&self) -> Option<String> {
        Some(self.model.to_string())
    }
}

#[tokio::test]
async fn a_store_never_folds_two_generations_and_a_rebuild_under_another_is_a_migration() {
    let dir = tempfile::tempdir().unwrap();
    let home = GenerationHome::sqlite(&dir.path().join("live.db"))
        .await
        .unwrap();
    let memory = MemoryLog::new();
    ensure_topic(&memory, TOPIC, 2).await.unwrap();
    let events = counting_events(60, 5);
    for e in &events[..40] {
        pipe_json(&memory, TOPIC, e).await;
    }
    let log: Arc<dyn Log> = Arc::new(memory.clone());
    let config = counts_topology("counts", TOPIC);

    // Live under model-a; it keeps its worker.
    let mut live = Worker::start(
        config.clone(),
        modelled("model-a"),
        log.clone(),
        home.live(),
    )
    .await
    .unwrap();
    while live.step().await.unwrap().records > 0 {}
    live.flush().await.unwrap();

    // Another model can't fold on into it.
    let refused = Worker::start(
        config.clone(),
        modelled("model-b"),
        log.clone(),
        home.live(),
    )
    .await
    .err()
    .expect("a worker of another generation refuses to start");
    assert!(
        matches!(&refused, RuntimeError::GenerationMismatch { stored, configured, .. }
            if stored == "model-a" && configured == "model-b"),
        "{refused}"
    );
    assert_eq!(refused.disposition(), Disposition::Halt);
    assert!(
        refused
            .to_string()
            .contains("replay rebuild --topology counts")
    );

    // A rebuild under model-b is a migration; under model-a it is not.
    let request = RebuildRequest {
        from: ReplayFrom::Earliest,
        to_ms: None,
    };
    let same = rebuild(
        log.clone(),
        &home,
        &config,
        modelled("model-a"),
        &request,
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(same.migration, None);
    let report = rebuild(
        log.clone(),
        &home,
        &config,
        modelled("model-b"),
        &request,
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        report.migration,
        Some(Migration {
            from: "model-a".into(),
            to: "model-b".into()
        })
    );

    // Swapped in while live's worker runs: that worker stops folding.
    for e in &events[40..50] {
        pipe_json(&memory, TOPIC, e).await;
    }
    while live.step().await.unwrap().records > 0 {}
    live.flush().await.unwrap();
    let swapped = swap(
        log.clone(),
        &home,
        &config,
        modelled("model-b"),
        Generation::Shadow,
        false,
    )
    .await
    .unwrap();
    assert_eq!(swapped.migration, report.migration);
    for e in &events[50..] {
        pipe_json(&memory, TOPIC, e).await;
    }
    let mut stopped = None;
    for _ in 0..5 {
        match live.step().await {
            Err(e @ RuntimeError::GenerationMismatch { .. }) => {
                stopped = Some(e);
                break;
            }
            Err(e) => assert_eq!(e.disposition(), Disposition::Refold, "{e}"),
            Ok(_) => {}
        }
    }
    let stopped = stopped.expect("the old worker stops once the swap is seen");
    assert!(
        stopped
            .to_string()
            .contains("holds the output of `model-b`")
    );

    // The new generation's worker folds the rest.
    let mut next = Worker::start(
        config.clone(),
        modelled("model-b"),
        log.clone(),
        home.live(),
    )
    .await
    .unwrap();
    while next.step().await.unwrap().records > 0 {}
    next.flush().await.unwrap();
    assert_eq!(
        next.positions().values().sum::<i64>(),
        60,
        "every event folded once under model-b"
    );
}
