//! Where a topology stands, read from the store and the log — not from the
//! worker's status, which is refreshed once a second and knows nothing of
//! a batch in flight or of what an upstream relay is about to append.
//!
//! `conductor run --exit-when-idle` and `demo` stop when every topology of
//! a chain (entities → stage → fold → index) is [`Progress::is_done`] on
//! two consecutive looks with the same committed positions: then no commit
//! happened in between, every outbox record had reached its topic before
//! the second look, and each downstream topology had committed all of it.

use super::relay::marker_topic;
use super::worker::RuntimeError;
use crate::log::{Log, LogError};
use crate::store::ProjectionStore;
use std::collections::BTreeMap;

/// One look at a topology's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Committed input positions: (topic, partition) → next offset.
    pub committed: BTreeMap<(String, i32), i64>,
    /// Whether a source partition holds a record past the committed position.
    pub input_left: bool,
    /// Outbox records committed but not yet on their topic.
    pub outbox_left: i64,
}

impl Progress {
    /// Everything read, committed and relayed.
    pub fn is_done(&self) -> bool {
        !self.input_left && self.outbox_left == 0
    }
}

/// Looks at `topology` reading `sources`: positions and outbox first, then
/// the log, so that a commit racing the look shows as a position change on
/// the next look.
pub async fn progress(
    topology: &str,
    sources: &[String],
    log: &dyn Log,
    store: &dyn ProjectionStore,
) -> Result<Progress, RuntimeError> {
    let committed = store.load_offsets(topology).await?;
    let next_seq = store.next_outbox_seq(topology).await?;
    let relayed = log
        .committed_positions(&format!("{topology}.relay"), &marker_topic(topology))
        .await
        .or_else(unknown_is_empty)?
        .get(&0)
        .copied()
        .unwrap_or(0);
    let mut input_left = false;
    for topic in sources {
        if input_left {
            break; // one is enough; a probe repositions a Kafka reader
        }
        let partitions = match log.describe_topic(topic).await {
            Ok(d) => d.partitions,
            Err(LogError::UnknownTopic(_)) => continue, // nothing written yet
            Err(e) => return Err(e.into()),
        };
        for p in partitions {
            let at = committed
                .get(&(topic.clone(), p.partition))
                .copied()
                .unwrap_or(p.low_watermark);
            // On Kafka the high watermark counts transaction markers, which
            // are never delivered: past the position is not proof of a
            // record, so ask for one.
            if p.high_watermark > at && !log.read(topic, p.partition, at, 1).await?.is_empty() {
                input_left = true;
                break;
            }
        }
    }
    Ok(Progress {
        committed,
        input_left,
        outbox_left: (next_seq - relayed).max(0),
    })
}

fn unknown_is_empty(e: LogError) -> Result<BTreeMap<i32, i64>, LogError> {
    match e {
        LogError::UnknownTopic(_) => Ok(BTreeMap::new()),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Record;
    use crate::log::memory::MemoryLog;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_topology_that_has_read_nothing_is_behind_and_one_with_nothing_to_read_is_done() {
        let log = MemoryLog::new();
        let store = MemoryStore::new();
        let sources = vec!["in".to_string()];
        let idle = progress("t", &sources, &log, &store).await.unwrap();
        assert!(idle.is_done(), "no source topic yet: nothing to do");
        crate::runtime::worker::ensure_topic(&log, "in", 2)
            .await
            .unwrap();
        log.append("in", 1, vec![Record::new(None, b"x".to_vec())])
            .await
            .unwrap();
        let behind = progress("t", &sources, &log, &store).await.unwrap();
        assert!(behind.input_left);
        assert!(!behind.is_done());
        store
            .store_offsets(
                "t",
                &[crate::log::InputPosition {
                    topic: "in".into(),
                    partition: 1,
                    next_offset: 1,
                }],
            )
            .await
            .unwrap();
        let done = progress("t", &sources, &log, &store).await.unwrap();
        assert!(done.is_done(), "{done:?}");
        assert_eq!(done.committed.get(&("in".to_string(), 1)), Some(&1));
    }
}
