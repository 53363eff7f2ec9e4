//! SQL projection stores: the pieces both backends share.
//!
//! [`sqlite::SqliteStore`] and [`postgres::PostgresStore`] implement
//! [`ProjectionStore`](conductor_engine::store::ProjectionStore) with the same
//! semantics as the engine's in-memory reference store. What they have in
//! common lives here:
//!
//! - identifier checking and quoting, and the projection-table DDL
//!   ([`Dialect`], [`create_table_statements`]);
//! - validation of a batch before any transaction is opened
//!   ([`validate_upsert`], [`group_upserts`], [`check_outbox_dense`]);
//! - the value encodings that are not native to a backend (timestamps as text,
//!   outbox headers as JSON);
//! - error mapping to [`StoreError`] with a readable detail.
//!
//! No query here is checked at compile time: the stores build their SQL at run
//! time from [`TableSpec`]s, whose names are validated by [`quote_ident`] before
//! they reach a statement.

pub mod generations;
pub mod migrations;
pub mod postgres;
pub mod sqlite;

use base64::Engine as _;
use conductor_engine::log::{Header, InputPosition};
use conductor_engine::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use conductor_engine::store::{OutboxRecord, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

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
            (Dialect::Postgres, ColumnType::Text) => "TEXT",
            (Dialect::Postgres, ColumnType::BigInt) => "BIGINT",
            (Dialect::Postgres, ColumnType::Bool) => "BOOLEAN",
            (Dialect::Postgres, ColumnType::Json) => "JSONB",
            (Dialect::Postgres, ColumnType::Timestamp) => "TIMESTAMPTZ",
        }
    }

    /// Collation of text key columns.
    ///
    /// Dumps are ordered by key and must order exactly like the memory store
    /// (Rust `String` order = UTF-8 byte order) whatever the database's locale,
    /// or table digests would differ across backends. SQLite's default BINARY
    /// collation already is byte order; Postgres needs `"C"`.
    fn key_collation(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " COLLATE \"C\"",
        }
    }
}

/// Longest identifier Postgres keeps without truncating it.
const MAX_IDENT_LEN: usize = 63;

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

