//! The built-in event schemas, looked up by name or by Avro fingerprint.

use std::collections::HashMap;
use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::schema::ResolvedSchema;

use crate::avro_files;

/// Named types (records, enums, fixed) of one schema by full name, so walkers
/// can follow `Schema::Ref` (e.g. the second use of `ig.events.Dataset`).
pub(crate) type NamedTypes = HashMap<String, Schema>;

/// One event schema.
#[derive(Debug, Clone)]
pub struct EventSchema {
    /// Record name, which is also the event's `kind` (e.g. `EntityUpserted`).
    pub name: &'static str,
    /// The parsed schema.
    pub avro: Schema,
    /// CRC-64-AVRO (Rabin) fingerprint of the schema's parsing canonical form,
    /// as carried in the single-object encoding header.
    pub fingerprint: u64,
    /// The `.avsc` text the schema was parsed from.
    pub source_text: &'static str,
    named_types: NamedTypes,
}

impl EventSchema {
    /// Parses an `.avsc` text; the record name becomes the schema name.
    fn parse(name: &'static str, source_text: &'static str) -> Result<Self, apache_avro::Error> {
        let avro = Schema::parse_str(source_text)?;
        let named_types = named_types(&avro)?;
        Ok(EventSchema {
            name,
            fingerprint: rabin_fingerprint(&avro),
            avro,
            source_text,
            named_types,
        })
    }

    /// Full name, e.g. `ig.events.EntityUpserted`.
    pub fn full_name(&self) -> String {
        self.avro
            .name()
            .map(|name| name.fullname(None))
            .unwrap_or_else(|| self.name.to_owned())
    }

    pub(crate) fn named_types(&self) -> &NamedTypes {
        &self.named_types
    }
}

/// The event schemas this build knows.
#[derive(Debug)]
pub struct SchemaRegistry {
    schemas: Vec<EventSchema>,
}

impl SchemaRegistry {
    /// The schemas embedded from `schemas/avro/`, parsed once per process.
    pub fn builtin() -> &'static SchemaRegistry {
        static BUILTIN: OnceLock<SchemaRegistry> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            let schemas = avro_files::EVENT_SCHEMAS
                .iter()
                .map(|(name, text)| {
                    // The texts are compiled in and parsed by this crate's tests,
                    // so a failure here is a build defect, not bad input.
                    EventSchema::parse(name, text).unwrap_or_else(|error| {
                        panic!("built-in schema {name} is invalid: {error}")
                    })
                })
                .collect();
            SchemaRegistry { schemas }
        })
    }

    /// The schema with this record name (`EntityUpserted`) or full name
    /// (`ig.events.EntityUpserted`).
    pub fn get(&self, name: &str) -> Option<&EventSchema> {
        let short = name.strip_prefix("ig.events.").unwrap_or(name);
        self.schemas.iter().find(|schema| schema.name == short)
    }

    /// The schema whose Rabin fingerprint is `fingerprint`.
    pub fn by_fingerprint(&self, fingerprint: u64) -> Option<&EventSchema> {
        self.schemas
            .iter()
            .find(|schema| schema.fingerprint == fingerprint)
    }

    /// Record names of all schemas, in registration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.schemas.iter().map(|schema| schema.name)
    }

    /// All schemas, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &EventSchema> {
        self.schemas.iter()
    }

    /// `a, b, c` list of the names, for error messages.
    pub(crate) fn names_list(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }
}

/// CRC-64-AVRO fingerprint of the parsing canonical form, as a number.
///
/// apache-avro computes it for its single-object header builder; the header's
/// last 8 bytes are the fingerprint in little-endian order.
pub(crate) fn rabin_fingerprint(schema: &Schema) -> u64 {
    let header = RabinFingerprintHeader::from_schema(schema).build_header();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&header[2..10]);
    u64::from_le_bytes(bytes)
}

/// Every named type reachable from `schema`, by full name.
pub(crate) fn named_types(schema: &Schema) -> Result<NamedTypes, apache_avro::Error> {
    let resolved = ResolvedSchema::try_from(schema)?;
    Ok(resolved
        .get_names()
        .iter()
        .map(|(name, schema)| (name.fullname(None), (*schema).clone()))
        .collect())
}

/// Follows `Schema::Ref` to the named type it stands for.
pub(crate) fn deref<'s>(schema: &'s Schema, names: &'s NamedTypes) -> Option<&'s Schema> {
    match schema {
        Schema::Ref { name } => names.get(&name.fullname(None)),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_registry_holds_every_event_schema() {
        let registry = SchemaRegistry::builtin();
        let names: Vec<_> = registry.names().collect();
        assert_eq!(
            names,
            [
                "EntityUpserted",
                "EntityDeleted",
                "RelationshipUpserted",
                "RunEvent",
                "UsageRecorded",
                "EnrichmentRecorded",
                "ErCandidate",
                "EmbeddingComputed",
                "QuotaAlert",
                "OpenLineageEvent",
                "DatasetRegistered"
            ]
        );
        for name in names {
            let schema = registry.get(name).expect("by name");
            assert_eq!(schema.full_name(), format!("ig.events.{name}"));
            assert_eq!(
                registry.get(&schema.full_name()).map(|s| s.name),
                Some(name)
            );
            assert_eq!(
                registry.by_fingerprint(schema.fingerprint).map(|s| s.name),
                Some(name)
            );
        }
        assert!(registry.get("EventMetadata").is_none());
    }

    #[test]
    fn fingerprints_are_distinct() {
        let registry = SchemaRegistry::builtin();
        let mut fingerprints: Vec<_> = registry.iter().map(|s| s.fingerprint).collect();
        fingerprints.sort_unstable();
        fingerprints.dedup();
        assert_eq!(fingerprints.len(), registry.iter().count());
    }

    /// Known value from the Avro specification's test suite: the CRC-64-AVRO
    /// fingerprint of the schema `"null"` (so our number matches other languages').
    #[test]
    fn fingerprint_matches_the_avro_reference_value() {
        let schema = Schema::parse_str(r#""null""#).expect("parses");
        assert_eq!(rabin_fingerprint(&schema), 0x63dd_24e7_cc25_8f8a);
    }

    #[test]
    fn named_types_include_the_shared_dataset_record() {
        let schema = SchemaRegistry::builtin().get("RunEvent").expect("RunEvent");
        assert!(schema.named_types().contains_key("ig.events.Dataset"));
        assert!(schema.named_types().contains_key("ig.events.RunEventType"));
    }
}
