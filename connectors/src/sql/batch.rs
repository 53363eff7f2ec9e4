//! A batch checked before any transaction opens: the specs of the migrated
//! tables ([`TableRegistry`]), each upsert against its table, one upsert per
//! key ([`group_upserts`]), consecutive outbox seqs and one offset per
//! partition. A malformed batch fails here with a message naming the column,
//! never half-way through a transaction.

use conductor_engine::log::InputPosition;
use conductor_engine::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use conductor_engine::store::{OutboxRecord, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

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
        SqlValue::Double(_) => "double",
        SqlValue::Bool(_) => "bool",
        SqlValue::Json(_) => "json",
        SqlValue::Timestamp(_) => "timestamp",
        SqlValue::Vector(_) => "vector",
    }
}

fn value_fits(col: &ColumnSpec, v: &SqlValue) -> bool {
    matches!(
        (col.ty, v),
        (_, SqlValue::Null)
            | (ColumnType::Text, SqlValue::Text(_))
            | (ColumnType::BigInt, SqlValue::BigInt(_))
            | (ColumnType::Double, SqlValue::Double(_))
            | (ColumnType::Bool, SqlValue::Bool(_))
            | (ColumnType::Json, SqlValue::Json(_))
            | (ColumnType::Timestamp, SqlValue::Timestamp(_))
            | (ColumnType::Vector, SqlValue::Vector(_))
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

#[cfg(test)]
mod tests {
    use super::*;
    use conductor_engine::testing::contract_table;

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
}
