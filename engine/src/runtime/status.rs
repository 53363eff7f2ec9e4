//! What a running topology reports (admin HTTP `/v1/topologies`, `conductor topology status`).

use serde::Serialize;
use std::sync::{Arc, Mutex};

/// Lifecycle of a topology worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TopologyState {
    Starting,
    Running,
    Paused,
    /// Stopping: finishing the current batch and relaying the outbox.
    Draining,
    Stopped,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    pub high_watermark: i64,
    pub lag: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopologyStatus {
    pub name: String,
    pub processor: String,
    pub state: TopologyState,
    pub error: Option<String>,
    /// While a failed batch is being retried: what the topology waits on
    /// (`the projection store`, `embedder http://…`).
    pub waiting_on: Option<String>,
    pub events_processed: u64,
    pub dlq_events: u64,
    pub changes: u64,
    pub batches: u64,
    pub last_commit_ms: Option<i64>,
    pub partitions: Vec<PartitionStatus>,
    /// The outbox relay (changefeed, DLQ, derived topics).
    pub relay: RelayStatus,
    /// Sinks fed from the topology's derived topics (the graph sink).
    pub sinks: Vec<SinkStatus>,
}

/// Lifecycle of a topology's outbox relay (see `runtime::relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayState {
    Starting,
    Running,
    /// A round failed in a way a retry can fix; `waiting_on` says on what.
    Waiting,
    Stopped,
    Failed,
}

/// What a topology's relay reports.
#[derive(Debug, Clone, Serialize)]
pub struct RelayStatus {
    pub state: RelayState,
    pub error: Option<String>,
    /// While a failed round is retried: `postgres`, `sqlite`, `kafka`, `the file log`.
    pub waiting_on: Option<String>,
    /// Next outbox seq to relay: everything before it is on its topic.
    pub position: i64,
    pub records_relayed: u64,
}

impl Default for RelayStatus {
    fn default() -> Self {
        RelayStatus {
            state: RelayState::Starting,
            error: None,
            waiting_on: None,
            position: 0,
            records_relayed: 0,
        }
    }
}

/// Lifecycle of a sink (see `runtime::sink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    Starting,
    Running,
    /// A write failed in a way a retry can fix; `waiting_on` says on what.
    Waiting,
    Stopped,
    Failed,
}

/// What one sink of a topology reports.
#[derive(Debug, Clone, Serialize)]
pub struct SinkStatus {
    /// `neo4j`.
    pub kind: String,
    /// Where it writes (no secrets).
    pub target: String,
    /// The topic it follows.
    pub topic: String,
    pub state: SinkState,
    pub error: Option<String>,
    pub waiting_on: Option<String>,
    pub records_written: u64,
    pub records_rejected: u64,
    pub batches: u64,
    /// Records of the topic not written yet.
    pub lag: i64,
}

impl SinkStatus {
    pub fn new(kind: &str, target: String, topic: &str) -> Self {
        SinkStatus {
            kind: kind.into(),
            target,
            topic: topic.into(),
            state: SinkState::Starting,
            error: None,
            waiting_on: None,
            records_written: 0,
            records_rejected: 0,
            batches: 0,
            lag: 0,
        }
    }
}

/// Shared, cheaply cloneable handle on a topology's status.
#[derive(Clone)]
pub struct StatusHandle(Arc<Mutex<TopologyStatus>>);

impl StatusHandle {
    pub fn new(name: &str, processor: &str) -> Self {
        StatusHandle(Arc::new(Mutex::new(TopologyStatus {
            name: name.into(),
            processor: processor.into(),
            state: TopologyState::Starting,
            error: None,
            waiting_on: None,
            events_processed: 0,
            dlq_events: 0,
            changes: 0,
            batches: 0,
            last_commit_ms: None,
            partitions: Vec::new(),
            relay: RelayStatus::default(),
            sinks: Vec::new(),
        })))
    }

    pub fn update(&self, f: impl FnOnce(&mut TopologyStatus)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn snapshot(&self) -> TopologyStatus {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
