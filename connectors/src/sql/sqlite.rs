//! [`SqliteStore`]: the embedded default projection store, one SQLite file.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a batch whose
//! [`commit`](ProjectionStore::commit) returned is on disk and survives a
//! process kill or power loss.
//!
//! Concurrency: SQLite has one writer at a time anyway, so every write goes
//! through a pool of exactly one connection and starts with `BEGIN IMMEDIATE`
//! (taking the write lock up front: a deferred transaction that reads first
//! and writes later can fail with `SQLITE_BUSY` when another process wrote in
//! between). Reads use a separate small pool; in WAL mode each read sees the
//! last committed batch as a whole, never part of one.

use super::migrations::{OUTBOX_COLUMN_COUNT, OUTBOX_COLUMNS};
use super::*;
use async_trait::async_trait;
use conductor_engine::log::SourcePosition;
use conductor_engine::store::{
    ProjectionStore, StoreCommit, StoreSnapshot, TopologyControl, check_fence,
};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, Row, Sqlite, Transaction};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// Most bound parameters one statement may carry: SQLite's
/// `SQLITE_MAX_VARIABLE_NUMBER`, 32766 since 3.32 (the bundled library is
/// newer). Multi-row statements are chunked below it.
const MAX_PARAMS: usize = 32_766;

/// How long a write waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections for concurrent reads (`dump_table`, `read_outbox`, …).
const READ_CONNECTIONS: u32 = 4;

/// A [`ProjectionStore`] in a SQLite database. Cloning shares the pools.
#[derive(Clone)]
pub struct SqliteStore {
    /// Exactly one connection: all writes, serialised.
    writer: SqlitePool,
    /// Reads; the same pool as `writer` for an in-memory database, which
    /// exists only as long as, and as seen by, its connection.
    reader: SqlitePool,
    tables: Arc<TableRegistry>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

/// A statement ready to run: what it is for (for errors), its SQL, its binds.
struct Statement {
    operation: String,
    sql: String,
    args: SqliteArguments,
}

impl SqliteStore {
    /// Opens (creating it and its parent directory if missing) the database
    /// file at `path` and creates the bookkeeping tables.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let target = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Connect {
                backend: "sqlite",
                target: target.clone(),
                detail: format!("cannot create directory {}: {e}", dir.display()),
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        Self::open_with(options, target, false).await
    }

    /// Opens a database from a sqlx SQLite URL (`sqlite://data/store.db`,
    /// `sqlite::memory:`), creating the file if missing.
    pub async fn open_url(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Connect {
                backend: "sqlite",
                target: url.to_string(),
                detail: e.to_string(),
            })?
            .create_if_missing(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        Self::open_with(options, url.to_string(), in_memory).await
    }

