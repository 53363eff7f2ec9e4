//! Sinks fed from a topic that keep their position in their own target —
//! the graph sink into Neo4j (`conductor-connectors`) is the first.
//!
//! ```text
//!   outbox ─relay─▶ ig.graph.<topology> ─read─▶ SinkRunner ─write(records, positions)─▶ target
//!                                                    ▲                 one target transaction │
//!                                                    └──────── load_positions ◀───────────────┘
//! ```
//! Exactly-once is the sink's transaction, not a habit: [`TopicSink::write`]
//! applies a batch *and* stores the next offsets in the same transaction of
//! its target (the Arroyo two-phase-committer shape, with the target's own
//! commit as the commit point), so a crash anywhere either keeps the batch
//! and its position or neither; the runner starts from the stored position.
//! The writes are keyed and version-guarded besides, so a batch applied twice
//! (positions reset by hand, a commit whose reply was lost) changes nothing.
//!
//! The runner retries a failed batch with backoff (`runtime::backoff`)
//! when the sink says a retry can help — the target is down — reloading the
//! positions first (the outcome of the failed commit is unknown), and stops
//! with the error when it can't. `topology status` shows each sink's state.

use crate::log::{Log, LogError, StoredRecord};
use crate::metrics as m;
use crate::runtime::status::{SinkState, SinkStatus, StatusHandle};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A sink that stores its own position with its writes.
#[async_trait]
pub trait TopicSink: Send {
    /// The kind of sink (`neo4j`): status, metrics label, logs.
    fn kind(&self) -> &'static str;

    /// Where it writes (`neo4j bolt://127.0.0.1:7687`), never a secret.
    fn target(&self) -> String;

    /// The positions stored in the target for `topic`: partition → next
    /// offset. Partitions never written are absent.
    async fn load_positions(&mut self, topic: &str) -> Result<BTreeMap<i32, i64>, SinkError>;

    /// Applies `records` (in offset order per partition) and stores
    /// `positions` — the next offset of every partition read — in ONE
    /// transaction of the target. Must be idempotent: records applied
    /// before change nothing. A record the sink can't use (not its format)
    /// is skipped and counted in [`WriteOutcome::rejected`], never a halt.
    async fn write(
        &mut self,
        topic: &str,
        records: &[StoredRecord],
        positions: &BTreeMap<i32, i64>,
    ) -> Result<WriteOutcome, SinkError>;
}

/// What one [`TopicSink::write`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    /// Records skipped as unusable (logged by the sink with their offsets).
    pub rejected: usize,
}

/// Why a sink could not write a batch.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// Whether the same batch may succeed later (the target is down or busy).
    pub retryable: bool,
    pub message: String,
    #[source]
    pub source: Option<crate::store::BoxError>,
}

impl SinkError {
    pub fn retryable(message: impl Into<String>) -> Self {
        SinkError {
            retryable: true,
            message: message.into(),
            source: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        SinkError {
            retryable: false,
            message: message.into(),
            source: None,
        }
    }
}

/// Why a sink runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkRunError {
    #[error("{kind} sink of topology `{topology}`: {error}")]
    Sink {
        topology: String,
        kind: &'static str,
        error: SinkError,
    },
    #[error("{kind} sink of topology `{topology}`: reading {topic}: {error}")]
    Log {
        topology: String,
        kind: &'static str,
        topic: String,
        error: LogError,
    },
}

impl SinkRunError {
    fn retryable(&self) -> bool {
        match self {
            SinkRunError::Sink { error, .. } => error.retryable,
            SinkRunError::Log { error, .. } => {
                error.kind() == crate::log::LogErrorKind::Transient
                    // The relay creates the topic with the topology's first graph output.
                    || matches!(error, LogError::UnknownTopic(_))
            }
        }
    }
}

/// Reads a topic from the sink's stored positions and feeds it batches.
pub struct SinkRunner {
    topology: String,
    topic: String,
    log: Arc<dyn Log>,
    sink: Box<dyn TopicSink>,
    /// Next offset per partition; `None` until loaded from the target (and
    /// again after a failed write, whose outcome is unknown).
    positions: Option<BTreeMap<i32, i64>>,
    /// Records per write.
    pub max_records: usize,
    status: StatusHandle,
    /// This sink's entry in `status.sinks`.
    index: usize,
}

impl SinkRunner {
    /// A runner for `sink` on `topic`; nothing is read or connected yet (a
    /// target that is down delays the sink, not the topology).
    pub fn new(
        topology: &str,
        topic: &str,
        log: Arc<dyn Log>,
        sink: Box<dyn TopicSink>,
        status: StatusHandle,
    ) -> Self {
        let mut index = 0;
        let (kind, target) = (sink.kind(), sink.target());
        status.update(|s| {
            index = s.sinks.len();
            s.sinks.push(SinkStatus::new(kind, target, topic));
        });
        SinkRunner {
            topology: topology.to_string(),
            topic: topic.to_string(),
            log,
            sink,
            positions: None,
            max_records: 2_000,
            status,
            index,
        }
    }

    fn update(&self, f: impl FnOnce(&mut SinkStatus)) {
        let index = self.index;
        self.status.update(|s| {
            if let Some(sink) = s.sinks.get_mut(index) {
                f(sink)
            }
        });
    }

