//! Every metric Conductor exports, declared in one place ([`ALL`]); see
//! `docs/specs/telemetry.md`.
//!
//! Names follow `conductor_<noun>_<unit>[_total]`; labels are of bounded
//! cardinality (topology, topic, partition, kind, mode, reason — never an
//! entity id or a tenant's data). Counters are bumped once per batch, not per
//! event. `testing::assert_topology_telemetry` checks a topology emits only
//! declared names and every metric a topology must emit.

pub const EVENTS_PROCESSED_TOTAL: &str = "conductor_events_processed_total";
pub const DLQ_EVENTS_TOTAL: &str = "conductor_dlq_events_total";
pub const CHANGES_TOTAL: &str = "conductor_changes_total";
pub const BATCHES_COMMITTED_TOTAL: &str = "conductor_batches_committed_total";
pub const BATCH_ERRORS_TOTAL: &str = "conductor_batch_errors_total";
pub const BATCH_SIZE_EVENTS: &str = "conductor_batch_size_events";
pub const PROCESSING_LATENCY_SECONDS: &str = "conductor_processing_latency_seconds";
pub const COMMIT_DURATION_SECONDS: &str = "conductor_commit_duration_seconds";
pub const CONSUMER_LAG_RECORDS: &str = "conductor_consumer_lag_records";
pub const OUTBOX_RELAYED_TOTAL: &str = "conductor_outbox_relayed_total";
pub const RELAY_ERRORS_TOTAL: &str = "conductor_relay_errors_total";

// Sinks fed from a topology's derived topics (`runtime::sink`).
pub const SINK_RECORDS_TOTAL: &str = "conductor_sink_records_total";
pub const SINK_REJECTED_RECORDS_TOTAL: &str = "conductor_sink_rejected_records_total";
pub const SINK_ERRORS_TOTAL: &str = "conductor_sink_errors_total";
pub const SINK_COMMIT_DURATION_SECONDS: &str = "conductor_sink_commit_duration_seconds";
pub const SINK_LAG_RECORDS: &str = "conductor_sink_lag_records";

// Enrichment stages' calls to their services (`enrich::policy`).
pub const ENRICHMENT_INPUTS_TOTAL: &str = "conductor_enrichment_inputs_total";
pub const ENRICHMENT_CALLS_TOTAL: &str = "conductor_enrichment_calls_total";
pub const ENRICHMENT_CALL_ERRORS_TOTAL: &str = "conductor_enrichment_call_errors_total";
pub const ENRICHMENT_CALL_DURATION_SECONDS: &str = "conductor_enrichment_call_duration_seconds";
pub const ENRICHMENT_BUDGET_STOPS_TOTAL: &str = "conductor_enrichment_budget_stops_total";

// Processors' own (`conductor-processors`).
pub const EMBEDDINGS_SKIPPED_TOTAL: &str = "conductor_embeddings_skipped_total";
pub const EMBEDDINGS_COMPUTED_TOTAL: &str = "conductor_embeddings_computed_total";
pub const VECTOR_INDEX_COMPACTIONS_TOTAL: &str = "conductor_vector_index_compactions_total";
pub const SEARCH_FALLBACKS_TOTAL: &str = "conductor_search_fallbacks_total";
pub const CATALOG_COVERAGE_RATIO: &str = "conductor_catalog_coverage_ratio";

// The subscription server (`conductor-replay`).
pub const SUBSCRIPTIONS_ACTIVE: &str = "conductor_subscriptions_active";
pub const FANOUT_LATENCY_SECONDS: &str = "conductor_fanout_latency_seconds";
pub const SUBSCRIPTION_EVENTS_TOTAL: &str = "conductor_subscription_events_total";
pub const SUBSCRIPTION_CATCHUP_FALLBACKS_TOTAL: &str =
    "conductor_subscription_catchup_fallbacks_total";
