//! Exactly-once read-process-write on the Kafka backend, beyond the
//! conformance suite: torn commits, crashes between the commit steps, zombie
//! fencing, concurrent opens, SIGKILLed writers (progress mode, on the test
//! broker, see `kafka_support`), and transactions mode (rdkafka's mock
//! cluster; a real transactional broker via `KAFKA_TXN_BOOTSTRAP`).
mod kafka_support;

use conductor_engine::log::kafka::{
    CrashPoint, ExactlyOnceMode, KafkaConfig, KafkaLog, progress::HEADER_EPOCH,
    progress::HEADER_SOURCE, progress::HEADER_WRITER,
};
use conductor_engine::log::*;
use kafka_support::unique;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const OUT_PARTITIONS: i32 = 3;
/// Outputs per input record.
const FAN_OUT: i64 = 3;

/// Small fetches: tansu builds fetch responses at a few ms per record, so
/// bounded reads must not fetch far ahead.
const FETCH_MAX_BYTES: u32 = 1024;

/// A log with its own progress topic, so that opens scan only this test's records.
async fn connect_isolated() -> Option<KafkaLog> {
    kafka_support::connect_with(|mut c| {
        c.fetch_max_bytes = FETCH_MAX_BYTES;
        c.with_progress_topic(unique("__conductor_progress-test"))
    })
    .await
}

async fn create(log: &KafkaLog, topic: &str, partitions: i32) {
    log.create_topic(topic, &TopicConfig::with_partitions(partitions))
        .await
        .unwrap_or_else(|e| panic!("create {topic}: {e}"));
}

fn input_record(i: i64) -> Record {
    Record {
        key: Some(format!("acme/subject-{i}").into_bytes()),
        value: format!("in-{i}").into_bytes(),
        headers: vec![],
        timestamp_ms: 1_700_000_000_000 + i,
    }
}

/// The deterministic processing of the tests: input `o` yields `FAN_OUT`
/// outputs spread over the output partitions, tagged with their source.
fn process(input: &str, output: &str, offsets: std::ops::Range<i64>) -> Vec<OutputRecord> {
    offsets
        .flat_map(|o| {
            (0..FAN_OUT).map(move |idx| OutputRecord {
                topic: output.to_string(),
                partition: ((o + idx) % OUT_PARTITIONS as i64) as i32,
                record: Record {
                    key: Some(format!("acme/subject-{o}").into_bytes()),
                    value: format!("{o}:{idx}").into_bytes(),
                    headers: vec![],
                    timestamp_ms: 1_700_000_000_000 + o,
                },
                source: Some((
                    SourcePosition {
                        topic: input.to_string(),
                        partition: 0,
                        offset: o,
                    },
                    idx as u32,
                )),
            })
        })
        .collect()
}

fn batch(input: &str, output: &str, offsets: std::ops::Range<i64>) -> Transaction {
    let next = offsets.end;
    Transaction {
        outputs: process(input, output, offsets),
        positions: vec![InputPosition {
            topic: input.to_string(),
            partition: 0,
            next_offset: next,
        }],
    }
}

