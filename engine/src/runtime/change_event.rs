//! The change event of one applied upsert: its JSON value and headers.
//!
//! One is built for every change a fold applies, so it is on the hot path
//! of every topology: the JSON is written straight from borrowed parts of
//! the upsert, without building a `serde_json::Value` tree (which cost a map
//! allocation per object and a deep copy of the row's JSON attributes).
//! Objects are written with their keys in sorted order, byte for byte what
//! the `Value` of the same event would print, so the format is unchanged.

use super::config::TopologyConfig;
use crate::envelope::{HEADER_CONTENT_TYPE, HEADER_EVENT_ID, HEADER_TENANT};
use crate::log::{Header, SourcePosition};
use crate::projection::{RowUpsert, SqlValue, TableSpec};
use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Serialize, Serializer};

pub const HEADER_CHANGE_ID: &str = "ig-change-id";
pub const HEADER_TABLE: &str = "ig-table";

/// Stable id of a change: the same input, the same change, in every run.
pub fn change_id(topology: &str, source: &SourcePosition, index: u32) -> String {
    let text = format!(
        "{topology}\n{}\n{}\n{}\n{index}",
        source.topic, source.partition, source.offset
    );
    format!("ch-{}", &blake3::hash(text.as_bytes()).to_hex()[..32])
}

/// The change event of `upsert` (the `index`th output of the record at
/// `source`), as JSON bytes, and its headers.
pub fn change_event(
    config: &TopologyConfig,
    spec: Option<&TableSpec>,
    upsert: &RowUpsert,
    event_id: &str,
    source: &SourcePosition,
    index: u32,
) -> (Vec<u8>, Vec<Header>) {
    let id = change_id(&config.name, source, index);
    let tenant = upsert.key.first().map_or("", String::as_str);
    let event = ChangeEvent {
        change_id: &id,
        event_id,
        spec,
        upsert,
        topology: &config.name,
        tenant,
        source,
    };
    // Serializing borrowed strings, numbers and `SqlValue`s cannot fail.
    let value = serde_json::to_vec(&event).unwrap_or_default();
    let headers = vec![
        Header {
            key: HEADER_CHANGE_ID.into(),
            value: id.into_bytes(),
        },
        Header {
            key: HEADER_TENANT.into(),
            value: tenant.as_bytes().to_vec(),
        },
        Header {
            key: HEADER_TABLE.into(),
            value: upsert.table.as_bytes().to_vec(),
        },
        Header {
            key: HEADER_EVENT_ID.into(),
            value: event_id.as_bytes().to_vec(),
        },
        Header {
            key: HEADER_CONTENT_TYPE.into(),
            value: b"application/json".to_vec(),
        },
    ];
    (value, headers)
}

struct ChangeEvent<'a> {
    change_id: &'a str,
    event_id: &'a str,
    spec: Option<&'a TableSpec>,
    upsert: &'a RowUpsert,
    topology: &'a str,
    tenant: &'a str,
    source: &'a SourcePosition,
}

impl Serialize for ChangeEvent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let u = self.upsert;
        // Fields in sorted order (see the module doc).
        let mut m = s.serialize_struct("ChangeEvent", 10)?;
        m.serialize_field("change_id", self.change_id)?;
        m.serialize_field("event_id", self.event_id)?;
        match self.spec {
            Some(spec) => {
                let key = spec
                    .key
                    .iter()
                    .zip(&u.key)
                    .map(|(c, k)| (c.name, Cell::Str(k)));
                m.serialize_field("key", &SortedObject::new(key))?;
            }
            None => m.serialize_field("key", &u.key)?,
        }
        m.serialize_field("op", if u.deleted { "delete" } else { "upsert" })?;
        match self.spec {
            Some(spec) => m.serialize_field("row", &SortedObject::row(spec, u))?,
            None => m.serialize_field("row", &())?,
        }
        m.serialize_field("source", &Source(self.source))?;
        m.serialize_field("table", u.table)?;
        m.serialize_field("tenant", self.tenant)?;
        m.serialize_field("topology", self.topology)?;
        m.serialize_field("version", &u.version)?;
        m.end()
    }
}

struct Source<'a>(&'a SourcePosition);

impl Serialize for Source<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("Source", 3)?;
        m.serialize_field("offset", &self.0.offset)?;
        m.serialize_field("partition", &self.0.partition)?;
        m.serialize_field("topic", &self.0.topic)?;
        m.end()
    }
}

