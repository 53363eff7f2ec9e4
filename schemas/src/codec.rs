//! Encodings of an [`Event`]: Avro single-object encoding and JSON validated
//! against the same Avro schema.
//!
//! Every decoder checks the input against the schema, never panics on
//! untrusted bytes, and returns a [`SchemaError`] whose
//! [`kind`](SchemaError::kind) says how to route it. A decoded event always
//! has an `event_id`: when the producer left it out (or empty) it is derived
//! from the payload with [`derive_event_id`].

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use serde_json::Value as Json;

use crate::avro_guard;
use crate::avro_value::{event_from_avro, event_to_avro};
use crate::error::{ErrorKind, SchemaError};
use crate::json_validate::{describe, json_to_avro};
use crate::registry::{EventSchema, SchemaRegistry};
use crate::types::Event;

pub use crate::event_id::derive_event_id;
pub use crate::ocf::{read_ocf, write_ocf};

/// Content type of the JSON form.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Content type of the Avro single-object encoding.
pub const CONTENT_TYPE_AVRO: &str = "application/vnd.apache.avro+binary";
/// Largest encoded event accepted by the decoders (1 MiB). Events are facts,
/// not blobs: large payloads belong in object storage, referenced by the event.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// First two bytes of every Avro single-object encoding.
pub const AVRO_SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];
/// Marker plus the 8-byte little-endian schema fingerprint.
const AVRO_HEADER_LEN: usize = 10;

/// Decodes one event, choosing the decoder from `content_type` (parameters such
/// as `; charset=utf-8` are ignored) or, without one, by sniffing: the Avro
/// marker `C3 01` means Avro, anything else is taken as JSON.
pub fn decode(bytes: &[u8], content_type: Option<&str>) -> Result<Event, SchemaError> {
    let Some(content_type) = content_type else {
        return if bytes.starts_with(&AVRO_SINGLE_OBJECT_MARKER) {
            decode_avro(bytes)
        } else {
            decode_json(bytes, None)
        };
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        CONTENT_TYPE_JSON => decode_json(bytes, None),
        CONTENT_TYPE_AVRO => decode_avro(bytes),
        _ => Err(SchemaError::new(
            ErrorKind::Unsupported,
            format!("unsupported content type {content_type:?}"),
        )
        .with_hint(format!("use {CONTENT_TYPE_JSON} or {CONTENT_TYPE_AVRO}"))),
    }
}

/// Decodes and validates one JSON event (the flat form of DESIGN.md).
///
/// The schema is the one named by `schema` when given (then `kind`, if
/// present, must name the same schema) and otherwise the one named by `kind`.
pub fn decode_json(bytes: &[u8], schema: Option<&str>) -> Result<Event, SchemaError> {
    event_from_json_value(parse_json(bytes)?, schema)
}

/// The tenant a plain OpenLineage event belongs to when its record names none
/// (no `ig-tenant` header): what `openlineage-python`'s `KafkaTransport` sends.
pub const OPENLINEAGE_DEFAULT_TENANT: &str = "default";

/// Decodes a record's value like [`decode`], and also reads a plain
/// OpenLineage event (no envelope: what any OpenLineage client sends) as an
/// `OpenLineageEvent` of `tenant` — checked against the spec, so a bad one
/// fails with the field at fault.
pub fn decode_record_value(
    bytes: &[u8],
    content_type: Option<&str>,
    tenant: Option<&str>,
) -> Result<Event, SchemaError> {
    let is_json = match content_type {
        Some(ct) => ct
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case(CONTENT_TYPE_JSON),
        None => !bytes.starts_with(&AVRO_SINGLE_OBJECT_MARKER),
    };
    if !is_json {
        return decode(bytes, content_type);
    }
    let json = parse_json(bytes)?;
    if crate::openlineage::looks_like_openlineage(&json) {
        let tenant = tenant.unwrap_or(OPENLINEAGE_DEFAULT_TENANT);
        return crate::openlineage::to_event(&json, tenant);
    }
    event_from_json_value(json, None)
}

