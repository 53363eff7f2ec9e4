//! [`PostgresStore`]: the production projection store.
//!
//! A batch is one transaction of a handful of statements whatever its size:
//! each table's rows go in as one `INSERT … SELECT * FROM UNNEST($1::text[],
//! $2::bigint[], …) ON CONFLICT … DO UPDATE … WHERE t.version <
//! EXCLUDED.version`, one bound array per column, so the statement text (and
//! its prepared plan) is the same for 1 row or 50,000 and there is no
//! parameter limit to chunk around. The outbox and the offsets go in the same
//! way. The order of a commit's steps is shared with SQLite
//! (`sql::commit::commit_batch`).
//!
//! [`PostgresStore::copy_rows`] is a plain `COPY` of the same rows without
//! the version guard: not part of the contract, it is the ceiling benchmarks
//! compare the exactly-once upserts against.
//!
//! - `pool`: connecting (probe, pool, `search_path`), [`redact_url`];
//! - `migrate`: the DDL transaction under the advisory lock;
//! - `statements`: the UNNEST upserts, outbox insert and offsets;
//! - `commit`: this backend's SQL for each step of the shared commit;
//! - `copy`: [`PostgresStore::copy_rows`];
//! - `decode`: rows read back as the memory store dumps them.

mod commit;
mod copy;
mod decode;
mod migrate;
mod pool;
mod statements;

pub use pool::redact_url;

use crate::sql::commit::commit_batch;
use crate::sql::{
    QuotedTable, TableRegistry, db_error, dedupe_offsets, outbox_record, rollback, sql_limit,
    table_read_error,
};
use async_trait::async_trait;
use commit::PgCommit;
use conductor_engine::log::InputPosition;
use conductor_engine::projection::{RowUpsert, TableSpec};
use conductor_engine::store::{
    OutboxRecord, ProjectionStore, StoreCommit, StoreError, StoreSnapshot, TopologyControl,
};
use decode::dump_rows;
use sqlx::postgres::{PgArguments, PgPool};
use sqlx::{AssertSqlSafe, Row};
use statements::{bind, execute_all, offsets_statement, unnest_params};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

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

impl PostgresStore {
    /// Connects to `url` and creates the bookkeeping tables.
    ///
    /// With `schema`, the schema is created if missing and every pooled
    /// connection gets `search_path` set to it, so that all tables of this
    /// store live there (tests use a fresh schema each and
    /// [`drop_schema`](Self::drop_schema) it afterwards).
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<PostgresStore, StoreError> {
        let (pool, schema) = pool::connect(url, schema).await?;
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
        copy::copy_rows(&self.pool, table, rows).await
    }

    /// Runs the bookkeeping DDL and the DDL of `tables` (see `migrate`).
    async fn run_ddl(&self, tables: &[TableSpec]) -> Result<(), StoreError> {
        migrate::run_ddl(&self.pool, self.schema.as_deref(), tables).await
    }
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
            return rollback("postgres", tx, db_error(operation, e)).await;
        }
        if let Err(e) = execute_all(&mut tx, vec![statement]).await {
            return rollback("postgres", tx, e).await;
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
        commit_batch(&PgCommit(&self.pool), &self.tables, commit).await
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
        let sql = keyword_query(table, crate::sql::Dialect::Postgres)?;
        let rows: Vec<(String, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(match_expression(&terms, crate::sql::Dialect::Postgres))
            .bind(limit.min(10_000) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| crate::sql::table_read_error("keyword search", table, e))?;
        Ok(rows
            .into_iter()
            .map(|(id, score)| conductor_engine::store::KeywordHit { id, score })
            .collect())
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
