//! Connecting to Neo4j, and what its errors mean: whether a retry can help.

use super::config::Neo4jConfig;
use std::time::Duration;

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
