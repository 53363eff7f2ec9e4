//! Conductor's engine: the event log and its backends, cursors, and (later)
//! the processor runtime.

pub mod cursor;
pub mod envelope;
pub mod log;

pub use log::{Log, LogError};
