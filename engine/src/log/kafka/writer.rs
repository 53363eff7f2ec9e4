//! `progress` mode: exactly-once read-process-write without broker transactions.
//!
//! # Protocol
//!
//! Each writer id owns a stream of JSON records in one partition of the
//! progress topic (`partition_for_key(writer_id)`, key = writer id; see
//! [`super::progress`]). The partition's total order is the linearization of
//! everything the incarnations of that writer id did.
//!
//! **Open** (`ProgressWriter::open`):
//! 1. fold the writer's records up to the high watermark, starting from its
//!    latest `Checkpoint` (found scanning backwards) or the low watermark;
//! 2. append `Fence{epoch = max epoch seen + 1}` and fold up to it; if another
//!    opener's `Fence` with an epoch ≥ ours got in between, ours is not
//!    effective: retry with a higher epoch (the later opener always wins);
//!    then append a `Checkpoint` (also written every 50 commits);
//! 3. if the last counted `Intent` has no counted `Commit` (a torn batch), or
//!    the last `Commit` still carries ranges of one, scan those output
//!    partitions from the range start to the current high watermark for
//!    records whose `ig-writer` header is this writer id and remember their
//!    `ig-src` source tags (minus inputs already committed): those outputs
//!    already reached the log;
//! 4. re-assert the consumer group's offsets: every partition whose committed
//!    offset is absent or behind what this writer's counted `Commit`s say is
//!    committed again (repairs a crash between the `Commit` record and the
//!    group commit, and offsets expired by the broker).
//!
//! **Commit** (`TransactionalWriter::commit`):
//! 1. append `Intent{seq, outputs_start}` (`outputs_start` = a lower bound of
//!    each output partition's high watermark, plus the ranges carried over from
//!    a recovered torn batch) and fold the progress partition up to it: a newer
//!    effective `Fence` → [`LogError::Fenced`] before any output is written;
//! 2. produce the outputs with the idempotent producer, tagged `ig-writer`,
//!    `ig-epoch` and `ig-src` (`topic/partition/offset/index` of
//!    [`OutputRecord::source`]), skipping outputs whose tag was recovered;
//! 3. append `Commit{seq, positions}` and fold up to it: if a newer `Fence` got
//!    in before it, the commit is void (the new incarnation will redo the
//!    batch) → [`LogError::Fenced`];
//! 4. commit the positions to the consumer group (`committed_positions` reads
//!    them). The `Commit` record is the commit point: a failure here is logged
//!    and retried with the next commit and at the next open, not reported.
//!
//! # Invariants
//!
//! * `committed_positions` never covers input whose outputs are not all in the
//!   log: the group offsets move only after a counted `Commit`.
//! * After a crash anywhere, the next open knows every output of the torn
//!   batch that reached the log (they sit between `outputs_start` and the high
//!   watermark, tagged with this writer id), and re-processing the same input
//!   from the committed positions produces the same tags, which are skipped.
//! * Ranges of a recovered batch are carried into later `Intent`s *and*
//!   `Commit`s until every recovered tag is consumed or passed by the committed
//!   positions, so a crash while redoing a torn batch — even after part of the
//!   redo committed — is recovered too.
//!
//! # What it does not cover
//!
//! * Outputs without a `source` cannot be recognized: after a torn commit they
//!   may be written twice (at-least-once).
//! * A zombie (a fenced incarnation still running) whose `Intent` landed before
//!   the new `Fence` may still be writing that batch's outputs while the new
//!   incarnation scans; outputs arriving after the scan are duplicated. They
//!   carry the zombie's stale `ig-epoch` and the same `ig-src`, so readers can
//!   drop them. The same holds in principle for a produce request that a
//!   killed process had already sent when it died. A zombie stalled between
//!   its (counted) `Commit` record and its group commit can move the group
//!   offsets back until the next commit.
//! * Processing must be deterministic: the same input yields the same outputs
//!   with the same source tags.

