//! The outbox encoding both backends share: one [`OutboxRecord`] is one
//! `conductor_outbox` row whose columns ([`OUTBOX_COLUMNS`]) hold the same
//! values on SQLite and Postgres — headers as JSON text, the source position
//! split into three columns, `source_index` widened to a signed 64-bit
//! integer. [`OutboxRow::encode`] writes it, [`outbox_record`] reads it back.
//!
//! [`OUTBOX_COLUMNS`]: super::migrations::OUTBOX_COLUMNS

use base64::Engine as _;
use conductor_engine::log::{Header, SourcePosition};
use conductor_engine::store::OutboxRecord;
use sqlx::{ColumnIndex, Decode, Row, Type};

/// An outbox record as the columns after `topology` store it, in
/// [`OUTBOX_COLUMNS`](super::migrations::OUTBOX_COLUMNS) order. A dialect binds
/// these values (one by one, or as one array per column) and nothing else.
pub struct OutboxRow {
    pub seq: i64,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    /// [`headers_to_json`].
    pub headers: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    /// A `u32`, stored as a signed 64-bit integer (Postgres has no unsigned types).
    pub source_index: i64,
}

impl OutboxRow {
    /// The row that stores `r`.
    pub fn encode(r: OutboxRecord) -> Self {
        OutboxRow {
            seq: r.seq,
            topic: r.topic,
            key: r.key,
            value: r.value,
            headers: headers_to_json(&r.headers),
            source_topic: r.source.topic,
            source_partition: r.source.partition,
            source_offset: r.source.offset,
            source_index: i64::from(r.source_index),
        }
    }
}

/// Reads a `conductor_outbox` row (selected by column name) back into the
/// record [`OutboxRow::encode`] stored; the error names the record's seq.
pub fn outbox_record<'r, R>(row: &'r R) -> Result<OutboxRecord, String>
where
    R: Row,
    &'r str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let seq: i64 = row.try_get("seq").map_err(|e| e.to_string())?;
    let get = |e: sqlx::Error| format!("outbox seq {seq}: {e}");
    let headers: String = row.try_get("headers").map_err(get)?;
    let source_index: i64 = row.try_get("source_index").map_err(get)?;
    Ok(OutboxRecord {
        seq,
        topic: row.try_get("topic").map_err(get)?,
        key: row.try_get("key").map_err(get)?,
        value: row.try_get("value").map_err(get)?,
        headers: headers_from_json(&headers).map_err(|e| format!("outbox seq {seq}: {e}"))?,
        source: SourcePosition {
            topic: row.try_get("source_topic").map_err(get)?,
            partition: row.try_get("source_partition").map_err(get)?,
            offset: row.try_get("source_offset").map_err(get)?,
        },
        source_index: u32::try_from(source_index)
            .map_err(|_| format!("outbox seq {seq}: source_index {source_index} out of range"))?,
    })
}

/// Outbox headers as JSON text: `[{"key": k, "value": v}]` when the value is
/// UTF-8 (readable from `psql`), `{"key": k, "value_base64": b}` when not.
///
/// Written with a serializer rather than through `serde_json::Value`s: it
/// runs for every outbox record of every commit.
pub fn headers_to_json(headers: &[Header]) -> String {
    use serde::ser::{SerializeMap, SerializeSeq, Serializer};
    struct Item<'a>(&'a Header);
    impl serde::Serialize for Item<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("key", &self.0.key)?;
            match std::str::from_utf8(&self.0.value) {
                Ok(v) => m.serialize_entry("value", v)?,
                Err(_) => m.serialize_entry(
                    "value_base64",
                    &base64::engine::general_purpose::STANDARD.encode(&self.0.value),
                )?,
            }
            m.end()
        }
    }
    let mut out = Vec::with_capacity(32 + headers.len() * 48);
    let mut ser = serde_json::Serializer::new(&mut out);
    let written = (|| {
        let mut seq = ser.serialize_seq(Some(headers.len()))?;
        for h in headers {
            seq.serialize_element(&Item(h))?;
        }
        SerializeSeq::end(seq)
    })();
    // Strings into a Vec: neither can fail, and the output is UTF-8.
    match written {
        Ok(()) => String::from_utf8(out).unwrap_or_default(),
        Err(_) => "[]".to_string(),
    }
}

/// Inverse of [`headers_to_json`].
pub fn headers_from_json(text: &str) -> Result<Vec<Header>, String> {
    let items: Vec<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| format!("headers are not a JSON array: {e}"))?;
    items
        .into_iter()
        .map(|item| {
            let key = item["key"]
                .as_str()
                .ok_or("header without a string `key`")?
                .to_string();
            let value = if let Some(v) = item["value"].as_str() {
                v.as_bytes().to_vec()
            } else if let Some(b) = item["value_base64"].as_str() {
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| format!("header `{key}`: bad base64: {e}"))?
            } else {
                return Err(format!(
                    "header `{key}` has neither `value` nor `value_base64`"
                ));
            };
            Ok(Header { key, value })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_utf8_and_binary_values() {
        let headers = vec![
            Header {
                key: "ig-tenant".into(),
                value: b"acme".to_vec(),
            },
            Header {
                key: "bin".into(),
                value: vec![0, 159, 146, 150],
            },
        ];
        let text = headers_to_json(&headers);
        // The stored format, byte for byte (rows written before stay readable).
        assert_eq!(
            text,
            r#"[{"key":"ig-tenant","value":"acme"},{"key":"bin","value_base64":"AJ+Slg=="}]"#
        );
        assert_eq!(headers_from_json(&text).unwrap(), headers);
    }
}
