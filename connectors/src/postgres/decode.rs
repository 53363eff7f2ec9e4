//! Projection rows read back from Postgres as the JSON the memory store
//! dumps (`memory::value_to_json`), in the same key order.

use crate::sql::{QuotedTable, db_error, format_timestamp, table_read_error};
use chrono::{DateTime, Utc};
use conductor_engine::projection::{
    ColumnSpec, ColumnType, SqlValue, TableSpec, vector_from_bytes,
};
use conductor_engine::store::StoreError;
use conductor_engine::store::memory::value_to_json;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{AssertSqlSafe, Row};

/// One dumped cell as `memory::value_to_json` renders it.
fn cell_json(row: &PgRow, i: usize, col: &ColumnSpec) -> Result<serde_json::Value, sqlx::Error> {
    Ok(match col.ty {
        ColumnType::Text => row.try_get::<Option<String>, _>(i)?.into(),
        ColumnType::BigInt => row.try_get::<Option<i64>, _>(i)?.into(),
        ColumnType::Double => row
            .try_get::<Option<f64>, _>(i)?
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, Into::into),
        ColumnType::Bool => row.try_get::<Option<bool>, _>(i)?.into(),
        ColumnType::Json => row
            .try_get::<Option<serde_json::Value>, _>(i)?
            .unwrap_or(serde_json::Value::Null),
        ColumnType::Timestamp => row
            .try_get::<Option<DateTime<Utc>>, _>(i)?
            .map(|t| format_timestamp(&t))
            .into(),
        ColumnType::Vector => match row.try_get::<Option<Vec<u8>>, _>(i)? {
            None => serde_json::Value::Null,
            Some(bytes) => {
                value_to_json(&SqlValue::Vector(vector_from_bytes(&bytes).map_err(
                    |e| sqlx::Error::Decode(format!("column `{}`: {e}", col.name).into()),
                )?))
            }
        },
    })
}

/// Every row of `table` as JSON, in key order, read on `conn`.
pub(super) async fn dump_rows(
    conn: &mut PgConnection,
    table: &TableSpec,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let q = QuotedTable::new(table)?;
    // Byte order whatever the column's collation, to order like the memory store.
    let order: Vec<String> = q.key.iter().map(|k| format!("{k} COLLATE \"C\"")).collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        q.column_list(),
        q.table,
        order.join(", ")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(conn)
        .await
        .map_err(|e| table_read_error("dump", table, e))?;
    let columns = table.all_columns();
    rows.iter()
        .map(|row| {
            let mut m = serde_json::Map::new();
            for (i, col) in columns.iter().enumerate() {
                m.insert(col.name.to_string(), cell_json(row, i, col)?);
            }
            Ok(serde_json::Value::Object(m))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| db_error(format!("dump `{}`", table.name), e))
}
