//! Behaviour specific to the file backend: persistence, recovery, retention,
//! corruption and the one-writer rule.

use conductor_engine::cursor::{Cursor, CursorError, CursorKey, check_against_log};
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::log::*;
use std::io::Write;
use std::path::{Path, PathBuf};

fn rec(i: i64, size: usize) -> Record {
    Record {
        key: Some(format!("k{i}").into_bytes()),
        value: format!("{i:0>width$}", width = size).into_bytes(),
        headers: vec![],
        timestamp_ms: 1_000 + i,
    }
}

fn small_segments() -> FileLogOptions {
    FileLogOptions {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..Default::default()
    }
}

fn segment_files(root: &Path, topic: &str, partition: i32) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(root.join("topics").join(topic).join(partition.to_string()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
    v.sort();
    v
}

#[tokio::test]
async fn keeps_records_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = FileLog::open(dir.path(), small_segments()).unwrap();
        log.create_topic("t", &TopicConfig::with_partitions(2))
            .await
            .unwrap();
        for i in 0..100 {
            log.append("t", (i % 2) as i32, vec![rec(i, 40)])
                .await
                .unwrap();
        }
    }
    let log = FileLog::open(dir.path(), small_segments()).unwrap();
    assert_eq!(log.watermarks("t", 0).await.unwrap(), (0, 50));
    let got = log.read("t", 1, 10, 1000).await.unwrap();
    assert_eq!(got.len(), 40);
    assert_eq!(got[0].record, rec(21, 40));
    assert!(
        segment_files(dir.path(), "t", 0).len() > 1,
        "small segments must have rolled"
    );
    // Appends continue densely after reopen.
    let r = log.append("t", 0, vec![rec(1000, 8)]).await.unwrap();
    assert_eq!(r.first, 50);
}

#[tokio::test]
async fn truncates_torn_tail_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = FileLog::open(dir.path(), FileLogOptions::default()).unwrap();
        log.create_topic("t", &TopicConfig::with_partitions(1))
            .await
            .unwrap();
        log.append("t", 0, (0..10).map(|i| rec(i, 10)).collect())
            .await
            .unwrap();
    }
    // Simulate a torn write: half a batch header plus garbage at the end.
    let seg = segment_files(dir.path(), "t", 0).pop().unwrap();
    let before = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&[0xC7, 0x40, 0, 0, 0, 1, 2])
        .unwrap();
    let log = FileLog::open(dir.path(), FileLogOptions::default()).unwrap();
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        before,
        "torn bytes were cut"
    );
    assert_eq!(log.watermarks("t", 0).await.unwrap(), (0, 10));
    let r = log.append("t", 0, vec![rec(10, 10)]).await.unwrap();
    assert_eq!(r.first, 10);
    assert_eq!(
        log.read("t", 0, 10, 5).await.unwrap()[0].record,
        rec(10, 10)
    );
}

#[tokio::test]
async fn reports_corrupt_segment_bytes_clearly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = FileLog::open(dir.path(), small_segments()).unwrap();
        log.create_topic("t", &TopicConfig::with_partitions(1))
            .await
            .unwrap();
        for i in 0..60 {
            log.append("t", 0, vec![rec(i, 40)]).await.unwrap();
        }
    }
    // Flip a byte in the middle of the FIRST (sealed) segment.
    let first = segment_files(dir.path(), "t", 0).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xFF;
    std::fs::write(&first, bytes).unwrap();
    let err = match FileLog::open(dir.path(), small_segments()) {
        Err(e) => e,
        Ok(log) => log.read("t", 0, 0, 1000).await.unwrap_err(),
    };
    let msg = err.to_string();
    assert!(matches!(err, LogError::Corrupt { .. }), "{msg}");
    assert!(
        msg.contains("t[0]")
            && (msg.contains("CRC") || msg.contains("magic") || msg.contains("length")),
        "{msg}"
    );
}

#[tokio::test]
async fn applies_retention_and_expires_old_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), small_segments()).unwrap();
    let config = TopicConfig {
        partitions: 1,
        retention_ms: None,
        retention_bytes: Some(2048),
    };
    log.create_topic("t", &config).await.unwrap();
    for i in 0..200 {
        log.append("t", 0, vec![rec(i, 40)]).await.unwrap();
    }
    log.enforce_retention().unwrap();
    let (low, high) = log.watermarks("t", 0).await.unwrap();
    assert!(low > 0, "old segments were deleted");
    assert_eq!(high, 200);
    let err = log.read("t", 0, 0, 10).await.unwrap_err();
    assert!(
        matches!(err, LogError::OffsetOutOfRange { requested: 0, .. }),
        "{err}"
    );
    assert_eq!(
        log.read("t", 0, low, 1).await.unwrap()[0].record,
        rec(low, 40)
    );

    let key = CursorKey::new(&[7u8; 32]).unwrap();
    let token = key.encode(&Cursor {
        tenant: "acme".into(),
        topic: "t".into(),
        positions: [(0, 0)].into(),
    });
    let cursor = key.decode(&token, "acme").unwrap();
    let verdict = check_against_log(&log, &cursor).await.unwrap();
    assert!(
        matches!(verdict, Err(CursorError::Expired { offset: 0, .. })),
        "{verdict:?}"
    );
    assert!(verdict.unwrap_err().to_string().contains("cursor expired"));
}

