//! [`Event`] ↔ Avro [`Value`] in the shape of our schemas.
//!
//! Both decoders end here: Avro bytes are decoded by apache-avro into a
//! `Value`, and JSON is validated into one by [`crate::json_validate`], so one
//! conversion decides what an `Event` can hold.

use std::collections::{BTreeMap, HashMap};

use apache_avro::types::Value;
use chrono::{DateTime, Utc};

use crate::error::SchemaError;
use crate::types::{
    AttributeValue, Attributes, Dataset, DatasetRegistered, EmbeddingComputed, EnrichmentRecorded,
    EntityDeleted, EntityUpserted, ErCandidate, Event, EventData, EventMetadata, Job,
    OpenLineageEvent, QuotaAlert, RelationshipUpserted, Run, RunEvent, RunEventType, UsageRecorded,
    datetime_from_micros,
};

// Union branch indexes, fixed by the order in the `.avsc` files.
const NULL_BRANCH: u32 = 0;
const STRING_OF_OPTIONAL: u32 = 1;
const ATTR_BOOLEAN: u32 = 1;
const ATTR_LONG: u32 = 2;
const ATTR_DOUBLE: u32 = 3;
const ATTR_STRING: u32 = 4;

/// The Avro value of `event` under its kind's schema.
pub(crate) fn event_to_avro(event: &Event) -> Value {
    let meta = &event.meta;
    Value::Record(vec![
        ("event_id".into(), Value::String(meta.event_id.clone())),
        ("tenant".into(), Value::String(meta.tenant.clone())),
        ("kind".into(), Value::String(event.kind().to_owned())),
        ("subject".into(), Value::String(meta.subject.clone())),
        (
            "occurred_at".into(),
            Value::TimestampMicros(meta.occurred_at.timestamp_micros()),
        ),
        ("actor".into(), optional_string(&meta.actor)),
        ("purpose".into(), optional_string(&meta.purpose)),
        ("causation_id".into(), optional_string(&meta.causation_id)),
        (
            "correlation_id".into(),
            optional_string(&meta.correlation_id),
        ),
        ("source".into(), optional_string(&meta.source)),
        ("data".into(), data_to_avro(&event.data)),
    ])
}

