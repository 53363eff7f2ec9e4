//! The Rust form of every event.
//!
//! Field names and order follow the `.avsc` files; `serde` gives the JSON form
//! of DESIGN.md (flat metadata, then `data`; timestamps as RFC 3339 strings).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Metadata every event carries at the top level of its JSON and Avro forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMetadata {
    /// Dedupe key: given by the producer or derived by
    /// [`derive_event_id`](crate::codec::derive_event_id).
    pub event_id: String,
    /// Tenant that owns the event.
    pub tenant: String,
    /// Event kind, the schema's record name. [`Event::new`] and the decoders
    /// keep it equal to the kind of [`Event::data`]; encoders write the latter.
    pub kind: String,
    /// What the event is about; with `tenant` it forms the record key.
    pub subject: String,
    /// When it happened (microsecond precision, the Avro `timestamp-micros`).
    #[serde(with = "rfc3339")]
    pub occurred_at: DateTime<Utc>,
    /// Who or what caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Declared purpose of the processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// `event_id` of the event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// Identifier shared by all events of one flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// System that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl EventMetadata {
    /// Metadata with no `event_id` yet (decoders and
    /// [`derive_event_id`](crate::codec::derive_event_id) fill it), no kind yet
    /// ([`Event::new`] fills it) and no optional fields.
    pub fn new(
        tenant: impl Into<String>,
        subject: impl Into<String>,
        occurred_at: DateTime<Utc>,
    ) -> Self {
        EventMetadata {
            event_id: String::new(),
            tenant: tenant.into(),
            kind: String::new(),
            subject: subject.into(),
            occurred_at: truncate_to_micros(occurred_at),
            actor: None,
            purpose: None,
            causation_id: None,
            correlation_id: None,
            source: None,
        }
    }
}

/// A value in an attribute map: a JSON scalar.
///
/// Untagged, so it is written as the bare JSON value. Integers that fit an
/// `i64` are `Long`; other numbers are `Double`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// JSON `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Long(i64),
    /// Any other number; never NaN or infinite (JSON cannot carry them).
    Double(f64),
    /// A string.
    String(String),
}

/// Flat attribute map of an entity or relationship, sorted by name.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// `data` of `EntityUpserted`: the entity's full current state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityUpserted {
    /// Entity type, e.g. `Person`.
    pub entity_type: String,
    /// Monotonic version; projections keep the highest.
    pub version: i64,
    /// Attributes by name.
    #[serde(default)]
    pub attributes: Attributes,
}

/// `data` of `EntityDeleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityDeleted {
    /// Entity type, e.g. `Person`.
    pub entity_type: String,
    /// Version at which the entity was deleted.
    pub version: i64,
}

/// `data` of `RelationshipUpserted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationshipUpserted {
    /// Relationship identifier.
    pub rel_id: String,
    /// Subject of the source entity.
    pub src: String,
    /// Subject of the destination entity.
    pub dst: String,
    /// Relationship type, e.g. `KNOWS`.
    pub rel_type: String,
    /// Monotonic version.
    pub version: i64,
    /// Attributes by name.
    #[serde(default)]
    pub attributes: Attributes,
}

/// OpenLineage run state transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunEventType {
    /// The run started.
    Start,
    /// The run is in progress.
    Running,
    /// The run finished successfully.
    Complete,
    /// The run was stopped.
    Abort,
    /// The run failed.
    Fail,
    /// Anything else.
    Other,
}

impl RunEventType {
    /// Every symbol, in the order of the Avro enum.
    pub const ALL: [RunEventType; 6] = [
        RunEventType::Start,
        RunEventType::Running,
        RunEventType::Complete,
        RunEventType::Abort,
        RunEventType::Fail,
        RunEventType::Other,
    ];

    /// The Avro/OpenLineage symbol, e.g. `COMPLETE`.
    pub fn symbol(self) -> &'static str {
        match self {
            RunEventType::Start => "START",
            RunEventType::Running => "RUNNING",
            RunEventType::Complete => "COMPLETE",
            RunEventType::Abort => "ABORT",
            RunEventType::Fail => "FAIL",
            RunEventType::Other => "OTHER",
        }
    }

    /// The variant for an Avro/OpenLineage symbol.
    pub fn from_symbol(symbol: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.symbol() == symbol)
    }
}

/// OpenLineage run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Run identifier (a UUID in OpenLineage).
    #[serde(rename = "runId")]
    pub run_id: String,
}

/// OpenLineage job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Job namespace.
    pub namespace: String,
    /// Job name.
    pub name: String,
}

/// OpenLineage dataset reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// Dataset namespace.
    pub namespace: String,
    /// Dataset name.
    pub name: String,
}

/// `data` of `RunEvent`: a subset of OpenLineage's RunEvent, with its
/// camelCase field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunEvent {
    /// Run state transition.
    #[serde(rename = "eventType")]
    pub event_type: RunEventType,
    /// When the transition happened (microsecond precision).
    #[serde(rename = "eventTime", with = "rfc3339")]
    pub event_time: DateTime<Utc>,
    /// The run.
    pub run: Run,
    /// The job the run belongs to.
    pub job: Job,
    /// Datasets read.
    #[serde(default)]
    pub inputs: Vec<Dataset>,
    /// Datasets written.
    #[serde(default)]
    pub outputs: Vec<Dataset>,
    /// URI of the software that produced the OpenLineage event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
}

