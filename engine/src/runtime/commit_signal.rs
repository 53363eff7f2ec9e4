//! What a worker tells the relay of its topology after each commit: a
//! wake-up, and — once a relay is attached — the outbox records it just
//! committed, so that the relay sends them without reading them back from
//! the store (in a busy topology that read-back cost the database about as
//! much as a fifth of the commit itself).
//!
//! The records handed over are exactly the committed rows (they are handed
//! over only after the store acknowledged the commit), so sending them is
//! the same as sending what a read would return. The relay still reads the
//! store whenever the hand-over doesn't start at its position — after a
//! restart, when it fell behind more than [`HANDOFF_MAX_RECORDS`], or after
//! a commit whose outcome was unknown — and still deletes what it relayed.

use crate::store::OutboxRecord;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// Records held for the relay at most; past this the queue is dropped and
/// the relay reads the store until it has caught up.
pub const HANDOFF_MAX_RECORDS: usize = 50_000;

#[derive(Default)]
pub struct CommitSignal {
    notify: Notify,
    relay_attached: AtomicBool,
    handoff: Mutex<VecDeque<OutboxRecord>>,
}

impl CommitSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a relay takes committed records from here (else the worker
    /// doesn't keep a copy of them).
    pub fn relay_attached(&self) -> bool {
        self.relay_attached.load(Ordering::Relaxed)
    }

    pub(crate) fn attach_relay(&self) {
        self.relay_attached.store(true, Ordering::Relaxed);
    }

    /// Called after each successful commit, with its outbox records when a
    /// relay is attached.
    pub fn committed(&self, records: Option<Vec<OutboxRecord>>) {
        if let Some(records) = records.filter(|r| !r.is_empty()) {
            let mut queue = self.lock();
            if queue.len() + records.len() > HANDOFF_MAX_RECORDS {
                queue.clear(); // the relay reads the store instead
            }
            queue.extend(records);
        }
        self.notify.notify_one();
    }

    pub async fn notified(&self) {
        self.notify.notified().await
    }

    /// Up to `max` handed-over records with consecutive seqs from `seq`, or
    /// `None` when the hand-over doesn't hold `seq` (read the store).
    pub(crate) fn take_from(&self, seq: i64, max: usize) -> Option<Vec<OutboxRecord>> {
        let mut queue = self.lock();
        while queue.front().is_some_and(|r| r.seq < seq) {
            queue.pop_front(); // relayed from a store read meanwhile
        }
        if queue.front()?.seq != seq {
            return None;
        }
        let mut out = Vec::new();
        while out.len() < max
            && queue
                .front()
                .is_some_and(|r| r.seq == seq + out.len() as i64)
        {
            out.extend(queue.pop_front());
        }
        Some(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<OutboxRecord>> {
        // The queue is only ever pushed to or drained whole records at a
        // time, so it is consistent even if a holder panicked.
        self.handoff.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::SourcePosition;

    fn records(seqs: std::ops::Range<i64>) -> Vec<OutboxRecord> {
        seqs.map(|seq| OutboxRecord {
            seq,
            topic: "t".into(),
            key: None,
            value: seq.to_string().into_bytes(),
            headers: vec![],
            source: SourcePosition {
                topic: "in".into(),
                partition: 0,
                offset: seq,
            },
            source_index: 0,
        })
        .collect()
    }

    fn seqs(r: Option<Vec<OutboxRecord>>) -> Option<Vec<i64>> {
        r.map(|v| v.iter().map(|r| r.seq).collect())
    }

    #[test]
    fn hands_over_consecutive_records_from_the_relays_position_only() {
        let s = CommitSignal::new();
        s.committed(Some(records(0..3)));
        s.committed(Some(records(3..5)));
        assert_eq!(seqs(s.take_from(0, 4)), Some(vec![0, 1, 2, 3]));
        assert_eq!(seqs(s.take_from(4, 10)), Some(vec![4]));
        assert_eq!(
            seqs(s.take_from(5, 10)),
            None,
            "nothing more: read the store"
        );

        // A gap (a commit whose outcome the worker never learned): hand over
        // up to it, then let the store answer.
        s.committed(Some(records(5..7)));
        s.committed(Some(records(9..11)));
        assert_eq!(seqs(s.take_from(5, 10)), Some(vec![5, 6]));
        assert_eq!(seqs(s.take_from(7, 10)), None);
        // After the store read relayed 7..9, the hand-over resumes.
        assert_eq!(seqs(s.take_from(9, 10)), Some(vec![9, 10]));
        // Records the relay already sent from a store read are skipped.
        s.committed(Some(records(11..14)));
        assert_eq!(seqs(s.take_from(13, 10)), Some(vec![13]));
    }

    #[test]
    fn a_relay_far_behind_reads_the_store_instead() {
        let s = CommitSignal::new();
        s.committed(Some(records(0..HANDOFF_MAX_RECORDS as i64)));
        s.committed(Some(records(
            HANDOFF_MAX_RECORDS as i64..HANDOFF_MAX_RECORDS as i64 + 2,
        )));
        assert_eq!(seqs(s.take_from(0, 10)), None);
    }
}
