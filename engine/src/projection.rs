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
