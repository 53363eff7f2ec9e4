//! A projection table as an Arrow table, read from the projection store.

use super::SqlError;
use conductor_engine::projection::{ColumnType, TableSpec};
use conductor_engine::store::ProjectionStore;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;
use std::sync::Arc;

fn data_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Text | ColumnType::Json => DataType::Utf8,
        ColumnType::BigInt => DataType::Int64,
        ColumnType::Double => DataType::Float64,
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The Arrow schema of a projection table (JSON columns as JSON text).
pub fn table_schema(spec: &TableSpec) -> SchemaRef {
    Arc::new(Schema::new(
        spec.all_columns()
            .iter()
            .map(|c| Field::new(c.name, data_type(c.ty), true))
            .collect::<Vec<_>>(),
    ))
}

/// Reads every row of `spec` from `store` into one record batch.
pub async fn read_table(
    store: &dyn ProjectionStore,
    spec: &TableSpec,
) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
    let rows = store.dump_table(spec).await?;
    let schema = table_schema(spec);
    let mut columns: Vec<ArrayRef> = Vec::new();
    for c in spec.all_columns() {
        let cells = rows.iter().map(|r| r.get(c.name).unwrap_or(&Value::Null));
        let array: ArrayRef = match c.ty {
            ColumnType::Text => {
                let mut b = StringBuilder::new();
                cells.for_each(|v| b.append_option(v.as_str()));
                Arc::new(b.finish())
            }
            ColumnType::Json => {
                let mut b = StringBuilder::new();
                cells.for_each(|v| match v {
                    Value::Null => b.append_null(),
                    v => b.append_value(v.to_string()),
                });
                Arc::new(b.finish())
            }
            ColumnType::BigInt => {
                let mut b = Int64Builder::new();
                cells.for_each(|v| b.append_option(v.as_i64()));
                Arc::new(b.finish())
            }
            ColumnType::Double => {
                let mut b = Float64Builder::new();
                cells.for_each(|v| b.append_option(v.as_f64()));
                Arc::new(b.finish())
            }
            ColumnType::Bool => {
                let mut b = BooleanBuilder::new();
                cells.for_each(|v| b.append_option(v.as_bool()));
                Arc::new(b.finish())
            }
            ColumnType::Timestamp => {
                let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
                cells.for_each(|v| {
                    b.append_option(
                        v.as_str()
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            .map(|t| t.timestamp_micros()),
                    )
                });
                Arc::new(b.finish())
            }
        };
        columns.push(array);
    }
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| {
        SqlError::Internal(format!("building the Arrow batch of {}: {e}", spec.name))
    })?;
    Ok((schema, vec![batch]))
}
