//! [`PostgresStore`]: the production projection store.
//!
//! A batch is one transaction of a handful of statements whatever its size:
//! each table's rows go in as one `INSERT … SELECT * FROM UNNEST($1::text[],
//! $2::bigint[], …) ON CONFLICT … DO UPDATE … WHERE t.version <
//! EXCLUDED.version`, one bound array per column, so the statement text (and
//! its prepared plan) is the same for 1 row or 50,000 and there is no
//! parameter limit to chunk around. The outbox and the offsets go in the same
//! way.
//!
//! [`PostgresStore::copy_rows`] is a plain `COPY` of the same rows without
//! the version guard: not part of the contract, it is the ceiling benchmarks
//! compare the exactly-once upserts against.

use super::migrations::{OUTBOX_COLUMNS, POSTGRES_DDL_LOCK};
use super::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use conductor_engine::log::SourcePosition;
use conductor_engine::store::{
    ProjectionStore, StoreCommit, StoreSnapshot, TopologyControl, check_fence,
};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Arguments, AssertSqlSafe, Connection, Postgres, Row, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long the first connection may take before the server counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Pool size: a topology commits from one task per partition group, and
/// reads (relay, CLI status) are short.
const MAX_CONNECTIONS: u32 = 8;

/// Bytes of COPY data sent per message.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// A [`ProjectionStore`] in a Postgres database, optionally confined to one
/// schema. Cloning shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The schema every connection's `search_path` points at, quoted.
    schema: Option<String>,
    tables: Arc<TableRegistry>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl PostgresStore {
    /// Connects to `url` and creates the bookkeeping tables.
    ///
    /// With `schema`, the schema is created if missing and every pooled
    /// connection gets `search_path` set to it, so that all tables of this
    /// store live there (tests use a fresh schema each and
    /// [`drop_schema`](Self::drop_schema) it afterwards).
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<PostgresStore, StoreError> {
        let target = redact_url(url);
        let connect_error = |detail: String| StoreError::Connect {
            backend: "postgres",
            target: target.clone(),
            detail,
        };
        let options = PgConnectOptions::from_str(url).map_err(|e| connect_error(e.to_string()))?;
        let schema = schema.map(quote_ident).transpose()?;

        // One direct connection first: an unreachable server then fails fast
        // with the driver's own reason, where the pool would keep retrying
        // until its acquire timeout and report only that.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| connect_error(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| connect_error(e.to_string()))?;
        if let Err(e) = probe.close().await {
            tracing::debug!(error = %e, "closing the probe connection failed");
        }

        let set_search_path = schema
            .as_ref()
            .map(|s| Arc::new(format!("SET search_path TO {s}")));
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _meta| {
                let sql = set_search_path.clone();
                Box::pin(async move {
                    if let Some(sql) = sql {
                        sqlx::query(AssertSqlSafe(sql)).execute(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let store = PostgresStore {
            pool,
            schema,
            tables: Arc::default(),
        };
        store.run_ddl(&[]).await?;
        Ok(store)
    }

    /// The underlying pool (for benchmarks and tests that query directly).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Drops this store's schema with everything in it (test cleanup). Fails
    /// when the store was connected without a schema: it will not drop
    /// `public`.
    pub async fn drop_schema(&self) -> Result<(), StoreError> {
        let Some(schema) = &self.schema else {
            return Err(StoreError::Database {
                operation: "drop schema".into(),
                detail:
                    "this store was connected without a schema; refusing to drop the default one"
                        .into(),
                source: None,
            });
        };
        sqlx::query(AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("drop schema", e))?;
        Ok(())
    }

    /// Closes the pool, waiting for running statements.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Loads `rows` into `table` with one `COPY … FROM STDIN`, without the
    /// version guard (an existing key is a unique violation). Returns the
    /// number of rows copied. This is the speed ceiling for batch writes,
    /// not an exactly-once path.
    pub async fn copy_rows(
        &self,
        table: &TableSpec,
        rows: &[RowUpsert],
    ) -> Result<u64, StoreError> {
        let operation = format!("copy into `{}`", table.name);
        validate_spec(table)?;
        let q = QuotedTable::new(table)?;
        let mut data = Vec::with_capacity(rows.len() * 128);
        for row in rows {
            if row.table != table.name {
                return Err(StoreError::Database {
                    operation,
                    detail: format!("row {:?} is for table `{}`", row.key, row.table),
                    source: None,
                });
            }
            validate_upsert(table, row)?;
            copy_text_row(&mut data, row);
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| db_error(operation.clone(), e))?;
        let sql = format!(
            "COPY {} ({}) FROM STDIN (FORMAT text)",
            q.table,
            q.column_list()
        );
        let mut copy = conn
            .copy_in_raw(&sql)
            .await
            .map_err(|e| table_read_error("copy into", table, e))?;
        for chunk in data.chunks(COPY_CHUNK_BYTES) {
            if let Err(e) = copy.send(chunk).await {
                // The server error (if any) surfaces on abort; keep the first.
                let _ = copy.abort("conductor: sending COPY data failed").await;
                return Err(db_error(operation, e));
            }
        }
        copy.finish().await.map_err(|e| db_error(operation, e))
    }

    /// Runs, in one transaction under the DDL advisory lock: schema creation,
    /// the bookkeeping DDL and the DDL of `tables`; then checks that existing
    /// tables have every column of their spec.
    async fn run_ddl(&self, tables: &[TableSpec]) -> Result<(), StoreError> {
        let mut statements = Vec::new();
        if let Some(schema) = &self.schema {
            statements.push(format!("CREATE SCHEMA IF NOT EXISTS {schema}"));
        }
        statements.extend(migrations::POSTGRES.iter().map(|s| s.to_string()));
        for spec in tables {
            statements.extend(create_table_statements(spec, Dialect::Postgres)?);
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("migrate (begin)", e))?;
        if let Err(e) = sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(POSTGRES_DDL_LOCK)
            .execute(&mut *tx)
            .await
        {
            return rollback(tx, db_error("migrate (advisory lock)", e)).await;
        }
        for sql in statements {
            if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await {
                return rollback(tx, db_error("migrate", e)).await;
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
                Err(e) => return rollback(tx, db_error("migrate (inspect columns)", e)).await,
            };
            let missing = missing_columns(spec, &existing);
            if !missing.is_empty() {
                return rollback(tx, table_shape_error(spec, &missing)).await;
            }
        }
        tx.commit()
            .await
            .map_err(|e| db_error("migrate (commit)", e))
    }
}

/// Rolls `tx` back and returns `error` (see the SQLite store for why not on drop).
async fn rollback<T>(
    tx: Transaction<'static, Postgres>,
    error: StoreError,
) -> Result<T, StoreError> {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "postgres rollback failed after an error; the connection will be reset");
    }
    Err(error)
}

fn bind<'t, T>(args: &mut PgArguments, operation: &str, value: T) -> Result<(), StoreError>
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
    Bool(Vec<Option<bool>>),
    Json(Vec<Option<serde_json::Value>>),
    Timestamp(Vec<Option<DateTime<Utc>>>),
}

impl ColumnArray {
    fn new(ty: ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::Text => Self::Text(Vec::with_capacity(capacity)),
            ColumnType::BigInt => Self::BigInt(Vec::with_capacity(capacity)),
            ColumnType::Bool => Self::Bool(Vec::with_capacity(capacity)),
            ColumnType::Json => Self::Json(Vec::with_capacity(capacity)),
            ColumnType::Timestamp => Self::Timestamp(Vec::with_capacity(capacity)),
        }
    }

    /// The SQL array type the parameter is cast to.
    fn sql_type(&self) -> &'static str {
        match self {
            Self::Text(_) => "text[]",
            Self::BigInt(_) => "bigint[]",
            Self::Bool(_) => "boolean[]",
            Self::Json(_) => "jsonb[]",
            Self::Timestamp(_) => "timestamptz[]",
        }
    }

    /// Appends a value [`validate_upsert`] has checked against the column type.
    fn push(&mut self, value: SqlValue) {
        match (self, value) {
            (Self::Text(v), SqlValue::Text(s)) => v.push(Some(s)),
            (Self::BigInt(v), SqlValue::BigInt(i)) => v.push(Some(i)),
            (Self::Bool(v), SqlValue::Bool(b)) => v.push(Some(b)),
            (Self::Json(v), SqlValue::Json(j)) => v.push(Some(j)),
            (Self::Timestamp(v), SqlValue::Timestamp(t)) => v.push(Some(t)),
            (Self::Text(v), _) => v.push(None),
            (Self::BigInt(v), _) => v.push(None),
            (Self::Bool(v), _) => v.push(None),
            (Self::Json(v), _) => v.push(None),
            (Self::Timestamp(v), _) => v.push(None),
        }
    }

    fn bind(self, args: &mut PgArguments, operation: &str) -> Result<(), StoreError> {
        match self {
            Self::Text(v) => bind(args, operation, v),
            Self::BigInt(v) => bind(args, operation, v),
            Self::Bool(v) => bind(args, operation, v),
            Self::Json(v) => bind(args, operation, v),
            Self::Timestamp(v) => bind(args, operation, v),
        }
    }
}