use super::client::blocking;
use super::error::kafka_detail;
use super::groups::commit_group_offsets;
use super::produce::{Outgoing, produce_all};
use super::progress::{
    HEADER_EPOCH, HEADER_SOURCE, HEADER_WRITER, PartitionOffsets, ProgressRecord, WriterHistory,
    merge_min, parse_source_tag, source_tag, to_starts,
};
use super::progress_topic::{append_progress, fold_progress, write_checkpoint};
use super::recovery::{lagging_group_offsets, landed_outputs, take_over, validate_writer_names};
use super::shared::Shared;
use crate::log::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A checkpoint is written after this many commits (and at every open).
const CHECKPOINT_EVERY: u32 = 50;
/// A cached high-watermark lower bound older than this is refreshed, so that
/// a recovery scan never starts far behind the batch it recovers.
const HIGH_BOUND_MAX_AGE: Duration = Duration::from_secs(30);

/// What opening a progress-mode writer found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// `(epoch, seq)` of the torn batch found, if the last incarnation crashed mid-commit.
    pub torn_batch: Option<(u64, u64)>,
    /// Outputs of the torn batch already in the log (they will be skipped).
    pub outputs_already_written: usize,
    /// Group offsets committed again because they lagged behind the `Commit` records.
    pub positions_repaired: usize,
}

/// Where a test wants [`ProgressWriter::commit_until`] to stop, as if the
/// process died right after that step.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the `Intent` record, before any output.
    AfterIntent,
    /// After every output, before the `Commit` record.
    AfterOutputs,
    /// After the `Commit` record, before the group commit.
    AfterCommitRecord,
}

/// A `progress`-mode [`TransactionalWriter`]; see the module documentation.
pub struct ProgressWriter {
    shared: Arc<Shared>,
    group: String,
    writer_id: String,
    epoch: u64,
    progress_partition: i32,
    /// Next offset of the progress partition to fold.
    progress_next: i64,
    history: WriterHistory,
    /// Source tag → where that output of a torn batch landed.
    recovered: HashMap<String, (String, i32, i64)>,
    /// Output ranges of the recovered torn batch, repeated in every `Intent`
    /// until `recovered` is empty.
    carry: PartitionOffsets,
    /// Lower bounds of output partitions' high watermarks.
    high_bounds: HashMap<(String, i32), (i64, Instant)>,
    /// Positions committed by `Commit` records but not yet to the group.
    unmirrored: BTreeMap<(String, i32), i64>,
    report: RecoveryReport,
    commits_since_checkpoint: u32,
    fenced: bool,
    /// Set when a commit stopped half-way: the writer must be reopened.
    broken: Option<String>,
    observer: Option<StepObserver>,
}

/// Called after each step of a commit (tests use it to time kills).
type StepObserver = Box<dyn Fn(CrashPoint) + Send + Sync>;

impl ProgressWriter {
    pub(crate) async fn open(
        shared: Arc<Shared>,
        group: &str,
        writer_id: &str,
    ) -> Result<ProgressWriter, LogError> {
        validate_writer_names(group, writer_id)?;
        let (history, progress_partition, progress_next, epoch) =
            take_over(&shared, group, writer_id).await?;
        let mut w = ProgressWriter {
            shared,
            group: group.to_string(),
            writer_id: writer_id.to_string(),
            epoch,
            progress_partition,
            progress_next,
            history,
            recovered: HashMap::new(),
            carry: PartitionOffsets::new(),
            high_bounds: HashMap::new(),
            unmirrored: BTreeMap::new(),
            report: RecoveryReport::default(),
            commits_since_checkpoint: 0,
            fenced: false,
            broken: None,
            observer: None,
        };
        w.recover_torn_batch().await?;
        w.repair_group_offsets().await?;
        tracing::info!(
            writer_id = %w.writer_id,
            group = %w.group,
            epoch = w.epoch,
            torn_batch = ?w.report.torn_batch,
            outputs_already_written = w.report.outputs_already_written,
            positions_repaired = w.report.positions_repaired,
            "opened progress-mode writer"
        );
        Ok(w)
    }

