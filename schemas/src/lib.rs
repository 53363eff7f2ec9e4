//! Conductor's event schemas and their codecs.
//!
//! - [`avro_files`]: the `.avsc` files of every event, embedded at compile time.
//! - [`SchemaRegistry`]: the built-in event schemas, by name and by Avro fingerprint.
//! - [`Event`] and friends: the Rust form of every event.
//! - [`codec`]: Avro single-object and JSON encodings, Avro container files,
//!   derived event ids.
//! - [`compat`]: the schema-evolution checker behind `conductor schema check`.
//!
//! Decoders never panic on untrusted bytes; every failure is a [`SchemaError`]
//! whose [`ErrorKind`] callers route on (DLQ, reject, halt) without reading text.

#![warn(missing_docs)]

pub mod avro_files;
mod avro_guard;
mod avro_value;
pub mod codec;
pub mod compat;
mod error;
mod event_id;
mod json_validate;
mod ocf;
pub mod openlineage;
mod path;
mod registry;
mod types;

pub use error::{ErrorKind, SchemaError};
pub use registry::{EventSchema, SchemaRegistry};
pub use types::{
    AttributeValue, Attributes, Dataset, DatasetRegistered, EmbeddingComputed, EnrichmentRecorded,
    EntityDeleted, EntityUpserted, ErCandidate, Event, EventData, EventMetadata, Job,
    OpenLineageEvent, QuotaAlert, RelationshipUpserted, Run, RunEvent, RunEventType, UsageRecorded,
};