/// Rejects a [`TableSpec`] the SQL stores cannot hold faithfully.
///
/// Key columns must be [`ColumnType::Text`]: [`RowUpsert::key`] carries keys
/// as strings and `dump_table` renders them as strings, so any other key type
/// would make SQL dumps order and render differently from the memory store.
pub fn validate_spec(spec: &TableSpec) -> Result<(), StoreError> {
    let fail = |detail: String| StoreError::Database {
        operation: format!("migrate table `{}`", spec.name),
        detail,
        source: None,
    };
    quote_ident(spec.name)?;
    if spec.key.is_empty() {
        return Err(fail(
            "a projection table needs at least one key column".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for c in spec.all_columns() {
        quote_ident(c.name)?;
        if !seen.insert(c.name) {
            return Err(fail(format!(
                "column `{}` is declared twice (note that `version` is added by the store)",
                c.name
            )));
        }
    }
    if let Some(c) = spec.key.iter().find(|c| c.ty != ColumnType::Text) {
        return Err(fail(format!(
            "key column `{}` is {:?}; SQL stores support text keys only, because row keys are strings",
            c.name, c.ty
        )));
    }
    for index in &spec.indexes {
        if index.is_empty() {
            return Err(fail("an index needs at least one column".into()));
        }
        if let Some(missing) = index.iter().find(|n| !seen.contains(*n)) {
            return Err(fail(format!(
                "index column `{missing}` is not a column of the table"
            )));
        }
    }
    Ok(())
}

/// `CREATE TABLE IF NOT EXISTS` and `CREATE INDEX IF NOT EXISTS` statements
/// for a projection table.
pub fn create_table_statements(
    spec: &TableSpec,
    dialect: Dialect,
) -> Result<Vec<String>, StoreError> {
    validate_spec(spec)?;
    let q = QuotedTable::new(spec)?;
    let mut cols = Vec::new();
    for (i, c) in spec.all_columns().iter().enumerate() {
        let is_key = i < spec.key.len();
        let collation = if is_key { dialect.key_collation() } else { "" };
        let null = if c.nullable && !is_key {
            ""
        } else {
            " NOT NULL"
        };
        cols.push(format!(
            "{} {}{collation}{null}",
            q.all[i],
            dialect.column_type(c.ty)
        ));
    }
    // STRICT makes SQLite refuse a value of the wrong type instead of storing it.
    // On Postgres, pages are left 30% free: a projection row is mostly
    // updated, and an update whose new version fits on the row's page (and
    // changes no indexed column) is HOT, writing no index entries. Measured
    // on the entities table: updates about 1.6x cheaper than at the default
    // fillfactor of 100 (docs/design/2026-12-02-pg-fold-throughput.md).
    let suffix = match dialect {
        Dialect::Sqlite => " STRICT",
        Dialect::Postgres => " WITH (fillfactor = 70)",
    };
    let mut out = vec![format!(
        "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({})){suffix}",
        q.table,
        cols.join(", "),
        q.key_list()
    )];
    for index in &spec.indexes {
        let name = quote_ident(&index_name(spec.name, index))?;
        let cols: Vec<String> = index
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Result<_, _>>()?;
        out.push(format!(
            "CREATE INDEX IF NOT EXISTS {name} ON {} ({})",
            q.table,
            cols.join(", ")
        ));
    }
    Ok(out)
}

/// A deterministic index name, `<table>__<col>_<col>`, shortened with a hash
/// when it would exceed the identifier limit (Postgres would silently truncate
/// it, and two truncated names could collide).
pub fn index_name(table: &str, columns: &[&str]) -> String {
    let full = format!("{table}__{}", columns.join("_"));
    if full.len() <= MAX_IDENT_LEN {
        return full;
    }
    // FNV-1a: stable across runs and platforms, unlike std's SipHash seed.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut prefix = full[..MAX_IDENT_LEN - 17].to_string();
    prefix.push_str(&format!("_{hash:016x}"));
    prefix
}

/// The column names a projection table must have, to compare against an
/// existing table: `CREATE TABLE IF NOT EXISTS` silently keeps an old shape,
/// and a commit would then fail far from the cause.
pub fn missing_columns(spec: &TableSpec, existing: &[String]) -> Vec<&'static str> {
    spec.all_columns()
        .iter()
        .map(|c| c.name)
        .filter(|n| !existing.iter().any(|e| e == n))
        .collect()
}

/// The error for a table that exists with fewer columns than its spec.
pub fn table_shape_error(spec: &TableSpec, missing: &[&str]) -> StoreError {
    StoreError::Database {
        operation: format!("migrate table `{}`", spec.name),
        detail: format!(
            "table `{}` already exists without column(s) {}; migrate never alters a table. \
             Hint: project into a new table name (rebuild, then swap) or drop the old table",
            spec.name,
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        source: None,
    }
}

/// Table specs a store has migrated, by name: a [`RowUpsert`] names its table
/// only, and the store needs the column types to encode it.
#[derive(Debug, Default)]
pub struct TableRegistry {
    tables: RwLock<HashMap<&'static str, TableSpec>>,
}

impl TableRegistry {
    pub fn insert(&self, spec: &TableSpec) {
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.name, spec.clone());
    }

    /// The spec of `name`, or [`StoreError::UnknownTable`] when this store has
    /// not migrated it.
    pub fn get(&self, name: &str) -> Result<TableSpec, StoreError> {
        self.tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownTable(name.to_string()))
    }
}

fn type_name(v: &SqlValue) -> &'static str {
    match v {
        SqlValue::Null => "null",
        SqlValue::Text(_) => "text",
        SqlValue::BigInt(_) => "bigint",
        SqlValue::Bool(_) => "bool",
        SqlValue::Json(_) => "json",
        SqlValue::Timestamp(_) => "timestamp",
    }
}

fn value_fits(col: &ColumnSpec, v: &SqlValue) -> bool {
    matches!(
        (col.ty, v),
        (_, SqlValue::Null)
            | (ColumnType::Text, SqlValue::Text(_))
            | (ColumnType::BigInt, SqlValue::BigInt(_))
            | (ColumnType::Bool, SqlValue::Bool(_))
            | (ColumnType::Json, SqlValue::Json(_))
            | (ColumnType::Timestamp, SqlValue::Timestamp(_))
    )
}