    /// What opening found and repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Number of recovered outputs not yet re-emitted (and skipped).
    pub fn pending_recovered_outputs(&self) -> usize {
        self.recovered.len()
    }

    /// Calls `observer` after each step of every commit, with the step just
    /// completed. For crash tests that kill the process between steps.
    #[doc(hidden)]
    pub fn observe_steps(&mut self, observer: impl Fn(CrashPoint) + Send + Sync + 'static) {
        self.observer = Some(Box::new(observer));
    }

    fn observe(&self, step: CrashPoint) {
        if let Some(observer) = &self.observer {
            observer(step);
        }
    }

    /// Runs a commit up to `crash` and stops there as if the process died;
    /// the writer is unusable afterwards. For crash-recovery tests.
    #[doc(hidden)]
    pub async fn commit_until(
        &mut self,
        txn: Transaction,
        crash: CrashPoint,
    ) -> Result<(), LogError> {
        self.run_commit(txn, Some(crash)).await.map(|_| ())
    }

    /// Step 3 of open: find which outputs of a torn batch are already in the
    /// log — in the pending `Intent`'s ranges and those the last `Commit`
    /// still carried (a torn batch redone only in part before a crash).
    async fn recover_torn_batch(&mut self) -> Result<(), LogError> {
        let ranges = self.history.recovery_ranges();
        if ranges.is_empty() {
            return Ok(());
        }
        self.report.torn_batch = self.history.pending.as_ref().map(|p| (p.epoch, p.seq));
        self.recovered = landed_outputs(&self.shared, &self.writer_id, &ranges).await?;
        self.prune_recovered();
        self.report.outputs_already_written = self.recovered.len();
        if !self.recovered.is_empty() {
            self.carry = ranges;
        }
        Ok(())
    }

