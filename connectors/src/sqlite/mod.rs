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
//!
//! - `pool`: the writer and reader pools, `BEGIN IMMEDIATE`;
//! - `migrate`: the DDL transaction;
//! - `statements`: chunked multi-row upserts, outbox inserts and offsets;
//! - `commit`: this backend's SQL for each step of the commit shared with
//!   Postgres (`sql::commit::commit_batch`);
//! - `decode`: rows read back as the memory store dumps them.

mod commit;
mod decode;
mod migrate;
mod pool;
mod statements;

use crate::sql::commit::commit_batch;
use crate::sql::{
    QuotedTable, TableRegistry, db_error, dedupe_offsets, outbox_record, rollback, sql_limit,
    table_read_error,
};
use async_trait::async_trait;
use commit::{SqliteCommit, read_control};
use conductor_engine::log::InputPosition;
use conductor_engine::projection::TableSpec;
use conductor_engine::store::{
    OutboxRecord, ProjectionStore, StoreCommit, StoreError, StoreSnapshot, TopologyControl,
};
use decode::dump_rows;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};
use sqlx::{AssertSqlSafe, Row};
use statements::{execute_all, offset_statements};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

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
        let (writer, reader) = pool::connect(options, target, in_memory).await?;
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

    /// Runs the bookkeeping DDL and the DDL of `tables` (see `migrate`).
    async fn run_ddl(&self, tables: &[TableSpec]) -> Result<(), StoreError> {
        migrate::run_ddl(&self.writer, tables).await
    }
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
        let mut tx = pool::begin_write(&self.writer, operation).await?;
        if let Err(e) = sqlx::query(r#"DELETE FROM "conductor_offsets" WHERE "topology" = ?"#)
            .bind(topology)
            .execute(&mut *tx)
            .await
        {
            return rollback("sqlite", tx, db_error(operation, e)).await;
        }
        if let Err(e) = execute_all(&mut tx, statements).await {
            return rollback("sqlite", tx, e).await;
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
        commit_batch(&SqliteCommit(&self.writer), &self.tables, commit).await
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

    async fn keyword_search(
        &self,
        table: &TableSpec,
        tenant: &str,
        terms: &[String],
        limit: usize,
    ) -> Result<Vec<conductor_engine::store::KeywordHit>, StoreError> {
        use crate::sql::text_index::{keyword_query, match_expression};
        let terms = conductor_engine::store::keyword_terms(terms);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let sql = keyword_query(table, crate::sql::Dialect::Sqlite)?;
        let rows: Vec<(String, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(match_expression(&terms, crate::sql::Dialect::Sqlite))
            .bind(limit.min(10_000) as i64)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| crate::sql::table_read_error("keyword search", table, e))?;
        Ok(rows
            .into_iter()
            .map(|(id, score)| conductor_engine::store::KeywordHit { id, score })
            .collect())
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
}