/// A borrowed value of a JSON object.
enum Cell<'a> {
    Str(&'a str),
    Int(i64),
    Sql(&'a SqlValue),
}

/// A JSON object from borrowed entries, written with its keys sorted.
struct SortedObject<'a>(Vec<(&'a str, Cell<'a>)>);

impl<'a> SortedObject<'a> {
    fn new(entries: impl Iterator<Item = (&'a str, Cell<'a>)>) -> Self {
        let mut v: Vec<_> = entries.collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        // A later entry of the same name wins, as in a map.
        v.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                std::mem::swap(later, earlier);
            }
            same
        });
        SortedObject(v)
    }

    /// The row as the projection stores it: key columns, `version`, columns.
    fn row(spec: &'a TableSpec, u: &'a RowUpsert) -> Self {
        let key = spec
            .key
            .iter()
            .zip(&u.key)
            .map(|(c, k)| (c.name, Cell::Str(k)));
        let version = std::iter::once(("version", Cell::Int(u.version)));
        let values = spec
            .columns
            .iter()
            .zip(&u.values)
            .map(|(c, v)| (c.name, Cell::Sql(v)));
        Self::new(key.chain(version).chain(values))
    }
}

impl Serialize for SortedObject<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, cell) in &self.0 {
            match cell {
                Cell::Str(v) => m.serialize_entry(name, v)?,
                Cell::Int(v) => m.serialize_entry(name, v)?,
                Cell::Sql(v) => m.serialize_entry(name, v)?,
            }
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::{ColumnSpec, ColumnType};

    fn col(name: &'static str, ty: ColumnType) -> ColumnSpec {
        ColumnSpec {
            name,
            ty,
            nullable: true,
        }
    }

    /// What the change event was when built as a `serde_json::Value`: the
    /// streamed one must print byte for byte the same.
    fn as_value(
        config: &TopologyConfig,
        spec: Option<&TableSpec>,
        upsert: &RowUpsert,
        event_id: &str,
        source: &SourcePosition,
        index: u32,
    ) -> Vec<u8> {
        let (key, row) = match spec {
            Some(spec) => {
                let key: serde_json::Map<String, serde_json::Value> = spec
                    .key
                    .iter()
                    .zip(&upsert.key)
                    .map(|(c, k)| (c.name.to_string(), k.clone().into()))
                    .collect();
                (serde_json::Value::Object(key), upsert.to_json(spec))
            }
            None => (serde_json::json!(upsert.key), serde_json::Value::Null),
        };
        let value = serde_json::json!({
            "change_id": change_id(&config.name, source, index),
            "topology": config.name,
            "table": upsert.table,
            "op": if upsert.deleted { "delete" } else { "upsert" },
            "tenant": upsert.key.first().cloned().unwrap_or_default(),
            "key": key,
            "version": upsert.version,
            "row": row,
            "event_id": event_id,
            "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        });
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn streamed_change_event_prints_what_the_json_value_printed() {
        let config = crate::runtime::parse_topology(
            "name = \"t\"\nprocessor = \"p\"\n[sources]\ntopics = [\"in\"]\n",
            &["p"],
        )
        .unwrap();
        let spec = TableSpec {
            text_index: None,
            name: "things",
            key: vec![
                col("tenant_id", ColumnType::Text),
                col("id", ColumnType::Text),
            ],
            columns: vec![
                col("zeta", ColumnType::Text),
                col("attributes", ColumnType::Json),
                col("count", ColumnType::BigInt),
                col("deleted", ColumnType::Bool),
                col("updated_at", ColumnType::Timestamp),
                col("note", ColumnType::Text),
            ],
            indexes: vec![],
        };
        let upsert = RowUpsert {
            table: "things",
            key: vec!["acme".into(), "e-1 \"quoted\" ü".into()],
            version: 7,
            values: vec![
                SqlValue::Text("last".into()),
                SqlValue::Json(
                    serde_json::json!({"b": [1, 2.5, null], "a": {"y": true, "x": "\u{1}"}}),
                ),
                SqlValue::BigInt(-3),
                SqlValue::Bool(true),
                SqlValue::Timestamp("2026-02-01T12:00:00.123Z".parse().unwrap()),
                SqlValue::Null,
            ],
            deleted: true,
        };
        let source = SourcePosition {
            topic: "in".into(),
            partition: 2,
            offset: 41,
        };
        for spec in [Some(&spec), None] {
            let (streamed, headers) = change_event(&config, spec, &upsert, "ev-1", &source, 3);
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(as_value(&config, spec, &upsert, "ev-1", &source, 3)).unwrap()
            );
            assert_eq!(headers[0].value, change_id("t", &source, 3).into_bytes());
        }
    }
}