/// Checks an upsert against its table: arity, value types and nullability.
///
/// Done before the transaction opens so that a malformed batch fails with a
/// message naming the column, rather than with a driver encoding error.
pub fn validate_upsert(spec: &TableSpec, u: &RowUpsert) -> Result<(), StoreError> {
    let fail = |detail: String| StoreError::Database {
        operation: format!("commit (upsert into `{}`)", spec.name),
        detail,
        source: None,
    };
    if u.key.len() != spec.key.len() || u.values.len() != spec.columns.len() {
        return Err(fail(format!(
            "row {:?} has {} key value(s) and {} column value(s); the table declares {} and {}",
            u.key,
            u.key.len(),
            u.values.len(),
            spec.key.len(),
            spec.columns.len()
        )));
    }
    for (col, v) in spec.columns.iter().zip(&u.values) {
        if !value_fits(col, v) {
            return Err(fail(format!(
                "row {:?}: column `{}` is {:?} but the value is {}",
                u.key,
                col.name,
                col.ty,
                type_name(v)
            )));
        }
        if !col.nullable && *v == SqlValue::Null {
            return Err(fail(format!(
                "row {:?}: column `{}` is NOT NULL but the value is null",
                u.key, col.name
            )));
        }
    }
    Ok(())
}

/// One table's share of a batch: its spec and at most one row per key, in key
/// order.
pub struct TableBatch {
    pub spec: TableSpec,
    pub rows: Vec<RowUpsert>,
}

/// Validates a batch's upserts and groups them per table.
///
/// Per key only the upsert the memory store would end up with survives (the
/// first one with the highest version): a multi-row `INSERT … ON CONFLICT`
/// may not touch the same row twice. Rows are sorted by key so that
/// concurrent writers lock rows in the same order.
pub fn group_upserts(
    registry: &TableRegistry,
    upserts: Vec<RowUpsert>,
) -> Result<Vec<TableBatch>, StoreError> {
    let mut by_table: BTreeMap<&'static str, (TableSpec, BTreeMap<Vec<String>, RowUpsert>)> =
        BTreeMap::new();
    for u in upserts {
        let (spec, rows) = match by_table.entry(u.table) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert((registry.get(u.table)?, BTreeMap::new()))
            }
        };
        validate_upsert(spec, &u)?;
        match rows.get(&u.key) {
            Some(old) if old.version >= u.version => {}
            _ => {
                rows.insert(u.key.clone(), u);
            }
        }
    }
    Ok(by_table
        .into_values()
        .map(|(spec, rows)| TableBatch {
            spec,
            rows: rows.into_values().collect(),
        })
        .collect())
}

/// Checks that a batch's outbox seqs are consecutive. The first seq is checked
/// against the stored next seq inside the transaction.
pub fn check_outbox_dense(topology: &str, outbox: &[OutboxRecord]) -> Result<(), StoreError> {
    for pair in outbox.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(StoreError::OutboxSequence {
                topology: topology.to_string(),
                expected: pair[0].seq + 1,
                got: pair[1].seq,
            });
        }
    }
    Ok(())
}

/// Input positions with one entry per (topic, partition), the last one given
/// winning, as in the memory store.
pub fn dedupe_offsets(offsets: Vec<InputPosition>) -> BTreeMap<(String, i32), i64> {
    offsets
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.next_offset))
        .collect()
}