    /// Step 4 of open: group offsets absent or behind the `Commit` records are committed again.
    async fn repair_group_offsets(&mut self) -> Result<(), LogError> {
        let ours = self.history.group_positions(&self.group);
        if ours.is_empty() {
            return Ok(());
        }
        let lagging = lagging_group_offsets(&self.shared, &self.group, &ours).await?;
        if lagging.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            writer_id = %self.writer_id,
            group = %self.group,
            partitions = lagging.len(),
            "group offsets lag behind the writer's Commit records; committing them again"
        );
        self.report.positions_repaired = lagging.len();
        self.mirror_positions(lagging).await
    }

    /// Commits `positions` to the consumer group.
    async fn mirror_positions(
        &self,
        positions: BTreeMap<(String, i32), i64>,
    ) -> Result<(), LogError> {
        let me = self.shared.clone();
        let group = self.group.clone();
        blocking("committing group offsets", move || {
            commit_group_offsets(&me.clients, &group, &positions)
        })
        .await
    }

    /// Drops recovered tags whose input the committed positions have passed.
    fn prune_recovered(&mut self) {
        let positions = self.history.group_positions(&self.group);
        self.recovered
            .retain(|tag, _| !input_passed(tag, &positions));
        if self.recovered.is_empty() {
            self.carry.clear();
        }
    }

    fn fenced_error(&self) -> LogError {
        LogError::Fenced {
            writer_id: self.writer_id.clone(),
            epoch: self.epoch,
        }
    }

    /// Folds the progress partition up to and including `offset`; `Fenced` if a
    /// newer incarnation took over.
    async fn fold_through(&mut self, offset: i64) -> Result<(), LogError> {
        self.progress_next = fold_progress(
            &self.shared,
            self.progress_partition,
            &self.writer_id,
            &mut self.history,
            self.progress_next,
            offset + 1,
        )
        .await?;
        if self.history.live_epoch != self.epoch {
            self.fenced = true;
            tracing::warn!(
                writer_id = %self.writer_id,
                epoch = self.epoch,
                newer_epoch = self.history.live_epoch,
                "writer fenced by a newer incarnation"
            );
            return Err(self.fenced_error());
        }
        Ok(())
    }

    /// A lower bound of the next offset of `topic[partition]`.
    async fn high_bound(&mut self, topic: &str, partition: i32) -> Result<i64, LogError> {
        let key = (topic.to_string(), partition);
        if let Some((bound, at)) = self.high_bounds.get(&key)
            && at.elapsed() < HIGH_BOUND_MAX_AGE
        {
            return Ok(*bound);
        }
        let (_, high) = self.shared.watermarks(topic, partition).await?;
        self.high_bounds.insert(key, (high, Instant::now()));
        Ok(high)
    }

    async fn run_commit(
        &mut self,
        txn: Transaction,
        crash: Option<CrashPoint>,
    ) -> Result<Vec<(String, i32, i64)>, LogError> {
        if self.fenced {
            return Err(self.fenced_error());
        }
        if let Some(reason) = &self.broken {
            return Err(kafka_detail(
                "commit",
                format!(
                    "writer `{}` (epoch {}) must be reopened with open_writer before it commits again: {reason}",
                    self.writer_id, self.epoch
                ),
            ));
        }
        // Validate everything before writing anything.
        let mut output_partitions = BTreeSet::new();
        for o in &txn.outputs {
            validate_records(std::slice::from_ref(&o.record))?;
            output_partitions.insert((o.topic.clone(), o.partition));
        }
        for (topic, partition) in &output_partitions {
            self.shared.check_partition(topic, *partition).await?;
        }
        let seq = self.history.last_seq + 1;

        // 1. Intent, then the fence check up to it.
        if !txn.outputs.is_empty() {
            let mut outputs_start = self.carry.clone();
            let mut batch_start = PartitionOffsets::new();
            for (topic, partition) in &output_partitions {
                let bound = self.high_bound(topic, *partition).await?;
                batch_start
                    .entry(topic.clone())
                    .or_default()
                    .insert(*partition, bound);
            }
            merge_min(&mut outputs_start, &batch_start);
            let intent = ProgressRecord::Intent {
                writer_id: self.writer_id.clone(),
                epoch: self.epoch,
                seq,
                group: self.group.clone(),
                outputs_start: to_starts(&outputs_start),
                at_ms: now_ms(),
            };
            let at = append_progress(&self.shared, self.progress_partition, &intent).await?;
            self.fold_through(at).await?;
            self.observe(CrashPoint::AfterIntent);
            if crash == Some(CrashPoint::AfterIntent) {
                return self.crash_here(CrashPoint::AfterIntent);
            }
        }

        // 2. Outputs, minus those a torn batch already wrote.
        let epoch_header = self.epoch.to_string().into_bytes();
        let mut offsets: Vec<Option<(String, i32, i64)>> = vec![None; txn.outputs.len()];
        let mut to_send = Vec::with_capacity(txn.outputs.len());
        let mut sent_index = Vec::with_capacity(txn.outputs.len());
        for (i, o) in txn.outputs.iter().enumerate() {
            let tag = o
                .source
                .as_ref()
                .map(|(src, index)| source_tag(&src.topic, src.partition, src.offset, *index));
            if let Some(tag) = &tag
                && let Some(landed) = self.recovered.remove(tag)
            {
                if (landed.0.as_str(), landed.1) != (o.topic.as_str(), o.partition) {
                    tracing::warn!(
                        writer_id = %self.writer_id,
                        source = %tag,
                        "a re-processed output goes to another partition than before; is processing deterministic?"
                    );
                }
                offsets[i] = Some(landed);
                continue;
            }
            let mut extra_headers = vec![
                (HEADER_WRITER, self.writer_id.clone().into_bytes()),
                (HEADER_EPOCH, epoch_header.clone()),
            ];
            if let Some(tag) = tag {
                extra_headers.push((HEADER_SOURCE, tag.into_bytes()));
            }
            to_send.push(Outgoing {
                topic: &o.topic,
                partition: o.partition,
                record: &o.record,
                extra_headers,
            });
            sent_index.push(i);
        }
        let clients = &self.shared.clients;
        let delivered =
            match produce_all(clients, &clients.producer, &to_send, "commit outputs").await {
                Ok(d) => d,
                Err(e) => {
                    self.broken = Some(format!("batch {seq} failed while writing outputs ({e})"));
                    return Err(e);
                }
            };
        drop(to_send);
        for (i, offset) in sent_index.into_iter().zip(delivered) {
            let o = &txn.outputs[i];
            let key = (o.topic.clone(), o.partition);
            let bound = self
                .high_bounds
                .entry(key)
                .or_insert((offset + 1, Instant::now()));
            bound.0 = bound.0.max(offset + 1);
            offsets[i] = Some((o.topic.clone(), o.partition, offset));
        }
        self.observe(CrashPoint::AfterOutputs);
        if crash == Some(CrashPoint::AfterOutputs) {
            return self.crash_here(CrashPoint::AfterOutputs);
        }

        // 3. The Commit record: the commit point. It carries the recovered
        // ranges on while recovered outputs remain whose input it does not pass.
        let mut positions_after = self.history.group_positions(&self.group);
        for p in &txn.positions {
            positions_after.insert((p.topic.clone(), p.partition), p.next_offset);
        }
        let carry = if self
            .recovered
            .keys()
            .any(|tag| !input_passed(tag, &positions_after))
        {
            to_starts(&self.carry)
        } else {
            Vec::new()
        };
        let commit = ProgressRecord::Commit {
            writer_id: self.writer_id.clone(),
            epoch: self.epoch,
            seq,
            group: self.group.clone(),
            positions: txn.positions.clone(),
            carry,
            at_ms: now_ms(),
        };
        let at = match append_progress(&self.shared, self.progress_partition, &commit).await {
            Ok(at) => at,
            Err(e) => {
                self.broken = Some(format!(
                    "the Commit record of batch {seq} may or may not be written ({e})"
                ));
                return Err(e);
            }
        };
        if let Err(e) = self.fold_through(at).await {
            if !self.fenced {
                self.broken = Some(format!(
                    "could not confirm the Commit record of batch {seq} ({e})"
                ));
            }
            return Err(e);
        }
        self.observe(CrashPoint::AfterCommitRecord);
        if crash == Some(CrashPoint::AfterCommitRecord) {
            return self.crash_here(CrashPoint::AfterCommitRecord);
        }
        self.commits_since_checkpoint += 1;
        if self.commits_since_checkpoint >= CHECKPOINT_EVERY {
            self.commits_since_checkpoint = 0;
            write_checkpoint(
                &self.shared,
                self.progress_partition,
                &self.writer_id,
                self.epoch,
                &self.history,
                self.progress_next - 1,
            )
            .await;
        }

        // 4. Mirror the positions into the consumer group.
        for p in &txn.positions {
            self.unmirrored
                .insert((p.topic.clone(), p.partition), p.next_offset);
        }
        let positions = self.unmirrored.clone();
        match self.mirror_positions(positions).await {
            Ok(()) => self.unmirrored.clear(),
            Err(e) => tracing::warn!(
                writer_id = %self.writer_id,
                group = %self.group,
                error = %e,
                "batch committed, but moving the group offsets failed; retrying with the next commit"
            ),
        }
        self.prune_recovered();
        Ok(offsets.into_iter().flatten().collect())
    }

    fn crash_here<T>(&mut self, at: CrashPoint) -> Result<T, LogError> {
        self.broken = Some(format!("simulated crash {at:?}"));
        Err(kafka_detail("commit", format!("simulated crash {at:?}")))
    }
}

#[async_trait]
impl TransactionalWriter for ProgressWriter {
    fn writer_id(&self) -> &str {
        &self.writer_id
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    async fn commit(&mut self, txn: Transaction) -> Result<Vec<(String, i32, i64)>, LogError> {
        self.run_commit(txn, None).await
    }
}

/// Whether `positions` (next offsets) have passed the input named in `tag`.
fn input_passed(tag: &str, positions: &BTreeMap<(String, i32), i64>) -> bool {
    parse_source_tag(tag).is_some_and(|(topic, partition, offset, _)| {
        positions
            .get(&(topic.to_string(), partition))
            .is_some_and(|&next| offset < next)
    })
}
