//! Every metric Conductor exports, declared in one place.
//!
//! Names follow `conductor_<noun>_<unit>[_total]`; labels are of bounded
//! cardinality (topology, topic, partition, kind — never an entity id).
//! Counters are bumped once per batch, not per event.

pub const EVENTS_PROCESSED_TOTAL: &str = "conductor_events_processed_total";
pub const DLQ_EVENTS_TOTAL: &str = "conductor_dlq_events_total";
pub const CHANGES_TOTAL: &str = "conductor_changes_total";
pub const BATCHES_COMMITTED_TOTAL: &str = "conductor_batches_committed_total";
pub const BATCH_ERRORS_TOTAL: &str = "conductor_batch_errors_total";
pub const BATCH_SIZE_EVENTS: &str = "conductor_batch_size_events";
pub const PROCESSING_LATENCY_SECONDS: &str = "conductor_processing_latency_seconds";
pub const COMMIT_DURATION_SECONDS: &str = "conductor_commit_duration_seconds";
pub const CONSUMER_LAG: &str = "conductor_consumer_lag";
pub const OUTBOX_RELAYED_TOTAL: &str = "conductor_outbox_relayed_total";
pub const OUTBOX_PENDING: &str = "conductor_outbox_pending";

/// Registers descriptions (shown as `# HELP` by the Prometheus exporter).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(EVENTS_PROCESSED_TOTAL, "Input events folded and committed");
    describe_counter!(
        DLQ_EVENTS_TOTAL,
        "Input records sent to the dead-letter topic, by error kind"
    );
    describe_counter!(
        CHANGES_TOTAL,
        "Projection changes applied (one change event each)"
    );
    describe_counter!(
        BATCHES_COMMITTED_TOTAL,
        "Batches committed to the projection store"
    );
    describe_counter!(
        BATCH_ERRORS_TOTAL,
        "Batches that failed, by error kind (retried, refolded or halted on)"
    );
    describe_histogram!(
        BATCH_SIZE_EVENTS,
        Unit::Count,
        "Input records per committed batch"
    );
    describe_histogram!(
        PROCESSING_LATENCY_SECONDS,
        Unit::Seconds,
        "Time from append to the log to the commit of its batch"
    );
    describe_histogram!(
        COMMIT_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of one store commit"
    );
    describe_gauge!(
        CONSUMER_LAG,
        Unit::Count,
        "Records between a topology's position and the partition's end"
    );
    describe_counter!(
        OUTBOX_RELAYED_TOTAL,
        "Outbox records appended to their topics"
    );
    describe_gauge!(
        OUTBOX_PENDING,
        Unit::Count,
        "Outbox records committed but not yet relayed"
    );
}
