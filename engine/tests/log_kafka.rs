//! The conformance suite on the Kafka backend, against a Kafka-protocol broker
//! (see `kafka_support`: `KAFKA_BOOTSTRAP`, else a throwaway tansu).
mod conformance;
mod kafka_support;

use conductor_engine::log::Log;
use std::sync::Arc;

/// One test per conformance case; returns early (after a loud notice) when no
/// broker is available outside CI. The list must name every case of the
/// suite: `runs_every_conformance_case` checks it.
macro_rules! kafka_conformance {
    ($($case:ident),* $(,)?) => {
        const CASES: &[&str] = &[$(stringify!($case)),*];
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(log) = kafka_support::connect().await else { return };
                let log: Arc<dyn Log> = Arc::new(log);
                conformance::$case(log, conformance::prefix(stringify!($case))).await;
            }
        )*
    };
}

kafka_conformance!(
    creates_lists_and_describes_topics,
    rejects_duplicate_unknown_and_invalid_topics,
    appends_dense_offsets_and_reads_back_intact,
    reads_from_any_position_with_a_limit,
    keeps_partitions_independent,
    finds_offset_for_timestamp,
    rejects_oversized_record,
    keeps_order_under_concurrent_appends,
    commits_outputs_and_positions_together,
    fences_zombie_writer,
);

/// Guards against drift: every `pub async fn case(log: Arc<dyn Log>, …)` of
/// the suite is in the list above.
#[test]
fn runs_every_conformance_case() {
    let source = include_str!("conformance/mod.rs");
    let mut missing = Vec::new();
    for line in source.lines() {
        let Some(rest) = line.trim_start().strip_prefix("pub async fn ") else {
            continue;
        };
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if args.starts_with("log: Arc<dyn Log>") && !CASES.contains(&name) {
            missing.push(name.to_string());
        }
    }
    assert!(
        missing.is_empty(),
        "add these conformance cases to log_kafka.rs: {missing:?}"
    );
}
