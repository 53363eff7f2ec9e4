//! The outbox relay: moves committed outbox records to their topics.
//!
//! Each round takes the outbox from the relay's position — handed over by
//! the worker of the same process right after its commit, or read from the
//! store (after a restart, or when the hand-over doesn't start there; see
//! `commit_signal`) — and commits the records plus the new position through
//! the log's [`TransactionalWriter`]
//! — atomically, so a crash between rounds repeats nothing and loses nothing.
//! The position lives in the log (group `<topology>.relay`, on the marker
//! topic `conductor.outbox.<topology>`), next to the records it guards.
//! Relayed rows are then deleted from the outbox; a crash before that only
//! leaves rows the next round skips.
//!
//! A round that fails because the store or the log is away (a restarted
//! Postgres, a broker bounce) is retried with backoff (`runtime::backoff`)
//! until it passes — the relay never gives up on a dependency that may
//! come back. After a failed log commit its outcome is unknown, so the relay
//! opens its writer again (which recovers or fences what the failed one left)
//! and reads its position back from the log before the next round: records
//! are neither repeated nor skipped. It stops only on an error a retry can't
//! change (fenced by another relay, corrupt data), and says so in the
//! topology's status.

use super::commit_signal::CommitSignal;
use super::status::{RelayState, StatusHandle};
use super::worker::ensure_topic;
use crate::log::{
    InputPosition, Log, LogError, OutputRecord, Record, SourcePosition, Transaction,
    TransactionalWriter, now_ms, partition_for_key,
};
use crate::metrics as m;
use crate::store::{ProjectionStore, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Records per relay commit.
const RELAY_BATCH: usize = 2000;

pub fn marker_topic(topology: &str) -> String {
    format!("conductor.outbox.{topology}")
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RelayError {
    /// Whether the same round may pass later: the store or the log is away.
    /// A fenced writer means another relay of this topology took over: this
    /// one stops rather than fence it back.
    pub fn is_retryable(&self) -> bool {
        use crate::log::LogErrorKind;
        use crate::store::StoreErrorKind;
        match self {
            RelayError::Log(e) => e.kind() == LogErrorKind::Transient,
            RelayError::Store(e) => e.kind() == StoreErrorKind::Retryable,
        }
    }
}

pub struct Relay {
    topology: String,
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    writer: Box<dyn TransactionalWriter>,
    /// Next outbox seq to relay.
    position: i64,
    partitions: HashMap<String, i32>,
    /// Rows below this seq may still sit in the outbox (deleted lazily).
    deleted_below: i64,
    /// A log commit failed: its outcome is unknown until the writer is
    /// opened again and the position read back.
    recover_pending: bool,
    /// Where the relay reports (the topology's status), when it runs in one.
    status: Option<StatusHandle>,
}

impl Relay {
    pub async fn start(
        topology: &str,
        log: Arc<dyn Log>,
        store: Arc<dyn ProjectionStore>,
    ) -> Result<Self, RelayError> {
        let marker = marker_topic(topology);
        ensure_topic(log.as_ref(), &marker, 1).await?;
        let (writer, position) = Self::open(topology, log.as_ref()).await?;
        Ok(Relay {
            topology: topology.to_string(),
            log,
            store,
            writer,
            position,
            partitions: HashMap::new(),
            deleted_below: 0,
            recover_pending: false,
            status: None,
        })
    }

    /// Reports the relay's state in `status` (`topology status`, `/v1/topologies`).
    pub fn report_to(mut self, status: StatusHandle) -> Self {
        self.status = Some(status);
        self
    }

    /// Opens the relay's writer (fencing any earlier one of this topology)
    /// and reads its committed position.
    async fn open(
        topology: &str,
        log: &dyn Log,
    ) -> Result<(Box<dyn TransactionalWriter>, i64), LogError> {
        let group = format!("{topology}.relay");
        let writer = log.open_writer(&group, &group).await?;
        let position = log
            .committed_positions(&group, &marker_topic(topology))
            .await?
            .get(&0)
            .copied()
            .unwrap_or(0);
        Ok((writer, position))
    }

    /// After a failed log commit: a new writer, and the position the log
    /// holds — the failed commit may or may not have landed.
    async fn recover(&mut self) -> Result<(), LogError> {
        let (writer, position) = Self::open(&self.topology, self.log.as_ref()).await?;
        if position != self.position {
            tracing::info!(topology = %self.topology, from = self.position, to = position, "relay position read back after a failed commit");
        }
        self.writer = writer;
        self.position = position;
        self.deleted_below = self.deleted_below.min(position);
        self.recover_pending = false;
        Ok(())
    }

    /// Next outbox seq to relay (everything below it is on its topic).
    pub fn position(&self) -> i64 {
        self.position
    }

    fn report(&self, f: impl FnOnce(&mut super::status::RelayStatus)) {
        if let Some(status) = &self.status {
            status.update(|s| f(&mut s.relay));
        }
    }

    async fn partitions_of(&mut self, topic: &str) -> Result<i32, LogError> {
        if let Some(n) = self.partitions.get(topic) {
            return Ok(*n);
        }
        let n = match self.log.describe_topic(topic).await {
            Ok(d) => d.partitions.len() as i32,
            Err(LogError::UnknownTopic(_)) => {
                // A derived topic named by a processor: create it on first use.
                ensure_topic(self.log.as_ref(), topic, 3).await?;
                self.log.describe_topic(topic).await?.partitions.len() as i32
            }
            Err(e) => return Err(e),
        };
        self.partitions.insert(topic.to_string(), n);
        Ok(n)
    }

    /// Relays one round, reading the outbox from the store; returns how
    /// many records went out.
    pub async fn step(&mut self) -> Result<usize, RelayError> {
        self.step_with(None).await
    }

    /// Relays one round, taking the records from the worker's hand-over
    /// when it holds the relay's position, else from the store.
    async fn step_with(&mut self, handoff: Option<&CommitSignal>) -> Result<usize, RelayError> {
        if self.recover_pending {
            self.recover().await?;
        }
        let records = match handoff.and_then(|h| h.take_from(self.position, RELAY_BATCH)) {
            Some(records) => records,
            None => {
                self.store
                    .read_outbox(&self.topology, self.position, RELAY_BATCH)
                    .await?
            }
        };
        if records.is_empty() {
            if self.deleted_below < self.position {
                self.store
                    .delete_outbox(&self.topology, self.deleted_below..self.position)
                    .await?;
                self.deleted_below = self.position;
            }
            return Ok(0);
        }
        let marker = marker_topic(&self.topology);
        let count = records.len();
        let next = records.last().map_or(self.position, |r| r.seq + 1);
        let mut outputs = Vec::with_capacity(count);
        let now = now_ms();
        for r in records {
            let n = self.partitions_of(&r.topic).await?;
            let partition = match &r.key {
                Some(k) => partition_for_key(k, n),
                None => (r.seq % n as i64) as i32,
            };
            outputs.push(OutputRecord {
                partition,
                topic: r.topic,
                record: Record {
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp_ms: now,
                },
                source: Some((
                    SourcePosition {
                        topic: marker.clone(),
                        partition: 0,
                        offset: r.seq,
                    },
                    0,
                )),
            });
        }
        let committed = self
            .writer
            .commit(Transaction {
                outputs,
                positions: vec![InputPosition {
                    topic: marker,
                    partition: 0,
                    next_offset: next,
                }],
            })
            .await;
        if let Err(e) = committed {
            self.recover_pending = true;
            return Err(e.into());
        }
        self.position = next;
        self.store
            .delete_outbox(&self.topology, self.deleted_below..next)
            .await?;
        self.deleted_below = next;
        metrics::counter!(m::OUTBOX_RELAYED_TOTAL, "topology" => self.topology.clone())
            .increment(count as u64);
        self.report(|r| {
            r.records_relayed += count as u64;
            r.position = next;
        });
        Ok(count)
    }

    /// Relays until `shutdown`, then empties the outbox once more (drain).
    /// A failed round is retried with backoff while a retry can help (see
    /// the module doc); the error a retry can't change ends the relay.
    pub async fn run(
        mut self,
        committed: Arc<CommitSignal>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), RelayError> {
        committed.attach_relay();
        let position = self.position;
        self.report(|r| {
            r.state = RelayState::Running;
            r.position = position;
        });
        let mut backoff = super::backoff::Backoff::default();
        loop {
            let sent = match self.step_with(Some(&committed)).await {
                Ok(sent) => {
                    if backoff.reset() {
                        tracing::info!(topology = %self.topology, "relay resumed");
                        self.report(|r| {
                            r.state = RelayState::Running;
                            r.error = None;
                            r.waiting_on = None;
                        });
                    }
                    sent
                }
                Err(e) if e.is_retryable() => {
                    let delay = backoff.next_delay();
                    let waiting_on = self.waiting_on(&e);
                    metrics::counter!(m::RELAY_ERRORS_TOTAL, "topology" => self.topology.clone())
                        .increment(1);
                    tracing::warn!(topology = %self.topology, error = %e, waiting_on = %waiting_on, retry_in_ms = delay.as_millis() as u64, "relay round failed; retrying");
                    self.report(|r| {
                        r.state = RelayState::Waiting;
                        r.error = Some(e.to_string());
                        r.waiting_on = Some(waiting_on);
                    });
                    // On shutdown a relay that can't reach its store or log
                    // stops: what it did not relay stays in the outbox, for
                    // the next start.
                    if *shutdown.borrow() {
                        return Err(e);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
                Err(e) => {
                    tracing::error!(topology = %self.topology, error = %e, "relay stopped");
                    self.report(|r| {
                        r.state = RelayState::Failed;
                        r.error = Some(e.to_string());
                        r.waiting_on = None;
                    });
                    return Err(e);
                }
            };
            if sent > 0 {
                continue;
            }
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                _ = committed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => {}
            }
        }
        while self.step_with(Some(&committed)).await? > 0 {}
        self.report(|r| r.state = RelayState::Stopped);
        Ok(())
    }

    /// What a failed round waits on: the store's or the log's backend.
    fn waiting_on(&self, error: &RelayError) -> String {
        match error {
            RelayError::Store(_) => self.store.backend().to_string(),
            RelayError::Log(_) => super::worker::log_dependency(self.log.as_ref()),
        }
    }
}
