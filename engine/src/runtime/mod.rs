//! The topology runtime: input topics → processor → projection store (+ outbox)
//! → relay → changefeed / DLQ / derived topics, exactly once.
//!
//! ```text
//!   log ──read──▶ Worker ──fold──▶ StoreCommit{rows, outbox, offsets} ──one DB txn──▶ store
//!                                                                      │
//!   log ◀──TransactionalWriter.commit{outputs, relay position}── Relay ◀┘ (read outbox)
//! ```
//! The worker's commit makes projection effects and input positions atomic;
//! the relay's commit makes each outbox record reach its topic exactly once.

pub mod backoff;
pub mod change_event;
pub mod commit_signal;
pub mod config;
pub mod driver;
pub mod fold;
pub mod progress;
pub mod relay;
pub mod sink;
pub mod state;
pub mod status;
pub mod topology;
pub mod worker;

pub use config::{TopologyConfig, parse_topology};
pub use progress::Progress;
pub use sink::{SinkError, SinkRunner, TopicSink, WriteOutcome};
pub use status::{
    RelayState, RelayStatus, SinkState, SinkStatus, StatusHandle, TopologyState, TopologyStatus,
};
pub use topology::{RunningTopology, Topology};
pub use worker::{RuntimeError, Worker, WorkerOptions};