/// `data` of `OpenLineageEvent`: an OpenLineage 2-0-2 event as sent (see
/// [`crate::openlineage`], which checks and reads it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenLineageEvent {
    /// The event's JSON text (RunEvent, DatasetEvent or JobEvent).
    pub event: String,
}

/// `data` of `DatasetRegistered`: a dataset in the catalog, with its
/// governance facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRegistered {
    /// `dataset:NAMESPACE:NAME`, the lineage graph's node id.
    pub dataset_id: String,
    /// A name people use for it.
    pub name: String,
    /// Licence or terms of use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// Purposes it may be processed for.
    #[serde(default)]
    pub purpose: Vec<String>,
    /// Retention, an ISO 8601 duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Where it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Data contract version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract_version: Option<String>,
}

/// `data` of `UsageRecorded`: metered usage for quota accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageRecorded {
    /// What was used, e.g. `events`, `api_calls`, `storage_bytes`.
    pub usage_kind: String,
    /// How much.
    pub quantity: i64,
    /// Unit of `quantity`, e.g. `bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// `data` of `QuotaAlert`: a tenant reached 80 % or 100 % of a metered
/// budget for a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaAlert {
    /// What is metered, e.g. `embeddings`.
    pub usage_kind: String,
    /// The budget's period, e.g. `2026-02`.
    pub period: String,
    /// 80 (alert) or 100 (stopped).
    pub threshold_percent: i32,
    /// Used in the period when the threshold was reached, in `unit`.
    pub used: i64,
    /// The period's limit, in `unit`.
    pub limit: i64,
    /// Unit of `used` and `limit`, e.g. `tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `alert` (work goes on) or `stopped` (none of `usage_kind` for the
    /// tenant until the period ends or the limit is raised).
    pub action: String,
}

/// `data` of `EnrichmentRecorded`: an enrichment stage's recorded call result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentRecorded {
    /// The stage that made the call, e.g. `embeddings`.
    pub enrichment: String,
    /// blake3 of everything the call depends on; the record key.
    pub content_hash: String,
    /// The answer as JSON text; `None` when the service refused the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why the service refused the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `data` of `ErCandidate`: a candidate pair of records of one entity type
/// and tenant, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErCandidate {
    /// Type of both records.
    pub entity_type: String,
    /// The smaller record id.
    pub left_id: String,
    /// The larger record id.
    pub right_id: String,
    /// `proposed`, `updated` or `retracted`.
    pub status: String,
    /// Comparison score, 0–1.
    pub score: f64,
    /// Grows with every change of the pair.
    pub version: i64,
    /// What proposed the pair (key kinds, `ann`).
    pub methods: Vec<String>,
    /// Similarity per field, 0–1.
    pub features: BTreeMap<String, f64>,
}

/// `data` of `EmbeddingComputed`: an entity's embedding computed for a
/// version, or removed. Vectors only, never the embedded text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingComputed {
    /// Type of the embedded entity.
    pub entity_type: String,
    /// Id of the embedded entity.
    pub entity_id: String,
    /// `computed` or `removed`.
    pub status: String,
    /// The entity version the vector belongs to.
    pub entity_version: i64,
    /// Model id and version (`hashed-ngrams@1`).
    pub model: String,
    /// Length of `vector` (0 when removed).
    pub dims: i32,
    /// The L2-normalised embedding; empty when removed.
    pub vector: Vec<f32>,
    /// blake3 of text + model id + version, hex.
    pub input_hash: String,
}

/// The payload of an event; the variant is the event's kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// An entity was created or changed.
    EntityUpserted(EntityUpserted),
    /// An entity was deleted.
    EntityDeleted(EntityDeleted),
    /// A relationship was created or changed.
    RelationshipUpserted(RelationshipUpserted),
    /// Lineage: a run changed state.
    RunEvent(RunEvent),
    /// Lineage: an OpenLineage event as sent.
    OpenLineageEvent(OpenLineageEvent),
    /// Catalog: a dataset registered.
    DatasetRegistered(DatasetRegistered),
    /// Metered usage.
    UsageRecorded(UsageRecorded),
    /// An enrichment stage's recorded call result.
    EnrichmentRecorded(EnrichmentRecorded),
    /// An entity-resolution candidate pair.
    ErCandidate(ErCandidate),
    /// An entity's embedding computed or removed.
    EmbeddingComputed(EmbeddingComputed),
    /// A tenant reached a threshold of a metered budget.
    QuotaAlert(QuotaAlert),
}

