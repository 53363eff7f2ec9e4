//! The `Log` conformance suite: the same cases run against every backend.
//!
//! A backend's test file defines `async fn make_log() -> (Arc<dyn Log>, Box<dyn Any + Send>)`
//! (the box keeps temporary directories alive) and calls
//! `conformance_tests!(make_log);`. Every case names its topics with a fresh
//! prefix, so cases can share one broker.
#![allow(dead_code)]

use conductor_engine::log::*;
use std::sync::Arc;

/// A unique topic-name prefix for one case.
pub fn prefix(case: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("conf-{case}-{}-{nanos}", std::process::id())
}

fn rec(i: i64) -> Record {
    Record {
        key: Some(format!("acme/subject-{i}").into_bytes()),
        value: format!("{{\"n\":{i}}}").into_bytes(),
        headers: vec![
            Header {
                key: "ig-tenant".into(),
                value: b"acme".to_vec(),
            },
            Header {
                key: "seq".into(),
                value: i.to_le_bytes().to_vec(),
            },
        ],
        timestamp_ms: 1_700_000_000_000 + i * 1000,
    }
}

async fn create(log: &Arc<dyn Log>, topic: &str, partitions: i32) {
    log.create_topic(topic, &TopicConfig::with_partitions(partitions))
        .await
        .unwrap_or_else(|e| panic!("create {topic}: {e}"));
}

/// Reads a whole partition from `from`.
pub async fn read_all(
    log: &Arc<dyn Log>,
    topic: &str,
    partition: i32,
    from: i64,
) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let batch = log.read(topic, partition, next, 500).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        next = batch.last().unwrap().offset + 1;
        out.extend(batch);
    }
}

pub async fn creates_lists_and_describes_topics(log: Arc<dyn Log>, p: String) {
    let a = format!("{p}.a");
    let b = format!("{p}.b");
    create(&log, &a, 3).await;
    create(&log, &b, 1).await;
    let topics = log.list_topics().await.unwrap();
    assert!(topics.contains(&a) && topics.contains(&b), "{topics:?}");
    let d = log.describe_topic(&a).await.unwrap();
    assert_eq!(d.partitions.len(), 3);
    for (i, part) in d.partitions.iter().enumerate() {
        assert_eq!(part.partition, i as i32);
        assert_eq!((part.low_watermark, part.high_watermark), (0, 0));
    }
}

pub async fn rejects_duplicate_unknown_and_invalid_topics(log: Arc<dyn Log>, p: String) {
    let t = format!("{p}.dup");
    create(&log, &t, 1).await;
    assert!(matches!(
        log.create_topic(&t, &TopicConfig::with_partitions(1)).await,
        Err(LogError::TopicExists(_))
    ));
    assert!(matches!(
        log.describe_topic(&format!("{p}.missing")).await,
        Err(LogError::UnknownTopic(_))
    ));
    assert!(matches!(
        log.append(&format!("{p}.missing"), 0, vec![rec(0)]).await,
        Err(LogError::UnknownTopic(_))
    ));
    assert!(matches!(
        log.create_topic("bad name/with slash", &TopicConfig::with_partitions(1))
            .await,
        Err(LogError::InvalidTopicName { .. })
    ));
    let err = log.append(&t, 5, vec![rec(0)]).await.unwrap_err();
    assert!(
        matches!(err, LogError::UnknownPartition { partition: 5, .. }),
        "{err}"
    );
}

pub async fn appends_dense_offsets_and_reads_back_intact(log: Arc<dyn Log>, p: String) {
    let t = format!("{p}.rw");
    create(&log, &t, 1).await;
    let r1 = log.append(&t, 0, (0..3).map(rec).collect()).await.unwrap();
    assert_eq!((r1.first, r1.last), (0, 2));
    let mut no_key = rec(3);
    no_key.key = None;
    no_key.headers.clear();
    let r2 = log.append(&t, 0, vec![no_key.clone()]).await.unwrap();
    assert_eq!((r2.first, r2.last), (3, 3));
    let all = read_all(&log, &t, 0, 0).await;
    assert_eq!(all.len(), 4);
    for (i, s) in all.iter().enumerate() {
        assert_eq!(s.offset, i as i64);
        assert_eq!(s.partition, 0);
        assert_eq!(s.topic, t);
        let expected = if i == 3 {
            no_key.clone()
        } else {
            rec(i as i64)
        };
        assert_eq!(s.record.key, expected.key, "key at {i}");
        assert_eq!(s.record.value, expected.value, "value at {i}");
        assert_eq!(
            s.record.timestamp_ms, expected.timestamp_ms,
            "timestamp at {i}"
        );
        for h in &expected.headers {
            assert_eq!(
                s.record.header(&h.key),
                Some(h.value.as_slice()),
                "header {} at {i}",
                h.key
            );
        }
    }
}

