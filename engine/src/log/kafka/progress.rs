//! Progress records of `progress` exactly-once mode and the fold that turns a
//! writer's records into its recoverable state.
//!
//! Records are JSON values keyed by the writer id in the progress topic. The
//! progress partition is totally ordered, and that order is the linearization
//! of every writer incarnation's life:
//!
//! * a `Fence{epoch}` takes effect iff `epoch` is greater than the epoch in
//!   effect before it; from there on it is the *live* epoch;
//! * an `Intent` or `Commit` counts iff its epoch is the live epoch at its
//!   position. Records a zombie writes after a newer `Fence` are void, so a
//!   zombie's late `Commit` never moves positions.
//!
//! A `Checkpoint{through, state}` is the fold of the writer's records up to
//! and including offset `through`. The fold is a pure function of the log
//! prefix, so any checkpoint is a valid starting point, even one a zombie
//! wrote: opening scans backwards to the latest checkpoint and folds forward
//! from `through + 1`, which keeps the cost of an open bounded by the records
//! written since that checkpoint instead of the whole history.
//!
//! Invariant of [`WriterHistory`]: after folding a prefix of the partition,
//! `positions` holds exactly what the counted `Commit`s of that prefix cover,
//! and `pending` is the last counted `Intent` not followed by its counted
//! `Commit` — a torn commit whose outputs may be partly in the log.

use crate::log::InputPosition;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `topic → partition → offset`.
pub(crate) type PartitionOffsets = BTreeMap<String, BTreeMap<i32, i64>>;

/// Header naming the writer id on every output of a progress-mode writer.
pub const HEADER_WRITER: &str = "ig-writer";
/// Header with the writer's epoch (decimal) on every output.
pub const HEADER_EPOCH: &str = "ig-epoch";
/// Header with the output's source tag `topic/partition/offset/index`.
pub const HEADER_SOURCE: &str = "ig-src";

/// One record of the progress topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ProgressRecord {
    /// A new incarnation of `writer_id` took over with `epoch`.
    Fence {
        writer_id: String,
        epoch: u64,
        group: String,
        at_ms: i64,
    },
    /// Batch `seq` is about to write outputs; each output partition's high
    /// watermark before them (a lower bound of the first output offset).
    Intent {
        writer_id: String,
        epoch: u64,
        seq: u64,
        group: String,
        outputs_start: Vec<PartitionStart>,
        at_ms: i64,
    },
    /// Batch `seq` is complete: its outputs are in the log and these are the
    /// group's new input positions. `carry` lists output ranges that still
    /// hold outputs of an earlier torn batch whose input is not committed yet.
    Commit {
        writer_id: String,
        epoch: u64,
        seq: u64,
        group: String,
        positions: Vec<InputPosition>,
        #[serde(default)]
        carry: Vec<PartitionStart>,
        at_ms: i64,
    },
    /// The writer's folded state through offset `through` (no effect on the fold).
    Checkpoint {
        writer_id: String,
        epoch: u64,
        through: i64,
        state: Snapshot,
        at_ms: i64,
    },
}

impl ProgressRecord {
    pub(crate) fn writer_id(&self) -> &str {
        match self {
            ProgressRecord::Fence { writer_id, .. }
            | ProgressRecord::Intent { writer_id, .. }
            | ProgressRecord::Commit { writer_id, .. }
            | ProgressRecord::Checkpoint { writer_id, .. } => writer_id,
        }
    }
}