pub const SUBSCRIPTION_DISCONNECTS_TOTAL: &str = "conductor_subscription_disconnects_total";
pub const SUBSCRIBE_REJECTIONS_TOTAL: &str = "conductor_subscribe_rejections_total";

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// A declared metric: name, kind, labels, help.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: MetricKind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric, with its labels (the table in `docs/specs/telemetry.md`).
pub const ALL: &[Metric] = &[
    metric(
        EVENTS_PROCESSED_TOTAL,
        Counter,
        &["topology"],
        "Input events folded and committed",
    ),
    metric(
        DLQ_EVENTS_TOTAL,
        Counter,
        &["topology", "kind"],
        "Input records sent to the dead-letter topic, by error kind",
    ),
    metric(
        CHANGES_TOTAL,
        Counter,
        &["topology"],
        "Projection changes applied (one change event each)",
    ),
    metric(
        BATCHES_COMMITTED_TOTAL,
        Counter,
        &["topology"],
        "Batches committed to the projection store",
    ),
    metric(
        BATCH_ERRORS_TOTAL,
        Counter,
        &["topology", "kind"],
        "Batches that failed, by error kind (retried, refolded or halted on)",
    ),
    metric(
        BATCH_SIZE_EVENTS,
        Histogram,
        &["topology"],
        "Input records per committed batch",
    ),
    metric(
        PROCESSING_LATENCY_SECONDS,
        Histogram,
        &["topology"],
        "Time from append to the log to the commit of its batch",
    ),
    metric(
        COMMIT_DURATION_SECONDS,
        Histogram,
        &["topology"],
        "Duration of one store commit",
    ),
    metric(
        CONSUMER_LAG_RECORDS,
        Gauge,
        &["topology", "topic", "partition"],
        "Records between a topology's position and the partition's end",
    ),
    metric(
        OUTBOX_RELAYED_TOTAL,
        Counter,
        &["topology"],
        "Outbox records appended to their topics",
    ),
    metric(
        RELAY_ERRORS_TOTAL,
        Counter,
        &["topology"],
        "Relay rounds that failed because the store or the log was away (each retried)",
    ),
    metric(
        SINK_RECORDS_TOTAL,
        Counter,
        &["topology", "sink"],
        "Records a sink applied to its target (graph mutations into Neo4j)",
    ),
    metric(
        SINK_REJECTED_RECORDS_TOTAL,
        Counter,
        &["topology", "sink"],
        "Records a sink skipped as not of its format",
    ),
    metric(
        SINK_ERRORS_TOTAL,
        Counter,
        &["topology", "sink", "kind"],
        "Failed sink writes, by kind (retryable | permanent)",
    ),
    metric(
        SINK_COMMIT_DURATION_SECONDS,
        Histogram,
        &["topology", "sink"],
        "Duration of one sink transaction (batch + position)",
    ),
    metric(
        SINK_LAG_RECORDS,
        Gauge,
        &["topology", "sink"],
        "Records of the sink's topic not yet applied",
    ),
    metric(
        ENRICHMENT_INPUTS_TOTAL,
        Counter,
        &["enrichment"],
        "Distinct inputs an enrichment stage asked its service about (not recorded before)",
    ),
    metric(
        ENRICHMENT_CALLS_TOTAL,
        Counter,
        &["enrichment"],
        "Calls to an enrichment's service, retries included",
    ),
    metric(
        ENRICHMENT_CALL_ERRORS_TOTAL,
        Counter,
        &["enrichment", "kind"],
        "Failed calls, by kind (rate_limited | unavailable); each is retried or fails the batch",
    ),
    metric(
        ENRICHMENT_CALL_DURATION_SECONDS,
        Histogram,
        &["enrichment"],
        "Duration of one successful call",
    ),
    metric(
        ENRICHMENT_BUDGET_STOPS_TOTAL,
        Counter,
        &["enrichment"],
        "Inputs not called for because their tenant spent its monthly budget",
    ),
    metric(
        EMBEDDINGS_SKIPPED_TOTAL,
        Counter,
        &["reason"],
        "Entity events the embedding writer embedded nothing for (not_opted_in, refused)",
    ),
    metric(
        EMBEDDINGS_COMPUTED_TOTAL,
        Counter,
        &["model"],
        "Vectors the embedder computed (one per distinct text, ever)",
    ),
    metric(
        VECTOR_INDEX_COMPACTIONS_TOTAL,
        Counter,
        &[],
        "Vector index graphs rebuilt from their live vectors (too many dead slots)",
    ),
    metric(
        SEARCH_FALLBACKS_TOTAL,
        Counter,
        &["reason"],
        "Searches answered by the keyword stage alone (vector_budget, no_vector_index, vector_error)",
    ),
    metric(
        CATALOG_COVERAGE_RATIO,
        Gauge,
        &[],
        "Share of the datasets the running topologies read and write that are registered in the catalog (0..1)",
    ),
    metric(
        SUBSCRIPTIONS_ACTIVE,
        Gauge,
        &[],
        "Subscriptions being served now",
    ),
    metric(
        FANOUT_LATENCY_SECONDS,
        Histogram,
        &["mode"],
        "From a record's append to its delivery to a subscriber, by mode (live | catchup)",
    ),
    metric(
        SUBSCRIPTION_EVENTS_TOTAL,
        Counter,
        &["mode"],
        "Events delivered to subscribers, by mode",
    ),
    metric(
        SUBSCRIPTION_CATCHUP_FALLBACKS_TOTAL,
        Counter,
        &[],
        "Times a subscriber too slow for the live tail went back to reading the log",
    ),
    metric(
        SUBSCRIPTION_DISCONNECTS_TOTAL,
        Counter,
        &["transport", "reason"],
        "Subscriptions ended, by transport and reason",
    ),
    metric(
        SUBSCRIBE_REJECTIONS_TOTAL,
        Counter,
        &["reason"],
        "Subscribe attempts refused, by reason (auth, scope, rate_limit, concurrency, cursor)",
    ),
];

