//! A topic as an Arrow table: one row per record, with the event decoded
//! through the schemas into typed columns.
//!
//! Event topics (everything but changefeeds, DLQs and Conductor's own
//! bookkeeping topics) get
//! `partition, offset, timestamp, key`, the metadata fields
//! (`event_id, tenant, kind, subject, occurred_at, actor, purpose,
//! causation_id, correlation_id, source`), the common payload fields of the
//! event kinds (`entity_type, version, rel_id, src, dst, rel_type,
//! usage_kind, quantity, unit`; null where a kind lacks one), the whole
//! payload as JSON text (`data`), and `decode_error` — a record that does
//! not decode is a row with the reason there, never a failed query.
//! Other topics get `partition, offset, timestamp, key, value` (text).

use super::SqlError;
use conductor_engine::envelope::decode_event;
use conductor_engine::log::{Log, StoredRecord};
use datafusion::arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;
use std::sync::Arc;

/// Records read per log call.
const READ_CHUNK: usize = 10_000;

/// Metadata columns, in order (all text but `occurred_at`).
const META_TEXT: &[&str] = &["event_id", "tenant", "kind", "subject"];
const META_OPTIONAL: &[&str] = &[
    "actor",
    "purpose",
    "causation_id",
    "correlation_id",
    "source",
];
/// Payload fields shared by event kinds, lifted into their own columns.
const DATA_TEXT: &[&str] = &[
    "entity_type",
    "rel_id",
    "src",
    "dst",
    "rel_type",
    "usage_kind",
    "unit",
];
const DATA_INT: &[&str] = &["version", "quantity"];

/// Whether a topic holds schema'd events (see the module doc).
pub fn holds_events(topic: &str) -> bool {
    !(topic.starts_with("ig.changefeed.")
        || topic.starts_with("ig.dlq.")
        || topic.starts_with("conductor."))
}

fn position_fields() -> Vec<Field> {
    vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("key", DataType::Utf8, true),
    ]
}