/// [`WriterHistory`] in a JSON-friendly form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snapshot {
    pub max_epoch: u64,
    pub live_epoch: u64,
    pub live_fence_offset: Option<i64>,
    pub last_seq: u64,
    pub pending: Option<PendingSnapshot>,
    pub positions: Vec<GroupPosition>,
    #[serde(default)]
    pub carry: Vec<PartitionStart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PendingSnapshot {
    pub epoch: u64,
    pub seq: u64,
    pub outputs_start: Vec<PartitionStart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupPosition {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// Where the outputs of a batch start on one partition (at or before).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PartitionStart {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The list form of a [`PartitionOffsets`] (JSON maps cannot have integer keys
/// inside an internally tagged enum).
pub(crate) fn to_starts(offsets: &PartitionOffsets) -> Vec<PartitionStart> {
    offsets
        .iter()
        .flat_map(|(topic, parts)| {
            parts.iter().map(move |(partition, offset)| PartitionStart {
                topic: topic.clone(),
                partition: *partition,
                offset: *offset,
            })
        })
        .collect()
}

/// Back from the list form; the lowest offset wins on repeats.
pub(crate) fn from_starts(starts: &[PartitionStart]) -> PartitionOffsets {
    let mut out = PartitionOffsets::new();
    for s in starts {
        out.entry(s.topic.clone())
            .or_default()
            .entry(s.partition)
            .and_modify(|o| *o = (*o).min(s.offset))
            .or_insert(s.offset);
    }
    out
}

/// A counted `Intent` that has no counted `Commit` (yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingIntent {
    pub epoch: u64,
    pub seq: u64,
    pub outputs_start: PartitionOffsets,
}

/// What the progress records of one writer id say, folded in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WriterHistory {
    /// Highest epoch of any `Fence` seen (effective or not).
    pub max_epoch: u64,
    /// Epoch of the effective `Fence` in force (0: none yet).
    pub live_epoch: u64,
    /// Offset of the effective `Fence` in force.
    pub live_fence_offset: Option<i64>,
    /// Highest batch sequence number of any counted record.
    pub last_seq: u64,
    /// The torn batch, if the last counted `Intent` has no `Commit`.
    pub pending: Option<PendingIntent>,
    /// group → (topic, partition) → next offset, as counted `Commit`s left it.
    pub positions: BTreeMap<String, BTreeMap<(String, i32), i64>>,
    /// Output ranges the last counted `Commit` still carried (outputs of a
    /// torn batch whose input it had not passed yet).
    pub carry: PartitionOffsets,
}

impl WriterHistory {
    /// Folds one record of this writer id found at `offset`.
    pub(crate) fn apply(&mut self, offset: i64, record: &ProgressRecord) {
        match record {
            ProgressRecord::Fence { epoch, .. } => {
                self.max_epoch = self.max_epoch.max(*epoch);
                if *epoch > self.live_epoch {
                    self.live_epoch = *epoch;
                    self.live_fence_offset = Some(offset);
                }
            }
            ProgressRecord::Intent {
                epoch,
                seq,
                outputs_start,
                ..
            } => {
                if *epoch != self.live_epoch {
                    return; // a zombie's void intent
                }
                self.last_seq = self.last_seq.max(*seq);
                self.pending = Some(PendingIntent {
                    epoch: *epoch,
                    seq: *seq,
                    outputs_start: from_starts(outputs_start),
                });
            }
            ProgressRecord::Commit {
                epoch,
                seq,
                group,
                positions,
                carry,
                ..
            } => {
                if *epoch != self.live_epoch {
                    return; // a zombie's void commit
                }
                self.last_seq = self.last_seq.max(*seq);
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.epoch == *epoch && p.seq == *seq)
                {
                    self.pending = None;
                }
                let group_positions = self.positions.entry(group.clone()).or_default();
                for p in positions {
                    group_positions.insert((p.topic.clone(), p.partition), p.next_offset);
                }
                self.carry = from_starts(carry);
            }
            ProgressRecord::Checkpoint { .. } => {}
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            max_epoch: self.max_epoch,
            live_epoch: self.live_epoch,
            live_fence_offset: self.live_fence_offset,
            last_seq: self.last_seq,
            pending: self.pending.as_ref().map(|p| PendingSnapshot {
                epoch: p.epoch,
                seq: p.seq,
                outputs_start: to_starts(&p.outputs_start),
            }),
            positions: self
                .positions
                .iter()
                .flat_map(|(group, parts)| {
                    parts
                        .iter()
                        .map(move |((topic, partition), next)| GroupPosition {
                            group: group.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                            next_offset: *next,
                        })
                })
                .collect(),
            carry: to_starts(&self.carry),
        }
    }

    /// Output ranges that may hold outputs of a torn batch whose input is not
    /// committed: the pending `Intent`'s and the last `Commit`'s carry.
    pub(crate) fn recovery_ranges(&self) -> PartitionOffsets {
        let mut ranges = self.carry.clone();
        if let Some(p) = &self.pending {
            merge_min(&mut ranges, &p.outputs_start);
        }
        ranges
    }

    pub(crate) fn from_snapshot(s: &Snapshot) -> WriterHistory {
        let mut positions: BTreeMap<String, BTreeMap<(String, i32), i64>> = BTreeMap::new();
        for p in &s.positions {
            positions
                .entry(p.group.clone())
                .or_default()
                .insert((p.topic.clone(), p.partition), p.next_offset);
        }
        WriterHistory {
            max_epoch: s.max_epoch,
            live_epoch: s.live_epoch,
            live_fence_offset: s.live_fence_offset,
            last_seq: s.last_seq,
            pending: s.pending.as_ref().map(|p| PendingIntent {
                epoch: p.epoch,
                seq: p.seq,
                outputs_start: from_starts(&p.outputs_start),
            }),
            positions,
            carry: from_starts(&s.carry),
        }
    }

    /// Committed positions of `group` on every partition this writer moved.
    pub(crate) fn group_positions(&self, group: &str) -> BTreeMap<(String, i32), i64> {
        self.positions.get(group).cloned().unwrap_or_default()
    }
}