/// A statement ready to run: what it is for (for errors), its SQL, its binds.
struct Statement {
    operation: String,
    sql: String,
    args: PgArguments,
}

/// `$1::text[], $2::bigint[], …` for the given array types.
fn unnest_params(types: &[&str], first: usize) -> String {
    types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}", first + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The version-guarded upsert of one table's rows as one UNNEST statement.
fn upsert_statement(batch: TableBatch) -> Result<Statement, StoreError> {
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

fn outbox_statement(topology: &str, outbox: Vec<OutboxRecord>) -> Result<Statement, StoreError> {
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
        seq.push(r.seq);
        topic.push(r.topic);
        key.push(r.key);
        value.push(r.value);
        headers.push(headers_to_json(&r.headers));
        src_topic.push(r.source.topic);
        src_partition.push(r.source.partition);
        src_offset.push(r.source.offset);
        src_index.push(i64::from(r.source_index));
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

fn offsets_statement(
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

async fn execute_all(
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

/// Appends one row in COPY text format: tab-separated, `\N` for NULL,
/// backslash escapes for the characters the format reserves.
fn copy_text_row(out: &mut Vec<u8>, row: &RowUpsert) {
    fn field(out: &mut Vec<u8>, text: &str) {
        for b in text.bytes() {
            match b {
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => out.push(b),
            }
        }
    }
    for k in &row.key {
        field(out, k);
        out.push(b'\t');
    }
    out.extend_from_slice(row.version.to_string().as_bytes());
    for v in &row.values {
        out.push(b'\t');
        match v {
            SqlValue::Null => out.extend_from_slice(b"\\N"),
            SqlValue::Text(s) => field(out, s),
            SqlValue::BigInt(i) => out.extend_from_slice(i.to_string().as_bytes()),
            SqlValue::Bool(b) => out.push(if *b { b't' } else { b'f' }),
            SqlValue::Json(j) => field(out, &j.to_string()),
            SqlValue::Timestamp(t) => field(out, &format_timestamp(t)),
        }
    }
    out.push(b'\n');
}

/// One dumped cell as `memory::value_to_json` renders it.
fn cell_json(row: &PgRow, i: usize, col: &ColumnSpec) -> Result<serde_json::Value, sqlx::Error> {
    Ok(match col.ty {
        ColumnType::Text => row.try_get::<Option<String>, _>(i)?.into(),
        ColumnType::BigInt => row.try_get::<Option<i64>, _>(i)?.into(),
        ColumnType::Bool => row.try_get::<Option<bool>, _>(i)?.into(),
        ColumnType::Json => row
            .try_get::<Option<serde_json::Value>, _>(i)?
            .unwrap_or(serde_json::Value::Null),
        ColumnType::Timestamp => row
            .try_get::<Option<DateTime<Utc>>, _>(i)?
            .map(|t| format_timestamp(&t))
            .into(),
    })
}

fn outbox_record(row: &PgRow) -> Result<OutboxRecord, String> {
    let seq: i64 = row.try_get("seq").map_err(|e| e.to_string())?;
    let get = |e: sqlx::Error| format!("outbox seq {seq}: {e}");
    let headers: String = row.try_get("headers").map_err(get)?;
    let source_index: i64 = row.try_get("source_index").map_err(get)?;
    Ok(OutboxRecord {
        seq,
        topic: row.try_get("topic").map_err(get)?,
        key: row.try_get("key").map_err(get)?,
        value: row.try_get("value").map_err(get)?,
        headers: headers_from_json(&headers).map_err(|e| format!("outbox seq {seq}: {e}"))?,
        source: SourcePosition {
            topic: row.try_get("source_topic").map_err(get)?,
            partition: row.try_get("source_partition").map_err(get)?,
            offset: row.try_get("source_offset").map_err(get)?,
        },
        source_index: u32::try_from(source_index)
            .map_err(|_| format!("outbox seq {seq}: source_index {source_index} out of range"))?,
    })
}

#[async_trait]
impl ProjectionStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self, tables: &[TableSpec]) -> Result<(), StoreError> {
        self.run_ddl(tables).await?;
        for spec in tables {
            self.tables.insert(spec);
        }
        Ok(())
    }

    async fn load_offsets(
        &self,
        topology: &str,
    ) -> Result<BTreeMap<(String, i32), i64>, StoreError> {
        let rows: Vec<(String, i32, i64)> =
            sqlx::query_as(r#"SELECT "topic", "partition", "next_offset" FROM "conductor_offsets" WHERE "topology" = $1"#)
                .bind(topology)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| db_error("load offsets", e))?;
        Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
    }

    async fn store_offsets(
        &self,
        topology: &str,
        offsets: &[InputPosition],
    ) -> Result<(), StoreError> {
        let operation = "store offsets";
        let statement = offsets_statement(operation, topology, dedupe_offsets(offsets.to_vec()))?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("store offsets (begin)", e))?;
        if let Err(e) = sqlx::query(r#"DELETE FROM "conductor_offsets" WHERE "topology" = $1"#)
            .bind(topology)
            .execute(&mut *tx)
            .await
        {
            return rollback(tx, db_error(operation, e)).await;
        }
        if let Err(e) = execute_all(&mut tx, vec![statement]).await {
            return rollback(tx, e).await;
        }
        tx.commit()
            .await
            .map_err(|e| db_error("store offsets (commit)", e))
    }

    async fn current_versions(
        &self,
        table: &TableSpec,
        keys: &[Vec<String>],
    ) -> Result<HashMap<Vec<String>, i64>, StoreError> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let operation = format!("current versions of `{}`", table.name);
        let n = table.key.len();
        if let Some(bad) = keys.iter().find(|k| k.len() != n) {
            return Err(StoreError::Database {
                operation,
                detail: format!(
                    "key {bad:?} has {} part(s); the table's key has {n}",
                    bad.len()
                ),
                source: None,
            });
        }
        let q = QuotedTable::new(table)?;
        let sql = format!(
            "SELECT {}, \"version\" FROM {} WHERE ({}) IN (SELECT * FROM UNNEST({}))",
            q.key_list(),
            q.table,
            q.key_list(),
            unnest_params(&vec!["text[]"; n], 1)
        );
        let mut args = PgArguments::default();
        for i in 0..n {
            bind(
                &mut args,
                &operation,
                keys.iter().map(|k| k[i].as_str()).collect::<Vec<&str>>(),
            )?;
        }
        let rows = sqlx::query_with(AssertSqlSafe(sql), args)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| table_read_error("current versions of", table, e))?;
        rows.iter()
            .map(|row| {
                let key = (0..n)
                    .map(|i| row.try_get::<String, _>(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((key, row.try_get::<i64, _>(n)?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| db_error(operation, e))
    }

    async fn load_state(
        &self,
        topology: &str,
        scope: &str,
    ) -> Result<Option<conductor_engine::store::StateSnapshot>, StoreError> {
        let row: Option<(i64, Vec<u8>, String)> = sqlx::query_as(
            r#"SELECT "format_version", "state", "positions" FROM "conductor_state" WHERE "topology" = $1 AND "scope" = $2"#,
        )
        .bind(topology)
        .bind(scope)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("load state", e))?;
        row.map(|(v, bytes, positions)| {
            crate::sql::state_from_row(scope.to_string(), v, bytes, &positions)
        })
        .transpose()
    }

    async fn next_outbox_seq(&self, topology: &str) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar(
            r#"SELECT "next_seq" FROM "conductor_outbox_seq" WHERE "topology" = $1"#,
        )
        .bind(topology)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| db_error("next outbox seq", e))?;
        Ok(seq.unwrap_or(0))
    }

    async fn commit(&self, commit: StoreCommit) -> Result<(), StoreError> {
        let StoreCommit {
            topology,
            upserts,
            outbox,
            offsets,
            epoch,
            state,
        } = commit;
        // Validation and encoding happen before the transaction opens, so
        // row locks are held only for the statements themselves.
        check_outbox_dense(&topology, &outbox)?;
        let first_seq = outbox.first().map(|r| r.seq);
        let next_seq = outbox.last().map(|r| r.seq + 1);
        let mut statements = Vec::new();
        for batch in group_upserts(&self.tables, upserts)? {
            statements.push(upsert_statement(batch)?);
        }
        if !outbox.is_empty() {
            statements.push(outbox_statement(&topology, outbox)?);
        }
        let offsets = dedupe_offsets(offsets);
        if !offsets.is_empty() {
            statements.push(offsets_statement("commit (offsets)", &topology, offsets)?);
        }

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| db_error("commit (begin)", e))?;
        if epoch.is_some() {
            // FOR SHARE conflicts with set_paused's UPDATE: a pause either
            // waits for this commit or is seen by it, never slips between.
            let control = sqlx::query_as::<_, (bool, i64)>(
                r#"SELECT "paused", "epoch" FROM "conductor_topology_control" WHERE "topology" = $1 FOR SHARE"#,
            )
            .bind(&topology)
            .fetch_optional(&mut *tx)
            .await;
            let control = match control {
                Ok(c) => c
                    .map(|(paused, epoch)| TopologyControl { paused, epoch })
                    .unwrap_or_default(),
                Err(e) => return rollback(tx, db_error("commit (read control)", e)).await,
            };
            if let Err(e) = check_fence(&topology, &control, epoch) {
                return rollback(tx, e).await;
            }
        }
        if let Some(first) = first_seq {
            // Create the seq row if missing, then lock it: a second writer of
            // the same topology (a zombie) waits here and then sees the moved
            // seq, failing with OutboxSequence instead of a key violation.
            let checked = async {
                sqlx::query(r#"INSERT INTO "conductor_outbox_seq" ("topology", "next_seq") VALUES ($1, 0) ON CONFLICT DO NOTHING"#)
                    .bind(&topology)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query_scalar::<_, i64>(r#"SELECT "next_seq" FROM "conductor_outbox_seq" WHERE "topology" = $1 FOR UPDATE"#)
                    .bind(&topology)
                    .fetch_one(&mut *tx)
                    .await
            }
            .await;
            match checked {
                Err(e) => return rollback(tx, db_error("commit (read outbox seq)", e)).await,
                Ok(expected) if expected != first => {
                    return rollback(
                        tx,
                        StoreError::OutboxSequence {
                            topology,
                            expected,
                            got: first,
                        },
                    )
                    .await;
                }
                Ok(_) => {}
            }
        }
        if let Err(e) = execute_all(&mut tx, statements).await {
            return rollback(tx, e).await;
        }
        if let Some(next) = next_seq
            && let Err(e) = sqlx::query(
                r#"UPDATE "conductor_outbox_seq" SET "next_seq" = $2 WHERE "topology" = $1"#,
            )
            .bind(&topology)
            .bind(next)
            .execute(&mut *tx)
            .await
        {
            return rollback(tx, db_error("commit (outbox seq)", e)).await;
        }
        if let Some(state) = state
            && let Err(e) = sqlx::query(
                r#"INSERT INTO "conductor_state" ("topology", "scope", "format_version", "state", "positions") VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT ("topology", "scope") DO UPDATE SET "format_version" = excluded."format_version", "state" = excluded."state", "positions" = excluded."positions""#,
            )
            .bind(&topology)
            .bind(&state.scope)
            .bind(i64::from(state.format_version))
            .bind(state.bytes)
            .bind(crate::sql::state_positions_json(&state.positions))
            .execute(&mut *tx)
            .await
        {
            return rollback(tx, db_error("commit (state snapshot)", e)).await;
        }
        tx.commit().await.map_err(|e| StoreError::Unavailable {
            operation: "commit (COMMIT)".into(),
            detail: format!(
                "{e}; the batch may or may not be stored: resume from the stored offsets"
            ),
            source: None,
        })
    }

    async fn read_outbox(
        &self,
        topology: &str,
        from_seq: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRecord>, StoreError> {
        let rows = sqlx::query(
            r#"SELECT "seq", "topic", "key", "value", "headers", "source_topic", "source_partition", "source_offset", "source_index"
               FROM "conductor_outbox" WHERE "topology" = $1 AND "seq" >= $2 ORDER BY "seq" LIMIT $3"#,
        )
        .bind(topology)
        .bind(from_seq)
        .bind(sql_limit(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("read outbox", e))?;
        rows.iter()
            .map(outbox_record)
            .collect::<Result<_, _>>()
            .map_err(|detail| StoreError::Database {
                operation: "read outbox".into(),
                detail,
                source: None,
            })
    }

    async fn delete_outbox(
        &self,
        topology: &str,
        seqs: std::ops::Range<i64>,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            r#"DELETE FROM "conductor_outbox" WHERE "topology" = $1 AND "seq" >= $2 AND "seq" < $3"#,
        )
        .bind(topology)
        .bind(seqs.start)
        .bind(seqs.end)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("delete outbox", e))?;
        Ok(done.rows_affected())
    }

    async fn control(&self, topology: &str) -> Result<TopologyControl, StoreError> {
        // Created when missing, so that commits have a row to lock (FOR SHARE).
        sqlx::query(
            r#"INSERT INTO "conductor_topology_control" ("topology") VALUES ($1) ON CONFLICT DO NOTHING"#,
        )
        .bind(topology)
        .execute(&self.pool)
        .await
        .map_err(|e| db_error("create topology control", e))?;
        let (paused, epoch) = sqlx::query_as::<_, (bool, i64)>(
            r#"SELECT "paused", "epoch" FROM "conductor_topology_control" WHERE "topology" = $1"#,
        )
        .bind(topology)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("read topology control", e))?;
        Ok(TopologyControl { paused, epoch })
    }

    async fn set_paused(
        &self,
        topology: &str,
        paused: bool,
    ) -> Result<TopologyControl, StoreError> {
        let (paused, epoch) = sqlx::query_as::<_, (bool, i64)>(
            r#"INSERT INTO "conductor_topology_control" ("topology", "paused", "epoch") VALUES ($1, $2, 1)
               ON CONFLICT ("topology") DO UPDATE SET "paused" = EXCLUDED."paused", "epoch" = "conductor_topology_control"."epoch" + 1
               RETURNING "paused", "epoch""#,
        )
        .bind(topology)
        .bind(paused)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| db_error("write topology control", e))?;
        Ok(TopologyControl { paused, epoch })
    }

    async fn table_is_empty(&self, table: &TableSpec) -> Result<bool, StoreError> {
        let q = QuotedTable::new(table)?;
        let row = sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM {} LIMIT 1", q.table)))
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| db_error(format!("look into `{}`", table.name), e))?;
        Ok(row.is_none())
    }

    async fn dump_table(&self, table: &TableSpec) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| db_error(format!("dump `{}`", table.name), e))?;
        dump_rows(&mut conn, table).await
    }

    async fn close(&self) {
        PostgresStore::close(self).await
    }

    async fn snapshot(
        &self,
        topology: &str,
        tables: &[TableSpec],
    ) -> Result<StoreSnapshot, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| db_error("snapshot (begin)", e))?;
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(
            r#"SELECT "topic", "partition", "next_offset" FROM "conductor_offsets" WHERE "topology" = $1"#,
        )
        .bind(topology)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| db_error("snapshot (offsets)", e))?;
        let mut dumps = Vec::with_capacity(tables.len());
        for t in tables {
            dumps.push(dump_rows(&mut tx, t).await?);
        }
        tx.commit()
            .await
            .map_err(|e| db_error("snapshot (end)", e))?;
        Ok(StoreSnapshot {
            offsets: rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect(),
            tables: dumps,
        })
    }
}

/// Every row of `table` as JSON, in key order, read on `conn`.
pub(crate) async fn dump_rows(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_of_a_url() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
    }

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

    #[test]
    fn copy_text_escapes_reserved_characters() {
        let row = RowUpsert {
            table: "t",
            key: vec!["a\tb".into()],
            version: 7,
            values: vec![
                SqlValue::Null,
                SqlValue::Text("x\\y\nz".into()),
                SqlValue::Bool(true),
            ],
            deleted: false,
        };
        let mut out = Vec::new();
        copy_text_row(&mut out, &row);
        assert_eq!(out, b"a\\tb\t7\t\\N\tx\\\\y\\nz\tt\n");
    }
}
