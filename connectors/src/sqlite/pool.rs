//! The two pools of a SQLite store — one writer connection, a few readers —
//! and how a write begins. Both use the WAL journal with `synchronous =
//! FULL`; every write transaction starts with `BEGIN IMMEDIATE` (see the
//! store's module doc for why).

use crate::sql::db_error;
use crate::sql::notices::{quiet_acquires, quiet_statements};
use conductor_engine::store::StoreError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use std::time::Duration;

/// How long a write waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections for concurrent reads (`dump_table`, `read_outbox`, …).
const READ_CONNECTIONS: u32 = 4;

/// Opens the writer pool and the reader pool of the database `options`
/// names (`target` in messages); an in-memory database gets one pool for
/// both, since it exists only as seen by its one connection.
pub(super) async fn connect(
    options: SqliteConnectOptions,
    target: String,
    in_memory: bool,
) -> Result<(SqlitePool, SqlitePool), StoreError> {
    let options = quiet_statements(options)
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
    let writer = quiet_acquires(SqlitePoolOptions::new())
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(BUSY_TIMEOUT)
        .after_release(|conn, _| Box::pin(async move { still_usable(conn).await }))
        .connect_with(options.clone())
        .await
        .map_err(connect_error)?;
    let reader = if in_memory {
        writer.clone()
    } else {
        quiet_acquires(SqlitePoolOptions::new())
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_error)?
    };
    Ok((writer, reader))
}

/// Whether a connection handed back to the pool can serve the next write.
///
/// A COMMIT that fails with SQLITE_FULL (the disk is full) makes SQLite roll
/// the transaction back by itself, while sqlx still counts it open: the
/// ROLLBACK sqlx then sends fails ("no transaction is active"), its count
/// never returns to zero, and every later `BEGIN` on that connection fails
/// ("non-zero transaction depth") — the store would refuse writes for good
/// once space is back. A connection still counted in a transaction when it
/// is handed back is closed; the pool opens a fresh one. (Our writes end
/// every transaction with an awaited commit or rollback, so a healthy
/// connection is never counted in one here; no round trip is needed.)
async fn still_usable(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if conn.is_in_transaction() {
        tracing::debug!(
            "closing an SQLite connection left counted in a transaction after a failed COMMIT"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Opens a write transaction on the writer pool with `BEGIN IMMEDIATE`,
/// taking the write lock up front: a deferred transaction that reads first
/// and writes later can fail with `SQLITE_BUSY` when another process wrote
/// in between.
pub(super) async fn begin_immediate(
    writer: &SqlitePool,
) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    writer.begin_with("BEGIN IMMEDIATE").await
}

/// [`begin_immediate`], failing as `<operation> (begin)`.
pub(super) async fn begin_write(
    writer: &SqlitePool,
    operation: &str,
) -> Result<Transaction<'static, Sqlite>, StoreError> {
    begin_immediate(writer)
        .await
        .map_err(|e| db_error(format!("{operation} (begin)"), e))
}