/// One JSON value, with errors that say how to fix the input.
fn parse_json(bytes: &[u8]) -> Result<Json, SchemaError> {
    check_size(bytes)?;
    serde_json::from_slice(bytes).map_err(|error| {
        let hint = match error.classify() {
            serde_json::error::Category::Eof => Some("the input ends too early"),
            _ if error.to_string().starts_with("trailing characters") => {
                Some("send one event per message (JSON Lines: one event per line)")
            }
            _ => None,
        };
        let mut error = SchemaError::new(ErrorKind::InvalidJson, format!("invalid JSON: {error}"));
        if let Some(hint) = hint {
            error = error.with_hint(hint);
        }
        error
    })
}

/// The validation behind [`decode_json`] and `Event`'s `Deserialize`.
pub(crate) fn event_from_json_value(
    mut json: Json,
    schema: Option<&str>,
) -> Result<Event, SchemaError> {
    let registry = SchemaRegistry::builtin();
    let Json::Object(object) = &mut json else {
        return Err(SchemaError::new(
            ErrorKind::InvalidJson,
            format!(
                "expected a JSON object (one event), got {}",
                describe(&json)
            ),
        ));
    };
    let kind = match object.get("kind") {
        None | Some(Json::Null) => None,
        Some(Json::String(kind)) => Some(kind.clone()),
        Some(other) => {
            return Err(SchemaError::field(
                "kind",
                format!("expected a string, got {}", describe(other)),
            ));
        }
    };
    let event_schema = match (schema, kind) {
        (Some(name), kind) => {
            let event_schema = registry.get(name).ok_or_else(|| {
                SchemaError::new(ErrorKind::UnknownSchema, format!("unknown schema {name:?}"))
                    .with_hint(format!("known schemas: {}", registry.names_list()))
            })?;
            match kind {
                Some(kind) if registry.get(&kind).map(|s| s.name) != Some(event_schema.name) => {
                    return Err(SchemaError::field(
                        "kind",
                        format!(
                            "kind {kind:?} does not match the schema {:?}",
                            event_schema.name
                        ),
                    ));
                }
                _ => {}
            }
            event_schema
        }
        (None, Some(kind)) => registry.get(&kind).ok_or_else(|| {
            SchemaError::new(
                ErrorKind::UnknownSchema,
                format!("unknown event kind {kind:?}"),
            )
            .at("kind")
            .with_hint(format!("known kinds: {}", registry.names_list()))
        })?,
        (None, None) => {
            return Err(
                SchemaError::field("kind", "missing required field (a string)")
                    .with_hint(format!("set kind to one of {}", registry.names_list())),
            );
        }
    };
    // Normalise what the schema requires but producers may leave out: the kind
    // when the caller named the schema, and an event_id to be derived below.
    object.insert("kind".into(), Json::String(event_schema.name.to_owned()));
    let derive_id = match object.get("event_id") {
        None | Some(Json::Null) => true,
        Some(Json::String(id)) => id.is_empty(),
        Some(_) => false, // the validator reports the wrong type
    };
    if derive_id {
        object.insert("event_id".into(), Json::String(String::new()));
    }
    let value = json_to_avro(&event_schema.avro, event_schema.named_types(), &json)?;
    Ok(with_event_id(event_from_avro(event_schema.name, value)?))
}

/// Compact JSON: metadata in schema order, then `data`; absent optional
/// fields are left out.
pub fn encode_json(event: &Event) -> Vec<u8> {
    // Serializing our own types into a Vec cannot fail: every map key is a
    // string and no Serialize impl returns an error.
    serde_json::to_vec(event).expect("events always serialize to JSON")
}

