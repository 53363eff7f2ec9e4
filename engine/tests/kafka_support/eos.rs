//! What the exactly-once tests of both modes share (`kafka_exactly_once.rs`
//! for progress mode, `kafka_transactions.rs` for transactions mode): a
//! deterministic read-process-write (every input yields `FAN_OUT` outputs
//! tagged with their source), the exactly-once oracle, and the child process
//! that commits in a loop so that a test can SIGKILL (or pause) it.

use super::unique;
use conductor_engine::log::kafka::{
    ExactlyOnceMode, KafkaConfig, KafkaLog, progress::HEADER_EPOCH, progress::HEADER_SOURCE,
    progress::HEADER_WRITER,
};
use conductor_engine::log::*;
use std::collections::HashMap;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

pub const OUT_PARTITIONS: i32 = 3;
/// Outputs per input record.
pub const FAN_OUT: i64 = 3;

/// Small fetches: tansu builds fetch responses at a few ms per record, so
/// bounded reads must not fetch far ahead.
pub const FETCH_MAX_BYTES: u32 = 1024;

/// A log with its own progress topic, so that opens scan only this test's records.
pub async fn connect_isolated(mode: ExactlyOnceMode) -> Option<KafkaLog> {
    super::connect_with(|mut c| {
        c.fetch_max_bytes = FETCH_MAX_BYTES;
        c.with_progress_topic(unique("__conductor_progress-test"))
            .with_exactly_once(mode)
    })
    .await
}

pub async fn create(log: &KafkaLog, topic: &str, partitions: i32) {
    log.create_topic(topic, &TopicConfig::with_partitions(partitions))
        .await
        .unwrap_or_else(|e| panic!("create {topic}: {e}"));
}

pub fn input_record(i: i64) -> Record {
    Record {
        key: Some(format!("acme/subject-{i}").into_bytes()),
        value: format!("in-{i}").into_bytes(),
        headers: vec![],
        timestamp_ms: 1_700_000_000_000 + i,
    }
}

