//! A projection table as an Arrow table, read from the projection store.

use super::SqlError;
use conductor_engine::projection::{ColumnType, TableSpec};
use conductor_engine::store::ProjectionStore;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int64Builder, ListBuilder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
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
        ColumnType::Vector => {
            DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
        }
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
            ColumnType::Vector => {
                // Elements dump as JSON numbers widened from f32, so narrowing
                // them again is exact; a non-finite one dumps as null and
                // becomes a null element.
                let mut b = ListBuilder::new(Float32Builder::new())
                    .with_field(Field::new_list_field(DataType::Float32, true));
                cells.for_each(|v| match v.as_array() {
                    None => b.append_null(),
                    Some(items) => {
                        for item in items {
                            b.values().append_option(item.as_f64().map(|f| f as f32));
                        }
                        b.append(true);
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::SqlContext;
    use conductor_engine::log::memory::MemoryLog;
    use conductor_engine::store::StoreCommit;
    use conductor_engine::store::memory::MemoryStore;
    use conductor_engine::testing::{contract_vectors, vector_row, vectors_table};
    use datafusion::arrow::array::{Array, Float32Array, ListArray};

    #[tokio::test]
    async fn vector_columns_read_as_lists_of_f32_bit_for_bit() {
        let spec = vectors_table("sql");
        let store = Arc::new(MemoryStore::new());
        store.migrate(std::slice::from_ref(&spec)).await.unwrap();
        let mut upserts: Vec<_> = contract_vectors()
            .into_iter()
            .map(|(id, v)| vector_row(spec.name, id, 1, Some(v)))
            .collect();
        upserts.push(vector_row(spec.name, "e", 1, None));
        store
            .commit(StoreCommit {
                topology: "sql".into(),
                upserts,
                ..Default::default()
            })
            .await
            .unwrap();

        let (schema, batches) = read_table(store.as_ref(), &spec).await.unwrap();
        assert_eq!(
            schema.field_with_name("embedding").unwrap().data_type(),
            &DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)))
        );
        let lists = batches[0]
            .column_by_name("embedding")
            .unwrap()
            .as_any()
            .downcast_ref::<ListArray>()
            .unwrap();
        for (i, (_, v)) in contract_vectors().into_iter().enumerate() {
            let got = lists.value(i);
            let got = got.as_any().downcast_ref::<Float32Array>().unwrap();
            let bits: Vec<u32> = got.values().iter().map(|f| f.to_bits()).collect();
            assert_eq!(bits, v.iter().map(|f| f.to_bits()).collect::<Vec<_>>());
        }
        assert!(lists.is_null(4), "a NULL vector is a NULL list");

        // And through a query: element access and array functions work.
        let log = Arc::new(MemoryLog::new());
        let ctx = SqlContext::new(log, Some(store), vec![spec]).await.unwrap();
        let result = ctx
            .query(
                "SELECT id, embedding[1] AS first, array_length(embedding) AS n \
                 FROM sql_vectors ORDER BY id",
            )
            .await
            .unwrap();
        let batch = &result.batches[0];
        let first = batch
            .column(1)
            .as_any()
            .downcast_ref::<Float32Array>()
            .unwrap();
        assert_eq!(first.value(0), contract_vectors()[0].1[0]);
        assert_eq!(first.value(1), 0.1);
        assert_eq!(first.value(2), 0.5);
        assert!(
            first.is_null(3) && first.is_null(4),
            "empty and NULL vectors"
        );
    }
}