pub async fn reads_from_any_position_with_a_limit(log: Arc<dyn Log>, p: String) {
    let t = format!("{p}.pos");
    create(&log, &t, 1).await;
    for chunk in 0..5 {
        log.append(&t, 0, (chunk * 20..chunk * 20 + 20).map(rec).collect())
            .await
            .unwrap();
    }
    let got = log.read(&t, 0, 37, 10).await.unwrap();
    assert!(!got.is_empty() && got.len() <= 10);
    assert_eq!(got[0].offset, 37);
    assert_eq!(got[0].record.value, rec(37).value);
    for w in got.windows(2) {
        assert_eq!(w[1].offset, w[0].offset + 1);
    }
    assert!(
        log.read(&t, 0, 100, 10).await.unwrap().is_empty(),
        "reading at the end is empty"
    );
    assert!(matches!(
        log.read(&t, 0, 500, 10).await,
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.watermarks(&t, 0).await.unwrap(), (0, 100));
}

pub async fn keeps_partitions_independent(log: Arc<dyn Log>, p: String) {
    let t = format!("{p}.parts");
    create(&log, &t, 3).await;
    log.append(&t, 0, (0..5).map(rec).collect()).await.unwrap();
    log.append(&t, 2, (100..102).map(rec).collect())
        .await
        .unwrap();
    let d = log.describe_topic(&t).await.unwrap();
    let highs: Vec<i64> = d.partitions.iter().map(|p| p.high_watermark).collect();
    assert_eq!(highs, vec![5, 0, 2]);
    let p2 = read_all(&log, &t, 2, 0).await;
    assert_eq!(
        p2.iter()
            .map(|r| r.record.value.clone())
            .collect::<Vec<_>>(),
        vec![rec(100).value, rec(101).value]
    );
    assert!(read_all(&log, &t, 1, 0).await.is_empty());
}

pub async fn finds_offset_for_timestamp(log: Arc<dyn Log>, p: String) {
    let t = format!("{p}.time");
    create(&log, &t, 1).await;
    log.append(&t, 0, (0..50).map(rec).collect()).await.unwrap();
    let base = 1_700_000_000_000;
    assert_eq!(
        log.offset_for_timestamp(&t, 0, base - 5).await.unwrap(),
        Some(0)
    );
    assert_eq!(
        log.offset_for_timestamp(&t, 0, base + 20_000)
            .await
            .unwrap(),
        Some(20)
    );
    assert_eq!(
        log.offset_for_timestamp(&t, 0, base + 20_500)
            .await
            .unwrap(),
        Some(21)
    );
    assert_eq!(
        log.offset_for_timestamp(&t, 0, base + 1_000_000)
            .await
            .unwrap(),
        None
    );
}

pub async fn rejects_oversized_record(log: Arc<dyn Log>, p: String) {
    let t = format!("{p}.big");
    create(&log, &t, 1).await;
    let mut r = rec(0);
    r.value = vec![b'x'; MAX_RECORD_BYTES + 1];
    assert!(matches!(
        log.append(&t, 0, vec![r]).await,
        Err(LogError::RecordTooLarge { .. })
    ));
    assert_eq!(
        log.watermarks(&t, 0).await.unwrap().1,
        0,
        "nothing appended"
    );
}

pub async fn keeps_order_under_concurrent_appends(log: Arc<dyn Log>, p: String) {
    let t = format!("{p}.conc");
    create(&log, &t, 1).await;
    let mut tasks = Vec::new();
    for w in 0..4i64 {
        let log = log.clone();
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..10i64 {
                let batch: Vec<Record> = (0..5).map(|i| rec(w * 1000 + b * 10 + i)).collect();
                log.append(&t, 0, batch).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let all = read_all(&log, &t, 0, 0).await;
    assert_eq!(all.len(), 200);
    let mut seen = std::collections::HashSet::new();
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        assert!(seen.insert(r.record.value.clone()), "duplicate at {i}");
    }
    // Each batch stays contiguous (atomic append).
    for chunk in all.chunks(5) {
        let first: i64 = String::from_utf8_lossy(&chunk[0].record.value)[5..]
            .trim_end_matches('}')
            .parse()
            .unwrap();
        for (k, r) in chunk.iter().enumerate() {
            assert_eq!(r.record.value, rec(first + k as i64).value);
        }
    }
}

fn out(topic: &str, partition: i32, i: i64, src: &str) -> OutputRecord {
    OutputRecord {
        topic: topic.to_string(),
        partition,
        record: rec(i),
        source: Some((
            SourcePosition {
                topic: src.to_string(),
                partition: 0,
                offset: i,
            },
            0,
        )),
    }
}

pub async fn commits_outputs_and_positions_together(log: Arc<dyn Log>, p: String) {
    let input = format!("{p}.in");
    let output = format!("{p}.out");
    create(&log, &input, 1).await;
    create(&log, &output, 2).await;
    log.append(&input, 0, (0..10).map(rec).collect())
        .await
        .unwrap();
    let group = format!("{p}-group");
    assert!(
        log.committed_positions(&group, &input)
            .await
            .unwrap()
            .is_empty()
    );
    let mut w = log
        .open_writer(&group, &format!("{p}-writer"))
        .await
        .unwrap();
    for batch in 0..2i64 {
        let outputs = (batch * 5..batch * 5 + 5)
            .map(|i| out(&output, (i % 2) as i32, i, &input))
            .collect();
        let positions = vec![InputPosition {
            topic: input.clone(),
            partition: 0,
            next_offset: batch * 5 + 5,
        }];
        let offsets = w.commit(Transaction { outputs, positions }).await.unwrap();
        assert_eq!(offsets.len(), 5);
    }
    let committed = log.committed_positions(&group, &input).await.unwrap();
    assert_eq!(committed.get(&0), Some(&10));
    let p0 = read_all(&log, &output, 0, 0).await;
    let p1 = read_all(&log, &output, 1, 0).await;
    assert_eq!(p0.len() + p1.len(), 10);
    let values: Vec<_> = p0.iter().map(|r| r.record.value.clone()).collect();
    assert_eq!(
        values,
        (0..10)
            .filter(|i| i % 2 == 0)
            .map(|i| rec(i).value)
            .collect::<Vec<_>>()
    );
    // Positions are per group.
    assert!(
        log.committed_positions(&format!("{p}-other"), &input)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn fences_zombie_writer(log: Arc<dyn Log>, p: String) {
    let output = format!("{p}.out");
    let input = format!("{p}.in");
    create(&log, &output, 1).await;
    create(&log, &input, 1).await;
    let group = format!("{p}-group");
    let id = format!("{p}-writer");
    let mut old = log.open_writer(&group, &id).await.unwrap();
    old.commit(Transaction {
        outputs: vec![out(&output, 0, 0, &input)],
        positions: vec![],
    })
    .await
    .unwrap();
    let mut new = log.open_writer(&group, &id).await.unwrap();
    assert!(new.epoch() > old.epoch());
    let err = old
        .commit(Transaction {
            outputs: vec![out(&output, 0, 1, &input)],
            positions: vec![InputPosition {
                topic: input.clone(),
                partition: 0,
                next_offset: 2,
            }],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    new.commit(Transaction {
        outputs: vec![out(&output, 0, 1, &input)],
        positions: vec![InputPosition {
            topic: input.clone(),
            partition: 0,
            next_offset: 2,
        }],
    })
    .await
    .unwrap();
    let all = read_all(&log, &output, 0, 0).await;
    assert_eq!(
        all.iter()
            .map(|r| r.record.value.clone())
            .collect::<Vec<_>>(),
        vec![rec(0).value, rec(1).value]
    );
    assert_eq!(
        log.committed_positions(&group, &input)
            .await
            .unwrap()
            .get(&0),
        Some(&2)
    );
}

/// Expands to one `#[tokio::test]` per conformance case.
#[macro_export]
macro_rules! conformance_tests {
    ($make:ident) => {
        $crate::conformance_tests!(@cases $make,
            creates_lists_and_describes_topics,
            rejects_duplicate_unknown_and_invalid_topics,
            appends_dense_offsets_and_reads_back_intact,
            reads_from_any_position_with_a_limit,
            keeps_partitions_independent,
            finds_offset_for_timestamp,
            rejects_oversized_record,
            keeps_order_under_concurrent_appends,
            commits_outputs_and_positions_together,
            fences_zombie_writer,
        );
    };
    (@cases $make:ident, $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (log, _guard) = $make().await;
                conformance::$case(log, conformance::prefix(stringify!($case))).await;
            }
        )*
    };
}
