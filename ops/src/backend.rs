//! Opening the configured log backend.

use crate::cli::{LogBackend, StoreBackend};
use crate::error::CliError;
use crate::settings::Settings;
use conductor_engine::cursor::CursorKey;
use conductor_engine::log::Log;
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::store::ProjectionStore;
use std::sync::Arc;

/// Whether a command writes to the log (file log: takes the writer lock).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

pub async fn open_log(global: &Settings, access: Access) -> Result<Arc<dyn Log>, CliError> {
    match global.log {
        LogBackend::File => {
            let fsync = global
                .fsync
                .parse()
                .map_err(|e: String| CliError::usage(e, "set --fsync / CONDUCTOR_FSYNC"))?;
            let options = FileLogOptions {
                fsync,
                ..Default::default()
            };
            let root = global.data_dir.join("log");
            let log = match access {
                Access::Write => FileLog::open(&root, options)?,
                Access::Read if !root.join("topics").exists() => {
                    return Err(CliError::new(
                        format!("no file log at {}", root.display()),
                        "create a topic first (`conductor topic create NAME --partitions N`) or point --data-dir / CONDUCTOR_DATA_DIR at an existing data directory",
                    ));
                }
                Access::Read => FileLog::open_read_only(&root, options)?,
            };
            Ok(Arc::new(log))
        }
        LogBackend::Kafka => open_kafka(global).await,
    }
}

#[cfg(feature = "kafka")]
async fn open_kafka(global: &Settings) -> Result<Arc<dyn Log>, CliError> {
    use conductor_engine::log::kafka::{ExactlyOnceMode, KafkaConfig, KafkaLog};
    let bootstrap = global.kafka_bootstrap.clone().ok_or_else(|| {
        CliError::usage(
            "--log kafka needs a broker address",
            "pass --kafka-bootstrap HOST:PORT or set CONDUCTOR_KAFKA_BOOTSTRAP",
        )
    })?;
    let mode: ExactlyOnceMode = global.kafka_exactly_once.parse().map_err(
        |e: <ExactlyOnceMode as std::str::FromStr>::Err| {
            CliError::usage(
                e.to_string(),
                "use --kafka-exactly-once progress|transactions",
            )
        },
    )?;
    let log = KafkaLog::connect(KafkaConfig::new(bootstrap).with_exactly_once(mode)).await?;
    Ok(Arc::new(log))
}

#[cfg(not(feature = "kafka"))]
async fn open_kafka(_global: &Settings) -> Result<Arc<dyn Log>, CliError> {
    Err(CliError::usage(
        "this build has no Kafka backend",
        "rebuild with the `kafka` feature",
    ))
}

/// The cursor key: `CONDUCTOR_CURSOR_KEY` (at least 16 bytes), else a random
/// key kept in `<data-dir>/cursor.key`.
pub fn cursor_key(global: &Settings) -> Result<CursorKey, CliError> {
    if let Ok(secret) = std::env::var("CONDUCTOR_CURSOR_KEY") {
        return CursorKey::new(secret.as_bytes()).map_err(|e| {
            CliError::usage(
                format!("CONDUCTOR_CURSOR_KEY: {e}"),
                "use a secret of 16 bytes or more",
            )
        });
    }
    Ok(CursorKey::load_or_create(
        &global.data_dir.join("cursor.key"),
    )?)
}

/// Opens the configured projection store (SQLite under the data dir by default).
pub async fn open_store(settings: &Settings) -> Result<Arc<dyn ProjectionStore>, CliError> {
    use conductor_connectors::{PostgresStore, SqliteStore};
    let store: Arc<dyn ProjectionStore> = match settings.store {
        StoreBackend::Sqlite => match settings.database_url.as_deref() {
            Some(url) => Arc::new(SqliteStore::open_url(url).await?),
            None => {
                std::fs::create_dir_all(&settings.data_dir)?;
                Arc::new(SqliteStore::open(&settings.data_dir.join("projections.db")).await?)
            }
        },
        StoreBackend::Postgres => {
            let url = settings.database_url.as_deref().unwrap_or_default();
            Arc::new(PostgresStore::connect(url, None).await?)
        }
    };
    Ok(store)
}
