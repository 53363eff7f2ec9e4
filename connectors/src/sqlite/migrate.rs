//! Migration on SQLite: the bookkeeping DDL (plus the columns added to it
//! since, which SQLite cannot add `IF NOT EXISTS`) and the projection
//! tables' DDL in one write transaction, then the check that existing tables
//! have every column of their spec.

use super::pool::begin_write;
use crate::sql::migrations::{SQLITE, SQLITE_ADDED_COLUMNS};
use crate::sql::{
    Dialect, create_table_statements, db_error, missing_columns, rollback, table_shape_error,
};
use conductor_engine::projection::TableSpec;
use conductor_engine::store::StoreError;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqlitePool;

/// Runs, on the writer pool, the bookkeeping DDL and the DDL of `tables` in one transaction,
/// then checks that existing tables have every column of their spec.
pub(super) async fn run_ddl(writer: &SqlitePool, tables: &[TableSpec]) -> Result<(), StoreError> {
    let mut statements: Vec<String> = SQLITE.iter().map(|s| s.to_string()).collect();
    for spec in tables {
        statements.extend(create_table_statements(spec, Dialect::Sqlite)?);
    }
    let mut tx = begin_write(writer, "migrate").await?;
    for sql in statements {
        if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await {
            return rollback("sqlite", tx, db_error("migrate", e)).await;
        }
    }
    for (table, column, definition) in SQLITE_ADDED_COLUMNS {
        let has: Result<Option<String>, _> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) WHERE name = ?")
                .bind(table)
                .bind(column)
                .fetch_optional(&mut *tx)
                .await;
        let added = match has {
            Ok(Some(_)) => Ok(()),
            Ok(None) => sqlx::query(AssertSqlSafe(format!(
                "ALTER TABLE \"{table}\" ADD COLUMN {definition}"
            )))
            .execute(&mut *tx)
            .await
            .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = added {
            return rollback("sqlite", tx, db_error("migrate (add column)", e)).await;
        }
    }
    for spec in tables {
        let existing: Vec<String> =
            match sqlx::query_scalar("SELECT name FROM pragma_table_info(?)")
                .bind(spec.name)
                .fetch_all(&mut *tx)
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    return rollback("sqlite", tx, db_error("migrate (inspect columns)", e)).await;
                }
            };
        let missing = missing_columns(spec, &existing);
        if !missing.is_empty() {
            return rollback("sqlite", tx, table_shape_error(spec, &missing)).await;
        }
    }
    tx.commit()
        .await
        .map_err(|e| db_error("migrate (commit)", e))
}
