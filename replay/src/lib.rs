//! Conductor's replay: everything that reads the log again from a position.
//!
//! Today: rebuilding a topology's projections beside the live ones, and SQL
//! over topics and projections ([`sql`], DataFusion).
//!
//! 1. [`rebuild::rebuild`] folds the topology's source topics, from the
//!    beginning (or a time or cursor) up to now (or a point in time), into a
//!    **shadow** generation, in large batches and with side effects
//!    (changefeed, DLQ) suppressed, while the live topology keeps running.
//! 2. [`verify::verify`] brings the shadow to the live positions and compares
//!    the two table by table (blake3 digests) and row by row.
//! 3. [`swap::swap`] pauses the live topology (fencing its commits), brings
//!    the shadow to the live positions and makes it live in one transaction,
//!    with the offsets; the old live generation is kept as **previous**, and
//!    `swap` with [`Generation::Previous`] rolls back the same way.
//!
//! Where generations live per backend, and why readers never see half a swap:
//! `conductor_connectors::sql::generations`.

pub mod catch_up;
pub mod rebuild;
pub mod server;
pub mod sql;
pub mod subscribe;
pub mod swap;
pub mod verify;

pub use conductor_connectors::sql::generations::{Generation, GenerationHome};

use conductor_engine::log::LogError;
use conductor_engine::runtime::RuntimeError;
use conductor_engine::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// The request can't be carried out as asked; `hint` says what to do.
    #[error("{message}")]
    Refused { message: String, hint: String },
}

impl ReplayError {
    pub fn refused(message: impl Into<String>, hint: impl Into<String>) -> Self {
        ReplayError::Refused {
            message: message.into(),
            hint: hint.into(),
        }
    }
}