async fn read_all(log: &KafkaLog, topic: &str, partition: i32) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    loop {
        let from = out.last().map_or(0, |r: &StoredRecord| r.offset + 1);
        let batch = log.read(topic, partition, from, 1000).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

/// Source tag → every (partition, offset, value, writer epoch) it was written at.
async fn outputs_by_tag(
    log: &KafkaLog,
    output: &str,
) -> HashMap<String, Vec<(i32, i64, String, u64)>> {
    let mut by_tag: HashMap<String, Vec<(i32, i64, String, u64)>> = HashMap::new();
    for p in 0..OUT_PARTITIONS {
        for r in read_all(log, output, p).await {
            let tag = String::from_utf8(
                r.record
                    .header(HEADER_SOURCE)
                    .expect("ig-src header")
                    .to_vec(),
            )
            .unwrap();
            assert!(r.record.header(HEADER_WRITER).is_some(), "ig-writer header");
            let epoch: u64 =
                std::str::from_utf8(r.record.header(HEADER_EPOCH).expect("ig-epoch header"))
                    .unwrap()
                    .parse()
                    .unwrap();
            by_tag.entry(tag).or_default().push((
                p,
                r.offset,
                String::from_utf8(r.record.value).unwrap(),
                epoch,
            ));
        }
    }
    by_tag
}

/// Every input in `0..n` has each of its outputs exactly once, with the right value.
fn assert_exactly_once(
    by_tag: &HashMap<String, Vec<(i32, i64, String, u64)>>,
    input: &str,
    n: i64,
) {
    let duplicated: Vec<_> = by_tag.iter().filter(|(_, v)| v.len() > 1).take(5).collect();
    assert!(
        duplicated.is_empty(),
        "outputs written twice: {duplicated:?}"
    );
    for o in 0..n {
        for idx in 0..FAN_OUT {
            let tag = format!("{input}/0/{o}/{idx}");
            let Some(found) = by_tag.get(&tag) else {
                panic!("output {tag} is missing");
            };
            assert_eq!(found[0].2, format!("{o}:{idx}"), "value of {tag}");
            assert_eq!(
                found[0].0,
                ((o + idx) % OUT_PARTITIONS as i64) as i32,
                "partition of {tag}"
            );
        }
    }
    assert_eq!(
        by_tag.len() as i64,
        n * FAN_OUT,
        "no output for an unknown input"
    );
}

async fn committed(log: &KafkaLog, group: &str, input: &str) -> Option<i64> {
    log.committed_positions(group, input)
        .await
        .unwrap()
        .get(&0)
        .copied()
}

struct Setup {
    log: KafkaLog,
    input: String,
    output: String,
    group: String,
    writer_id: String,
}

async fn setup(name: &str, inputs: i64) -> Option<Setup> {
    let log = connect_isolated().await?;
    let input = unique(&format!("{name}.in"));
    let output = unique(&format!("{name}.out"));
    create(&log, &input, 1).await;
    create(&log, &output, OUT_PARTITIONS).await;
    // Small appends make small record batches: a fetch returns whole batches.
    let mut next = 0;
    while next < inputs {
        let end = (next + 10).min(inputs);
        log.append(&input, 0, (next..end).map(input_record).collect())
            .await
            .unwrap();
        next = end;
    }
    Some(Setup {
        log,
        input,
        output,
        group: unique(&format!("{name}-group")),
        writer_id: unique(&format!("{name}-writer")),
    })
}

#[tokio::test]
async fn connect_names_the_bootstrap_address_when_no_broker_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = KafkaConfig::new(format!("127.0.0.1:{port}"));
    config.request_timeout_ms = 1500;
    let err = KafkaLog::connect(config).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LogError::Kafka { .. }), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert_eq!(err.kind(), LogErrorKind::Transient);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_torn_batch_whose_outputs_landed_partly() {
    let Some(s) = setup("torn", 20).await else {
        return;
    };
    let (input, output) = (&s.input, &s.output);
    let mut w1 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    assert_eq!(w1.recovery_report().torn_batch, None);
    w1.commit(batch(input, output, 0..10)).await.unwrap();

    // Batch 10..20 dies after the outputs of inputs 10..15 reached the log.
    let mut torn = batch(input, output, 10..20);
    torn.outputs.truncate(5 * FAN_OUT as usize);
    w1.commit_until(torn, CrashPoint::AfterOutputs)
        .await
        .unwrap_err();
    assert_eq!(
        committed(&s.log, &s.group, input).await,
        Some(10),
        "the torn batch is not committed"
    );

    // The next incarnation knows which outputs landed; it too dies while
    // redoing the batch, after the outputs of inputs 10..18.
    let mut w2 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    assert!(w2.epoch() > w1.epoch());
    assert!(w2.recovery_report().torn_batch.is_some());
    assert_eq!(w2.recovery_report().outputs_already_written, 15);
    let mut redo = batch(input, output, 10..20);
    redo.outputs.truncate(8 * FAN_OUT as usize);
    w2.commit_until(redo, CrashPoint::AfterOutputs)
        .await
        .unwrap_err();

    // The third one finds all of them, including those of the first crash
    // (their range is carried in the second incarnation's Intent).
    let mut w3 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    assert_eq!(w3.recovery_report().outputs_already_written, 24);
    let before = outputs_by_tag(&s.log, output).await;
    // Redo in two smaller batches: recovered outputs are skipped across batches.
    let first = w3.commit(batch(input, output, 10..14)).await.unwrap();
    for (i, (topic, partition, offset)) in first.iter().enumerate() {
        let tag = format!(
            "{input}/0/{}/{}",
            10 + i as i64 / FAN_OUT,
            i as i64 % FAN_OUT
        );
        assert_eq!(topic, output);
        assert_eq!(
            before[&tag][0].0, *partition,
            "skipped output reports where it landed"
        );
        assert_eq!(
            before[&tag][0].1, *offset,
            "skipped output reports where it landed"
        );
    }
    w3.commit(batch(input, output, 14..20)).await.unwrap();
    assert_eq!(w3.pending_recovered_outputs(), 0);

    assert_eq!(committed(&s.log, &s.group, input).await, Some(20));
    assert_exactly_once(&outputs_by_tag(&s.log, output).await, input, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_a_partly_committed_redo_still_skips_recovered_outputs() {
    let Some(s) = setup("redo-crash", 15).await else {
        return;
    };
    let (input, output) = (&s.input, &s.output);
    let mut w1 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    w1.commit(batch(input, output, 0..5)).await.unwrap();
    w1.commit_until(batch(input, output, 5..15), CrashPoint::AfterOutputs)
        .await
        .unwrap_err();

    // The redo commits only 5..8, then the process dies (no further record).
    let mut w2 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    assert_eq!(w2.recovery_report().outputs_already_written, 30);
    w2.commit(batch(input, output, 5..8)).await.unwrap();
    assert_eq!(w2.pending_recovered_outputs(), 21);
    drop(w2);

    // No Intent is pending now, but the last Commit carried the torn range.
    let mut w3 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    assert_eq!(w3.recovery_report().torn_batch, None);
    assert_eq!(w3.recovery_report().outputs_already_written, 21);
    w3.commit(batch(input, output, 8..15)).await.unwrap();
    assert_eq!(w3.pending_recovered_outputs(), 0);
    assert_eq!(committed(&s.log, &s.group, input).await, Some(15));
    assert_exactly_once(&outputs_by_tag(&s.log, output).await, input, 15);

    // Once everything is redone, nothing is carried any more.
    let w4 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    assert_eq!(w4.recovery_report().outputs_already_written, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_batch_without_outputs_is_simply_redone() {
    let Some(s) = setup("intent-only", 10).await else {
        return;
    };
    let mut w1 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    w1.commit_until(batch(&s.input, &s.output, 0..10), CrashPoint::AfterIntent)
        .await
        .unwrap_err();
    let mut w2 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    assert!(w2.recovery_report().torn_batch.is_some());
    assert_eq!(w2.recovery_report().outputs_already_written, 0);
    w2.commit(batch(&s.input, &s.output, 0..10)).await.unwrap();
    assert_eq!(committed(&s.log, &s.group, &s.input).await, Some(10));
    assert_exactly_once(&outputs_by_tag(&s.log, &s.output).await, &s.input, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_group_offsets_after_crash_between_commit_record_and_group_commit() {
    let Some(s) = setup("mirror", 20).await else {
        return;
    };
    let mut w1 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    w1.commit(batch(&s.input, &s.output, 0..10)).await.unwrap();
    w1.commit_until(
        batch(&s.input, &s.output, 10..20),
        CrashPoint::AfterCommitRecord,
    )
    .await
    .unwrap_err();
    assert_eq!(
        committed(&s.log, &s.group, &s.input).await,
        Some(10),
        "group commit did not happen"
    );

    let w2 = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    let report = w2.recovery_report();
    assert_eq!(
        report.torn_batch, None,
        "the batch was committed by its Commit record"
    );
    assert_eq!(report.positions_repaired, 1);
    assert_eq!(committed(&s.log, &s.group, &s.input).await, Some(20));
    assert_exactly_once(&outputs_by_tag(&s.log, &s.output).await, &s.input, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_zombie_fails_and_its_commit_moves_nothing() {
    let Some(s) = setup("zombie", 20).await else {
        return;
    };
    let mut a = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    a.commit(batch(&s.input, &s.output, 0..5)).await.unwrap();
    let mut b = s
        .log
        .open_progress_writer(&s.group, &s.writer_id)
        .await
        .unwrap();
    assert!(b.epoch() > a.epoch());

    let err = a
        .commit(batch(&s.input, &s.output, 5..10))
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    assert_eq!(err.kind(), LogErrorKind::Fenced);
    // Also without outputs (positions only), and on every later call.
    let positions_only = Transaction {
        outputs: vec![],
        positions: vec![InputPosition {
            topic: s.input.clone(),
            partition: 0,
            next_offset: 20,
        }],
    };
    let err = a.commit(positions_only).await.unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    assert_eq!(committed(&s.log, &s.group, &s.input).await, Some(5));

    b.commit(batch(&s.input, &s.output, 5..10)).await.unwrap();
    assert_eq!(committed(&s.log, &s.group, &s.input).await, Some(10));
    assert_exactly_once(&outputs_by_tag(&s.log, &s.output).await, &s.input, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_leave_exactly_one_live_writer() {
    let Some(s) = setup("race", 4).await else {
        return;
    };
    let opens = (0..4).map(|_| s.log.open_progress_writer(&s.group, &s.writer_id));
    let mut writers: Vec<_> = futures::future::join_all(opens)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut epochs: Vec<u64> = writers.iter().map(|w| w.epoch()).collect();
    epochs.sort_unstable();
    epochs.dedup();
    assert_eq!(
        epochs.len(),
        4,
        "every incarnation has its own epoch: {epochs:?}"
    );
    let mut live = 0;
    for (i, w) in writers.iter_mut().enumerate() {
        let i = i as i64;
        match w.commit(batch(&s.input, &s.output, i..i + 1)).await {
            Ok(_) => live += 1,
            Err(LogError::Fenced { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(live, 1, "exactly one incarnation may commit");
}

// ---------------------------------------------------------------------------
// SIGKILL: a child process commits in a loop and is killed at random moments.

const CHILD_ENV: &str = "CONDUCTOR_KAFKA_EOS_CHILD";
/// Lines the child prints: its writer is open; a commit starts.
const OPENED: &str = "child: writer opened";
const COMMITTING: &str = "child: committing";
/// Prefix of the line the child prints after each commit step (`{:?}` of a `CrashPoint`).
const STEP: &str = "child: step ";

#[derive(serde::Serialize, serde::Deserialize)]
struct ChildSpec {
    bootstrap: String,
    progress_topic: String,
    input: String,
    output: String,
    group: String,
    writer_id: String,
    inputs: i64,
    report: String,
}

/// The child: opens the writer (recovering), then reads, processes and
/// commits random-sized batches until the input is done. Like a real runtime
/// it reopens the writer after a transient error (tansu sometimes stalls a
/// request past the timeout right after a client was killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: run as a child process by killed_writers_leave_every_output_exactly_once"]
async fn child_commit_loop() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: ChildSpec = serde_json::from_str(&spec).unwrap();
    let mut config =
        KafkaConfig::new(spec.bootstrap.clone()).with_progress_topic(spec.progress_topic.clone());
    config.fetch_max_bytes = FETCH_MAX_BYTES;
    let log = KafkaLog::connect(config).await.unwrap();
    let mut opened = false;
    for _ in 0..5 {
        match child_run(&log, &spec, &mut opened).await {
            Ok(()) => return,
            Err(e) if e.kind() == LogErrorKind::Transient => {
                eprintln!("child: reopening the writer after: {e}");
            }
            Err(e) => panic!("child: {e}"),
        }
    }
    panic!("child: too many transient errors");
}

async fn child_run(log: &KafkaLog, spec: &ChildSpec, opened: &mut bool) -> Result<(), LogError> {
    let mut w = log
        .open_progress_writer(&spec.group, &spec.writer_id)
        .await?;
    w.observe_steps(|step| println!("{STEP}{step:?}"));
    if !*opened {
        *opened = true;
        let r = w.recovery_report().clone();
        let line = format!(
            "{} {} {}\n",
            r.torn_batch.is_some(),
            r.outputs_already_written,
            r.positions_repaired
        );
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.report)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap();
        println!("{OPENED}");
    }
    let committed = log.committed_positions(&spec.group, &spec.input).await?;
    let mut pos = committed.get(&0).copied().unwrap_or(0);
    while pos < spec.inputs {
        let size = rand::random_range(5..40);
        let records = log.read(&spec.input, 0, pos, size).await?;
        let end = records.last().unwrap().offset + 1;
        println!("{COMMITTING}");
        w.commit(batch(&spec.input, &spec.output, pos..end)).await?;
        pos = end;
    }
    Ok(())
}

/// Reads the child's output until the `count`-th line ending with `wanted`
/// (libtest may print `test … ... ` in front of the first one);
/// false if the child's output ends first.
async fn wait_for(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    wanted: &str,
    count: usize,
) -> bool {
    let mut seen = 0;
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.ends_with(wanted) {
            seen += 1;
            if seen == count {
                return true;
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_leave_every_output_exactly_once() {
    const KILLS: usize = 30;
    const INPUTS: i64 = 3000;
    let Some(s) = setup("sigkill", INPUTS).await else {
        return;
    };
    let report = std::env::temp_dir().join(unique("conductor-eos-report"));
    let spec = ChildSpec {
        bootstrap: s.log.config().bootstrap.clone(),
        progress_topic: s.log.config().progress_topic.clone(),
        input: s.input.clone(),
        output: s.output.clone(),
        group: s.group.clone(),
        writer_id: s.writer_id.clone(),
        inputs: INPUTS,
        report: report.display().to_string(),
    };
    let spec = serde_json::to_string(&spec).unwrap();
    let child = || {
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_commit_loop",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &spec)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };

    // Kills land anywhere in the loop, or right after one of the commit steps
    // (the child prints each step), i.e. while it writes outputs, while it
    // appends the Commit record, or before the group commit.
    let mut positions_seen = Vec::new();
    let mut slowest_open = Duration::ZERO;
    for kill in 0..KILLS {
        let mut c = child();
        let mut lines = BufReader::new(c.stdout.take().unwrap()).lines();
        let started = std::time::Instant::now();
        let alive = tokio::time::timeout(Duration::from_secs(60), wait_for(&mut lines, OPENED, 1))
            .await
            .expect("the child opens its writer");
        slowest_open = slowest_open.max(started.elapsed());
        assert!(
            alive,
            "the child exited before opening: {:?}",
            c.wait_with_output().await
        );
        let marker = match kill % 4 {
            0 => COMMITTING.to_string(),
            1 => format!("{STEP}{:?}", CrashPoint::AfterIntent),
            2 => format!("{STEP}{:?}", CrashPoint::AfterOutputs),
            _ => format!("{STEP}{:?}", CrashPoint::AfterCommitRecord),
        };
        let alive = wait_for(&mut lines, &marker, rand::random_range(1..4)).await;
        let delay_us = if kill % 4 == 0 { 20_000 } else { 2_000 };
        tokio::time::sleep(Duration::from_micros(rand::random_range(0..delay_us))).await;
        assert!(
            alive,
            "the child ended before it was killed: {:?}",
            c.wait_with_output().await
        );
        c.start_kill().unwrap(); // SIGKILL
        c.wait().await.unwrap();
        positions_seen.push(committed(&s.log, &s.group, &s.input).await.unwrap_or(0));
    }
    // Let the last one finish.
    let last = child().wait_with_output();
    let out = tokio::time::timeout(Duration::from_secs(600), last)
        .await
        .expect("the last child finishes")
        .unwrap();
    assert!(
        out.status.success(),
        "last child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let lines = std::fs::read_to_string(&report).unwrap();
    let _ = std::fs::remove_file(&report);
    let runs: Vec<(bool, usize, usize)> = lines
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0] == "true", f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let torn = runs.iter().filter(|r| r.0).count();
    let torn_with_outputs = runs.iter().filter(|r| r.1 > 0).count();
    let repaired = runs.iter().filter(|r| r.2 > 0).count();
    eprintln!(
        "{KILLS} kills; {} opens: {torn} found a torn batch ({torn_with_outputs} with outputs already written), \
         {repaired} repaired group offsets; slowest start-to-open {slowest_open:?}; \
         committed positions after each kill: {positions_seen:?}",
        runs.len()
    );
    assert_eq!(
        runs.len(),
        KILLS + 1,
        "every child opened its writer before it was killed"
    );
    assert!(
        positions_seen.last().is_some_and(|&p| p > 0),
        "the killed children made progress: {positions_seen:?}"
    );
    assert!(
        torn_with_outputs > 0,
        "no kill landed between outputs and Commit; the test proved nothing"
    );

    assert_eq!(committed(&s.log, &s.group, &s.input).await, Some(INPUTS));
    assert_exactly_once(&outputs_by_tag(&s.log, &s.output).await, &s.input, INPUTS);
}

// ---------------------------------------------------------------------------
// Transactions mode.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_mode_is_refused_clearly_where_the_broker_lacks_transactions() {
    // tansu refuses EndTxn; the first commit (or init) must fail with a
    // readable Kafka error, never hang or panic.
    let Some(s) = setup("txn-on-tansu", 5).await else {
        return;
    };
    let opened = s
        .log
        .open_transactional_writer(&s.group, &s.writer_id)
        .await;
    let err = match opened {
        Err(e) => e,
        Ok(mut w) => match w.commit(batch(&s.input, &s.output, 0..5)).await {
            Err(e) => e,
            Ok(_) => {
                eprintln!("NOTICE: this broker supports transactions; nothing to check here");
                return;
            }
        },
    };
    assert!(matches!(err, LogError::Kafka { .. }), "{err}");
    eprintln!("transactions on this broker fail with: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_mode_on_mock_cluster_commits_and_fences() {
    // librdkafka's mock cluster implements the transactional API calls (but
    // not their full semantics: it shows aborted records and drops offsets
    // sent to a transaction), so this checks the call sequence and fencing.
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    let progress = "__conductor_progress";
    let (input, output) = ("mock.in", "mock.out");
    mock.create_topic(progress, 1, 1).unwrap();
    mock.create_topic(input, 1, 1).unwrap();
    mock.create_topic(output, OUT_PARTITIONS, 1).unwrap();
    let config =
        KafkaConfig::new(mock.bootstrap_servers()).with_exactly_once(ExactlyOnceMode::Transactions);
    let log = KafkaLog::connect(config).await.unwrap();
    log.append(input, 0, (0..10).map(input_record).collect())
        .await
        .unwrap();

    let mut a = log.open_writer("mock-group", "mock-writer").await.unwrap();
    let offsets = a.commit(batch(input, output, 0..5)).await.unwrap();
    assert_eq!(offsets.len(), 5 * FAN_OUT as usize);
    let written: usize = {
        let mut n = 0;
        for p in 0..OUT_PARTITIONS {
            n += read_all(&log, output, p).await.len();
        }
        n
    };
    assert_eq!(written, 5 * FAN_OUT as usize);

    // A newer incarnation fences the old one. (The mock gives every
    // init_transactions a new producer id, so here it is the writer's own
    // check of the progress topic that catches the zombie.)
    let mut b = log.open_writer("mock-group", "mock-writer").await.unwrap();
    assert!(b.epoch() > a.epoch());
    let err = a.commit(batch(input, output, 5..8)).await.unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    b.commit(batch(input, output, 5..8)).await.unwrap();

    // The broker's own fencing answer (PRODUCER_FENCED, as Apache Kafka sends
    // to a zombie) is reported as Fenced too.
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    mock.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED],
    );
    let err = b.commit(batch(input, output, 8..10)).await.unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    let err = b.commit(batch(input, output, 8..10)).await.unwrap_err();
    assert!(
        matches!(err, LogError::Fenced { .. }),
        "stays fenced: {err}"
    );
    drop((a, b, log));
    drop(mock);
}

/// Run with `KAFKA_TXN_BOOTSTRAP=host:port cargo test -p conductor-engine
/// --test kafka_exactly_once -- --ignored transactions_mode_is_exactly_once`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a broker with transactions (Apache Kafka, Redpanda) at KAFKA_TXN_BOOTSTRAP; tansu refuses them"]
async fn transactions_mode_is_exactly_once_on_a_transactional_broker() {
    let bootstrap = std::env::var("KAFKA_TXN_BOOTSTRAP").expect(
        "set KAFKA_TXN_BOOTSTRAP=host:port to a broker with transactions (Apache Kafka, Redpanda)",
    );
    let config = KafkaConfig::new(bootstrap).with_exactly_once(ExactlyOnceMode::Transactions);
    let log = KafkaLog::connect(config).await.unwrap();
    let input = unique("txn.in");
    let output = unique("txn.out");
    let group = unique("txn-group");
    let id = unique("txn-writer");
    create(&log, &input, 1).await;
    create(&log, &output, OUT_PARTITIONS).await;
    log.append(&input, 0, (0..20).map(input_record).collect())
        .await
        .unwrap();

    let mut a = log.open_writer(&group, &id).await.unwrap();
    a.commit(batch(&input, &output, 0..10)).await.unwrap();
    assert_eq!(committed(&log, &group, &input).await, Some(10));
    let mut b = log.open_writer(&group, &id).await.unwrap();
    let err = a.commit(batch(&input, &output, 10..20)).await.unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    assert_eq!(
        committed(&log, &group, &input).await,
        Some(10),
        "the fenced commit moved nothing"
    );
    b.commit(batch(&input, &output, 10..20)).await.unwrap();
    assert_eq!(committed(&log, &group, &input).await, Some(20));
    // read_committed readers see each output once: the zombie's are aborted.
    let mut by_tag: BTreeMap<String, usize> = BTreeMap::new();
    for p in 0..OUT_PARTITIONS {
        for r in read_all(&log, &output, p).await {
            let tag = String::from_utf8(r.record.header(HEADER_SOURCE).unwrap().to_vec()).unwrap();
            *by_tag.entry(tag).or_default() += 1;
        }
    }
    assert_eq!(by_tag.len(), 20 * FAN_OUT as usize);
    assert!(by_tag.values().all(|&n| n == 1), "{by_tag:?}");
}
