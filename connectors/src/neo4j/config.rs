//! Where a Neo4j server is and how to log in (`--neo4j-uri`,
//! `CONDUCTOR_NEO4J_URI`, user and password; the tests read `NEO4J_*`).

/// Where a Neo4j server is and how to log in.
#[derive(Clone, PartialEq, Eq)]
pub struct Neo4jConfig {
    /// `bolt://host:port` (direct) or `neo4j://host:port` (routing).
    pub uri: String,
    pub user: String,
    pub password: String,
    /// The database to use; `None` is the server's default (`neo4j`).
    pub database: Option<String>,
    /// Connections in the pool.
    pub max_connections: usize,
    /// How long opening a connection may take.
    pub connect_timeout_ms: u64,
}

impl std::fmt::Debug for Neo4jConfig {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jConfig")
            .field("uri", &self.uri)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl Neo4jConfig {
    pub fn new(
        uri: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Neo4jConfig {
        Neo4jConfig {
            uri: uri.into(),
            user: user.into(),
            password: password.into(),
            database: None,
            max_connections: 4,
            connect_timeout_ms: 5_000,
        }
    }

    /// From `NEO4J_URI`, `NEO4J_USER` (default `neo4j`) and `NEO4J_PASSWORD`
    /// (what `ops/start-neo4j.sh` prints); `None` when `NEO4J_URI` is unset.
    pub fn from_env() -> Option<Neo4jConfig> {
        let uri = std::env::var("NEO4J_URI").ok().filter(|u| !u.is_empty())?;
        let user = std::env::var("NEO4J_USER").unwrap_or_else(|_| "neo4j".into());
        let password = std::env::var("NEO4J_PASSWORD").unwrap_or_default();
        Some(Neo4jConfig::new(uri, user, password))
    }
}
