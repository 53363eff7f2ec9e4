//! Projection rows read back from SQLite as the JSON the memory store dumps
//! (`memory::value_to_json`), in the same key order.

use crate::sql::{QuotedTable, table_read_error};
use conductor_engine::projection::{
    ColumnSpec, ColumnType, SqlValue, TableSpec, vector_from_bytes,
};
use conductor_engine::store::StoreError;
use conductor_engine::store::memory::value_to_json;
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

/// One dumped cell as `memory::value_to_json` renders it.
fn cell_json(row: &SqliteRow, i: usize, col: &ColumnSpec) -> Result<serde_json::Value, String> {
    let err = |e: sqlx::Error| format!("column `{}`: {e}", col.name);
    Ok(match col.ty {
        // Timestamps are stored in their dump form already.
        ColumnType::Text | ColumnType::Timestamp => {
            row.try_get::<Option<String>, _>(i).map_err(err)?.into()
        }
        ColumnType::BigInt => row.try_get::<Option<i64>, _>(i).map_err(err)?.into(),
        ColumnType::Double => row
            .try_get::<Option<f64>, _>(i)
            .map_err(err)?
            .and_then(serde_json::Number::from_f64)
            .map_or(serde_json::Value::Null, Into::into),
        ColumnType::Bool => row.try_get::<Option<bool>, _>(i).map_err(err)?.into(),
        ColumnType::Json => match row.try_get::<Option<String>, _>(i).map_err(err)? {
            None => serde_json::Value::Null,
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| format!("column `{}` holds invalid JSON: {e}", col.name))?,
        },
        ColumnType::Vector => match row.try_get::<Option<Vec<u8>>, _>(i).map_err(err)? {
            None => serde_json::Value::Null,
            Some(bytes) => value_to_json(&SqlValue::Vector(
                vector_from_bytes(&bytes).map_err(|e| format!("column `{}`: {e}", col.name))?,
            )),
        },
    })
}

/// Every row of `table` as JSON, in key order, read on `conn`.
pub(super) async fn dump_rows(
    conn: &mut SqliteConnection,
    table: &TableSpec,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let q = QuotedTable::new(table)?;
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        q.column_list(),
        q.table,
        q.key_list()
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
        .collect::<Result<_, String>>()
        .map_err(|detail| StoreError::Database {
            operation: format!("dump `{}`", table.name),
            detail,
            source: None,
        })
}