/// The deterministic processing of the tests: input `o` yields `FAN_OUT`
/// outputs spread over the output partitions, tagged with their source.
pub fn process(input: &str, output: &str, offsets: std::ops::Range<i64>) -> Vec<OutputRecord> {
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

pub fn batch(input: &str, output: &str, offsets: std::ops::Range<i64>) -> Transaction {
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

pub async fn read_all(log: &KafkaLog, topic: &str, partition: i32) -> Vec<StoredRecord> {
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
pub async fn outputs_by_tag(
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
pub fn assert_exactly_once(
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

pub async fn committed(log: &KafkaLog, group: &str, input: &str) -> Option<i64> {
    log.committed_positions(group, input)
        .await
        .unwrap()
        .get(&0)
        .copied()
}

pub struct Setup {
    pub log: KafkaLog,
    pub input: String,
    pub output: String,
    pub group: String,
    pub writer_id: String,
}

/// A log in `mode` with an input topic of `inputs` records and an empty
/// output topic, both of unique names.
pub async fn setup(name: &str, inputs: i64) -> Option<Setup> {
    setup_in(ExactlyOnceMode::Progress, name, inputs).await
}

pub async fn setup_in(mode: ExactlyOnceMode, name: &str, inputs: i64) -> Option<Setup> {
    let log = connect_isolated(mode).await?;
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

// ---------------------------------------------------------------------------
// The child process: commits in a loop; tests kill or pause it.

pub const CHILD_ENV: &str = "CONDUCTOR_KAFKA_EOS_CHILD";
/// Lines the child prints: its writer is open; a commit starts; it was fenced.
pub const OPENED: &str = "child: writer opened";
pub const COMMITTING: &str = "child: committing";
pub const FENCED: &str = "child: fenced";
/// Printed when the child stops at `pause_after`, waiting for a line on stdin.
pub const PAUSED: &str = "child: paused";
/// Prefix of the line the child prints after each commit step (`{:?}` of a
/// `CrashPoint` in progress mode, of a `TxnStep` in transactions mode).
pub const STEP: &str = "child: step ";

#[derive(serde::Serialize, serde::Deserialize, Clone)]
pub struct ChildSpec {
    pub bootstrap: String,
    pub progress_topic: String,
    pub transactions: bool,
    pub input: String,
    pub output: String,
    pub group: String,
    pub writer_id: String,
    pub inputs: i64,
    /// Progress mode: where each open appends its recovery report line.
    pub report: Option<String>,
    /// Stop after the first commit step with this name (`{:?}`) and wait for
    /// a line on stdin before going on: a zombie in the making.
    pub pause_after: Option<String>,
}

impl ChildSpec {
    pub fn new(s: &Setup, inputs: i64) -> ChildSpec {
        ChildSpec {
            bootstrap: s.log.config().bootstrap.clone(),
            progress_topic: s.log.config().progress_topic.clone(),
            transactions: s.log.config().exactly_once == ExactlyOnceMode::Transactions,
            input: s.input.clone(),
            output: s.output.clone(),
            group: s.group.clone(),
            writer_id: s.writer_id.clone(),
            inputs,
            report: None,
            pause_after: None,
        }
    }

    /// This test binary run as the child (the `child_commit_loop` test of the
    /// calling file), stdout piped, killed on drop.
    pub fn spawn(&self) -> tokio::process::Child {
        tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_commit_loop",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, serde_json::to_string(self).unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }
}

/// The child's body: opens the writer (recovering), then reads, processes
/// and commits random-sized batches until the input is done. Like a real
/// runtime it reopens the writer after a transient error (tansu sometimes
/// stalls a request past the timeout right after a client was killed). A
/// fenced child prints `FENCED` and ends successfully.
pub async fn child_main() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: ChildSpec = serde_json::from_str(&spec).unwrap();
    let mode = if spec.transactions {
        ExactlyOnceMode::Transactions
    } else {
        ExactlyOnceMode::Progress
    };
    let mut config = KafkaConfig::new(spec.bootstrap.clone())
        .with_progress_topic(spec.progress_topic.clone())
        .with_exactly_once(mode);
    config.fetch_max_bytes = FETCH_MAX_BYTES;
    let log = KafkaLog::connect(config).await.unwrap();
    let mut opened = false;
    for _ in 0..5 {
        match child_run(&log, &spec, &mut opened).await {
            Ok(()) => return,
            Err(e) if e.kind() == LogErrorKind::Fenced => {
                println!("{FENCED}: {e}");
                return;
            }
            Err(e) if e.kind() == LogErrorKind::Transient => {
                eprintln!("child: reopening the writer after: {e}");
            }
            Err(e) => panic!("child: {e}"),
        }
    }
    panic!("child: too many transient errors");
}

/// Prints each step; at `pause_after` (once) waits for a line on stdin.
fn step_printer(pause_after: Option<String>) -> impl Fn(String) + Send + Sync + 'static {
    let paused = std::sync::atomic::AtomicBool::new(false);
    move |step: String| {
        println!("{STEP}{step}");
        if pause_after.as_deref() == Some(step.as_str())
            && !paused.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            println!("{PAUSED}");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
    }
}

async fn child_run(log: &KafkaLog, spec: &ChildSpec, opened: &mut bool) -> Result<(), LogError> {
    let printer = step_printer(spec.pause_after.clone());
    let mut w: Box<dyn TransactionalWriter> = if spec.transactions {
        let mut w = log
            .open_transactional_writer(&spec.group, &spec.writer_id)
            .await?;
        w.observe_steps(move |step| printer(format!("{step:?}")));
        Box::new(w)
    } else {
        let mut w = log
            .open_progress_writer(&spec.group, &spec.writer_id)
            .await?;
        w.observe_steps(move |step| printer(format!("{step:?}")));
        if let (false, Some(report)) = (*opened, &spec.report) {
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
                .open(report)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .unwrap();
        }
        Box::new(w)
    };
    if !*opened {
        *opened = true;
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

/// Reads the child's output until the `count`-th line ending with (or, for
/// `FENCED`, starting with) `wanted` (libtest may print `test … ... ` in
/// front of the first one); false if the child's output ends first.
pub async fn wait_for(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    wanted: &str,
    count: usize,
) -> bool {
    let mut seen = 0;
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.ends_with(wanted) || line.contains(&format!("{wanted}: ")) {
            seen += 1;
            if seen == count {
                return true;
            }
        }
    }
    false
}

/// The child's stdout as lines.
pub fn stdout_lines(
    c: &mut tokio::process::Child,
) -> tokio::io::Lines<BufReader<tokio::process::ChildStdout>> {
    BufReader::new(c.stdout.take().unwrap()).lines()
}