/// The text form of a timestamp wherever it is stored or dumped as text:
/// RFC 3339, UTC, exactly six fractional digits, `Z` — so that text order is
/// time order and dumps match `memory::value_to_json`.
pub fn format_timestamp(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
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

/// A snapshot's positions as stored in `conductor_state.positions`: a JSON
/// array of `[topic, partition, next_offset]`.
pub fn state_positions_json(positions: &BTreeMap<(String, i32), i64>) -> String {
    let list: Vec<(&str, i32, i64)> = positions
        .iter()
        .map(|((t, p), o)| (t.as_str(), *p, *o))
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// Reads a stored `conductor_state` row back.
pub fn state_from_row(
    scope: String,
    format_version: i64,
    bytes: Vec<u8>,
    positions: &str,
) -> Result<conductor_engine::store::StateSnapshot, StoreError> {
    let list: Vec<(String, i32, i64)> = serde_json::from_str(positions).map_err(|e| {
        StoreError::permanent(
            "load state",
            format!("unreadable positions of the state snapshot: {e}"),
        )
    })?;
    Ok(conductor_engine::store::StateSnapshot {
        scope,
        format_version: u32::try_from(format_version).unwrap_or(u32::MAX),
        bytes,
        positions: list.into_iter().map(|(t, p, o)| ((t, p), o)).collect(),
    })
}

/// Maps a driver error to a [`StoreError`] with a readable detail — the
/// server's message, its code, and (Postgres) its detail and hint — keeping
/// the driver error as its source: [`StoreError::Unavailable`] when a retry
/// can help ([`is_retryable`]), [`StoreError::Database`] when it can't.
pub fn db_error(operation: impl Into<String>, error: sqlx::Error) -> StoreError {
    let detail = match &error {
        sqlx::Error::Database(db) => {
            let mut s = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(d) = pg.detail() {
                    s.push_str(&format!("; detail: {d}"));
                }
                if let Some(h) = pg.hint() {
                    s.push_str(&format!("; hint: {h}"));
                }
            }
            if let Some(code) = db.code() {
                s.push_str(&format!(" (code {code})"));
            }
            s
        }
        other => other.to_string(),
    };
    let retryable = is_retryable(&error);
    let source: Option<conductor_engine::store::BoxError> = Some(std::sync::Arc::new(error));
    let operation = operation.into();
    if retryable {
        StoreError::Unavailable {
            operation,
            detail,
            source,
        }
    } else {
        StoreError::Database {
            operation,
            detail,
            source,
        }
    }
}

/// Whether a driver error is one a retry of the same transaction can get
/// past. Postgres SQLSTATE classes: 08 connection exception, 40 transaction
/// rollback (serialization failure, deadlock), 53 insufficient resources,
/// 57P0x operator intervention (shutdown, restart), 58 system error; SQLite:
/// SQLITE_BUSY / SQLITE_LOCKED and their extended codes. A missing table
/// (42P01), a constraint (23xxx) or a bad value (22xxx) is permanent.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_retryable_code(&code)),
        _ => false,
    }
}

fn is_retryable_code(code: &str) -> bool {
    if let Ok(n) = code.parse::<u32>() {
        // SQLite result codes: the primary code is the low byte.
        return matches!(n & 0xff, 5 | 6);
    }
    ["08", "40", "53", "58"].iter().any(|c| code.starts_with(c)) || code.starts_with("57P0")
}

/// Whether a driver error says the table does not exist (so that reads of a
/// table nobody migrated give [`StoreError::UnknownTable`], as in the memory
/// store).
pub fn is_undefined_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().starts_with("no such table")
        }
        _ => false,
    }
}

/// [`db_error`], except that a missing table becomes [`StoreError::UnknownTable`].
pub fn table_read_error(operation: &str, table: &TableSpec, error: sqlx::Error) -> StoreError {
    if is_undefined_table(&error) {
        StoreError::UnknownTable(table.name.to_string())
    } else {
        db_error(format!("{operation} `{}`", table.name), error)
    }
}

