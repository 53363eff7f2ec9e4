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

use super::commit_signal::CommitSignal;
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
}

impl Relay {
    pub async fn start(
        topology: &str,
        log: Arc<dyn Log>,
        store: Arc<dyn ProjectionStore>,
    ) -> Result<Self, RelayError> {
        let marker = marker_topic(topology);
        ensure_topic(log.as_ref(), &marker, 1).await?;
        let group = format!("{topology}.relay");
        let writer = log.open_writer(&group, &group).await?;
        let position = log
            .committed_positions(&group, &marker)
            .await?
            .get(&0)
            .copied()
            .unwrap_or(0);
        Ok(Relay {
            topology: topology.to_string(),
            log,
            store,
            writer,
            position,
            partitions: HashMap::new(),
            deleted_below: 0,
        })
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
        self.writer
            .commit(Transaction {
                outputs,
                positions: vec![InputPosition {
                    topic: marker,
                    partition: 0,
                    next_offset: next,
                }],
            })
            .await?;
        self.position = next;
        self.store
            .delete_outbox(&self.topology, self.deleted_below..next)
            .await?;
        self.deleted_below = next;
        metrics::counter!(m::OUTBOX_RELAYED_TOTAL, "topology" => self.topology.clone())
            .increment(count as u64);
        Ok(count)
    }

    /// Relays until `shutdown`, then empties the outbox once more (drain).
    pub async fn run(
        mut self,
        committed: Arc<CommitSignal>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), RelayError> {
        committed.attach_relay();
        loop {
            let sent = self.step_with(Some(&committed)).await?;
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
        Ok(())
    }
}
