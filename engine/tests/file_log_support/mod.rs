//! The workload the file log's crash and disk fault tests run in a child
//! process, and what the parent reads back: plain appends of self-describing
//! records, and read-process-write transactions from topic `in` to topic
//! `out` whose committed input position must match their outputs exactly.
#![allow(dead_code)]

use conductor_engine::log::file::FileLog;
use conductor_engine::log::*;
use std::collections::BTreeMap;

/// The group and writer of the transactions.
pub const GROUP: &str = "workload-g";
pub const WRITER: &str = "workload-w";

/// Self-describing: the offset the record must have, and a digest of it,
/// so a record read back at the wrong place or damaged is caught.
pub fn value_for(offset: i64) -> Vec<u8> {
    format!("{offset}:{}", blake3::hash(&offset.to_le_bytes()).to_hex()).into_bytes()
}

/// What the child was told succeeded.
#[derive(Default, Debug)]
pub struct Acked {
    /// Partition of `plain` → last acknowledged offset.
    pub plain: BTreeMap<i32, i64>,
    /// The last acknowledged input position of the transactions.
    pub txn: i64,
}

impl Acked {
    /// Reads the child's `ACK` lines.
    pub fn read(&mut self, line: &str) {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["ACK", "plain", p, _first, last] => {
                self.plain.insert(p.parse().unwrap(), last.parse().unwrap());
            }
            ["ACK", "txn", next] => self.txn = next.parse().unwrap(),
            _ => {}
        }
    }
}

/// Round `i` of the workload: a plain append to partition `i % 2`, then a
/// transaction over the next inputs. `ack` gets an `ACK …` line for each
/// write as soon as it is acknowledged; the first failure is returned.
pub async fn round(
    log: &FileLog,
    writer: &mut dyn TransactionalWriter,
    i: u64,
    ack: &mut impl FnMut(String),
) -> Result<(), LogError> {
    let p = (i % 2) as i32;
    let (_, high) = log.watermarks("plain", p).await?;
    let n = 1 + (i * 7919 % 40) as i64;
    let batch: Vec<Record> = (high..high + n)
        .map(|o| Record::new(Some(b"k".to_vec()), value_for(o)))
        .collect();
    let r = log.append("plain", p, batch).await?;
    ack(format!("ACK plain {p} {} {}", r.first, r.last));
    let next = log
        .committed_positions(GROUP, "in")
        .await?
        .get(&0)
        .copied()
        .unwrap_or(0);
    let inputs = log.read("in", 0, next, 1 + (i * 31 % 25) as usize).await?;
    let Some(last) = inputs.last().map(|r| r.offset) else {
        return Ok(());
    };
    let outputs = inputs
        .iter()
        .map(|r| OutputRecord {
            topic: "out".into(),
            partition: (r.offset % 2) as i32,
            record: Record::new(None, format!("from-{}", r.offset).into_bytes()),
            source: Some((
                SourcePosition {
                    topic: "in".into(),
                    partition: 0,
                    offset: r.offset,
                },
                0,
            )),
        })
        .collect();
    writer
        .commit(Transaction {
            outputs,
            positions: vec![InputPosition {
                topic: "in".into(),
                partition: 0,
                next_offset: last + 1,
            }],
        })
        .await?;
    ack(format!("ACK txn {}", last + 1));
    Ok(())
}

/// Creates the topics and `inputs` records on `in`.
pub async fn prepare(log: &FileLog, inputs: i64) {
    for (topic, partitions) in [("in", 1), ("plain", 2), ("out", 2)] {
        log.create_topic(topic, &TopicConfig::with_partitions(partitions))
            .await
            .unwrap();
    }
    let batch: Vec<Record> = (0..1000)
        .map(|i| Record::new(None, i.to_string().into_bytes()))
        .collect();
    for _ in 0..inputs / 1000 {
        log.append("in", 0, batch.clone()).await.unwrap();
    }
}

/// Reads `plain` partition `p` whole, checking dense offsets and intact
/// records; returns its high watermark.
pub async fn check_plain(log: &FileLog, p: i32) -> i64 {
    let (low, high) = log.watermarks("plain", p).await.unwrap();
    assert_eq!(low, 0);
    let mut next = 0;
    while next < high {
        for r in log.read("plain", p, next, 1000).await.unwrap() {
            assert_eq!(r.offset, next, "dense offsets");
            assert_eq!(
                r.record.value,
                value_for(r.offset),
                "record {p}/{} intact and in place",
                r.offset
            );
            next += 1;
        }
    }
    high
}

/// The committed input position, checked against the outputs: one output
/// per consumed input, none beyond the position.
pub async fn check_transactions(log: &FileLog) -> i64 {
    let position = log
        .committed_positions(GROUP, "in")
        .await
        .unwrap()
        .get(&0)
        .copied()
        .unwrap_or(0);
    let mut sources = Vec::new();
    for p in 0..2 {
        let (_, high) = log.watermarks("out", p).await.unwrap();
        let mut next = 0;
        while next < high {
            for r in log.read("out", p, next, 1000).await.unwrap() {
                sources.push(
                    String::from_utf8(r.record.value).unwrap()["from-".len()..]
                        .parse::<i64>()
                        .unwrap(),
                );
                next = r.offset + 1;
            }
        }
    }
    sources.sort_unstable();
    assert!(
        sources.iter().copied().eq(0..position),
        "outputs cover exactly inputs 0..{position} ({} outputs)",
        sources.len()
    );
    position
}
