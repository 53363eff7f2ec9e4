//! File-log throughput next to its ceiling, measured in the same run.
//!
//! For 1 KB records and batches of 1, 100 and 1000, under each fsync policy:
//! - append: records/s and MB/s through `FileLog::append`;
//! - raw: the same payload bytes written sequentially with `write_all` in the
//!   same chunks and the same fsync policy, to a plain file in the same directory;
//! - read: records/s reading everything back through `FileLog::read`, next to
//!   a raw sequential read of the segment bytes.
//!
//! Prints a table and writes `$CARGO_TARGET_DIR/bench-reports/file_log.json`.
//!
//! Run: `cargo bench -p conductor-engine --bench file_log` (env
//! `FILE_LOG_BENCH_MB` scales the data volume, default 64 MB per case).

use conductor_engine::log::file::{FileLog, FileLogOptions, FsyncPolicy};
use conductor_engine::log::{Log, Record, TopicConfig};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const RECORD_BYTES: usize = 1024;

struct Case {
    policy: &'static str,
    batch: usize,
    records: usize,
    append: Duration,
    raw_write: Duration,
    read: Duration,
    raw_read: Duration,
    log_bytes: u64,
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn mb_per_sec(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

async fn run_case(
    policy_name: &'static str,
    policy: FsyncPolicy,
    batch: usize,
    records: usize,
) -> Case {
    let dir = tempfile::tempdir_in(
        std::env::var("FILE_LOG_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .unwrap();
    let log = FileLog::open(
        dir.path().join("log"),
        FileLogOptions {
            fsync: policy,
            ..Default::default()
        },
    )
    .unwrap();
    log.create_topic("bench", &TopicConfig::with_partitions(1))
        .await
        .unwrap();
    let value: Vec<u8> = (0..RECORD_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let batches = records / batch;
    let template: Vec<Record> = (0..batch)
        .map(|_| Record {
            key: None,
            value: value.clone(),
            headers: vec![],
            timestamp_ms: 1,
        })
        .collect();

    let start = Instant::now();
    for _ in 0..batches {
        log.append("bench", 0, template.clone()).await.unwrap();
    }
    log.sync_all().unwrap();
    let append = start.elapsed();

    // The ceiling: the same payload, the same chunks, the same fsync policy.
    let raw_path = dir.path().join("raw.bin");
    let mut raw = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw_path)
        .unwrap();
    let chunk: Vec<u8> = value
        .iter()
        .copied()
        .cycle()
        .take(RECORD_BYTES * batch)
        .collect();
    let start = Instant::now();
    let mut last_sync = Instant::now();
    for _ in 0..batches {
        raw.write_all(&chunk).unwrap();
        match policy {
            FsyncPolicy::EveryBatch => raw.sync_data().unwrap(),
            FsyncPolicy::IntervalMs(ms) if last_sync.elapsed() >= Duration::from_millis(ms) => {
                raw.sync_data().unwrap();
                last_sync = Instant::now();
            }
            _ => {}
        }
    }
    raw.sync_data().unwrap();
    let raw_write = start.elapsed();

    let start = Instant::now();
    let mut next = 0;
    let mut n = 0;
    loop {
        let got = log.read("bench", 0, next, 1000).await.unwrap();
        if got.is_empty() {
            break;
        }
        n += got.len();
        next = got.last().unwrap().offset + 1;
    }
    let read = start.elapsed();
    assert_eq!(n, batches * batch, "read back every record");

    let mut log_bytes = 0;
    let start = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    for entry in std::fs::read_dir(dir.path().join("log/topics/bench/0")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let mut f = std::fs::File::open(&path).unwrap();
            loop {
                let k = f.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                log_bytes += k as u64;
            }
        }
    }
    let raw_read = start.elapsed();
    Case {
        policy: policy_name,
        batch,
        records: batches * batch,
        append,
        raw_write,
        read,
        raw_read,
        log_bytes,
    }
}

fn main() {
    let mb: usize = std::env::var("FILE_LOG_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut cases = Vec::new();
    let policies = [
        ("every_batch", FsyncPolicy::EveryBatch),
        ("interval:100", FsyncPolicy::IntervalMs(100)),
    ];
    for (name, policy) in policies {
        for batch in [1usize, 100, 1000] {
            // fsync per single record is slow everywhere: fewer records keep it short.
            let records = if batch == 1 && name == "every_batch" {
                2_000
            } else {
                mb * 1000
            };
            cases.push(rt.block_on(run_case(name, policy, batch, records)));
        }
    }
    println!(
        "\nfile log, {RECORD_BYTES} B records (payload MB/s; ratio = file log / raw, same bytes, same fsync policy, same run)"
    );
    println!(
        "{:<13} {:>6} {:>9} | {:>12} {:>9} {:>9} {:>7} | {:>12} {:>10} {:>7}",
        "fsync",
        "batch",
        "records",
        "append rec/s",
        "MB/s",
        "raw MB/s",
        "ratio",
        "read rec/s",
        "read MB/s",
        "vs raw"
    );
    let mut json = Vec::new();
    for c in &cases {
        let payload = (c.records * RECORD_BYTES) as u64;
        let (a, r) = (
            mb_per_sec(payload, c.append),
            mb_per_sec(payload, c.raw_write),
        );
        let (rd, rr) = (
            mb_per_sec(payload, c.read),
            mb_per_sec(c.log_bytes, c.raw_read),
        );
        println!(
            "{:<13} {:>6} {:>9} | {:>12.0} {:>9.1} {:>9.1} {:>7.2} | {:>12.0} {:>10.1} {:>7.2}",
            c.policy,
            c.batch,
            c.records,
            per_sec(c.records, c.append),
            a,
            r,
            a / r,
            per_sec(c.records, c.read),
            rd,
            rd / rr
        );
        json.push(format!(
            r#"{{"fsync":"{}","batch":{},"records":{},"append_records_per_s":{:.0},"append_mb_per_s":{:.2},"raw_write_mb_per_s":{:.2},"append_to_raw_ratio":{:.3},"read_records_per_s":{:.0},"read_mb_per_s":{:.2},"raw_read_mb_per_s":{:.2},"read_to_raw_ratio":{:.3}}}"#,
            c.policy, c.batch, c.records, per_sec(c.records, c.append), a, r, a / r, per_sec(c.records, c.read), rd, rr, rd / rr
        ));
    }
    let dir = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    )
    .join("bench-reports");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("file_log.json");
    std::fs::write(&path, format!("[\n  {}\n]\n", json.join(",\n  "))).unwrap();
    println!("\nreport: {}", path.display());
}
