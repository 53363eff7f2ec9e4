//! Conductor's connectors: where topologies' effects land outside the log.
//!
//! - [`SqliteStore`]: one SQLite file, the embedded default projection store;
//! - [`PostgresStore`]: Postgres, for production and scale-out;
//! - [`neo4j`]: Neo4j through neo4rs (connection and checked connect; the
//!   graph sink builds on it).
//!
//! The SQL stores implement the engine's
//! [`ProjectionStore`](conductor_engine::store::ProjectionStore) contract and
//! pass `conductor_engine::testing::store_contract`.

pub mod neo4j;
pub mod postgres;
pub mod sql;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