#[tokio::test]
async fn retention_by_age_removes_only_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), small_segments()).unwrap();
    let config = TopicConfig {
        partitions: 1,
        retention_ms: Some(60_000),
        retention_bytes: None,
    };
    log.create_topic("t", &config).await.unwrap();
    // Old records (timestamps near the epoch), then fresh ones.
    for i in 0..60 {
        log.append("t", 0, vec![rec(i, 40)]).await.unwrap();
    }
    let now = now_ms();
    for i in 60..120 {
        let mut r = rec(i, 40);
        r.timestamp_ms = now;
        log.append("t", 0, vec![r]).await.unwrap();
    }
    log.enforce_retention().unwrap();
    let (low, _) = log.watermarks("t", 0).await.unwrap();
    assert!(low > 0 && low <= 60, "low watermark {low}");
    assert_eq!(
        log.read("t", 0, 60, 1).await.unwrap()[0].record.value,
        rec(60, 40).value
    );
}

#[tokio::test]
async fn allows_one_writer_and_many_readers() {
    let dir = tempfile::tempdir().unwrap();
    let writer = FileLog::open(dir.path(), FileLogOptions::default()).unwrap();
    let err = FileLog::open(dir.path(), FileLogOptions::default())
        .err()
        .expect("second writer refused");
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    writer
        .create_topic("t", &TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let reader = FileLog::open_read_only(dir.path(), FileLogOptions::default()).unwrap();
    writer.append("t", 0, vec![rec(0, 5)]).await.unwrap();
    assert_eq!(reader.read("t", 0, 0, 10).await.unwrap().len(), 1);
    writer
        .append("t", 0, vec![rec(1, 5), rec(2, 5)])
        .await
        .unwrap();
    assert_eq!(
        reader.watermarks("t", 0).await.unwrap(),
        (0, 3),
        "reader follows the writer"
    );
    writer
        .create_topic("later", &TopicConfig::with_partitions(1))
        .await
        .unwrap();
    assert!(
        reader
            .list_topics()
            .await
            .unwrap()
            .contains(&"later".to_string())
    );
    assert!(
        reader.append("t", 0, vec![rec(3, 5)]).await.is_err(),
        "read-only open refuses writes"
    );
}

#[tokio::test]
async fn keeps_positions_and_fences_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let old_epoch;
    {
        let log = FileLog::open(dir.path(), FileLogOptions::default()).unwrap();
        log.create_topic("out", &TopicConfig::with_partitions(1))
            .await
            .unwrap();
        let mut w = log.open_writer("g", "w").await.unwrap();
        old_epoch = w.epoch();
        w.commit(Transaction {
            outputs: vec![OutputRecord {
                topic: "out".into(),
                partition: 0,
                record: rec(0, 4),
                source: None,
            }],
            positions: vec![InputPosition {
                topic: "in".into(),
                partition: 3,
                next_offset: 42,
            }],
        })
        .await
        .unwrap();
    }
    let log = FileLog::open(dir.path(), FileLogOptions::default()).unwrap();
    assert_eq!(
        log.committed_positions("g", "in").await.unwrap().get(&3),
        Some(&42)
    );
    let w = log.open_writer("g", "w").await.unwrap();
    assert!(w.epoch() > old_epoch, "epochs survive a restart");
    let ro = FileLog::open_read_only(dir.path(), FileLogOptions::default()).unwrap();
    assert_eq!(
        ro.committed_positions("g", "in").await.unwrap().get(&3),
        Some(&42)
    );
}

#[tokio::test]
async fn compacts_the_journal_without_losing_positions() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileLogOptions {
        journal_max_bytes: 4096,
        ..Default::default()
    };
    {
        let log = FileLog::open(dir.path(), options.clone()).unwrap();
        log.create_topic("out", &TopicConfig::with_partitions(1))
            .await
            .unwrap();
        let mut w = log.open_writer("g", "w").await.unwrap();
        for i in 0..100 {
            w.commit(Transaction {
                outputs: vec![OutputRecord {
                    topic: "out".into(),
                    partition: 0,
                    record: rec(i, 64),
                    source: None,
                }],
                positions: vec![InputPosition {
                    topic: "in".into(),
                    partition: 0,
                    next_offset: i + 1,
                }],
            })
            .await
            .unwrap();
        }
    }
    let journal = dir.path().join("txn").join("journal.log");
    assert!(
        std::fs::metadata(&journal).unwrap().len() < 4096 + 1024,
        "journal was compacted"
    );
    let log = FileLog::open(dir.path(), options).unwrap();
    assert_eq!(
        log.committed_positions("g", "in").await.unwrap().get(&0),
        Some(&100)
    );
    assert_eq!(log.watermarks("out", 0).await.unwrap(), (0, 100));
}
