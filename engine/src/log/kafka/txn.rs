//! `transactions` mode: Kafka transactions with `transactional.id` = writer id.
//!
//! Opening appends a `Fence` to the progress topic (that is where the epoch
//! number comes from) and calls `init_transactions`, which makes the broker
//! fence every older producer with the same `transactional.id` and abort its
//! open transaction. A commit is `begin_transaction`, the outputs,
//! `send_offsets_to_transaction(positions, group)` and `commit_transaction`;
//! readers use `isolation.level=read_committed`, so they see all of it or none.
//! On an abortable error the transaction is aborted and the writer stays
//! usable; on fencing it fails with [`LogError::Fenced`] for good.
//!
//! Before `commit_transaction` the writer also reads the progress topic's
//! tail and aborts if a newer `Fence` of its id is there. The broker's
//! producer fencing is what makes this airtight on Apache Kafka; the extra
//! check costs one read per commit and catches zombies on brokers whose
//! fencing is weaker (librdkafka's mock cluster hands every
//! `init_transactions` a new producer id instead of bumping the epoch).

use super::client::{self, blocking};
use super::error::{kafka_detail, kafka_error};
use super::groups::positions_tpl;
use super::produce::{Outgoing, produce_all};
use super::progress::WriterHistory;
use super::progress::{HEADER_EPOCH, HEADER_SOURCE, HEADER_WRITER, source_tag};
use super::progress_topic::fold_progress;
use super::recovery::{take_over, validate_writer_names};
use super::shared::Shared;
use crate::log::*;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::Producer as _;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// How long the broker keeps a transaction open without activity.
const TRANSACTION_TIMEOUT_MS: u64 = 60_000;

/// A step of a transactional commit, reported to a test's observer
/// ([`TxnWriter::observe_steps`]) right after it completed.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStep {
    /// `begin_transaction` returned.
    Begun,
    /// Every output was acknowledged by the broker (inside the open transaction).
    OutputsSent,
    /// The input positions were added to the transaction.
    OffsetsSent,
    /// `commit_transaction` returned.
    Committed,
}

type TxnObserver = Box<dyn Fn(TxnStep) + Send + Sync>;

/// A `transactions`-mode [`TransactionalWriter`].
pub struct TxnWriter {
    shared: Arc<Shared>,
    group: String,
    writer_id: String,
    epoch: u64,
    producer: client::Producer,
    progress_partition: i32,
    /// Next offset of the progress partition to fold.
    progress_next: i64,
    history: WriterHistory,
    fenced: bool,
    /// A fatal producer error: the writer must be reopened.
    broken: Option<String>,
    observer: Option<TxnObserver>,
}

fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fenced
            | RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::TransactionCoordinatorFenced
    )
}

/// What went wrong in a transactional call.
enum TxnFailure {
    Fenced,
    /// Abort the transaction, then the writer can go on.
    Abortable(LogError),
    /// The producer is unusable.
    Fatal(LogError),
}

fn classify(operation: &str, e: &KafkaError) -> TxnFailure {
    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnsupportedFeature)
        || matches!(e, KafkaError::Transaction(rd) if rd.code() == RDKafkaErrorCode::UnsupportedFeature)
    {
        return TxnFailure::Fatal(kafka_detail(
            operation,
            format!("{e} (hint: this broker has no transactions; use exactly_once = \"progress\")"),
        ));
    }
    if let KafkaError::Transaction(rd) = e {
        if is_fencing(rd.code()) {
            return TxnFailure::Fenced;
        }
        if rd.is_fatal() {
            return TxnFailure::Fatal(kafka_error(operation, e));
        }
        return TxnFailure::Abortable(kafka_error(operation, e));
    }
    match e.rdkafka_error_code() {
        Some(code) if is_fencing(code) => TxnFailure::Fenced,
        _ => TxnFailure::Abortable(kafka_error(operation, e)),
    }
}

