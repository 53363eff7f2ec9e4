//! Conductor's connectors: where topologies' effects land outside the log.
//!
//! For now, the SQL projection stores:
//! - [`SqliteStore`]: one SQLite file, the embedded default;
//! - [`PostgresStore`]: Postgres, for production and scale-out.
//!
//! Both implement the engine's
//! [`ProjectionStore`](conductor_engine::store::ProjectionStore) contract and
//! pass `conductor_engine::testing::store_contract`.

pub mod sql;

pub use sql::postgres::PostgresStore;
pub use sql::sqlite::SqliteStore;
