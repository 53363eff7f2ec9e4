//! The statements of a Postgres commit, encoded before the transaction
//! opens. Each table's rows, the outbox records and the offsets go in as one
//! `INSERT … SELECT * FROM UNNEST($1::text[], $2::bigint[], …)` each, one
//! bound array per column, so the statement text (and its prepared plan) is
//! the same for 1 row or 50,000 and there is no parameter limit to chunk
//! around.

use crate::sql::migrations::OUTBOX_COLUMNS;
use crate::sql::{OutboxRow, QuotedTable, TableBatch, db_error};
use chrono::{DateTime, Utc};
use conductor_engine::projection::{ColumnType, SqlValue, vector_to_bytes};
use conductor_engine::store::{OutboxRecord, StoreError};
use sqlx::postgres::PgArguments;
use sqlx::{Arguments, AssertSqlSafe, Postgres, Transaction};
use std::collections::BTreeMap;

pub(super) fn bind<'t, T>(
    args: &mut PgArguments,
    operation: &str,
    value: T,
) -> Result<(), StoreError>
where
    T: sqlx::Encode<'t, Postgres> + sqlx::Type<Postgres>,
{
    args.add(value).map_err(|e| StoreError::Database {
        operation: operation.to_string(),
        detail: format!("cannot encode a value: {e}"),
        source: None,
    })
}

/// One column of a batch as a typed array, for `UNNEST`.
enum ColumnArray {
    Text(Vec<Option<String>>),
    BigInt(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Json(Vec<Option<serde_json::Value>>),
    Timestamp(Vec<Option<DateTime<Utc>>>),
    /// Vectors as their stored bytes ([`vector_to_bytes`]).
    Vector(Vec<Option<Vec<u8>>>),
}

impl ColumnArray {
    fn new(ty: ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::Text => Self::Text(Vec::with_capacity(capacity)),
            ColumnType::BigInt => Self::BigInt(Vec::with_capacity(capacity)),
            ColumnType::Double => Self::Double(Vec::with_capacity(capacity)),
            ColumnType::Bool => Self::Bool(Vec::with_capacity(capacity)),
            ColumnType::Json => Self::Json(Vec::with_capacity(capacity)),
            ColumnType::Timestamp => Self::Timestamp(Vec::with_capacity(capacity)),
            ColumnType::Vector => Self::Vector(Vec::with_capacity(capacity)),
        }
    }

    /// The SQL array type the parameter is cast to.
    fn sql_type(&self) -> &'static str {
        match self {
            Self::Text(_) => "text[]",
            Self::BigInt(_) => "bigint[]",
            Self::Double(_) => "float8[]",
            Self::Bool(_) => "boolean[]",
            Self::Json(_) => "jsonb[]",
            Self::Timestamp(_) => "timestamptz[]",
            Self::Vector(_) => "bytea[]",
        }
    }

    /// Appends a value [`validate_upsert`] has checked against the column type.
    fn push(&mut self, value: SqlValue) {
        match (self, value) {
            (Self::Text(v), SqlValue::Text(s)) => v.push(Some(s)),
            (Self::BigInt(v), SqlValue::BigInt(i)) => v.push(Some(i)),
            (Self::Double(v), SqlValue::Double(d)) => v.push(d.is_finite().then_some(d)),
            (Self::Bool(v), SqlValue::Bool(b)) => v.push(Some(b)),
            (Self::Json(v), SqlValue::Json(j)) => v.push(Some(j)),
            (Self::Timestamp(v), SqlValue::Timestamp(t)) => v.push(Some(t)),
            (Self::Vector(v), SqlValue::Vector(f)) => v.push(Some(vector_to_bytes(&f))),
            (Self::Text(v), _) => v.push(None),
            (Self::BigInt(v), _) => v.push(None),
            (Self::Double(v), _) => v.push(None),
            (Self::Bool(v), _) => v.push(None),
            (Self::Json(v), _) => v.push(None),
            (Self::Timestamp(v), _) => v.push(None),
            (Self::Vector(v), _) => v.push(None),
        }
    }

    fn bind(self, args: &mut PgArguments, operation: &str) -> Result<(), StoreError> {
        match self {
            Self::Text(v) => bind(args, operation, v),
            Self::BigInt(v) => bind(args, operation, v),
            Self::Double(v) => bind(args, operation, v),
            Self::Bool(v) => bind(args, operation, v),
            Self::Json(v) => bind(args, operation, v),
            Self::Timestamp(v) => bind(args, operation, v),
            Self::Vector(v) => bind(args, operation, v),
        }
    }
}

/// A statement ready to run: what it is for (for errors), its SQL, its binds.
pub(super) struct Statement {
    operation: String,
    sql: String,
    args: PgArguments,
}

