//! Connecting to Postgres: a probe connection that fails fast, then the
//! pool whose connections all use the store's schema. The password of the
//! URL never reaches a message ([`redact_url`]).

use crate::sql::notices::{quiet_acquires, quiet_statements};
use crate::sql::quote_ident;
use conductor_engine::store::StoreError;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// How long the first connection may take before the server counts as
/// unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller waits for a pooled connection. While the server is
/// down the pool keeps trying to connect until this passes, and the caller —
/// a worker, a relay — only then learns it must wait (and says so in its
/// status): short, so an outage shows within seconds. A few connections
/// serve one process, so a healthy pool hands one out in milliseconds.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Pool size: a topology commits from one task per partition group, and
/// reads (relay, CLI status) are short.
const MAX_CONNECTIONS: u32 = 8;

/// `url` with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => match rest[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Connects the pool of a store on `url`; with `schema`, every connection
/// gets `search_path` set to it. Returns the pool and the quoted schema.
pub(super) async fn connect(
    url: &str,
    schema: Option<&str>,
) -> Result<(PgPool, Option<String>), StoreError> {
    let target = redact_url(url);
    let connect_error = |detail: String| StoreError::Connect {
        backend: "postgres",
        target: target.clone(),
        detail,
    };
    let options = quiet_statements(
        PgConnectOptions::from_str(url).map_err(|e| connect_error(e.to_string()))?,
    );
    let schema = schema.map(quote_ident).transpose()?;

    // One direct connection first: an unreachable server then fails fast
    // with the driver's own reason, where the pool would keep retrying
    // until its acquire timeout and report only that.
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| connect_error(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| connect_error(e.to_string()))?;
    if let Err(e) = probe.close().await {
        tracing::debug!(error = %e, "closing the probe connection failed");
    }

    let set_search_path = schema
        .as_ref()
        .map(|s| Arc::new(format!("SET search_path TO {s}")));
    let pool = quiet_acquires(PgPoolOptions::new())
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |conn, _meta| {
            let sql = set_search_path.clone();
            Box::pin(async move {
                if let Some(sql) = sql {
                    sqlx::query(AssertSqlSafe(sql)).execute(conn).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(|e| connect_error(e.to_string()))?;
    Ok((pool, schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_of_a_url() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
    }
}
