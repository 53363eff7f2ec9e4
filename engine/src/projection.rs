//! Projection rows and the tables that hold them.
//!
//! Projections are tables keyed by a natural key with a `version` column. A
//! [`RowUpsert`] is applied only when its version is greater than the stored
//! one (the version guard): an older or replayed event changes nothing.
//! Deletes are soft: an upsert with `deleted = true`, which also keeps a later
//! stale upsert from resurrecting the row.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Column types every SQL store maps to its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    BigInt,
    /// DOUBLE PRECISION on Postgres, REAL on SQLite (a score, a ratio).
    Double,
    Bool,
    /// JSONB on Postgres, TEXT holding JSON on SQLite.
    Json,
    /// TIMESTAMPTZ on Postgres, RFC 3339 TEXT on SQLite.
    Timestamp,
    /// An f32 vector (an embedding): BYTEA on Postgres, BLOB on SQLite, both
    /// holding the floats little-endian, 4 bytes each; read back as a JSON
    /// array of numbers.
    Vector,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
}

/// A projection table: key columns first, then `version`, then the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub name: &'static str,
    pub key: Vec<ColumnSpec>,
    /// Non-key columns other than `version`.
    pub columns: Vec<ColumnSpec>,
    /// Extra indexes, as column lists.
    pub indexes: Vec<Vec<&'static str>>,
    /// A full-text index for keyword search, if the table has one.
    pub text_index: Option<TextIndex>,
}

/// A full-text index over the string and number values of a table's JSON
/// column, for keyword search of one tenant's rows
/// ([`crate::store::ProjectionStore::keyword_search`]): on Postgres a GIN
/// index on `jsonb_to_tsvector('simple', …)`, on SQLite an FTS5 table kept
/// in step by triggers — both inside the fold's transaction, so the index
/// is exactly as current as the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextIndex {
    /// The JSON column whose values are indexed.
    pub json: &'static str,
    /// The tenant column: a search is within one tenant.
    pub tenant: &'static str,
    /// The column an answer names (a key column).
    pub id: &'static str,
    /// A boolean column: rows where it is true are not indexed.
    pub deleted: Option<&'static str>,
}

impl TableSpec {
    /// Every column in storage order: key, `version`, the rest.
    pub fn all_columns(&self) -> Vec<ColumnSpec> {
        let mut v = self.key.clone();
        v.push(ColumnSpec {
            name: "version",
            ty: ColumnType::BigInt,
            nullable: false,
        });
        v.extend(self.columns.iter().cloned());
        v
    }
}

/// A value for one column.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SqlValue {
    Null,
    Text(String),
    BigInt(i64),
    /// Finite values only: NaN and infinities are stored as NULL.
    Double(f64),
    Bool(bool),
    Json(serde_json::Value),
    Timestamp(DateTime<Utc>),
    /// Stored bit for bit ([`vector_to_bytes`]); a non-finite element reads
    /// back as JSON `null`, as serde_json renders it.
    Vector(Vec<f32>),
}

/// The stored form of a [`ColumnType::Vector`] value: each float
/// little-endian, 4 bytes each, in order.
pub fn vector_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

/// A vector back from its stored form ([`vector_to_bytes`]). A length that is
/// not a multiple of 4 is an error naming it.
pub fn vector_from_bytes(bytes: &[u8]) -> Result<Vec<f32>, String> {
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "a stored vector is {} bytes long, not a multiple of 4 (one f32 each)",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Insert-or-update of one row, applied only if `version` is newer.
#[derive(Debug, Clone, PartialEq)]
pub struct RowUpsert {
    pub table: &'static str,
    /// Values of the key columns, in [`TableSpec::key`] order.
    pub key: Vec<String>,
    pub version: i64,
    /// Values of [`TableSpec::columns`], in order.
    pub values: Vec<SqlValue>,
    /// Whether this upsert is a (soft) delete, for the change event.
    pub deleted: bool,
}

impl RowUpsert {
    /// The row as a JSON object (for change events and diffs).
    pub fn to_json(&self, spec: &TableSpec) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (c, k) in spec.key.iter().zip(&self.key) {
            m.insert(c.name.to_string(), serde_json::Value::String(k.clone()));
        }
        m.insert("version".into(), self.version.into());
        for (c, v) in spec.columns.iter().zip(&self.values) {
            m.insert(
                c.name.to_string(),
                serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
            );
        }
        serde_json::Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_through_their_bytes_bit_for_bit() {
        let v = vec![
            0.1,
            -0.0,
            1e-45, // subnormal
            f32::MAX,
            f32::MIN_POSITIVE,
            -3.5,
            f32::INFINITY,
            f32::NAN,
        ];
        let bytes = vector_to_bytes(&v);
        assert_eq!(bytes.len(), 4 * v.len());
        assert_eq!(&bytes[..4], &0.1f32.to_le_bytes(), "little-endian");
        let back = vector_from_bytes(&bytes).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back), bits(&v));
        assert_eq!(vector_to_bytes(&[]), Vec::<u8>::new());
        assert_eq!(vector_from_bytes(&[]).unwrap(), Vec::<f32>::new());
        assert_eq!(vector_from_bytes(&[0, 0, 0x80, 0x3f]).unwrap(), vec![1.0]);
    }

    #[test]
    fn a_length_not_a_multiple_of_four_is_an_error() {
        for len in [1, 2, 3, 5, 7] {
            let err = vector_from_bytes(&vec![0u8; len]).unwrap_err();
            assert!(
                err.contains(&format!("{len} bytes long, not a multiple of 4")),
                "{err}"
            );
        }
    }
}
