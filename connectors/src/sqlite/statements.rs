//! The statements of a SQLite commit, encoded before the write lock is
//! taken: multi-row `INSERT … VALUES (?, …), (?, …)` statements, chunked so
//! that none carries more than SQLite's parameter limit.

use crate::sql::migrations::{OUTBOX_COLUMN_COUNT, OUTBOX_COLUMNS};
use crate::sql::{OutboxRow, QuotedTable, TableBatch, db_error, format_timestamp};
use conductor_engine::projection::{RowUpsert, SqlValue, vector_to_bytes};
use conductor_engine::store::{OutboxRecord, StoreError};
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, AssertSqlSafe, Sqlite, Transaction};
use std::collections::BTreeMap;

/// Most bound parameters one statement may carry: SQLite's
/// `SQLITE_MAX_VARIABLE_NUMBER`, 32766 since 3.32 (the bundled library is
/// newer). Multi-row statements are chunked below it.
const MAX_PARAMS: usize = 32_766;

/// A statement ready to run: what it is for (for errors), its SQL, its binds.
pub(super) struct Statement {
    operation: String,
    sql: String,
    args: SqliteArguments,
}

fn bind<'t, T>(args: &mut SqliteArguments, operation: &str, value: T) -> Result<(), StoreError>
where
    T: sqlx::Encode<'t, Sqlite> + sqlx::Type<Sqlite>,
{
    args.add(value).map_err(|e| StoreError::Database {
        operation: operation.to_string(),
        detail: format!("cannot encode a value: {e}"),
        source: None,
    })
}

fn bind_value(
    args: &mut SqliteArguments,
    operation: &str,
    value: SqlValue,
) -> Result<(), StoreError> {
    match value {
        SqlValue::Null => bind(args, operation, Option::<String>::None),
        SqlValue::Text(s) => bind(args, operation, s),
        SqlValue::BigInt(i) => bind(args, operation, i),
        SqlValue::Double(d) => bind(args, operation, d.is_finite().then_some(d)),
        SqlValue::Bool(b) => bind(args, operation, b),
        SqlValue::Json(j) => bind(args, operation, j.to_string()),
        SqlValue::Timestamp(t) => bind(args, operation, format_timestamp(&t)),
        SqlValue::Vector(v) => bind(args, operation, vector_to_bytes(&v)),
    }
}

/// `(?, ?, ?), (?, ?, ?)`: `rows` tuples of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    let tuple = format!("({})", vec!["?"; columns].join(", "));
    vec![tuple; rows].join(", ")
}

/// Rows per multi-row statement for a table of `columns` columns.
fn rows_per_statement(columns: usize) -> usize {
    (MAX_PARAMS / columns.max(1)).max(1)
}

/// Version-guarded multi-row upserts of one table, chunked under the
/// parameter limit.
pub(super) fn upsert_statements(batch: TableBatch) -> Result<Vec<Statement>, StoreError> {
    let q = QuotedTable::new(&batch.spec)?;
    let operation = format!("commit (upsert into `{}`)", batch.spec.name);
    let columns = q.all.len();
    let mut out = Vec::new();
    let mut rows = batch.rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<RowUpsert> = rows.by_ref().take(rows_per_statement(columns)).collect();
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {} {}",
            q.table,
            q.column_list(),
            placeholders(chunk.len(), columns),
            q.version_guarded_conflict_clause()
        );
        let mut args = SqliteArguments::default();
        for row in chunk {
            for k in row.key {
                bind(&mut args, &operation, k)?;
            }
            bind(&mut args, &operation, row.version)?;
            for v in row.values {
                bind_value(&mut args, &operation, v)?;
            }
        }
        out.push(Statement {
            operation: operation.clone(),
            sql,
            args,
        });
    }
    Ok(out)
}

/// Multi-row inserts of outbox records, each encoded as an [`OutboxRow`],
/// chunked under the parameter limit.
pub(super) fn outbox_statements(
    topology: &str,
    outbox: Vec<OutboxRecord>,
) -> Result<Vec<Statement>, StoreError> {
    let operation = "commit (outbox insert)".to_string();
    let mut out = Vec::new();
    let mut records = outbox.into_iter().peekable();
    while records.peek().is_some() {
        let chunk: Vec<OutboxRecord> = records
            .by_ref()
            .take(rows_per_statement(OUTBOX_COLUMN_COUNT))
            .collect();
        let sql = format!(
            "INSERT INTO \"conductor_outbox\" ({OUTBOX_COLUMNS}) VALUES {}",
            placeholders(chunk.len(), OUTBOX_COLUMN_COUNT)
        );
        let mut args = SqliteArguments::default();
        for r in chunk {
            let row = OutboxRow::encode(r);
            bind(&mut args, &operation, topology.to_string())?;
            bind(&mut args, &operation, row.seq)?;
            bind(&mut args, &operation, row.topic)?;
            bind(&mut args, &operation, row.key)?;
            bind(&mut args, &operation, row.value)?;
            bind(&mut args, &operation, row.headers)?;
            bind(&mut args, &operation, row.source_topic)?;
            bind(&mut args, &operation, row.source_partition)?;
            bind(&mut args, &operation, row.source_offset)?;
            bind(&mut args, &operation, row.source_index)?;
        }
        out.push(Statement {
            operation: operation.clone(),
            sql,
            args,
        });
    }
    Ok(out)
}

/// Multi-row upserts of `topology`'s offsets, chunked under the parameter
/// limit.
pub(super) fn offset_statements(
    operation: &str,
    topology: &str,
    offsets: BTreeMap<(String, i32), i64>,
) -> Result<Vec<Statement>, StoreError> {
    let mut out = Vec::new();
    let mut entries = offsets.into_iter().peekable();
    while entries.peek().is_some() {
        let chunk: Vec<_> = entries.by_ref().take(rows_per_statement(4)).collect();
        let sql = format!(
            "INSERT INTO \"conductor_offsets\" (\"topology\", \"topic\", \"partition\", \"next_offset\") VALUES {} \
             ON CONFLICT (\"topology\", \"topic\", \"partition\") DO UPDATE SET \"next_offset\" = excluded.\"next_offset\"",
            placeholders(chunk.len(), 4)
        );
        let mut args = SqliteArguments::default();
        for ((topic, partition), next_offset) in chunk {
            bind(&mut args, operation, topology.to_string())?;
            bind(&mut args, operation, topic)?;
            bind(&mut args, operation, partition)?;
            bind(&mut args, operation, next_offset)?;
        }
        out.push(Statement {
            operation: operation.to_string(),
            sql,
            args,
        });
    }
    Ok(out)
}

/// Runs prepared statements in `tx`; the first failure rolls back.
pub(super) async fn execute_all(
    tx: &mut Transaction<'static, Sqlite>,
    statements: Vec<Statement>,
) -> Result<(), StoreError> {
    for s in statements {
        // Chunk sizes vary with the batch, so caching these prepared
        // statements would mostly evict useful ones.
        sqlx::query_with(AssertSqlSafe(s.sql), s.args)
            .persistent(false)
            .execute(&mut **tx)
            .await
            .map_err(|e| db_error(s.operation, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_the_parameter_limit() {
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
        for columns in [1, 4, 8, 10, 37] {
            assert!(rows_per_statement(columns) * columns <= MAX_PARAMS);
        }
    }
}
