//! The Postgres side of the shared commit ([`commit_batch`]): one UNNEST
//! statement per table, outbox and offsets, and the row locks that order a
//! commit against a pause (the control row, `FOR SHARE`) and against a second
//! writer of the same topology (the outbox seq row, `FOR UPDATE`).
//!
//! [`commit_batch`]: crate::sql::commit::commit_batch

use super::statements::{
    Statement, execute_all, offsets_statement, outbox_statement, upsert_statement,
};
use crate::sql::commit::CommitDialect;
use crate::sql::{TableBatch, state_positions_json};
use conductor_engine::store::{OutboxRecord, StateSnapshot, StoreError, TopologyControl};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use std::collections::BTreeMap;

/// Commits through a pool of a [`PostgresStore`](super::PostgresStore).
pub(super) struct PgCommit<'a>(pub(super) &'a PgPool);

impl CommitDialect for PgCommit<'_> {
    const BACKEND: &'static str = "postgres";
    type Db = Postgres;
    type Statement = Statement;

    async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.0.begin().await
    }

    fn upsert_statements(batch: TableBatch) -> Result<Vec<Statement>, StoreError> {
        Ok(vec![upsert_statement(batch)?])
    }

    fn outbox_statements(
        topology: &str,
        outbox: Vec<OutboxRecord>,
    ) -> Result<Vec<Statement>, StoreError> {
        if outbox.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![outbox_statement(topology, outbox)?])
    }

    fn offset_statements(
        operation: &str,
        topology: &str,
        offsets: BTreeMap<(String, i32), i64>,
    ) -> Result<Vec<Statement>, StoreError> {
        if offsets.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![offsets_statement(operation, topology, offsets)?])
    }

    async fn read_control(
        tx: &mut Transaction<'static, Postgres>,
        topology: &str,
    ) -> Result<TopologyControl, sqlx::Error> {
        // FOR SHARE conflicts with set_paused's UPDATE: a pause either
        // waits for this commit or is seen by it, never slips between.
        let control = sqlx::query_as::<_, (bool, i64)>(
            r#"SELECT "paused", "epoch" FROM "conductor_topology_control" WHERE "topology" = $1 FOR SHARE"#,
        )
        .bind(topology)
        .fetch_optional(&mut **tx)
        .await?;
        Ok(control
            .map(|(paused, epoch)| TopologyControl { paused, epoch })
            .unwrap_or_default())
    }

    async fn lock_outbox_seq(
        tx: &mut Transaction<'static, Postgres>,
        topology: &str,
    ) -> Result<i64, sqlx::Error> {
        // Create the seq row if missing, then lock it: a second writer of
        // the same topology (a zombie) waits here and then sees the moved
        // seq, failing with OutboxSequence instead of a key violation.
        sqlx::query(r#"INSERT INTO "conductor_outbox_seq" ("topology", "next_seq") VALUES ($1, 0) ON CONFLICT DO NOTHING"#)
            .bind(topology)
            .execute(&mut **tx)
            .await?;
        sqlx::query_scalar::<_, i64>(
            r#"SELECT "next_seq" FROM "conductor_outbox_seq" WHERE "topology" = $1 FOR UPDATE"#,
        )
        .bind(topology)
        .fetch_one(&mut **tx)
        .await
    }

    async fn execute(
        tx: &mut Transaction<'static, Postgres>,
        statements: Vec<Statement>,
    ) -> Result<(), StoreError> {
        execute_all(tx, statements).await
    }

    async fn store_outbox_seq(
        tx: &mut Transaction<'static, Postgres>,
        topology: &str,
        next: i64,
    ) -> Result<(), sqlx::Error> {
        // The row exists: lock_outbox_seq created it.
        sqlx::query(r#"UPDATE "conductor_outbox_seq" SET "next_seq" = $2 WHERE "topology" = $1"#)
            .bind(topology)
            .bind(next)
            .execute(&mut **tx)
            .await
            .map(|_| ())
    }

    async fn store_state(
        tx: &mut Transaction<'static, Postgres>,
        topology: &str,
        state: StateSnapshot,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            r#"INSERT INTO "conductor_state" ("topology", "scope", "format_version", "state", "positions") VALUES ($1, $2, $3, $4, $5)
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