/// Avro single-object encoding: `C3 01`, the schema's 8-byte little-endian
/// Rabin fingerprint, then the Avro binary datum.
pub fn encode_avro(event: &Event) -> Vec<u8> {
    let schema = schema_of(event);
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(&AVRO_SINGLE_OBJECT_MARKER);
    bytes.extend_from_slice(&schema.fingerprint.to_le_bytes());
    // `event_to_avro` builds exactly the shape of the schema (covered by the
    // round-trip tests), so apache-avro's validation cannot reject it.
    GenericDatumWriter::builder(&schema.avro)
        .build()
        .and_then(|writer| writer.write_value_ref(&mut bytes, &event_to_avro(event)))
        .expect("an Event's Avro value always matches its schema");
    bytes
}

/// Decodes an Avro single-object encoded event.
pub fn decode_avro(bytes: &[u8]) -> Result<Event, SchemaError> {
    check_size(bytes)?;
    if bytes.len() < AVRO_HEADER_LEN {
        return Err(SchemaError::new(
            ErrorKind::CorruptAvro,
            format!(
                "truncated Avro header: {} bytes, expected at least {AVRO_HEADER_LEN}",
                bytes.len()
            ),
        ));
    }
    let (header, body) = bytes.split_at(AVRO_HEADER_LEN);
    if header[..2] != AVRO_SINGLE_OBJECT_MARKER {
        return Err(SchemaError::new(
            ErrorKind::CorruptAvro,
            format!(
                "not Avro single-object encoding: starts with {:02X} {:02X}, expected C3 01",
                header[0], header[1]
            ),
        ));
    }
    let mut fingerprint = [0u8; 8];
    fingerprint.copy_from_slice(&header[2..]);
    let fingerprint = u64::from_le_bytes(fingerprint);
    let registry = SchemaRegistry::builtin();
    let schema = registry.by_fingerprint(fingerprint).ok_or_else(|| {
        SchemaError::new(
            ErrorKind::UnknownSchema,
            format!("unknown schema fingerprint {fingerprint:#018x}"),
        )
        .with_hint(format!(
            "this build knows {}; the producer may use a newer schema",
            registry
                .iter()
                .map(|s| format!("{} ({:#018x})", s.name, s.fingerprint))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let value = decode_datum(schema, body)?;
    Ok(with_event_id(event_from_avro(schema.name, value)?))
}

/// Decodes exactly one datum of `schema` that must fill `body`.
fn decode_datum(schema: &EventSchema, body: &[u8]) -> Result<Value, SchemaError> {
    let corrupt = |reason: String| {
        SchemaError::new(
            ErrorKind::CorruptAvro,
            format!("corrupt {} Avro data: {reason}", schema.name),
        )
    };
    let len = avro_guard::datum_len(&schema.avro, schema.named_types(), body).map_err(corrupt)?;
    if len != body.len() {
        return Err(corrupt(format!(
            "{} unexpected bytes after the event",
            body.len() - len
        )));
    }
    GenericDatumReader::builder(&schema.avro)
        .build()
        .and_then(|reader| reader.read_value(&mut &body[..]))
        .map_err(|error| corrupt(error.to_string()))
}

fn check_size(bytes: &[u8]) -> Result<(), SchemaError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(SchemaError::new(
            ErrorKind::Oversized,
            format!(
                "event is {} bytes, more than the limit of {MAX_EVENT_BYTES}",
                bytes.len()
            ),
        )
        .with_hint("keep large payloads in object storage and reference them from the event"));
    }
    Ok(())
}

/// The registry schema of an event; every `EventData` variant has one.
pub(crate) fn schema_of(event: &Event) -> &'static EventSchema {
    SchemaRegistry::builtin()
        .get(event.kind())
        .expect("every EventData variant has a built-in schema")
}

/// Fills an empty `event_id` with the derived one, so decoded events always
/// carry a dedupe key.
pub(crate) fn with_event_id(mut event: Event) -> Event {
    if event.meta.event_id.is_empty() {
        event.meta.event_id = derive_event_id(&event);
    }
    event
}