fn data_to_avro(data: &EventData) -> Value {
    match data {
        EventData::EntityUpserted(d) => Value::Record(vec![
            ("entity_type".into(), Value::String(d.entity_type.clone())),
            ("version".into(), Value::Long(d.version)),
            ("attributes".into(), attributes_to_avro(&d.attributes)),
        ]),
        EventData::EntityDeleted(d) => Value::Record(vec![
            ("entity_type".into(), Value::String(d.entity_type.clone())),
            ("version".into(), Value::Long(d.version)),
        ]),
        EventData::RelationshipUpserted(d) => Value::Record(vec![
            ("rel_id".into(), Value::String(d.rel_id.clone())),
            ("src".into(), Value::String(d.src.clone())),
            ("dst".into(), Value::String(d.dst.clone())),
            ("rel_type".into(), Value::String(d.rel_type.clone())),
            ("version".into(), Value::Long(d.version)),
            ("attributes".into(), attributes_to_avro(&d.attributes)),
        ]),
        EventData::RunEvent(d) => Value::Record(vec![
            (
                "eventType".into(),
                Value::Enum(
                    RunEventType::ALL
                        .iter()
                        .position(|kind| *kind == d.event_type)
                        .unwrap_or_default() as u32,
                    d.event_type.symbol().to_owned(),
                ),
            ),
            (
                "eventTime".into(),
                Value::TimestampMicros(d.event_time.timestamp_micros()),
            ),
            (
                "run".into(),
                Value::Record(vec![("runId".into(), Value::String(d.run.run_id.clone()))]),
            ),
            (
                "job".into(),
                Value::Record(vec![
                    ("namespace".into(), Value::String(d.job.namespace.clone())),
                    ("name".into(), Value::String(d.job.name.clone())),
                ]),
            ),
            ("inputs".into(), datasets_to_avro(&d.inputs)),
            ("outputs".into(), datasets_to_avro(&d.outputs)),
            ("producer".into(), optional_string(&d.producer)),
        ]),
        EventData::UsageRecorded(d) => Value::Record(vec![
            ("usage_kind".into(), Value::String(d.usage_kind.clone())),
            ("quantity".into(), Value::Long(d.quantity)),
            ("unit".into(), optional_string(&d.unit)),
        ]),
        EventData::DatasetRegistered(d) => Value::Record(vec![
            ("dataset_id".into(), Value::String(d.dataset_id.clone())),
            ("name".into(), Value::String(d.name.clone())),
            ("license".into(), optional_string(&d.license)),
            (
                "purpose".into(),
                Value::Array(d.purpose.iter().cloned().map(Value::String).collect()),
            ),
            ("retention".into(), optional_string(&d.retention)),
            ("region".into(), optional_string(&d.region)),
            (
                "contract_version".into(),
                optional_string(&d.contract_version),
            ),
        ]),
        EventData::OpenLineageEvent(d) => {
            Value::Record(vec![("event".into(), Value::String(d.event.clone()))])
        }
        EventData::QuotaAlert(d) => Value::Record(vec![
            ("usage_kind".into(), Value::String(d.usage_kind.clone())),
            ("period".into(), Value::String(d.period.clone())),
            ("threshold_percent".into(), Value::Int(d.threshold_percent)),
            ("used".into(), Value::Long(d.used)),
            ("limit".into(), Value::Long(d.limit)),
            ("unit".into(), optional_string(&d.unit)),
            ("action".into(), Value::String(d.action.clone())),
        ]),
        EventData::EnrichmentRecorded(d) => Value::Record(vec![
            ("enrichment".into(), Value::String(d.enrichment.clone())),
            ("content_hash".into(), Value::String(d.content_hash.clone())),
            ("result".into(), optional_string(&d.result)),
            ("error".into(), optional_string(&d.error)),
        ]),
        EventData::EmbeddingComputed(d) => Value::Record(vec![
            ("entity_type".into(), Value::String(d.entity_type.clone())),
            ("entity_id".into(), Value::String(d.entity_id.clone())),
            ("status".into(), Value::String(d.status.clone())),
            ("entity_version".into(), Value::Long(d.entity_version)),
            ("model".into(), Value::String(d.model.clone())),
            ("dims".into(), Value::Int(d.dims)),
            (
                "vector".into(),
                Value::Array(d.vector.iter().map(|x| Value::Float(*x)).collect()),
            ),
            ("input_hash".into(), Value::String(d.input_hash.clone())),
        ]),
        EventData::ErCandidate(d) => Value::Record(vec![
            ("entity_type".into(), Value::String(d.entity_type.clone())),
            ("left_id".into(), Value::String(d.left_id.clone())),
            ("right_id".into(), Value::String(d.right_id.clone())),
            ("status".into(), Value::String(d.status.clone())),
            ("score".into(), Value::Double(d.score)),
            ("version".into(), Value::Long(d.version)),
            (
                "methods".into(),
                Value::Array(d.methods.iter().cloned().map(Value::String).collect()),
            ),
            (
                "features".into(),
                Value::Map(
                    d.features
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::Double(*v)))
                        .collect(),
                ),
            ),
        ]),
    }
}

fn optional_string(value: &Option<String>) -> Value {
    match value {
        None => Value::Union(NULL_BRANCH, Box::new(Value::Null)),
        Some(text) => Value::Union(STRING_OF_OPTIONAL, Box::new(Value::String(text.clone()))),
    }
}

fn attributes_to_avro(attributes: &Attributes) -> Value {
    let map: HashMap<String, Value> = attributes
        .iter()
        .map(|(name, value)| {
            let branch = match value {
                AttributeValue::Null => Value::Union(NULL_BRANCH, Box::new(Value::Null)),
                AttributeValue::Bool(b) => Value::Union(ATTR_BOOLEAN, Box::new(Value::Boolean(*b))),
                AttributeValue::Long(n) => Value::Union(ATTR_LONG, Box::new(Value::Long(*n))),
                AttributeValue::Double(x) => Value::Union(ATTR_DOUBLE, Box::new(Value::Double(*x))),
                AttributeValue::String(s) => {
                    Value::Union(ATTR_STRING, Box::new(Value::String(s.clone())))
                }
            };
            (name.clone(), branch)
        })
        .collect();
    Value::Map(map)
}

fn datasets_to_avro(datasets: &[Dataset]) -> Value {
    Value::Array(
        datasets
            .iter()
            .map(|dataset| {
                Value::Record(vec![
                    ("namespace".into(), Value::String(dataset.namespace.clone())),
                    ("name".into(), Value::String(dataset.name.clone())),
                ])
            })
            .collect(),
    )
}

