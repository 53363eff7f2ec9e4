//! Errors as the CLI shows them: a primary line, and a hint where one helps.

use conductor_engine::cursor::CursorError;
use conductor_engine::log::LogError;
use conductor_schemas::SchemaError;
use std::fmt;

#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    /// Process exit code: 1 for failures, 2 for bad usage.
    pub exit_code: i32,
}

impl CliError {
    pub fn new(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            hint: Some(hint.into()),
            exit_code: 1,
        }
    }

    pub fn plain(message: impl Into<String>) -> Self {
        CliError {
            message: message.into(),
            hint: None,
            exit_code: 1,
        }
    }

    pub fn usage(message: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError {
            exit_code: 2,
            ..Self::new(message, hint)
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "\n  hint: {h}")?;
        }
        Ok(())
    }
}

impl From<LogError> for CliError {
    fn from(e: LogError) -> Self {
        let hint = match &e {
            LogError::Locked { .. } => Some(
                "only one process may write to a file log; stop the other one (read-only commands like `consume` still work)",
            ),
            LogError::Kafka { .. } => Some(
                "check that the broker is running and --kafka-bootstrap / CONDUCTOR_KAFKA_BOOTSTRAP points at it",
            ),
            LogError::Corrupt { .. } => Some(
                "the log on disk is damaged; restore the data directory from a backup or replay from another copy",
            ),
            _ => None,
        };
        CliError {
            message: e.to_string(),
            hint: hint.map(str::to_string),
            exit_code: 1,
        }
    }
}

impl From<conductor_engine::store::StoreError> for CliError {
    fn from(e: conductor_engine::store::StoreError) -> Self {
        let hint = match &e {
            conductor_engine::store::StoreError::Connect { .. } => {
                Some("check that the database is running and --database-url / CONDUCTOR_DATABASE_URL points at it".to_string())
            }
            _ => None,
        };
        CliError {
            message: e.to_string(),
            hint,
            exit_code: 1,
        }
    }
}

impl From<conductor_engine::runtime::RuntimeError> for CliError {
    fn from(e: conductor_engine::runtime::RuntimeError) -> Self {
        use conductor_engine::runtime::RuntimeError as R;
        match e {
            R::Log(l) => l.into(),
            R::Store(s) => s.into(),
            other => CliError::plain(other.to_string()),
        }
    }
}

impl From<CursorError> for CliError {
    fn from(e: CursorError) -> Self {
        CliError::plain(e.to_string())
    }
}

impl From<SchemaError> for CliError {
    fn from(e: SchemaError) -> Self {
        CliError::plain(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::plain(format!("I/O error: {e}"))
    }
}
