//! Driver errors as [`StoreError`]s, retryable or not, and the rollback a
//! failed transaction ends with.

use conductor_engine::projection::TableSpec;
use conductor_engine::store::StoreError;
use sqlx::Transaction;

/// Maps a driver error to a [`StoreError`] with a readable detail — the
/// server's message, its code, and (Postgres) its detail and hint — keeping
/// the driver error as its source: [`StoreError::Unavailable`] when a retry
/// can help ([`is_retryable`]), [`StoreError::Database`] when it can't.
pub fn db_error(operation: impl Into<String>, error: sqlx::Error) -> StoreError {
    let detail = match &error {
        sqlx::Error::Database(db) => {
            let mut s = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(d) = pg.detail() {
                    s.push_str(&format!("; detail: {d}"));
                }
                if let Some(h) = pg.hint() {
                    s.push_str(&format!("; hint: {h}"));
                }
            }
            if let Some(code) = db.code() {
                s.push_str(&format!(" (code {code})"));
            }
            s
        }
        other => other.to_string(),
    };
    let retryable = is_retryable(&error);
    let source: Option<conductor_engine::store::BoxError> = Some(std::sync::Arc::new(error));
    let operation = operation.into();
    if retryable {
        StoreError::Unavailable {
            operation,
            detail,
            source,
        }
    } else {
        StoreError::Database {
            operation,
            detail,
            source,
        }
    }
}

/// Whether a driver error is one a retry of the same transaction can get
/// past. Postgres SQLSTATE classes: 08 connection exception, 40 transaction
/// rollback (serialization failure, deadlock), 53 insufficient resources,
/// 57P0x operator intervention (shutdown, restart), 58 system error; SQLite:
/// SQLITE_BUSY / SQLITE_LOCKED / SQLITE_FULL and their extended codes. A missing table
/// (42P01), a constraint (23xxx) or a bad value (22xxx) is permanent.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_retryable_code(&code)),
        _ => false,
    }
}

fn is_retryable_code(code: &str) -> bool {
    if let Ok(n) = code.parse::<u32>() {
        // SQLite result codes: the primary code is the low byte. BUSY (5) and
        // LOCKED (6) pass; FULL (13: the disk or the database is full) passes
        // once space is freed — SQLite rolled the transaction back, and the
        // worker reads the store back before it retries. An I/O error (10)
        // is not retried: a failed write or fsync is not pretended away.
        return matches!(n & 0xff, 5 | 6 | 13);
    }
    ["08", "40", "53", "58"].iter().any(|c| code.starts_with(c)) || code.starts_with("57P0")
}

/// Whether a driver error says the table does not exist (so that reads of a
/// table nobody migrated give [`StoreError::UnknownTable`], as in the memory
/// store).
pub fn is_undefined_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().starts_with("no such table")
        }
        _ => false,
    }
}

/// [`db_error`], except that a missing table becomes [`StoreError::UnknownTable`].
pub fn table_read_error(operation: &str, table: &TableSpec, error: sqlx::Error) -> StoreError {
    if is_undefined_table(&error) {
        StoreError::UnknownTable(table.name.to_string())
    } else {
        db_error(format!("{operation} `{}`", table.name), error)
    }
}

/// Rolls `tx` back and returns `error`. Dropping a transaction also rolls it
/// back, but only lazily on the connection's next use; doing it here keeps
/// the locks it took (SQLite's write lock, Postgres row locks) from
/// outliving the failed call. `backend` names the store in the warning.
pub(crate) async fn rollback<DB: sqlx::Database, T>(
    backend: &str,
    tx: Transaction<'static, DB>,
    error: StoreError,
) -> Result<T, StoreError> {
    if let Err(e) = tx.rollback().await {
        tracing::warn!(error = %e, "{backend} rollback failed after an error; the connection will be reset");
    }
    Err(error)
}