/// The event in an Avro value of the schema `kind`.
///
/// The value has already been checked against the schema (by apache-avro or
/// by the JSON validator), so errors here mean a value the schema allows but
/// an `Event` cannot hold (a non-finite double, an out-of-range timestamp) or a
/// resolved value of unexpected shape.
pub(crate) fn event_from_avro(kind: &str, value: Value) -> Result<Event, SchemaError> {
    let mut top = Fields::of(value, "")?;
    let meta = EventMetadata {
        event_id: top.string("event_id")?,
        tenant: top.string("tenant")?,
        kind: top.string("kind")?,
        subject: top.string("subject")?,
        occurred_at: top.timestamp("occurred_at")?,
        actor: top.optional_string("actor")?,
        purpose: top.optional_string("purpose")?,
        causation_id: top.optional_string("causation_id")?,
        correlation_id: top.optional_string("correlation_id")?,
        source: top.optional_string("source")?,
    };
    if meta.kind != kind {
        return Err(SchemaError::field(
            "kind",
            format!("kind is {:?} but the schema is {kind:?}", meta.kind),
        ));
    }
    let mut data = Fields::of(top.take("data")?, "data")?;
    let data = match kind {
        "EntityUpserted" => EventData::EntityUpserted(EntityUpserted {
            entity_type: data.string("entity_type")?,
            version: data.long("version")?,
            attributes: data.attributes("attributes")?,
        }),
        "EntityDeleted" => EventData::EntityDeleted(EntityDeleted {
            entity_type: data.string("entity_type")?,
            version: data.long("version")?,
        }),
        "RelationshipUpserted" => EventData::RelationshipUpserted(RelationshipUpserted {
            rel_id: data.string("rel_id")?,
            src: data.string("src")?,
            dst: data.string("dst")?,
            rel_type: data.string("rel_type")?,
            version: data.long("version")?,
            attributes: data.attributes("attributes")?,
        }),
        "RunEvent" => EventData::RunEvent(RunEvent {
            event_type: data.run_event_type("eventType")?,
            event_time: data.timestamp("eventTime")?,
            run: {
                let mut run = Fields::of(data.take("run")?, "data.run")?;
                Run {
                    run_id: run.string("runId")?,
                }
            },
            job: {
                let mut job = Fields::of(data.take("job")?, "data.job")?;
                Job {
                    namespace: job.string("namespace")?,
                    name: job.string("name")?,
                }
            },
            inputs: data.datasets("inputs")?,
            outputs: data.datasets("outputs")?,
            producer: data.optional_string("producer")?,
        }),
        "UsageRecorded" => EventData::UsageRecorded(UsageRecorded {
            usage_kind: data.string("usage_kind")?,
            quantity: data.long("quantity")?,
            unit: data.optional_string("unit")?,
        }),
        "DatasetRegistered" => EventData::DatasetRegistered(DatasetRegistered {
            dataset_id: data.string("dataset_id")?,
            name: data.string("name")?,
            license: data.optional_string("license")?,
            purpose: data.strings("purpose")?,
            retention: data.optional_string("retention")?,
            region: data.optional_string("region")?,
            contract_version: data.optional_string("contract_version")?,
        }),
        "OpenLineageEvent" => {
            let event = data.string("event")?;
            // Decoded events are valid events: the OpenLineage text too.
            crate::openlineage::parse_str(&event).map_err(|e| e.within("data.event"))?;
            EventData::OpenLineageEvent(OpenLineageEvent { event })
        }
        "QuotaAlert" => EventData::QuotaAlert(QuotaAlert {
            usage_kind: data.string("usage_kind")?,
            period: data.string("period")?,
            threshold_percent: data.int("threshold_percent")?,
            used: data.long("used")?,
            limit: data.long("limit")?,
            unit: data.optional_string("unit")?,
            action: data.string("action")?,
        }),
        "EnrichmentRecorded" => EventData::EnrichmentRecorded(EnrichmentRecorded {
            enrichment: data.string("enrichment")?,
            content_hash: data.string("content_hash")?,
            result: data.optional_string("result")?,
            error: data.optional_string("error")?,
        }),
        "EmbeddingComputed" => EventData::EmbeddingComputed(EmbeddingComputed {
            entity_type: data.string("entity_type")?,
            entity_id: data.string("entity_id")?,
            status: data.string("status")?,
            entity_version: data.long("entity_version")?,
            model: data.string("model")?,
            dims: data.int("dims")?,
            vector: data.floats("vector")?,
            input_hash: data.string("input_hash")?,
        }),
        "ErCandidate" => EventData::ErCandidate(ErCandidate {
            entity_type: data.string("entity_type")?,
            left_id: data.string("left_id")?,
            right_id: data.string("right_id")?,
            status: data.string("status")?,
            score: data.double("score")?,
            version: data.long("version")?,
            methods: data.strings("methods")?,
            features: data.doubles("features")?,
        }),
        other => {
            return Err(SchemaError::new(
                crate::ErrorKind::UnknownSchema,
                format!("no event type for schema {other:?}"),
            ));
        }
    };
    Ok(Event { meta, data })
}

