//! Crash test: a child process appends to the file log (plain batches and
//! read-process-write transactions) and is SIGKILLed at random points, again
//! and again. After every kill the log is reopened and checked:
//! - every acknowledged record reads back intact, offsets are dense, and no
//!   torn, corrupt or duplicate record is ever returned;
//! - the transaction outputs and the committed input position agree: every
//!   input below the position produced exactly one output, none above it.
//!
//! The child is this same test binary, re-run with `--ignored --exact crash_child`.

use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::log::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const DIR_ENV: &str = "CONDUCTOR_CRASH_DIR";
const KILLS: usize = 24;
const INPUTS: i64 = 200_000;

fn value_for(offset: i64) -> Vec<u8> {
    // Self-describing: the offset the record must have, and a digest of it,
    // so a record read back at the wrong place or damaged is caught.
    format!("{offset}:{}", blake3::hash(&offset.to_le_bytes()).to_hex()).into_bytes()
}

fn options() -> FileLogOptions {
    // Small segments so kills also land around segment rolls.
    FileLogOptions {
        segment_bytes: 64 * 1024,
        ..Default::default()
    }
}

async fn ensure_topic(log: &FileLog, name: &str, partitions: i32) {
    match log
        .create_topic(name, &TopicConfig::with_partitions(partitions))
        .await
    {
        Ok(()) | Err(LogError::TopicExists(_)) => {}
        Err(e) => panic!("create {name}: {e}"),
    }
}

/// The child: appends forever, printing `ACK` lines after each acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the crash test's child process; run by kills_writer_at_random_points_without_losing_or_tearing_records"]
async fn crash_child() {
    let dir = std::env::var(DIR_ENV).expect("CONDUCTOR_CRASH_DIR");
    let log = FileLog::open(&dir, options()).unwrap();
    ensure_topic(&log, "plain", 2).await;
    ensure_topic(&log, "out", 2).await;
    let mut writer = log.open_writer("crash-g", "crash-w").await.unwrap();
    let mut i: u64 = 0;
    loop {
        i += 1;
        let p = (i % 2) as i32;
        let (_, high) = log.watermarks("plain", p).await.unwrap();
        let n = 1 + (i * 7919 % 40) as i64;
        let batch: Vec<Record> = (high..high + n)
            .map(|o| Record::new(Some(b"k".to_vec()), value_for(o)))
            .collect();
        let r = log.append("plain", p, batch).await.unwrap();
        println!("ACK plain {p} {} {}", r.first, r.last);

        let next = log
            .committed_positions("crash-g", "in")
            .await
            .unwrap()
            .get(&0)
            .copied()
            .unwrap_or(0);
        let inputs = log
            .read("in", 0, next, 1 + (i * 31 % 25) as usize)
            .await
            .unwrap();
        if inputs.is_empty() {
            continue;
        }
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
        let last = inputs.last().unwrap().offset;
        writer
            .commit(Transaction {
                outputs,
                positions: vec![InputPosition {
                    topic: "in".into(),
                    partition: 0,
                    next_offset: last + 1,
                }],
            })
            .await
            .unwrap();
        println!("ACK txn {}", last + 1);
    }
}

#[derive(Default)]
struct Acked {
    plain: BTreeMap<i32, i64>,
    txn: i64,
}

async fn verify(dir: &std::path::Path, acked: &Acked) -> (i64, i64) {
    let log = FileLog::open(dir, options()).expect("reopen after kill");
    let mut total = 0;
    for p in 0..2 {
        let (low, high) = log.watermarks("plain", p).await.unwrap();
        assert_eq!(low, 0);
        let want = acked.plain.get(&p).map_or(0, |last| last + 1);
        assert!(
            high >= want,
            "partition {p}: acknowledged up to {want} but high watermark is {high}"
        );
        let mut next = 0;
        while next < high {
            let batch = log.read("plain", p, next, 1000).await.unwrap();
            for r in &batch {
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
        total += high;
    }
    let position = log
        .committed_positions("crash-g", "in")
        .await
        .unwrap()
        .get(&0)
        .copied()
        .unwrap_or(0);
    assert!(
        position >= acked.txn,
        "committed position {position} behind acknowledged {}",
        acked.txn
    );
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
    assert_eq!(
        sources.len() as i64,
        position,
        "one output per consumed input, none beyond the position"
    );
    assert!(
        sources.iter().enumerate().all(|(i, s)| *s == i as i64),
        "outputs cover exactly inputs 0..{position}"
    );
    (total, position)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_writer_at_random_points_without_losing_or_tearing_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = FileLog::open(dir.path(), options()).unwrap();
        log.create_topic("in", &TopicConfig::with_partitions(1))
            .await
            .unwrap();
        let batch: Vec<Record> = (0..1000)
            .map(|i| Record::new(None, i.to_string().into_bytes()))
            .collect();
        for _ in 0..INPUTS / 1000 {
            log.append("in", 0, batch.clone()).await.unwrap();
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut acked = Acked::default();
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let (mut records, mut position) = (0, 0);
    for kill in 0..KILLS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(DIR_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Wait for the child to get going, then kill it at a random moment.
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(150 + seed % 400));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for line in lines.join().unwrap() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            match parts.as_slice() {
                ["ACK", "plain", p, _first, last] => {
                    acked
                        .plain
                        .insert(p.parse().unwrap(), last.parse().unwrap());
                }
                ["ACK", "txn", next] => acked.txn = next.parse().unwrap(),
                _ => {}
            }
        }
        (records, position) = verify(dir.path(), &acked).await;
        eprintln!("kill {kill}: {records} plain records, input position {position}: consistent");
    }
    assert!(
        records > 0 && position > 0,
        "the child made progress between kills"
    );
}
