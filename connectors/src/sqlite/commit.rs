//! The SQLite side of the shared commit ([`commit_batch`]): chunked
//! multi-row statements, and no row locks — the write lock `BEGIN IMMEDIATE`
//! took is held until `COMMIT`, so neither a pause or swap nor a second
//! writer of the same topology can slip in between the checks and the
//! writes.
//!
//! [`commit_batch`]: crate::sql::commit::commit_batch

use super::pool::begin_immediate;
use super::statements::{
    Statement, execute_all, offset_statements, outbox_statements, upsert_statements,
};
use crate::sql::commit::CommitDialect;
use crate::sql::{TableBatch, state_positions_json};
use conductor_engine::store::{OutboxRecord, StateSnapshot, StoreError, TopologyControl};
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Sqlite, Transaction};
use std::collections::BTreeMap;

/// Commits through the writer pool of a [`SqliteStore`](super::SqliteStore).
pub(super) struct SqliteCommit<'a>(pub(super) &'a SqlitePool);

impl CommitDialect for SqliteCommit<'_> {
    const BACKEND: &'static str = "sqlite";
    type Db = Sqlite;
    type Statement = Statement;

    async fn begin(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        begin_immediate(self.0).await
    }

    fn upsert_statements(batch: TableBatch) -> Result<Vec<Statement>, StoreError> {
        upsert_statements(batch)
    }

    fn outbox_statements(
        topology: &str,
        outbox: Vec<OutboxRecord>,
    ) -> Result<Vec<Statement>, StoreError> {
        outbox_statements(topology, outbox)
    }

    fn offset_statements(
        operation: &str,
        topology: &str,
        offsets: BTreeMap<(String, i32), i64>,
    ) -> Result<Vec<Statement>, StoreError> {
        offset_statements(operation, topology, offsets)
    }

    async fn read_control(
        tx: &mut Transaction<'static, Sqlite>,
        topology: &str,
    ) -> Result<TopologyControl, sqlx::Error> {
        // The write lock is held: no pause or swap can slip in before COMMIT.
        read_control(tx, topology).await
    }

    async fn lock_outbox_seq(
        tx: &mut Transaction<'static, Sqlite>,
        topology: &str,
    ) -> Result<i64, sqlx::Error> {
        // Locked already: the write lock keeps every other writer out.
        let stored: Option<i64> = sqlx::query_scalar(
            r#"SELECT "next_seq" FROM "conductor_outbox_seq" WHERE "topology" = ?"#,
        )
        .bind(topology)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(stored.unwrap_or(0))
    }

    async fn execute(
        tx: &mut Transaction<'static, Sqlite>,
        statements: Vec<Statement>,
    ) -> Result<(), StoreError> {
        execute_all(tx, statements).await
    }

    async fn store_outbox_seq(
        tx: &mut Transaction<'static, Sqlite>,
        topology: &str,
        next: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            r#"INSERT INTO "conductor_outbox_seq" ("topology", "next_seq") VALUES (?, ?)
               ON CONFLICT ("topology") DO UPDATE SET "next_seq" = excluded."next_seq""#,
        )
        .bind(topology)
        .bind(next)
        .execute(&mut **tx)
        .await
        .map(|_| ())
    }

    async fn store_state(
        tx: &mut Transaction<'static, Sqlite>,
        topology: &str,
        state: StateSnapshot,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            r#"INSERT INTO "conductor_state" ("topology", "scope", "format_version", "state", "positions") VALUES (?, ?, ?, ?, ?)
               ON CONFLICT ("topology", "scope") DO UPDATE SET "format_version" = excluded."format_version", "state" = excluded."state", "positions" = excluded."positions""#,
        )
        .bind(topology)
        .bind(&state.scope)
        .bind(i64::from(state.format_version))
        .bind(state.bytes)
        .bind(state_positions_json(&state.positions))
        .execute(&mut **tx)
        .await
        .map(|_| ())
    }
}

/// Reads a control row (default when absent) on `conn`.
pub(super) async fn read_control(
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