/// What every running topology emits (the compliance helper checks them).
pub const TOPOLOGY_REQUIRED: &[&str] = &[
    EVENTS_PROCESSED_TOTAL,
    CHANGES_TOTAL,
    BATCHES_COMMITTED_TOTAL,
    BATCH_SIZE_EVENTS,
    PROCESSING_LATENCY_SECONDS,
    COMMIT_DURATION_SECONDS,
    CONSUMER_LAG_RECORDS,
    OUTBOX_RELAYED_TOTAL,
];

/// What every sink emits once it has written a batch.
pub const SINK_REQUIRED: &[&str] = &[
    SINK_RECORDS_TOTAL,
    SINK_COMMIT_DURATION_SECONDS,
    SINK_LAG_RECORDS,
];

/// Registers every description (shown as `# HELP` by the Prometheus exporter).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    for m in ALL {
        match m.kind {
            Counter => describe_counter!(m.name, m.help),
            Gauge if m.name.ends_with("_records") => describe_gauge!(m.name, Unit::Count, m.help),
            Gauge => describe_gauge!(m.name, m.help),
            Histogram if m.name.ends_with("_seconds") => {
                describe_histogram!(m.name, Unit::Seconds, m.help)
            }
            Histogram => describe_histogram!(m.name, Unit::Count, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_convention_and_are_declared_once() {
        let units = [
            "_total", "_seconds", "_events", "_records", "_active", "_ratio",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for m in ALL {
            assert!(m.name.starts_with("conductor_"), "{}", m.name);
            assert!(
                units.iter().any(|u| m.name.ends_with(u)),
                "{} has no unit",
                m.name
            );
            assert_eq!(
                m.kind == Counter,
                m.name.ends_with("_total"),
                "{}: only counters end in _total",
                m.name
            );
            assert!(seen.insert(m.name), "{} declared twice", m.name);
        }
    }
}
