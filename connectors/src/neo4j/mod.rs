//! Neo4j through neo4rs (Bolt 4.4 and newer): connection settings and a
//! checked connect, so that callers get a live [`neo4rs::Graph`] or an error
//! that says what is wrong and whether retrying can help.
//!
//! This is the base of the graph sink of the processor contract (graph
//! mutations from the outbox into Neo4j, with the sink's own position). The
//! test server is started by `ops/start-neo4j.sh` (Neo4j 5 community from
//! Maven Central); `connectors/tests/neo4j_smoke.rs` writes and reads through
//! this module against it.

use std::time::Duration;

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

/// What went wrong talking to Neo4j.
#[derive(Debug, thiserror::Error)]
pub enum Neo4jError {
    #[error("invalid Neo4j settings: {detail}")]
    Config { detail: String },
    #[error(
        "cannot connect to Neo4j at {uri}: {source}; hint: check that the server runs and \
         the URI's port is its Bolt port (ops/start-neo4j.sh prints NEO4J_URI)"
    )]
    Connect {
        uri: String,
        #[source]
        source: neo4rs::Error,
    },
    #[error(
        "Neo4j at {uri} refused the login of user `{user}`: {detail}; hint: check NEO4J_USER / NEO4J_PASSWORD"
    )]
    Auth {
        uri: String,
        user: String,
        detail: String,
    },
    #[error("Neo4j {operation} failed: {source}")]
    Query {
        operation: String,
        #[source]
        source: neo4rs::Error,
    },
}

impl Neo4jError {
    /// Whether trying again later can succeed (the server is down or busy),
    /// as opposed to an error that needs a change (settings, credentials, the
    /// query itself).
    pub fn is_retryable(&self) -> bool {
        match self {
            Neo4jError::Config { .. } | Neo4jError::Auth { .. } => false,
            Neo4jError::Connect { .. } => true,
            Neo4jError::Query { source, .. } => is_retryable(source),
        }
    }

    /// Wraps an error of `operation` (a query or transaction step).
    pub fn query(operation: impl Into<String>, source: neo4rs::Error) -> Neo4jError {
        Neo4jError::Query {
            operation: operation.into(),
            source,
        }
    }
}

/// Whether a neo4rs error is worth retrying: I/O and connection trouble and
/// Neo4j's `TransientError` class yes; client errors (syntax, constraint
/// violations, security) and protocol errors no.
pub fn is_retryable(error: &neo4rs::Error) -> bool {
    use neo4rs::Error as E;
    match error {
        E::IOError { .. }
        | E::ConnectionError
        | E::ConnectionTimedOut
        | E::ServerUnavailableError(_)
        | E::RoutingTableRefreshFailed(_)
        | E::RequestIgnoredError => true,
        E::Neo4j(e) => matches!(e.kind(), neo4rs::Neo4jErrorKind::Transient),
        _ => false,
    }
}

fn is_auth_failure(error: &neo4rs::Error) -> bool {
    match error {
        neo4rs::Error::AuthenticationError(_) => true,
        neo4rs::Error::Neo4j(e) => e.code().starts_with("Neo.ClientError.Security."),
        _ => false,
    }
}

/// Opens a connection pool and checks that the server answers a query as
/// the configured user, so a wrong address or password fails here, not at
/// the first write.
pub async fn connect(config: &Neo4jConfig) -> Result<neo4rs::Graph, Neo4jError> {
    if config.max_connections == 0 {
        return Err(Neo4jError::Config {
            detail: "max_connections must be at least 1".into(),
        });
    }
    let mut builder = neo4rs::ConfigBuilder::default()
        .uri(config.uri.as_str())
        .user(config.user.as_str())
        .password(config.password.as_str())
        .max_connections(config.max_connections)
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms));
    if let Some(db) = &config.database {
        builder = builder.db(db.as_str());
    }
    let invalid = |e: neo4rs::Error| Neo4jError::Config {
        detail: format!("{e} (uri `{}`)", config.uri),
    };
    let graph = neo4rs::Graph::connect(builder.build().map_err(invalid)?).map_err(invalid)?;
    let checked = graph.execute(neo4rs::query("RETURN 1 AS one")).await;
    let failure = match checked {
        Ok(mut rows) => match rows.next().await {
            Ok(Some(_)) => return Ok(graph),
            Ok(None) => {
                return Err(Neo4jError::Config {
                    detail: format!("{} answered `RETURN 1` with no row", config.uri),
                });
            }
            Err(e) => e,
        },
        Err(e) => e,
    };
    Err(if is_auth_failure(&failure) {
        Neo4jError::Auth {
            uri: config.uri.clone(),
            user: config.user.clone(),
            detail: failure.to_string(),
        }
    } else if matches!(&failure, neo4rs::Error::Neo4j(e) if e.code().starts_with("Neo.ClientError."))
    {
        // The server answered and refused: a missing database, say. Waiting won't help.
        Neo4jError::Config {
            detail: format!(
                "{} refused `RETURN 1` on database {}: {failure}",
                config.uri,
                config.database.as_deref().unwrap_or("(default)")
            ),
        }
    } else {
        Neo4jError::Connect {
            uri: config.uri.clone(),
            source: failure,
        }
    })
}
