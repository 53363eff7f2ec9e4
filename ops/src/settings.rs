//! Resolved settings: flag > `CONDUCTOR_*` environment > config file > default.

use crate::cli::{GlobalOptions, LogBackend, StoreBackend};
use crate::error::CliError;
use conductor_connectors::neo4j::Neo4jConfig;
use conductor_replay::subscribe::limits::LimitsConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The `--config` file. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub data_dir: Option<PathBuf>,
    pub log: Option<LogBackend>,
    pub kafka_bootstrap: Option<String>,
    pub kafka_exactly_once: Option<String>,
    pub fsync: Option<String>,
    pub store: Option<StoreBackend>,
    pub database_url: Option<String>,
    /// Address of the HTTP server (admin, metrics, subscriptions).
    pub listen: Option<SocketAddr>,
    /// Directory of topology files.
    pub topologies: Option<PathBuf>,
    /// HS256 secret of subscription tokens (or CONDUCTOR_JWT_SECRET).
    pub jwt_secret: Option<String>,
    /// Per-tenant limits and tier budgets of the subscription server.
    #[serde(default)]
    pub subscriptions: LimitsConfig,
    /// Neo4j for topologies' graphs (or CONDUCTOR_NEO4J_URI / --neo4j-uri).
    pub neo4j_uri: Option<String>,
    pub neo4j_user: Option<String>,
    /// Or CONDUCTOR_NEO4J_PASSWORD.
    pub neo4j_password: Option<String>,
    /// Conductor's own lineage: the topologies' runs (see `run_lineage`).
    #[serde(default)]
    pub lineage: crate::run_lineage::LineageSettings,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub log: LogBackend,
    pub kafka_bootstrap: Option<String>,
    pub kafka_exactly_once: String,
    pub fsync: String,
    pub store: StoreBackend,
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub topologies: Option<PathBuf>,
    /// Never a flag (it would show in `ps`): CONDUCTOR_JWT_SECRET or the file.
    pub jwt_secret: Option<String>,
    pub subscriptions: LimitsConfig,
    /// Where graph sinks write, when configured.
    pub neo4j: Option<Neo4jConfig>,
    /// `[lineage]`: reporting the topologies' runs.
    pub lineage: crate::run_lineage::LineageSettings,
}

impl Settings {
    pub fn resolve(global: &GlobalOptions) -> Result<Settings, CliError> {
        let file = match &global.config {
            None => ConfigFile::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CliError::usage(
                        format!("cannot read config file {}: {e}", path.display()),
                        "check --config / CONDUCTOR_CONFIG",
                    )
                })?;
                toml::from_str(&text).map_err(|e| {
                    CliError::usage(
                        format!("config file {}: {}", path.display(), e.message().trim()),
                        "see conductor.example.toml for the keys",
                    )
                })?
            }
        };
        let limit_problems = file.subscriptions.problems();
        if !limit_problems.is_empty() {
            return Err(CliError::usage(
                format!("config file [subscriptions]: {}", limit_problems.join("; ")),
                "see conductor.example.toml for the keys and their defaults",
            ));
        }
        let database_url = global.database_url.clone().or(file.database_url);
        // A postgres:// URL alone is enough to pick the Postgres store.
        let inferred = database_url
            .as_deref()
            .filter(|u| u.starts_with("postgres"))
            .map(|_| StoreBackend::Postgres);
        let store = global
            .store
            .or(file.store)
            .or(inferred)
            .unwrap_or(StoreBackend::Sqlite);
        if store == StoreBackend::Postgres && database_url.is_none() {
            return Err(CliError::usage(
                "the Postgres store needs a database URL",
                "pass --database-url postgres://USER@HOST:5432/DB or set CONDUCTOR_DATABASE_URL",
            ));
        }
        let neo4j = global
            .neo4j_uri
            .clone()
            .or(file.neo4j_uri)
            .filter(|u| !u.is_empty())
            .map(|uri| {
                Neo4jConfig::new(
                    uri,
                    global
                        .neo4j_user
                        .clone()
                        .or(file.neo4j_user)
                        .unwrap_or_else(|| "neo4j".into()),
                    std::env::var("CONDUCTOR_NEO4J_PASSWORD")
                        .ok()
                        .or(file.neo4j_password)
                        .unwrap_or_default(),
                )
            });
        Ok(Settings {
            neo4j,
            lineage: file.lineage,
            data_dir: global
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./data")),
            log: global.log.or(file.log).unwrap_or(LogBackend::File),
            kafka_bootstrap: global.kafka_bootstrap.clone().or(file.kafka_bootstrap),
            kafka_exactly_once: global
                .kafka_exactly_once
                .clone()
                .or(file.kafka_exactly_once)
                .unwrap_or_else(|| "progress".into()),
            fsync: global
                .fsync
                .clone()
                .or(file.fsync)
                .unwrap_or_else(|| "every_batch".into()),
            store,
            database_url,
            listen: file.listen,
            topologies: file.topologies,
            jwt_secret: std::env::var("CONDUCTOR_JWT_SECRET")
                .ok()
                .filter(|s| !s.is_empty())
                .or(file.jwt_secret),
            subscriptions: file.subscriptions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_file(text: &str) -> Result<Settings, CliError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conductor.toml");
        std::fs::write(&path, text).unwrap();
        Settings::resolve(&GlobalOptions {
            config: Some(path),
            ..Default::default()
        })
    }

    #[test]
    fn the_example_config_file_parses() {
        let text = include_str!("../../conductor.example.toml");
        let settings = with_file(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.subscriptions, LimitsConfig::default());
    }

    #[test]
    fn reads_subscription_limits_and_refuses_bad_ones_by_key() {
        let s = with_file("[subscriptions]\nmax_subscriptions_per_tenant = 2\n").unwrap();
        assert_eq!(s.subscriptions.max_subscriptions_per_tenant, 2);
        let e = with_file("[subscriptions]\nmax_per_tenant = 2\n").unwrap_err();
        assert!(e.message.contains("max_per_tenant"), "{e}");
        let e = with_file("[subscriptions.tier_events_per_second]\nbronze = 0\n").unwrap_err();
        assert!(
            e.message.contains("tier_events_per_second.bronze is 0"),
            "{e}"
        );
        assert_eq!(e.exit_code, 2);
    }
}