/// A `limit` argument as a SQL integer.
pub fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use conductor_engine::testing::contract_table;

    #[test]
    fn rejects_identifiers_that_would_need_escaping() {
        assert!(quote_ident("entities_v2").is_ok());
        assert!(quote_ident("_x").is_ok());
        for bad in ["", "1abc", "a-b", "a\"b", "a b", "été", &"x".repeat(64)] {
            assert!(quote_ident(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn long_index_names_are_shortened_deterministically() {
        let cols = ["a_very_long_column_name", "another_very_long_column_name"];
        let a = index_name("some_long_projection_table_name", &cols);
        assert!(a.len() <= MAX_IDENT_LEN, "{a}");
        assert_eq!(a, index_name("some_long_projection_table_name", &cols));
        assert_ne!(
            a,
            index_name(
                "some_long_projection_table_name",
                &["a_very_long_column_name", "another_very_long_column_nam3"]
            )
        );
        assert_eq!(index_name("t", &["a", "b"]), "t__a_b");
    }

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

    #[test]
    fn grouping_keeps_the_first_upsert_with_the_highest_version_per_key() {
        let spec = contract_table("t");
        let registry = TableRegistry::default();
        registry.insert(&spec);
        let row = |id: &str, version: i64, label: &str| RowUpsert {
            table: "t",
            key: vec!["acme".into(), id.into()],
            version,
            values: vec![
                SqlValue::Text(label.into()),
                SqlValue::BigInt(1),
                SqlValue::Bool(false),
                SqlValue::Json(serde_json::json!({})),
                SqlValue::Timestamp(chrono::DateTime::UNIX_EPOCH),
            ],
            deleted: false,
        };
        let batches = group_upserts(
            &registry,
            vec![
                row("b", 1, "b1"),
                row("a", 2, "a2"),
                row("a", 3, "a3"),
                row("a", 3, "a3-again"),
                row("a", 1, "a1"),
            ],
        )
        .unwrap();
        assert_eq!(batches.len(), 1);
        let labels: Vec<_> = batches[0]
            .rows
            .iter()
            .map(|r| r.values[0].clone())
            .collect();
        assert_eq!(
            labels,
            vec![SqlValue::Text("a3".into()), SqlValue::Text("b1".into())]
        );
    }

    #[test]
    fn rejects_a_value_of_the_wrong_type_naming_the_column() {
        let spec = contract_table("t");
        let registry = TableRegistry::default();
        registry.insert(&spec);
        let bad = RowUpsert {
            table: "t",
            key: vec!["acme".into(), "x".into()],
            version: 1,
            values: vec![
                SqlValue::Null,
                SqlValue::Text("ten".into()),
                SqlValue::Bool(false),
                SqlValue::Json(serde_json::json!({})),
                SqlValue::Null,
            ],
            deleted: false,
        };
        let err = group_upserts(&registry, vec![bad])
            .err()
            .expect("must fail")
            .to_string();
        assert!(
            err.contains("`count` is BigInt but the value is text"),
            "{err}"
        );
        let unknown = RowUpsert {
            table: "nope",
            key: vec![],
            version: 1,
            values: vec![],
            deleted: false,
        };
        assert!(
            matches!(group_upserts(&registry, vec![unknown]), Err(StoreError::UnknownTable(t)) if t == "nope")
        );
    }

    #[test]
    fn rejects_non_text_key_columns_and_duplicate_version_column() {
        let mut spec = contract_table("t");
        spec.key[1].ty = ColumnType::BigInt;
        assert!(
            validate_spec(&spec)
                .unwrap_err()
                .to_string()
                .contains("text keys only")
        );
        let mut spec = contract_table("t");
        spec.columns[0].name = "version";
        assert!(
            validate_spec(&spec)
                .unwrap_err()
                .to_string()
                .contains("declared twice")
        );
    }

    #[test]
    fn projection_ddl_maps_column_types_per_dialect() {
        let spec = contract_table("rows");
        assert_eq!(
            create_table_statements(&spec, Dialect::Postgres).unwrap(),
            vec![
                "CREATE TABLE IF NOT EXISTS \"rows\" (\"tenant_id\" TEXT COLLATE \"C\" NOT NULL, \"id\" TEXT COLLATE \"C\" NOT NULL, \
                 \"version\" BIGINT NOT NULL, \"label\" TEXT, \"count\" BIGINT NOT NULL, \"deleted\" BOOLEAN NOT NULL, \
                 \"attributes\" JSONB NOT NULL, \"updated_at\" TIMESTAMPTZ NOT NULL, PRIMARY KEY (\"tenant_id\", \"id\")) WITH (fillfactor = 70)",
                "CREATE INDEX IF NOT EXISTS \"rows__tenant_id_label\" ON \"rows\" (\"tenant_id\", \"label\")",
            ]
        );
        assert_eq!(
            create_table_statements(&spec, Dialect::Sqlite).unwrap()[0],
            "CREATE TABLE IF NOT EXISTS \"rows\" (\"tenant_id\" TEXT NOT NULL, \"id\" TEXT NOT NULL, \
             \"version\" INTEGER NOT NULL, \"label\" TEXT, \"count\" INTEGER NOT NULL, \"deleted\" INTEGER NOT NULL, \
             \"attributes\" TEXT NOT NULL, \"updated_at\" TEXT NOT NULL, PRIMARY KEY (\"tenant_id\", \"id\")) STRICT"
        );
        assert_eq!(
            QuotedTable::new(&spec)
                .unwrap()
                .version_guarded_conflict_clause(),
            "ON CONFLICT (\"tenant_id\", \"id\") DO UPDATE SET \"version\" = excluded.\"version\", \"label\" = excluded.\"label\", \
             \"count\" = excluded.\"count\", \"deleted\" = excluded.\"deleted\", \"attributes\" = excluded.\"attributes\", \
             \"updated_at\" = excluded.\"updated_at\" WHERE \"rows\".\"version\" < excluded.\"version\""
        );
    }

    #[test]
    fn timestamps_format_with_six_fraction_digits_and_z() {
        let t = chrono::DateTime::from_timestamp_micros(1_770_000_000_123_458).unwrap();
        assert_eq!(format_timestamp(&t), "2026-02-02T02:40:00.123458Z");
        assert_eq!(
            format_timestamp(&chrono::DateTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
    }
}