    fn sink_error(&self, error: SinkError) -> SinkRunError {
        SinkRunError::Sink {
            topology: self.topology.clone(),
            kind: self.sink.kind(),
            error,
        }
    }

    fn log_error(&self, error: LogError) -> SinkRunError {
        SinkRunError::Log {
            topology: self.topology.clone(),
            kind: self.sink.kind(),
            topic: self.topic.clone(),
            error,
        }
    }

    /// Writes one batch of what is available; returns the records written
    /// (0: caught up).
    pub async fn step(&mut self) -> Result<usize, SinkRunError> {
        let mut positions = match self.positions.take() {
            Some(p) => p,
            None => self
                .sink
                .load_positions(&self.topic)
                .await
                .map_err(|e| self.sink_error(e))?,
        };
        let description = match self.log.describe_topic(&self.topic).await {
            Ok(d) => d,
            Err(e) => {
                self.positions = Some(positions);
                return Err(self.log_error(e));
            }
        };
        let mut batch: Vec<StoredRecord> = Vec::new();
        let mut lag = 0i64;
        let share = (self.max_records / description.partitions.len().max(1)).max(1);
        for p in &description.partitions {
            let at = positions
                .get(&p.partition)
                .copied()
                .unwrap_or(p.low_watermark)
                .max(p.low_watermark);
            lag += (p.high_watermark - at).max(0);
            if at >= p.high_watermark {
                continue;
            }
            let records = match self.log.read(&self.topic, p.partition, at, share).await {
                Ok(r) => r,
                Err(e) => {
                    self.positions = Some(positions);
                    return Err(self.log_error(e));
                }
            };
            if let Some(last) = records.last() {
                positions.insert(p.partition, last.offset + 1);
            }
            batch.extend(records);
        }
        let labels = [
            ("topology", self.topology.clone()),
            ("sink", self.sink.kind().to_string()),
        ];
        if batch.is_empty() {
            metrics::gauge!(m::SINK_LAG_RECORDS, &labels).set(0.0);
            self.update(|s| s.lag = 0);
            self.positions = Some(positions);
            return Ok(0);
        }
        let started = Instant::now();
        let outcome = self
            .sink
            .write(&self.topic, &batch, &positions)
            .await
            .map_err(|e| self.sink_error(e))?;
        let written = batch.len();
        metrics::histogram!(m::SINK_COMMIT_DURATION_SECONDS, &labels)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(m::SINK_RECORDS_TOTAL, &labels).increment(written as u64);
        if outcome.rejected > 0 {
            metrics::counter!(m::SINK_REJECTED_RECORDS_TOTAL, &labels)
                .increment(outcome.rejected as u64);
        }
        let lag = (lag - written as i64).max(0);
        metrics::gauge!(m::SINK_LAG_RECORDS, &labels).set(lag as f64);
        self.update(|s| {
            s.records_written += written as u64;
            s.records_rejected += outcome.rejected as u64;
            s.batches += 1;
            s.lag = lag;
        });
        self.positions = Some(positions);
        Ok(written)
    }

    /// Writes until caught up; errors as [`step`](Self::step).
    pub async fn run_until_idle(&mut self) -> Result<usize, SinkRunError> {
        let mut total = 0;
        loop {
            let n = self.step().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Runs until `shutdown` turns true, then writes what is left (the relay
    /// has stopped by then) and returns. Retryable failures are retried with
    /// backoff; any other stops the sink with the error.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), SinkRunError> {
        let idle = Duration::from_millis(50);
        let mut backoff = super::backoff::Backoff::default();
        self.update(|s| s.state = SinkState::Running);
        loop {
            let stopping = *shutdown.borrow();
            match self.step().await {
                Ok(0) if stopping => break,
                Ok(n) => {
                    if backoff.reset() {
                        tracing::info!(topology = %self.topology, sink = self.sink.kind(), "sink writes again");
                        self.update(|s| {
                            s.state = SinkState::Running;
                            s.error = None;
                            s.waiting_on = None;
                        });
                    }
                    if n == 0 {
                        tokio::select! {
                            _ = tokio::time::sleep(idle) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
                Err(e) => {
                    let retryable = e.retryable();
                    let labels = [
                        ("topology", self.topology.clone()),
                        ("sink", self.sink.kind().to_string()),
                        (
                            "kind",
                            if retryable { "retryable" } else { "permanent" }.to_string(),
                        ),
                    ];
                    metrics::counter!(m::SINK_ERRORS_TOTAL, &labels).increment(1);
                    // The outcome of a failed write is unknown: ask the target.
                    self.positions = None;
                    if !retryable {
                        tracing::error!(topology = %self.topology, sink = self.sink.kind(), error = %e, "sink stopped");
                        self.update(|s| {
                            s.state = SinkState::Failed;
                            s.error = Some(e.to_string());
                        });
                        return Err(e);
                    }
                    if stopping {
                        tracing::warn!(topology = %self.topology, sink = self.sink.kind(), error = %e, "sink stops with records left; it resumes from its stored position");
                        break;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(topology = %self.topology, sink = self.sink.kind(), error = %e, retry_in_ms = delay.as_millis() as u64, "sink write failed; retrying");
                    let target = self.sink.target();
                    self.update(|s| {
                        s.state = SinkState::Waiting;
                        s.error = Some(e.to_string());
                        s.waiting_on = Some(target);
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
        self.update(|s| s.state = SinkState::Stopped);
        Ok(())
    }
}