/// The tag of an output derived from input `topic[partition]@offset`, `index`-th output.
pub fn source_tag(topic: &str, partition: i32, offset: i64, index: u32) -> String {
    format!("{topic}/{partition}/{offset}/{index}")
}

/// Parses a source tag back into `(topic, partition, offset, index)`.
pub fn parse_source_tag(tag: &str) -> Option<(&str, i32, i64, u32)> {
    // Topic names cannot contain `/`, so the split is unambiguous.
    let mut parts = tag.split('/');
    let topic = parts.next()?;
    let partition = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    if parts.next().is_some() || topic.is_empty() {
        return None;
    }
    Some((topic, partition, offset, index))
}

/// `a` lowered to `b` where both have a partition, union elsewhere.
pub(crate) fn merge_min(a: &mut PartitionOffsets, b: &PartitionOffsets) {
    for (topic, parts) in b {
        let into = a.entry(topic.clone()).or_default();
        for (partition, offset) in parts {
            into.entry(*partition)
                .and_modify(|o| *o = (*o).min(*offset))
                .or_insert(*offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(epoch: u64) -> ProgressRecord {
        ProgressRecord::Fence {
            writer_id: "w".into(),
            epoch,
            group: "g".into(),
            at_ms: 0,
        }
    }
    fn intent(epoch: u64, seq: u64, start: i64) -> ProgressRecord {
        ProgressRecord::Intent {
            writer_id: "w".into(),
            epoch,
            seq,
            group: "g".into(),
            outputs_start: vec![PartitionStart {
                topic: "out".into(),
                partition: 0,
                offset: start,
            }],
            at_ms: 0,
        }
    }
    fn commit(epoch: u64, seq: u64, next: i64) -> ProgressRecord {
        ProgressRecord::Commit {
            writer_id: "w".into(),
            epoch,
            seq,
            group: "g".into(),
            positions: vec![InputPosition {
                topic: "in".into(),
                partition: 0,
                next_offset: next,
            }],
            carry: vec![],
            at_ms: 0,
        }
    }
    fn fold(records: &[ProgressRecord]) -> WriterHistory {
        let mut h = WriterHistory::default();
        for (i, r) in records.iter().enumerate() {
            h.apply(i as i64, r);
        }
        h
    }

    #[test]
    fn committed_batches_move_positions_and_leave_nothing_pending() {
        let h = fold(&[
            fence(1),
            intent(1, 1, 0),
            commit(1, 1, 10),
            intent(1, 2, 5),
            commit(1, 2, 20),
        ]);
        assert_eq!(h.live_epoch, 1);
        assert_eq!(h.pending, None);
        assert_eq!(h.last_seq, 2);
        assert_eq!(h.group_positions("g")[&("in".to_string(), 0)], 20);
    }

    #[test]
    fn intent_without_commit_is_pending_across_new_fences() {
        let h = fold(&[fence(1), intent(1, 1, 7), fence(2), fence(3)]);
        let p = h.pending.clone().expect("torn batch");
        assert_eq!((p.epoch, p.seq), (1, 1));
        assert_eq!(p.outputs_start["out"][&0], 7);
        assert_eq!(h.live_epoch, 3);
        assert!(h.group_positions("g").is_empty());
    }

    #[test]
    fn carry_of_a_commit_survives_until_a_commit_without_it() {
        let mut c = commit(2, 2, 12);
        if let ProgressRecord::Commit { carry, .. } = &mut c {
            carry.push(PartitionStart {
                topic: "out".into(),
                partition: 0,
                offset: 7,
            });
        }
        // A torn batch (Intent 1), redone partly by Commit 2 which carries its range.
        let h = fold(&[
            fence(1),
            intent(1, 1, 7),
            fence(2),
            intent(2, 2, 7),
            c.clone(),
        ]);
        assert_eq!(h.pending, None);
        assert_eq!(
            h.recovery_ranges()["out"][&0],
            7,
            "the range is still to be scanned"
        );
        let h = fold(&[
            fence(1),
            intent(1, 1, 7),
            fence(2),
            intent(2, 2, 7),
            c,
            intent(2, 3, 20),
        ]);
        assert_eq!(
            h.recovery_ranges()["out"][&0],
            7,
            "min of the carry and the new intent"
        );
        let h = fold(&[
            fence(1),
            intent(1, 1, 7),
            fence(2),
            intent(2, 2, 7),
            commit(2, 2, 30),
        ]);
        assert!(h.recovery_ranges().is_empty(), "everything redone");
    }

    #[test]
    fn zombie_commit_after_newer_fence_is_void() {
        let h = fold(&[fence(1), intent(1, 1, 0), fence(2), commit(1, 1, 10)]);
        assert!(h.pending.is_some(), "the zombie's batch stays torn");
        assert!(
            h.group_positions("g").is_empty(),
            "its positions do not count"
        );
    }

    #[test]
    fn zombie_intent_after_newer_fence_is_ignored() {
        let h = fold(&[fence(1), fence(2), intent(1, 1, 0)]);
        assert_eq!(h.pending, None);
    }

    #[test]
    fn fence_with_equal_epoch_is_not_effective() {
        // Two openers raced and both wrote epoch 2; the first one in the log wins.
        let h = fold(&[fence(1), fence(2), fence(2)]);
        assert_eq!(h.live_epoch, 2);
        assert_eq!(h.live_fence_offset, Some(1));
        assert_eq!(h.max_epoch, 2);
    }

    #[test]
    fn folding_from_a_checkpoint_equals_folding_from_the_start() {
        let records = [
            fence(1),
            intent(1, 1, 0),
            commit(1, 1, 10),
            intent(1, 2, 5),
            fence(2),
            commit(1, 2, 20),
            intent(2, 3, 9),
        ];
        let full = fold(&records);
        for k in 0..records.len() {
            let prefix = fold(&records[..k]);
            let json = serde_json::to_string(&ProgressRecord::Checkpoint {
                writer_id: "w".into(),
                epoch: prefix.live_epoch,
                through: k as i64 - 1,
                state: prefix.snapshot(),
                at_ms: 0,
            })
            .unwrap();
            let ProgressRecord::Checkpoint { state, .. } = serde_json::from_str(&json).unwrap()
            else {
                panic!("not a checkpoint");
            };
            let mut h = WriterHistory::from_snapshot(&state);
            for (i, r) in records.iter().enumerate().skip(k) {
                h.apply(i as i64, r);
            }
            assert_eq!(h, full, "checkpoint after {k} records");
        }
    }

    #[test]
    fn records_round_trip_as_tagged_json() {
        let r = intent(3, 9, 42);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""type":"intent""#), "{json}");
        assert_eq!(serde_json::from_str::<ProgressRecord>(&json).unwrap(), r);
    }

    #[test]
    fn source_tags_round_trip() {
        let t = source_tag("ig.ingest.entities", 3, 1234, 1);
        assert_eq!(t, "ig.ingest.entities/3/1234/1");
        assert_eq!(
            parse_source_tag(&t),
            Some(("ig.ingest.entities", 3, 1234, 1))
        );
        assert_eq!(parse_source_tag("a/b/c/d"), None);
        assert_eq!(parse_source_tag("a/1/2"), None);
    }

    #[test]
    fn merge_min_keeps_the_lower_bound() {
        let mut a: PartitionOffsets = [("t".to_string(), [(0, 10), (1, 5)].into())].into();
        let b: PartitionOffsets = [
            ("t".to_string(), [(0, 3), (2, 8)].into()),
            ("u".to_string(), [(0, 1)].into()),
        ]
        .into();
        merge_min(&mut a, &b);
        assert_eq!(a["t"], [(0, 3), (1, 5), (2, 8)].into());
        assert_eq!(a["u"], [(0, 1)].into());
    }
}
