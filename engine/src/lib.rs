//! Conductor's engine: the event log and its backends, cursors, and (later)
//! the processor runtime.

pub mod cursor;
pub mod enrich;
pub mod envelope;
pub mod graph;
pub mod log;
pub mod metrics;
pub mod processor;
pub mod projection;
pub mod runtime;
pub mod store;
pub mod testing;

pub use log::{Log, LogError};
