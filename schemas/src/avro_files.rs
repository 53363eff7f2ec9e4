//! The `.avsc` files under `schemas/avro/`, embedded so that every binary carries
//! exactly the schemas it was built with.

/// Metadata fields every event carries at its top level (documentation and the
/// reference the event schemas are checked against; not an event itself).
pub const EVENT_METADATA: &str = include_str!("../avro/EventMetadata.avsc");

/// `ig.events.EntityUpserted`.
pub const ENTITY_UPSERTED: &str = include_str!("../avro/EntityUpserted.avsc");
/// `ig.events.EntityDeleted`.
pub const ENTITY_DELETED: &str = include_str!("../avro/EntityDeleted.avsc");
/// `ig.events.RelationshipUpserted`.
pub const RELATIONSHIP_UPSERTED: &str = include_str!("../avro/RelationshipUpserted.avsc");
/// `ig.events.RunEvent` (subset of OpenLineage's RunEvent).
pub const RUN_EVENT: &str = include_str!("../avro/RunEvent.avsc");
/// `ig.events.UsageRecorded`.
pub const USAGE_RECORDED: &str = include_str!("../avro/UsageRecorded.avsc");
/// `ig.events.EnrichmentRecorded`.
pub const ENRICHMENT_RECORDED: &str = include_str!("../avro/EnrichmentRecorded.avsc");
/// `ig.events.ErCandidate`.
pub const ER_CANDIDATE: &str = include_str!("../avro/ErCandidate.avsc");
/// `ig.events.EmbeddingComputed`.
pub const EMBEDDING_COMPUTED: &str = include_str!("../avro/EmbeddingComputed.avsc");
/// `ig.events.OpenLineageEvent` (an OpenLineage event as sent).
pub const OPEN_LINEAGE_EVENT: &str = include_str!("../avro/OpenLineageEvent.avsc");
/// `ig.events.DatasetRegistered` (the dataset catalog).
pub const DATASET_REGISTERED: &str = include_str!("../avro/DatasetRegistered.avsc");
/// `ig.events.QuotaAlert`.
pub const QUOTA_ALERT: &str = include_str!("../avro/QuotaAlert.avsc");

/// Every event schema as `(record name, .avsc text)`, in registration order.
pub const EVENT_SCHEMAS: &[(&str, &str)] = &[
    ("EntityUpserted", ENTITY_UPSERTED),
    ("EntityDeleted", ENTITY_DELETED),
    ("RelationshipUpserted", RELATIONSHIP_UPSERTED),
    ("RunEvent", RUN_EVENT),
    ("UsageRecorded", USAGE_RECORDED),
    ("EnrichmentRecorded", ENRICHMENT_RECORDED),
    ("ErCandidate", ER_CANDIDATE),
    ("EmbeddingComputed", EMBEDDING_COMPUTED),
    ("QuotaAlert", QUOTA_ALERT),
    ("OpenLineageEvent", OPEN_LINEAGE_EVENT),
    ("DatasetRegistered", DATASET_REGISTERED),
];

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;
    use apache_avro::schema::RecordField;

    fn record_fields(text: &str) -> Vec<RecordField> {
        match Schema::parse_str(text).expect("schema parses") {
            Schema::Record(record) => record.fields,
            other => panic!("expected a record schema, got {other:?}"),
        }
    }

    /// The metadata fields are repeated in every event schema (Avro has no
    /// inheritance); this keeps the copies from drifting apart.
    #[test]
    fn every_event_schema_carries_exactly_the_metadata_fields_then_data() {
        let metadata = record_fields(EVENT_METADATA);
        for (name, text) in EVENT_SCHEMAS {
            let fields = record_fields(text);
            assert_eq!(
                fields.len(),
                metadata.len() + 1,
                "{name}: expected the {} metadata fields plus data",
                metadata.len()
            );
            for (expected, actual) in metadata.iter().zip(&fields) {
                assert_eq!(expected.name, actual.name, "{name}: field order");
                assert_eq!(
                    expected.schema, actual.schema,
                    "{name}.{}: type",
                    actual.name
                );
                assert_eq!(
                    expected.default, actual.default,
                    "{name}.{}: default",
                    actual.name
                );
            }
            let data = fields.last().expect("data field");
            assert_eq!(data.name, "data", "{name}: last field");
            match &data.schema {
                Schema::Record(record) => {
                    assert_eq!(
                        record.name.name(),
                        format!("{name}Data"),
                        "{name}: data record name"
                    )
                }
                other => panic!("{name}: data must be a record, got {other:?}"),
            }
        }
    }

    #[test]
    fn every_event_schema_is_named_after_its_event_in_the_ig_events_namespace() {
        for (name, text) in EVENT_SCHEMAS {
            let schema = Schema::parse_str(text).expect("schema parses");
            let full = schema.name().expect("named").fullname(None);
            assert_eq!(full, format!("ig.events.{name}"));
        }
    }
}