    async fn open_with(
        options: SqliteConnectOptions,
        target: String,
        in_memory: bool,
    ) -> Result<SqliteStore, StoreError> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let connect_error = |e: sqlx::Error| StoreError::Connect {
            backend: "sqlite",
            target: target.clone(),
            detail: e.to_string(),
        };
        // The writer connection is kept open for the store's lifetime: an
        // in-memory database dies with its last connection, and reopening a
        // file per batch would only cost time.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(connect_error)?;
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .acquire_timeout(BUSY_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(connect_error)?
        };
        let store = SqliteStore {
            writer,
            reader,
            tables: Arc::default(),
        };
        // Bookkeeping tables exist as soon as the store is open, so that
        // control and offset commands work before any topology migrated.
        store.run_ddl(&[]).await?;
        Ok(store)
    }

    /// The single writer connection's pool (generation swaps attach files on it).
    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// Closes both pools, waiting for running statements.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    async fn begin_write(
        &self,
        operation: &str,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_error(format!("{operation} (begin)"), e))
    }

    /// Runs the bookkeeping DDL and the DDL of `tables` in one transaction,
    /// then checks that existing tables have every column of their spec.
    async fn run_ddl(&self, tables: &[TableSpec]) -> Result<(), StoreError> {
        let mut statements: Vec<String> =
            migrations::SQLITE.iter().map(|s| s.to_string()).collect();
        for spec in tables {
            statements.extend(create_table_statements(spec, Dialect::Sqlite)?);
        }
        let mut tx = self.begin_write("migrate").await?;
        for sql in statements {
            if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await {
                return rollback(tx, db_error("migrate", e)).await;
            }
        }
        for (table, column, definition) in migrations::SQLITE_ADDED_COLUMNS {
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
                return rollback(tx, db_error("migrate (add column)", e)).await;
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

/// Rolls `tx` back and returns `error`. Dropping a transaction also rolls it
/// back, but only lazily on the connection's next use; doing it here keeps the
/// write lock from outliving the failed call.
async fn rollback<T>(tx: Transaction<'static, Sqlite>, error: StoreError) -> Result<T, StoreError> {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "sqlite rollback failed after an error; the connection will be reset");
    }
    Err(error)
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
        SqlValue::Bool(b) => bind(args, operation, b),
        SqlValue::Json(j) => bind(args, operation, j.to_string()),
        SqlValue::Timestamp(t) => bind(args, operation, format_timestamp(&t)),
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
fn upsert_statements(batch: TableBatch) -> Result<Vec<Statement>, StoreError> {
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

fn outbox_statements(
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
            bind(&mut args, &operation, topology.to_string())?;
            bind(&mut args, &operation, r.seq)?;
            bind(&mut args, &operation, r.topic)?;
            bind(&mut args, &operation, r.key)?;
            bind(&mut args, &operation, r.value)?;
            bind(&mut args, &operation, headers_to_json(&r.headers))?;
            bind(&mut args, &operation, r.source.topic)?;
            bind(&mut args, &operation, r.source.partition)?;
            bind(&mut args, &operation, r.source.offset)?;
            bind(&mut args, &operation, i64::from(r.source_index))?;
        }
        out.push(Statement {
            operation: operation.clone(),
            sql,
            args,
        });
    }
    Ok(out)
}

fn offset_statements(
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
async fn execute_all(
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

/// One dumped cell as `memory::value_to_json` renders it.
fn cell_json(row: &SqliteRow, i: usize, col: &ColumnSpec) -> Result<serde_json::Value, String> {
    let err = |e: sqlx::Error| format!("column `{}`: {e}", col.name);
    Ok(match col.ty {
        // Timestamps are stored in their dump form already.
        ColumnType::Text | ColumnType::Timestamp => {
            row.try_get::<Option<String>, _>(i).map_err(err)?.into()
        }
        ColumnType::BigInt => row.try_get::<Option<i64>, _>(i).map_err(err)?.into(),
        ColumnType::Bool => row.try_get::<Option<bool>, _>(i).map_err(err)?.into(),
        ColumnType::Json => match row.try_get::<Option<String>, _>(i).map_err(err)? {
            None => serde_json::Value::Null,
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| format!("column `{}` holds invalid JSON: {e}", col.name))?,
        },
    })
}

fn outbox_record(row: &SqliteRow) -> Result<OutboxRecord, String> {
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
impl ProjectionStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
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
            sqlx::query_as(r#"SELECT "topic", "partition", "next_offset" FROM "conductor_offsets" WHERE "topology" = ?"#)
                .bind(topology)
                .fetch_all(&self.reader)
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
        let statements = offset_statements(operation, topology, dedupe_offsets(offsets.to_vec()))?;
        let mut tx = self.begin_write(operation).await?;
        if let Err(e) = sqlx::query(r#"DELETE FROM "conductor_offsets" WHERE "topology" = ?"#)
            .bind(topology)
            .execute(&mut *tx)
            .await
        {
            return rollback(tx, db_error(operation, e)).await;
        }
        if let Err(e) = execute_all(&mut tx, statements).await {
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
        if let Some(bad) = keys.iter().find(|k| k.len() != table.key.len()) {
            return Err(StoreError::Database {
                operation: format!("current versions of `{}`", table.name),
                detail: format!(
                    "key {bad:?} has {} part(s); the table's key has {}",
                    bad.len(),
                    table.key.len()
                ),
                source: None,
            });
        }
        let q = QuotedTable::new(table)?;
        // All keys travel as one JSON array bound to one parameter, so this is
        // one statement however many keys there are. CROSS JOIN keeps the key
        // list as the outer loop, each key then being a primary-key lookup.
        let on: Vec<String> = q
            .key
            .iter()
            .enumerate()
            .map(|(i, k)| format!("t.{k} = json_extract(j.value, '$[{i}]')"))
            .collect();
        let select: Vec<String> = q.key.iter().map(|k| format!("t.{k}")).collect();
        let sql = format!(
            "SELECT {}, t.\"version\" FROM json_each(?) AS j CROSS JOIN {} AS t ON {}",
            select.join(", "),
            q.table,
            on.join(" AND ")
        );
        let keys_json = serde_json::to_string(keys).map_err(|e| StoreError::Database {
            operation: "current versions".into(),
            detail: e.to_string(),
            source: None,
        })?;
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(keys_json)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| table_read_error("current versions of", table, e))?;
        let n = table.key.len();
        rows.iter()
            .map(|row| {
                let key = (0..n)
                    .map(|i| row.try_get::<String, _>(i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((key, row.try_get::<i64, _>(n)?))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| db_error(format!("current versions of `{}`", table.name), e))
    }

    async fn load_state(
        &self,
        topology: &str,
        scope: &str,
    ) -> Result<Option<conductor_engine::store::StateSnapshot>, StoreError> {
        let row: Option<(i64, Vec<u8>, String)> = sqlx::query_as(
            r#"SELECT "format_version", "state", "positions" FROM "conductor_state" WHERE "topology" = ? AND "scope" = ?"#,
        )
        .bind(topology)
        .bind(scope)
        .fetch_optional(&self.reader)
        .await
        .map_err(|e| db_error("load state", e))?;
        row.map(|(v, bytes, positions)| {
            crate::sql::state_from_row(scope.to_string(), v, bytes, &positions)
        })
        .transpose()
    }

    async fn next_outbox_seq(&self, topology: &str) -> Result<i64, StoreError> {
        let seq: Option<i64> = sqlx::query_scalar(
            r#"SELECT "next_seq" FROM "conductor_outbox_seq" WHERE "topology" = ?"#,
        )
        .bind(topology)
        .fetch_optional(&self.reader)
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
        // Everything that can be checked or encoded without the database is
        // done before the write lock is taken.
        check_outbox_dense(&topology, &outbox)?;
        let first_seq = outbox.first().map(|r| r.seq);
        let next_seq = outbox.last().map(|r| r.seq + 1);
        let mut statements = Vec::new();
        for batch in group_upserts(&self.tables, upserts)? {
            statements.extend(upsert_statements(batch)?);
        }
        statements.extend(outbox_statements(&topology, outbox)?);
        statements.extend(offset_statements(
            "commit (offsets)",
            &topology,
            dedupe_offsets(offsets),
        )?);

        let mut tx = self.begin_write("commit").await?;
        // The write lock is held: no pause or swap can slip in before COMMIT.
        if epoch.is_some() {
            let control = match read_control(&mut tx, &topology).await {
                Ok(c) => c,
                Err(e) => return rollback(tx, db_error("commit (read control)", e)).await,
            };
            if let Err(e) = check_fence(&topology, &control, epoch) {
                return rollback(tx, e).await;
            }
        }
        if let Some(first) = first_seq {
            let stored: Option<i64> = match sqlx::query_scalar(
                r#"SELECT "next_seq" FROM "conductor_outbox_seq" WHERE "topology" = ?"#,
            )
            .bind(&topology)
            .fetch_optional(&mut *tx)
            .await
            {
                Ok(v) => v,
                Err(e) => return rollback(tx, db_error("commit (read outbox seq)", e)).await,
            };
            let expected = stored.unwrap_or(0);
            if first != expected {
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
        }
        if let Err(e) = execute_all(&mut tx, statements).await {
            return rollback(tx, e).await;
        }
        if let Some(next) = next_seq
            && let Err(e) = sqlx::query(
                r#"INSERT INTO "conductor_outbox_seq" ("topology", "next_seq") VALUES (?, ?)
                   ON CONFLICT ("topology") DO UPDATE SET "next_seq" = excluded."next_seq""#,
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
                r#"INSERT INTO "conductor_state" ("topology", "scope", "format_version", "state", "positions") VALUES (?, ?, ?, ?, ?)
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
               FROM "conductor_outbox" WHERE "topology" = ? AND "seq" >= ? ORDER BY "seq" LIMIT ?"#,
        )
        .bind(topology)
        .bind(from_seq)
        .bind(sql_limit(limit))
        .fetch_all(&self.reader)
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
            r#"DELETE FROM "conductor_outbox" WHERE "topology" = ? AND "seq" >= ? AND "seq" < ?"#,
        )
        .bind(topology)
        .bind(seqs.start)
        .bind(seqs.end)
        .execute(&self.writer)
        .await
        .map_err(|e| db_error("delete outbox", e))?;
        Ok(done.rows_affected())
    }

    async fn control(&self, topology: &str) -> Result<TopologyControl, StoreError> {
        let found = sqlx::query_as::<_, (bool, i64)>(
            r#"SELECT "paused", "epoch" FROM "conductor_topology_control" WHERE "topology" = ?"#,
        )
        .bind(topology)
        .fetch_optional(&self.reader)
        .await
        .map_err(|e| db_error("read topology control", e))?;
        if let Some((paused, epoch)) = found {
            return Ok(TopologyControl { paused, epoch });
        }
        sqlx::query(
            r#"INSERT INTO "conductor_topology_control" ("topology") VALUES (?) ON CONFLICT DO NOTHING"#,
        )
        .bind(topology)
        .execute(&self.writer)
        .await
        .map_err(|e| db_error("create topology control", e))?;
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(|e| db_error("read topology control", e))?;
        read_control(&mut conn, topology)
            .await
            .map_err(|e| db_error("read topology control", e))
    }

    async fn set_paused(
        &self,
        topology: &str,
        paused: bool,
    ) -> Result<TopologyControl, StoreError> {
        let (paused, epoch) = sqlx::query_as::<_, (bool, i64)>(
            r#"INSERT INTO "conductor_topology_control" ("topology", "paused", "epoch") VALUES (?, ?, 1)
               ON CONFLICT ("topology") DO UPDATE SET "paused" = excluded."paused", "epoch" = "conductor_topology_control"."epoch" + 1
               RETURNING "paused", "epoch""#,
        )
        .bind(topology)
        .bind(paused)
        .fetch_one(&self.writer)
        .await
        .map_err(|e| db_error("write topology control", e))?;
        Ok(TopologyControl { paused, epoch })
    }

    async fn table_is_empty(&self, table: &TableSpec) -> Result<bool, StoreError> {
        let q = QuotedTable::new(table)?;
        let row = sqlx::query(AssertSqlSafe(format!("SELECT 1 FROM {} LIMIT 1", q.table)))
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error(format!("look into `{}`", table.name), e))?;
        Ok(row.is_none())
    }

    async fn dump_table(&self, table: &TableSpec) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut conn = self
            .reader
            .acquire()
            .await
            .map_err(|e| db_error(format!("dump `{}`", table.name), e))?;
        dump_rows(&mut conn, table).await
    }

    async fn close(&self) {
        SqliteStore::close(self).await
    }

    async fn snapshot(
        &self,
        topology: &str,
        tables: &[TableSpec],
    ) -> Result<StoreSnapshot, StoreError> {
        // A read transaction in WAL mode sees one snapshot throughout.
        let mut tx = self
            .reader
            .begin()
            .await
            .map_err(|e| db_error("snapshot (begin)", e))?;
        let rows: Vec<(String, i32, i64)> = sqlx::query_as(
            r#"SELECT "topic", "partition", "next_offset" FROM "conductor_offsets" WHERE "topology" = ?"#,
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

/// Reads a control row (default when absent) on `conn`.
async fn read_control(
    conn: &mut SqliteConnection,
    topology: &str,
) -> Result<TopologyControl, sqlx::Error> {
    let found = sqlx::query_as::<_, (bool, i64)>(
        r#"SELECT "paused", "epoch" FROM "conductor_topology_control" WHERE "topology" = ?"#,
    )
    .bind(topology)
    .fetch_optional(conn)
    .await?;
    Ok(found
        .map(|(paused, epoch)| TopologyControl { paused, epoch })
        .unwrap_or_default())
}

/// Every row of `table` as JSON, in key order, read on `conn`.
pub(crate) async fn dump_rows(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writer_runs_in_wal_mode_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert_eq!((mode.as_str(), sync), ("wal", 2), "2 is FULL");
        let reader_sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&store.reader)
            .await
            .unwrap();
        assert_eq!(reader_sync, 2);
    }

    #[test]
    fn chunks_stay_under_the_parameter_limit() {
        assert_eq!(placeholders(2, 3), "(?, ?, ?), (?, ?, ?)");
        for columns in [1, 4, 8, 10, 37] {
            assert!(rows_per_statement(columns) * columns <= MAX_PARAMS);
        }
    }
}