impl EventData {
    /// The kind, which is also the schema's record name.
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::EntityUpserted(_) => "EntityUpserted",
            EventData::EntityDeleted(_) => "EntityDeleted",
            EventData::RelationshipUpserted(_) => "RelationshipUpserted",
            EventData::RunEvent(_) => "RunEvent",
            EventData::OpenLineageEvent(_) => "OpenLineageEvent",
            EventData::DatasetRegistered(_) => "DatasetRegistered",
            EventData::UsageRecorded(_) => "UsageRecorded",
            EventData::EnrichmentRecorded(_) => "EnrichmentRecorded",
            EventData::ErCandidate(_) => "ErCandidate",
            EventData::EmbeddingComputed(_) => "EmbeddingComputed",
            EventData::QuotaAlert(_) => "QuotaAlert",
        }
    }
}

/// One event: metadata plus payload.
///
/// Its serde form is the flat JSON of DESIGN.md. Deserializing goes through
/// the same schema validation as [`decode_json`](crate::codec::decode_json),
/// so a deserialized `Event` is always schema-valid and has an `event_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Metadata.
    pub meta: EventMetadata,
    /// Payload.
    pub data: EventData,
}

impl Event {
    /// An event whose `meta.kind` is set from `data`.
    pub fn new(mut meta: EventMetadata, data: EventData) -> Self {
        meta.kind = data.kind().to_owned();
        Event { meta, data }
    }

    /// The event kind (`EntityUpserted`, ...), taken from the payload.
    pub fn kind(&self) -> &str {
        self.data.kind()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let meta = &self.meta;
        // Fixed key order (the schema's): metadata, then data.
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("event_id", &meta.event_id)?;
        map.serialize_entry("tenant", &meta.tenant)?;
        map.serialize_entry("kind", self.kind())?;
        map.serialize_entry("subject", &meta.subject)?;
        map.serialize_entry("occurred_at", &format_rfc3339(meta.occurred_at))?;
        let optional = [
            ("actor", &meta.actor),
            ("purpose", &meta.purpose),
            ("causation_id", &meta.causation_id),
            ("correlation_id", &meta.correlation_id),
            ("source", &meta.source),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                map.serialize_entry(name, value)?;
            }
        }
        map.serialize_entry("data", &self.data)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        crate::codec::event_from_json_value(value, None).map_err(serde::de::Error::custom)
    }
}

/// RFC 3339 in UTC with `Z`, with as many fractional digits as needed (0, 3 or 6).
pub(crate) fn format_rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Earliest instant an event may carry: 0001-01-01T00:00:00Z, the start of
/// what RFC 3339 can write.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
/// Latest instant an event may carry: 9999-12-31T23:59:59.999999Z.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// The instant `micros` after the epoch, if RFC 3339 can write it (years 1 to
/// 9999). Both decoders refuse other instants, so every decoded event has a
/// JSON form that decodes back to it.
pub(crate) fn datetime_from_micros(micros: i64) -> Option<DateTime<Utc>> {
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        DateTime::from_timestamp_micros(micros)
    } else {
        None
    }
}

/// Drops sub-microsecond precision, which Avro's `timestamp-micros` cannot carry.
pub(crate) fn truncate_to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// serde adapter: RFC 3339 strings, microsecond precision.
mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        at: &DateTime<Utc>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_rfc3339(*at))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(deserializer)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| super::truncate_to_micros(at.with_timezone(&Utc)))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_event_type_symbols_round_trip() {
        for kind in RunEventType::ALL {
            assert_eq!(RunEventType::from_symbol(kind.symbol()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serializes"),
                serde_json::Value::String(kind.symbol().to_owned())
            );
        }
        assert_eq!(RunEventType::from_symbol("start"), None);
    }

    #[test]
    fn new_event_takes_its_kind_from_the_payload() {
        let at = DateTime::from_timestamp(1_769_947_200, 0).expect("valid");
        let event = Event::new(
            EventMetadata::new("acme", "person-42", at),
            EventData::EntityDeleted(EntityDeleted {
                entity_type: "Person".into(),
                version: 4,
            }),
        );
        assert_eq!(event.kind(), "EntityDeleted");
        assert_eq!(event.meta.kind, "EntityDeleted");
    }

    #[test]
    fn attribute_values_deserialize_by_json_type() {
        let parsed: Attributes = serde_json::from_str(
            r#"{"a":null,"b":true,"c":3,"d":2.5,"e":"x","f":18446744073709551615}"#,
        )
        .expect("parses");
        assert_eq!(parsed["a"], AttributeValue::Null);
        assert_eq!(parsed["b"], AttributeValue::Bool(true));
        assert_eq!(parsed["c"], AttributeValue::Long(3));
        assert_eq!(parsed["d"], AttributeValue::Double(2.5));
        assert_eq!(parsed["e"], AttributeValue::String("x".into()));
        assert_eq!(parsed["f"], AttributeValue::Double(18446744073709551615.0));
    }

    #[test]
    fn timestamps_format_as_rfc3339_utc_with_needed_precision() {
        let whole = DateTime::from_timestamp(1_769_947_200, 0).expect("valid");
        assert_eq!(format_rfc3339(whole), "2026-02-01T12:00:00Z");
        let micros = DateTime::from_timestamp_micros(1_769_947_200_123_456).expect("valid");
        assert_eq!(format_rfc3339(micros), "2026-02-01T12:00:00.123456Z");
    }
}