/// `$1::text[], $2::bigint[], …` for the given array types.
pub(super) fn unnest_params(types: &[&str], first: usize) -> String {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The version-guarded upsert of one table's rows as one UNNEST statement.
pub(super) fn upsert_statement(batch: TableBatch) -> Result<Statement, StoreError> {
    let q = QuotedTable::new(&batch.spec)?;
    let operation = format!("commit (upsert into `{}`)", batch.spec.name);
    let n = batch.rows.len();
    let mut arrays: Vec<ColumnArray> = batch
        .spec
        .all_columns()
        .iter()
        .map(|c| ColumnArray::new(c.ty, n))
        .collect();
    let keys = batch.spec.key.len();
    for row in batch.rows {
        for (i, k) in row.key.into_iter().enumerate() {
            arrays[i].push(SqlValue::Text(k));
        }
        arrays[keys].push(SqlValue::BigInt(row.version));
        for (i, v) in row.values.into_iter().enumerate() {
            arrays[keys + 1 + i].push(v);
        }
    }
    let types: Vec<&str> = arrays.iter().map(ColumnArray::sql_type).collect();
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM UNNEST({}) {}",
        q.table,
        q.column_list(),
        unnest_params(&types, 1),
        q.version_guarded_conflict_clause()
    );
    let mut args = PgArguments::default();
    for a in arrays {
        a.bind(&mut args, &operation)?;
    }
    Ok(Statement {
        operation,
        sql,
        args,
    })
}

/// The outbox records of a batch as one UNNEST insert, one array per column
/// of their [`OutboxRow`]s.
pub(super) fn outbox_statement(
    topology: &str,
    outbox: Vec<OutboxRecord>,
) -> Result<Statement, StoreError> {
    let operation = "commit (outbox insert)";
    let n = outbox.len();
    let (mut seq, mut topic, mut key, mut value, mut headers) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut src_topic, mut src_partition, mut src_offset, mut src_index) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for r in outbox {
        let row = OutboxRow::encode(r);
        seq.push(row.seq);
        topic.push(row.topic);
        key.push(row.key);
        value.push(row.value);
        headers.push(row.headers);
        src_topic.push(row.source_topic);
        src_partition.push(row.source_partition);
        src_offset.push(row.source_offset);
        src_index.push(row.source_index);
    }
    let types = [
        "bigint[]",
        "text[]",
        "bytea[]",
        "bytea[]",
        "text[]",
        "text[]",
        "integer[]",
        "bigint[]",
        "bigint[]",
    ];
    let sql = format!(
        "INSERT INTO \"conductor_outbox\" ({OUTBOX_COLUMNS}) SELECT $1::text, * FROM UNNEST({})",
        unnest_params(&types, 2)
    );
    let mut args = PgArguments::default();
    bind(&mut args, operation, topology)?;
    bind(&mut args, operation, seq)?;
    bind(&mut args, operation, topic)?;
    bind(&mut args, operation, key)?;
    bind(&mut args, operation, value)?;
    bind(&mut args, operation, headers)?;
    bind(&mut args, operation, src_topic)?;
    bind(&mut args, operation, src_partition)?;
    bind(&mut args, operation, src_offset)?;
    bind(&mut args, operation, src_index)?;
    Ok(Statement {
        operation: operation.into(),
        sql,
        args,
    })
}

/// The upsert of `topology`'s offsets as one UNNEST statement.
pub(super) fn offsets_statement(
    operation: &str,
    topology: &str,
    offsets: BTreeMap<(String, i32), i64>,
) -> Result<Statement, StoreError> {
    let (mut topics, mut partitions, mut next) = (Vec::new(), Vec::new(), Vec::new());
    for ((topic, partition), offset) in offsets {
        topics.push(topic);
        partitions.push(partition);
        next.push(offset);
    }
    let sql = r#"INSERT INTO "conductor_offsets" ("topology", "topic", "partition", "next_offset")
                 SELECT $1::text, * FROM UNNEST($2::text[], $3::integer[], $4::bigint[])
                 ON CONFLICT ("topology", "topic", "partition") DO UPDATE SET "next_offset" = EXCLUDED."next_offset""#;
    let mut args = PgArguments::default();
    bind(&mut args, operation, topology)?;
    bind(&mut args, operation, topics)?;
    bind(&mut args, operation, partitions)?;
    bind(&mut args, operation, next)?;
    Ok(Statement {
        operation: operation.into(),
        sql: sql.into(),
        args,
    })
}

/// Runs prepared statements in `tx`, stopping at the first failure.
pub(super) async fn execute_all(
    tx: &mut Transaction<'static, Postgres>,
    statements: Vec<Statement>,
) -> Result<(), StoreError> {
    for s in statements {
        sqlx::query_with(AssertSqlSafe(s.sql), s.args)
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
    fn upsert_is_one_unnest_statement_with_one_array_per_column() {
        let spec = conductor_engine::testing::contract_table("rows");
        let statement = upsert_statement(TableBatch { spec, rows: vec![] }).unwrap();
        assert!(
            statement.sql.starts_with(
                "INSERT INTO \"rows\" (\"tenant_id\", \"id\", \"version\", \"label\", \"count\", \"deleted\", \"attributes\", \"updated_at\") \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::boolean[], $7::jsonb[], \
                 $8::timestamptz[]) ON CONFLICT (\"tenant_id\", \"id\") DO UPDATE SET "
            ),
            "{}",
            statement.sql
        );
        assert!(
            statement
                .sql
                .ends_with("WHERE \"rows\".\"version\" < excluded.\"version\""),
            "{}",
            statement.sql
        );
    }
}
