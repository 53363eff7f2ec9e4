//! sqlx's own notices — a slow statement, a slow pool acquire — at DEBUG.
//!
//! sqlx logs both at WARN by default. In a store they are expected rather
//! than news: topologies sharing one SQLite file wait on its single write
//! lock, and a large batch's statement takes more than sqlx's one second.
//! They are not the user's business at WARN; our own warnings (a retried
//! batch, a store that is down) say what matters. `CONDUCTOR_LOG_LEVEL=sqlx=debug`
//! shows them again.

use log::LevelFilter;
use sqlx::ConnectOptions;
use sqlx::pool::PoolOptions;
use std::time::Duration;

/// A statement slower than this is logged at DEBUG (sqlx's threshold).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// `options` with slow statements logged at DEBUG.
pub(crate) fn quiet_statements<O: ConnectOptions>(options: O) -> O {
    options.log_slow_statements(LevelFilter::Debug, SLOW_STATEMENT)
}

/// `pool` with slow acquires logged at DEBUG.
pub(crate) fn quiet_acquires<DB: sqlx::Database>(pool: PoolOptions<DB>) -> PoolOptions<DB> {
    pool.acquire_slow_level(LevelFilter::Debug)
}
