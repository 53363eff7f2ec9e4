//! Migration on Postgres: the bookkeeping DDL and the projection tables'
//! DDL, in one transaction under the DDL advisory lock, then the check that
//! existing tables have every column of their spec.

use crate::sql::migrations::{POSTGRES, POSTGRES_DDL_LOCK};
use crate::sql::{
    Dialect, create_table_statements, db_error, missing_columns, rollback, table_shape_error,
};
use conductor_engine::projection::TableSpec;
use conductor_engine::store::StoreError;
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPool;

/// Runs, on `pool` in one transaction under the DDL advisory lock: creation
/// of `schema` (quoted), the bookkeeping DDL and the DDL of `tables`; then
/// checks that existing tables have every column of their spec.
pub(super) async fn run_ddl(
    pool: &PgPool,
    schema: Option<&str>,
    tables: &[TableSpec],
) -> Result<(), StoreError> {
    let mut statements = Vec::new();
    if let Some(schema) = schema {
        statements.push(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
    }
    statements.extend(POSTGRES.iter().map(|s| s.to_string()));
    for spec in tables {
        statements.extend(create_table_statements(spec, Dialect::Postgres)?);
    }
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| db_error("migrate (begin)", e))?;
    if let Err(e) = sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(POSTGRES_DDL_LOCK)
        .execute(&mut *tx)
        .await
    {
        return rollback("postgres", tx, db_error("migrate (advisory lock)", e)).await;
    }
    for sql in statements {
        if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await {
            return rollback("postgres", tx, db_error("migrate", e)).await;
        }
    }
    for spec in tables {
        let existing: Vec<String> = match sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
        )
        .bind(spec.name)
        .fetch_all(&mut *tx)
        .await
        {
            Ok(v) => v,
            Err(e) => {
                return rollback("postgres", tx, db_error("migrate (inspect columns)", e)).await;
            }
        };
        let missing = missing_columns(spec, &existing);
        if !missing.is_empty() {
            return rollback("postgres", tx, table_shape_error(spec, &missing)).await;
        }
    }
    tx.commit()
        .await
        .map_err(|e| db_error("migrate (commit)", e))
}