/// The fields of one record value, taken out by name.
struct Fields {
    path: String,
    fields: Vec<(String, Value)>,
}

impl Fields {
    fn of(value: Value, path: &str) -> Result<Self, SchemaError> {
        match value {
            Value::Record(fields) => Ok(Fields {
                path: path.to_owned(),
                fields,
            }),
            other => Err(SchemaError::field(
                path,
                format!("expected a record, got {}", avro_type(&other)),
            )),
        }
    }

    fn path(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, SchemaError> {
        self.fields
            .iter_mut()
            .find(|(field, _)| field == name)
            .map(|(_, value)| std::mem::replace(value, Value::Null))
            .ok_or_else(|| SchemaError::field(self.path(name), "missing required field"))
    }

    fn mismatch(&self, name: &str, expected: &str, got: &Value) -> SchemaError {
        SchemaError::field(
            self.path(name),
            format!("expected {expected}, got {}", avro_type(got)),
        )
    }

    fn string(&mut self, name: &str) -> Result<String, SchemaError> {
        match self.take(name)? {
            Value::String(text) => Ok(text),
            other => Err(self.mismatch(name, "a string", &other)),
        }
    }

    fn long(&mut self, name: &str) -> Result<i64, SchemaError> {
        match self.take(name)? {
            Value::Long(n) => Ok(n),
            Value::Int(n) => Ok(n.into()),
            other => Err(self.mismatch(name, "a long", &other)),
        }
    }

    fn int(&mut self, name: &str) -> Result<i32, SchemaError> {
        match self.take(name)? {
            Value::Int(n) => Ok(n),
            other => Err(self.mismatch(name, "an int", &other)),
        }
    }

    fn double(&mut self, name: &str) -> Result<f64, SchemaError> {
        let path = self.path(name);
        match self.take(name)? {
            Value::Double(x) => finite_double(x).map_err(|m| SchemaError::field(path, m)),
            Value::Float(x) => finite_double(x.into()).map_err(|m| SchemaError::field(path, m)),
            other => Err(self.mismatch(name, "a double", &other)),
        }
    }

    fn floats(&mut self, name: &str) -> Result<Vec<f32>, SchemaError> {
        let items = match self.take(name)? {
            Value::Array(items) => items,
            other => return Err(self.mismatch(name, "an array", &other)),
        };
        let path = self.path(name);
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                let x = match item {
                    Value::Float(x) => Ok(x),
                    Value::Double(x) => Ok(x as f32),
                    other => Err(format!("expected a float, got {}", avro_type(&other))),
                }
                .and_then(|x| {
                    if x.is_finite() {
                        Ok(x)
                    } else {
                        Err("a vector holds finite floats only".to_string())
                    }
                })
                .map_err(|m| SchemaError::field(format!("{path}[{i}]"), m))?;
                Ok(x)
            })
            .collect()
    }

    fn strings(&mut self, name: &str) -> Result<Vec<String>, SchemaError> {
        let items = match self.take(name)? {
            Value::Array(items) => items,
            other => return Err(self.mismatch(name, "an array", &other)),
        };
        let path = self.path(name);
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s),
                other => Err(SchemaError::field(
                    format!("{path}[{i}]"),
                    format!("expected a string, got {}", avro_type(&other)),
                )),
            })
            .collect()
    }

    fn doubles(&mut self, name: &str) -> Result<BTreeMap<String, f64>, SchemaError> {
        let entries = match self.take(name)? {
            Value::Map(entries) => entries,
            other => return Err(self.mismatch(name, "a map", &other)),
        };
        let path = self.path(name);
        entries
            .into_iter()
            .map(|(key, value)| {
                let x = match value {
                    Value::Double(x) => finite_double(x),
                    Value::Float(x) => finite_double(x.into()),
                    other => Err(format!("expected a double, got {}", avro_type(&other))),
                }
                .map_err(|m| SchemaError::field(format!("{path}.{key}"), m))?;
                Ok((key, x))
            })
            .collect()
    }

    fn timestamp(&mut self, name: &str) -> Result<DateTime<Utc>, SchemaError> {
        match self.take(name)? {
            Value::TimestampMicros(micros) | Value::Long(micros) => datetime_from_micros(micros)
                .ok_or_else(|| SchemaError::field(self.path(name), out_of_range(micros))),
            other => Err(self.mismatch(name, "a timestamp-micros", &other)),
        }
    }

    fn optional_string(&mut self, name: &str) -> Result<Option<String>, SchemaError> {
        match unwrap_union(self.take(name)?) {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text)),
            other => Err(self.mismatch(name, "null or a string", &other)),
        }
    }

    fn run_event_type(&mut self, name: &str) -> Result<RunEventType, SchemaError> {
        match self.take(name)? {
            Value::Enum(_, symbol) | Value::String(symbol) => RunEventType::from_symbol(&symbol)
                .ok_or_else(|| {
                    SchemaError::field(
                        self.path(name),
                        format!("{symbol:?} is not a RunEventType symbol"),
                    )
                }),
            other => Err(self.mismatch(name, "an enum symbol", &other)),
        }
    }

    fn attributes(&mut self, name: &str) -> Result<Attributes, SchemaError> {
        let entries = match self.take(name)? {
            Value::Map(entries) => entries,
            other => return Err(self.mismatch(name, "a map", &other)),
        };
        let path = self.path(name);
        entries
            .into_iter()
            .map(|(key, value)| {
                let value = attribute_from_avro(value)
                    .map_err(|message| SchemaError::field(format!("{path}.{key}"), message))?;
                Ok((key, value))
            })
            .collect()
    }

    fn datasets(&mut self, name: &str) -> Result<Vec<Dataset>, SchemaError> {
        let items = match self.take(name)? {
            Value::Array(items) => items,
            other => return Err(self.mismatch(name, "an array", &other)),
        };
        let path = self.path(name);
        items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                let mut dataset = Fields::of(item, &format!("{path}[{index}]"))?;
                Ok(Dataset {
                    namespace: dataset.string("namespace")?,
                    name: dataset.string("name")?,
                })
            })
            .collect()
    }
}