/// The Arrow schema of a topic's table.
pub fn topic_schema(topic: &str) -> SchemaRef {
    let mut fields = position_fields();
    if !holds_events(topic) {
        fields.push(Field::new("value", DataType::Utf8, true));
        return Arc::new(Schema::new(fields));
    }
    for name in META_TEXT {
        fields.push(Field::new(*name, DataType::Utf8, true));
    }
    fields.push(Field::new(
        "occurred_at",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        true,
    ));
    for name in META_OPTIONAL.iter().chain(DATA_TEXT) {
        fields.push(Field::new(*name, DataType::Utf8, true));
    }
    for name in DATA_INT {
        fields.push(Field::new(*name, DataType::Int64, true));
    }
    fields.push(Field::new("data", DataType::Utf8, true));
    fields.push(Field::new("decode_error", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Column builders of one batch.
struct Builders {
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    key: StringBuilder,
    /// Raw topics: `value`. Event topics: meta text, optional meta, data text.
    text: Vec<StringBuilder>,
    occurred_at: TimestampMicrosecondBuilder,
    ints: Vec<Int64Builder>,
    data: StringBuilder,
    decode_error: StringBuilder,
}

impl Builders {
    fn new(events: bool) -> Self {
        let texts = if events {
            META_TEXT.len() + META_OPTIONAL.len() + DATA_TEXT.len()
        } else {
            1
        };
        Builders {
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            key: StringBuilder::new(),
            text: (0..texts).map(|_| StringBuilder::new()).collect(),
            occurred_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            ints: DATA_INT.iter().map(|_| Int64Builder::new()).collect(),
            data: StringBuilder::new(),
            decode_error: StringBuilder::new(),
        }
    }

    fn push_raw(&mut self, r: &StoredRecord) {
        self.push_position(r);
        self.text[0].append_value(String::from_utf8_lossy(&r.record.value));
    }

    fn push_position(&mut self, r: &StoredRecord) {
        self.partition.append_value(r.partition);
        self.offset.append_value(r.offset);
        self.timestamp.append_value(r.record.timestamp_ms);
        match &r.record.key {
            Some(k) => self.key.append_value(String::from_utf8_lossy(k)),
            None => self.key.append_null(),
        }
    }

    fn push_event(&mut self, r: &StoredRecord) {
        self.push_position(r);
        let event = match decode_event(&r.record) {
            Ok(e) => e,
            Err(e) => {
                for b in &mut self.text {
                    b.append_null();
                }
                self.occurred_at.append_null();
                for b in &mut self.ints {
                    b.append_null();
                }
                self.data.append_null();
                self.decode_error.append_value(e.to_string());
                return;
            }
        };
        let m = &event.meta;
        let data = serde_json::to_value(&event.data).unwrap_or(Value::Null);
        // In the order of `text`: META_TEXT, META_OPTIONAL, DATA_TEXT.
        let texts = [
            Some(m.event_id.as_str()),
            Some(m.tenant.as_str()),
            Some(m.kind.as_str()),
            Some(m.subject.as_str()),
        ]
        .into_iter()
        .chain(
            [
                &m.actor,
                &m.purpose,
                &m.causation_id,
                &m.correlation_id,
                &m.source,
            ]
            .map(|v| v.as_deref()),
        )
        .chain(
            DATA_TEXT
                .iter()
                .map(|name| data.get(*name).and_then(Value::as_str)),
        );
        for (b, v) in self.text.iter_mut().zip(texts) {
            b.append_option(v);
        }
        self.occurred_at
            .append_value(m.occurred_at.timestamp_micros());
        for (b, name) in self.ints.iter_mut().zip(DATA_INT) {
            b.append_option(data.get(*name).and_then(Value::as_i64));
        }
        self.data.append_value(data.to_string());
        self.decode_error.append_null();
    }

    fn finish(mut self, schema: &SchemaRef, events: bool) -> Result<RecordBatch, String> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.key.finish()),
        ];
        if !events {
            columns.push(Arc::new(self.text[0].finish()));
        } else {
            let mut text: Vec<ArrayRef> = self
                .text
                .iter_mut()
                .map(|b| Arc::new(b.finish()) as ArrayRef)
                .collect();
            let rest = text.split_off(META_TEXT.len());
            columns.extend(text);
            columns.push(Arc::new(self.occurred_at.finish()));
            columns.extend(rest);
            for mut b in self.ints {
                columns.push(Arc::new(b.finish()));
            }
            columns.push(Arc::new(self.data.finish()));
            columns.push(Arc::new(self.decode_error.finish()));
        }
        RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
    }
}

/// Reads a whole topic (every partition, from its low watermark) into
/// record batches. Partitions are decoded in parallel.
pub async fn read_topic(
    log: Arc<dyn Log>,
    topic: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
    let schema = topic_schema(topic);
    let events = holds_events(topic);
    let description = log.describe_topic(topic).await?;
    let mut tasks = Vec::new();
    for p in description.partitions {
        let (log, topic, schema) = (log.clone(), topic.to_string(), schema.clone());
        tasks.push(tokio::spawn(async move {
            let mut batches = Vec::new();
            let mut at = p.low_watermark;
            while at < p.high_watermark {
                let records = log.read(&topic, p.partition, at, READ_CHUNK).await?;
                let Some(last) = records.last() else { break };
                at = last.offset + 1;
                let schema = schema.clone();
                // Decoding is CPU work: off the async threads.
                let batch = tokio::task::spawn_blocking(move || {
                    let mut b = Builders::new(events);
                    for r in &records {
                        if events {
                            b.push_event(r);
                        } else {
                            b.push_raw(r);
                        }
                    }
                    b.finish(&schema, events)
                })
                .await
                .map_err(|e| SqlError::Internal(format!("decoding {topic} failed: {e}")))?
                .map_err(|e| {
                    SqlError::Internal(format!("building the Arrow batch of {topic}: {e}"))
                })?;
                batches.push(batch);
            }
            Ok::<_, SqlError>(batches)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.extend(
            t.await
                .map_err(|e| SqlError::Internal(format!("reading {topic} failed: {e}")))??,
        );
    }
    Ok((schema, out))
}
