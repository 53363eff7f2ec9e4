//! Crash test: a child process appends to the file log (plain batches and
//! read-process-write transactions) and is SIGKILLed at random points, again
//! and again. After every kill the log is reopened and checked:
//! - every acknowledged record reads back intact, offsets are dense, and no
//!   torn, corrupt or duplicate record is ever returned;
//! - the transaction outputs and the committed input position agree: every
//!   input below the position produced exactly one output, none above it.
//!
//! The child is this same test binary, re-run with `--ignored --exact crash_child`.

use conductor_engine::log::Log;
use conductor_engine::log::file::{FileLog, FileLogOptions};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

mod file_log_support;

use file_log_support::{Acked, check_plain, check_transactions};

const DIR_ENV: &str = "CONDUCTOR_CRASH_DIR";
const KILLS: usize = 24;
const INPUTS: i64 = 200_000;

fn options() -> FileLogOptions {
    // Small segments so kills also land around segment rolls.
    FileLogOptions {
        segment_bytes: 64 * 1024,
        ..Default::default()
    }
}

/// The child: runs the workload forever, printing `ACK` lines after each
/// acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the crash test's child process; run by kills_writer_at_random_points_without_losing_or_tearing_records"]
async fn crash_child() {
    let dir = std::env::var(DIR_ENV).expect("CONDUCTOR_CRASH_DIR");
    let log = FileLog::open(&dir, options()).unwrap();
    let mut writer = log
        .open_writer(file_log_support::GROUP, file_log_support::WRITER)
        .await
        .unwrap();
    for i in 1.. {
        file_log_support::round(&log, writer.as_mut(), i, &mut |line| println!("{line}"))
            .await
            .unwrap();
    }
}

/// Reopens after a kill: every acknowledged record intact, outputs and
/// position in agreement. Returns (plain records, position).
async fn verify(dir: &std::path::Path, acked: &Acked) -> (i64, i64) {
    let log = FileLog::open(dir, options()).expect("reopen after kill");
    let mut total = 0;
    for p in 0..2 {
        let high = check_plain(&log, p).await;
        let want = acked.plain.get(&p).map_or(0, |last| last + 1);
        assert!(
            high >= want,
            "partition {p}: acknowledged up to {want} but high watermark is {high}"
        );
        total += high;
    }
    let position = check_transactions(&log).await;
    assert!(
        position >= acked.txn,
        "committed position {position} behind acknowledged {}",
        acked.txn
    );
    (total, position)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_writer_at_random_points_without_losing_or_tearing_records() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = FileLog::open(dir.path(), options()).unwrap();
        file_log_support::prepare(&log, INPUTS).await;
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
            acked.read(&line);
        }
        (records, position) = verify(dir.path(), &acked).await;
        eprintln!("kill {kill}: {records} plain records, input position {position}: consistent");
    }
    assert!(
        records > 0 && position > 0,
        "the child made progress between kills"
    );
}