fn unwrap_union(value: Value) -> Value {
    match value {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}

fn attribute_from_avro(value: Value) -> Result<AttributeValue, String> {
    match unwrap_union(value) {
        Value::Null => Ok(AttributeValue::Null),
        Value::Boolean(b) => Ok(AttributeValue::Bool(b)),
        Value::Long(n) => Ok(AttributeValue::Long(n)),
        Value::Int(n) => Ok(AttributeValue::Long(n.into())),
        Value::Double(x) => finite(x),
        Value::Float(x) => finite(x.into()),
        Value::String(s) => Ok(AttributeValue::String(s)),
        other => Err(format!(
            "expected null, boolean, long, double or string, got {}",
            avro_type(&other)
        )),
    }
}

/// NaN and infinities are valid Avro doubles but have no JSON form; refusing
/// them keeps the two encodings of an event equivalent.
fn finite(x: f64) -> Result<AttributeValue, String> {
    if x.is_finite() {
        Ok(AttributeValue::Double(x))
    } else {
        Err(format!(
            "{x} is not a finite number; JSON cannot represent it"
        ))
    }
}

/// A finite double (see [`finite`]).
fn finite_double(x: f64) -> Result<f64, String> {
    match finite(x)? {
        AttributeValue::Double(x) => Ok(x),
        _ => Err("not a double".into()),
    }
}

/// Message for a timestamp outside what events may carry.
pub(crate) fn out_of_range(micros: i64) -> String {
    format!("timestamp {micros} µs since the epoch is outside years 0001 to 9999")
}

/// Short name of a value's Avro type, for messages.
fn avro_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "string",
        Value::Fixed(..) => "fixed",
        Value::Enum(..) => "enum",
        Value::Union(..) => "union",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Record(_) => "record",
        Value::TimestampMicros(_) => "timestamp-micros",
        _ => "logical value",
    }
}