impl TxnWriter {
    pub(crate) async fn open(
        shared: Arc<Shared>,
        group: &str,
        writer_id: &str,
    ) -> Result<TxnWriter, LogError> {
        validate_writer_names(group, writer_id)?;
        let (history, progress_partition, progress_next, epoch) =
            take_over(&shared, group, writer_id).await?;
        let config = &shared.clients.config;
        let mut cfg = client::producer_config(config, "txn");
        cfg.set("transactional.id", writer_id)
            .set("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS.to_string());
        let producer: client::Producer =
            cfg.create_with_context(client::TracingContext)
                .map_err(|e| {
                    kafka_error(
                        format!("creating the transactional producer `{writer_id}`"),
                        &e,
                    )
                })?;
        let timeout = shared.clients.timeout();
        let p = producer.clone();
        let id = writer_id.to_string();
        blocking("init_transactions", move || {
            p.init_transactions(timeout).map_err(|e| {
                kafka_detail(
                    format!("initializing transactions for writer `{id}`"),
                    format!("{e} (hint: use exactly_once = \"progress\" on brokers without transactions, such as tansu)"),
                )
            })
        })
        .await?;
        tracing::info!(writer_id, group, epoch, "opened transactional writer");
        Ok(TxnWriter {
            shared,
            group: group.to_string(),
            writer_id: writer_id.to_string(),
            epoch,
            producer,
            progress_partition,
            progress_next,
            history,
            fenced: false,
            broken: None,
            observer: None,
        })
    }

    /// Calls `observer` after each step of every commit, with the step just
    /// completed. For crash tests that kill (or pause) the process between
    /// steps.
    #[doc(hidden)]
    pub fn observe_steps(&mut self, observer: impl Fn(TxnStep) + Send + Sync + 'static) {
        self.observer = Some(Box::new(observer));
    }

    fn observe(&self, step: TxnStep) {
        if let Some(observer) = &self.observer {
            observer(step);
        }
    }

    fn fenced_error(&mut self) -> LogError {
        self.fenced = true;
        LogError::Fenced {
            writer_id: self.writer_id.clone(),
            epoch: self.epoch,
        }
    }

    /// Turns a failure into the error to return, aborting when that helps.
    async fn fail(&mut self, failure: TxnFailure) -> LogError {
        match failure {
            TxnFailure::Fenced => self.fenced_error(),
            TxnFailure::Fatal(e) => {
                self.broken = Some(e.to_string());
                e
            }
            TxnFailure::Abortable(e) => {
                let p = self.producer.clone();
                let timeout = self.shared.clients.timeout();
                let aborted = blocking("abort_transaction", move || {
                    p.abort_transaction(timeout)
                        .map_err(|e| kafka_error("aborting the transaction", &e))
                })
                .await;
                if let Err(abort_error) = aborted {
                    self.broken = Some(abort_error.to_string());
                }
                // A fencing error seen while aborting wins over the original one.
                if let Some((code, _)) = self.producer.client().fatal_error()
                    && is_fencing(code)
                {
                    return self.fenced_error();
                }
                e
            }
        }
    }

    /// Whether a newer incarnation appended its `Fence` since we last looked.
    async fn fenced_in_progress_topic(&mut self) -> Result<bool, LogError> {
        let topic = self.shared.clients.config.progress_topic.clone();
        let (_, high) = self
            .shared
            .watermarks(&topic, self.progress_partition)
            .await?;
        self.progress_next = fold_progress(
            &self.shared,
            self.progress_partition,
            &self.writer_id,
            &mut self.history,
            self.progress_next,
            high,
        )
        .await?;
        Ok(self.history.live_epoch != self.epoch)
    }

    async fn txn_call<F>(&mut self, operation: &'static str, f: F) -> Result<(), TxnFailure>
    where
        F: FnOnce(&client::Producer) -> Result<(), KafkaError> + Send + 'static,
    {
        let p = self.producer.clone();
        match tokio::task::spawn_blocking(move || f(&p).map_err(|e| classify(operation, &e))).await
        {
            Ok(result) => result,
            Err(e) => Err(TxnFailure::Fatal(kafka_detail(
                operation,
                format!("worker task failed: {e}"),
            ))),
        }
    }
}

#[async_trait]
impl TransactionalWriter for TxnWriter {
    fn writer_id(&self) -> &str {
        &self.writer_id
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn commit(&mut self, txn: Transaction) -> Result<Vec<(String, i32, i64)>, LogError> {
        if self.fenced {
            return Err(self.fenced_error());
        }
        if let Some(reason) = &self.broken {
            return Err(kafka_detail(
                "commit",
                format!(
                    "writer `{}` must be reopened after a fatal producer error: {reason}",
                    self.writer_id
                ),
            ));
        }
        let mut output_partitions = BTreeSet::new();
        for o in &txn.outputs {
            validate_records(std::slice::from_ref(&o.record))?;
            output_partitions.insert((o.topic.clone(), o.partition));
        }
        for (topic, partition) in &output_partitions {
            self.shared.check_partition(topic, *partition).await?;
        }
        let group_client = self.shared.clients.group_client(&self.group)?;
        let Some(group_metadata) = group_client.group_metadata() else {
            return Err(kafka_detail(
                "commit",
                format!("no group metadata for group `{}`", self.group),
            ));
        };
        let mut positions = BTreeMap::new();
        for p in &txn.positions {
            positions.insert((p.topic.clone(), p.partition), p.next_offset);
        }
        let tpl = positions_tpl(&positions).map_err(|e| kafka_error("commit", &e))?;

        if let Err(f) = self
            .txn_call("begin_transaction", |p| p.begin_transaction())
            .await
        {
            return Err(self.fail(f).await);
        }
        self.observe(TxnStep::Begun);
        let epoch_header = self.epoch.to_string().into_bytes();
        let outgoing: Vec<Outgoing<'_>> = txn
            .outputs
            .iter()
            .map(|o| {
                let mut extra_headers = vec![
                    (HEADER_WRITER, self.writer_id.clone().into_bytes()),
                    (HEADER_EPOCH, epoch_header.clone()),
                ];
                if let Some((src, index)) = &o.source {
                    let tag = source_tag(&src.topic, src.partition, src.offset, *index);
                    extra_headers.push((HEADER_SOURCE, tag.into_bytes()));
                }
                Outgoing {
                    topic: &o.topic,
                    partition: o.partition,
                    record: &o.record,
                    extra_headers,
                }
            })
            .collect();
        let produced = produce_all(
            &self.shared.clients,
            &self.producer,
            &outgoing,
            "commit outputs",
        )
        .await;
        drop(outgoing);
        let offsets = match produced {
            Ok(offsets) => offsets,
            Err(e) => {
                let failure = match self.producer.client().fatal_error() {
                    Some((code, _)) if is_fencing(code) => TxnFailure::Fenced,
                    Some((_, reason)) => TxnFailure::Fatal(kafka_detail("commit outputs", reason)),
                    None => TxnFailure::Abortable(e),
                };
                return Err(self.fail(failure).await);
            }
        };
        self.observe(TxnStep::OutputsSent);
        if !positions.is_empty() {
            let timeout = self.shared.clients.timeout();
            let sent = self
                .txn_call("send_offsets_to_transaction", move |p| {
                    p.send_offsets_to_transaction(&tpl, &group_metadata, timeout)
                })
                .await;
            if let Err(f) = sent {
                return Err(self.fail(f).await);
            }
            self.observe(TxnStep::OffsetsSent);
        }
        match self.fenced_in_progress_topic().await {
            Ok(false) => {}
            Ok(true) => {
                let _ = self
                    .fail(TxnFailure::Abortable(kafka_detail("commit", "fenced")))
                    .await;
                return Err(self.fenced_error());
            }
            Err(e) => return Err(self.fail(TxnFailure::Abortable(e)).await),
        }
        let timeout = self.shared.clients.timeout();
        if let Err(f) = self
            .txn_call("commit_transaction", move |p| p.commit_transaction(timeout))
            .await
        {
            return Err(self.fail(f).await);
        }
        self.observe(TxnStep::Committed);
        Ok(txn
            .outputs
            .iter()
            .zip(offsets)
            .map(|(o, offset)| (o.topic.clone(), o.partition, offset))
            .collect())
    }
}
