//! Resolved settings: flag > `CONDUCTOR_*` environment > config file > default.

use crate::cli::{GlobalOptions, LogBackend, StoreBackend};
use crate::error::CliError;
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
        Ok(Settings {
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
        })
    }
}
