//! Neo4j through neo4rs (Bolt 4.4 and newer): the graph sink of the
//! processor contract and what it stands on.
//!
//! - [`config`]: where the server is and how to log in;
//! - [`client`]: a checked connect and errors that say whether retrying helps;
//! - [`sink`]: [`Neo4jGraphSink`], which applies a topology's graph topic
//!   (`ig.graph.<topology>`) to Neo4j with version-guarded `UNWIND … MERGE`
//!   statements and stores its position in the graph, in the same transaction;
//! - [`image`]: reads a graph back in the shape of the SQL graph tables, to
//!   check one against the other.
//!
//! The test server is started by `ops/start-neo4j.sh` (Neo4j 5 community
//! from Maven Central); `connectors/tests/neo4j_smoke.rs` and
//! `connectors/tests/neo4j_sink.rs` run against it.

pub mod client;
pub mod config;
mod cypher;
pub mod image;
pub mod sink;

pub use client::{Neo4jError, connect, is_retryable};
pub use config::Neo4jConfig;
pub use cypher::neo4j_properties;
pub use sink::Neo4jGraphSink;
