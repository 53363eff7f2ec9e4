//! The two SQL dialects and the names spliced into their SQL: the column
//! type a [`ColumnType`] is stored as, and table and column names checked
//! and quoted once ([`quote_ident`], [`QuotedTable`]).

use conductor_engine::projection::{ColumnType, TableSpec};
use conductor_engine::store::StoreError;

/// The two SQL dialects we generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The column type a [`ColumnType`] is stored as.
    pub fn column_type(self, ty: ColumnType) -> &'static str {
        match (self, ty) {
            // SQLite tables are STRICT, which only knows INTEGER/REAL/TEXT/BLOB/ANY.
            (Dialect::Sqlite, ColumnType::Text | ColumnType::Json | ColumnType::Timestamp) => {
                "TEXT"
            }
            (Dialect::Sqlite, ColumnType::BigInt | ColumnType::Bool) => "INTEGER",
            (Dialect::Sqlite, ColumnType::Double) => "REAL",
            (Dialect::Sqlite, ColumnType::Vector) => "BLOB",
            (Dialect::Postgres, ColumnType::Text) => "TEXT",
            (Dialect::Postgres, ColumnType::BigInt) => "BIGINT",
            (Dialect::Postgres, ColumnType::Double) => "DOUBLE PRECISION",
            (Dialect::Postgres, ColumnType::Bool) => "BOOLEAN",
            (Dialect::Postgres, ColumnType::Json) => "JSONB",
            (Dialect::Postgres, ColumnType::Timestamp) => "TIMESTAMPTZ",
            (Dialect::Postgres, ColumnType::Vector) => "BYTEA",
        }
    }

    /// Collation of text key columns.
    ///
    /// Dumps are ordered by key and must order exactly like the memory store
    /// (Rust `String` order = UTF-8 byte order) whatever the database's locale,
    /// or table digests would differ across backends. SQLite's default BINARY
    /// collation already is byte order; Postgres needs `"C"`.
    pub(crate) fn key_collation(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " COLLATE \"C\"",
        }
    }
}

/// Longest identifier Postgres keeps without truncating it.
pub(crate) const MAX_IDENT_LEN: usize = 63;

/// Checks that `name` is a plain identifier (`[A-Za-z_][A-Za-z0-9_]*`, at most
/// 63 bytes) and returns it double-quoted.
///
/// Table and column names come from code (`&'static str` in [`TableSpec`]),
/// but they are spliced into SQL text, so they are checked rather than trusted.
/// Quoting also keeps words such as `partition`, `key` or `value` from being
/// read as keywords.
pub fn quote_ident(name: &str) -> Result<String, StoreError> {
    let mut chars = name.chars();
    let ok_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let ok_rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_start || !ok_rest || name.len() > MAX_IDENT_LEN {
        return Err(StoreError::Database {
            operation: "validate identifier".into(),
            detail: format!(
                "`{name}` is not a valid SQL identifier: use letters, digits and `_`, \
                 start with a letter or `_`, at most {MAX_IDENT_LEN} bytes"
            ),
            source: None,
        });
    }
    Ok(format!("\"{name}\""))
}

/// Quoted names of a table and its columns in storage order, checked once.
#[derive(Debug, Clone)]
pub struct QuotedTable {
    pub table: String,
    /// Key columns.
    pub key: Vec<String>,
    /// Every column in storage order: key, `version`, the rest.
    pub all: Vec<String>,
}

impl QuotedTable {
    pub fn new(spec: &TableSpec) -> Result<Self, StoreError> {
        Ok(Self {
            table: quote_ident(spec.name)?,
            key: spec
                .key
                .iter()
                .map(|c| quote_ident(c.name))
                .collect::<Result<_, _>>()?,
            all: spec
                .all_columns()
                .iter()
                .map(|c| quote_ident(c.name))
                .collect::<Result<_, _>>()?,
        })
    }

    /// `"a", "b", "c"` over every column.
    pub fn column_list(&self) -> String {
        self.all.join(", ")
    }

    /// `"k1", "k2"`.
    pub fn key_list(&self) -> String {
        self.key.join(", ")
    }

    /// `ON CONFLICT ("k1", "k2") DO UPDATE SET "version" = excluded."version", …
    /// WHERE "t"."version" < excluded."version"`: the version guard, in the
    /// spelling both Postgres and SQLite accept.
    pub fn version_guarded_conflict_clause(&self) -> String {
        let sets: Vec<String> = self.all[self.key.len()..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {} WHERE {}.\"version\" < excluded.\"version\"",
            self.key_list(),
            sets.join(", "),
            self.table
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_identifiers_that_would_need_escaping() {
        assert!(quote_ident("entities_v2").is_ok());
        assert!(quote_ident("_x").is_ok());
        for bad in ["", "1abc", "a-b", "a\"b", "a b", "été", &"x".repeat(64)] {
            assert!(quote_ident(bad).is_err(), "{bad:?} accepted");
        }
    }
}
