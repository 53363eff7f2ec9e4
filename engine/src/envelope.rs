//! How an event travels as a log record.
//!
//! Key `tenant/subject` (per-subject order, tenant-scoped partitioning); the
//! value is the event in one of the two encodings; headers carry what routing
//! needs without decoding the value.

use crate::log::Record;
use conductor_schemas::codec::{self, CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON};
use conductor_schemas::{Event, SchemaError};

pub const HEADER_EVENT_ID: &str = "ig-event-id";
pub const HEADER_TENANT: &str = "ig-tenant";
pub const HEADER_SCHEMA: &str = "ig-schema";
pub const HEADER_CONTENT_TYPE: &str = "content-type";

/// The value encoding of an event record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Compact JSON validated against the Avro schema.
    Json,
    /// Avro single-object encoding (marker + schema fingerprint + body).
    AvroSingleObject,
}

/// The record key of an event: `tenant/subject`.
pub fn event_key(event: &Event) -> String {
    format!("{}/{}", event.meta.tenant, event.meta.subject)
}

/// Builds the record for an event, stamped with the current time.
pub fn event_record(event: &Event, encoding: Encoding) -> Record {
    let (value, content_type) = match encoding {
        Encoding::Json => (codec::encode_json(event), CONTENT_TYPE_JSON),
        Encoding::AvroSingleObject => (codec::encode_avro(event), CONTENT_TYPE_AVRO),
    };
    Record::new(Some(event_key(event).into_bytes()), value)
        .with_header(HEADER_EVENT_ID, event.meta.event_id.as_bytes())
        .with_header(HEADER_TENANT, event.meta.tenant.as_bytes())
        .with_header(HEADER_SCHEMA, event.kind().as_bytes())
        .with_header(HEADER_CONTENT_TYPE, content_type.as_bytes())
}

/// Decodes an event record, by its `content-type` header when present. A
/// plain OpenLineage event (what any OpenLineage client's Kafka transport
/// sends) is read as an `OpenLineageEvent` of the record's `ig-tenant`
/// header, or of tenant `default` without one.
pub fn decode_event(record: &Record) -> Result<Event, SchemaError> {
    let content_type = record
        .header(HEADER_CONTENT_TYPE)
        .and_then(|v| std::str::from_utf8(v).ok());
    codec::decode_record_value(&record.value, content_type, record_tenant(record))
}

/// The tenant of a record from its header, without decoding the value.
pub fn record_tenant(record: &Record) -> Option<&str> {
    record
        .header(HEADER_TENANT)
        .and_then(|v| std::str::from_utf8(v).ok())
}
