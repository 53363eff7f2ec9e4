//! Shared by the replay tests that need Postgres.

use conductor_connectors::postgres::{PostgresStore, redact_url};

/// A fresh live schema `<prefix>_<random>` on `DATABASE_URL` (default
/// `postgres://postgres@127.0.0.1:5432/test`): the URL whose connections
/// all use it, its name, and a store to drop it with ([`drop_schemas`]).
/// `None` (with a loud notice) when no server answers, except under
/// `CI=true`, where that is a failure.
pub async fn postgres_schema(test: &str, prefix: &str) -> Option<(String, String, PostgresStore)> {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("{prefix}_{:08x}", rand::random::<u32>());
    let creator = match PostgresStore::connect(&base, Some(&schema)).await {
        Ok(s) => s,
        Err(e) => {
            let message = format!(
                "Postgres not reachable at {}; set DATABASE_URL or start a server; ops/test.sh does this ({e})",
                redact_url(&base)
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{message}");
            }
            eprintln!("SKIPPED {test}: {message}");
            return None;
        }
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    Some((url, schema, creator))
}

/// Drops the schemas, ignoring any that are gone.
pub async fn drop_schemas(creator: &PostgresStore, schemas: &[String]) {
    for s in schemas {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{s}\" CASCADE"
        )))
        .execute(creator.pool())
        .await;
    }
}
