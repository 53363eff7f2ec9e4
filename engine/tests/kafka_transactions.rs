//! Exactly-once read-process-write on the Kafka backend in transactions mode
//! (Kafka transactions, `transactional.id` = writer id), on the test broker
//! (Apache Kafka, see `kafka_support`): offsets sent to the transaction,
//! `read_committed` readers never seeing an aborted record (checked with our
//! reader and with the Python confluent-kafka client), transaction markers
//! skipped, zombie fencing by `transactional.id` (a paused process and
//! SIGKILLed ones), and the call sequence on rdkafka's mock cluster.
//!
//! On tansu (`KAFKA_BROKER=tansu`), which refuses transactions, each test
//! checks instead that the refusal is clear.
mod kafka_support;

use conductor_engine::log::kafka::{ExactlyOnceMode, KafkaConfig, KafkaLog};
use conductor_engine::log::*;
use kafka_support::eos::*;
use kafka_support::unique;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// A transactions-mode setup, or `None` when there is no broker (outside
/// CI) or the broker has no transactions (after checking that it says so
/// clearly).
async fn txn_setup(name: &str, inputs: i64) -> Option<Setup> {
    let s = setup_in(ExactlyOnceMode::Transactions, name, inputs).await?;
    if kafka_support::has_transactions() {
        return Some(s);
    }
    // tansu refuses EndTxn: the open or the first commit must fail with a
    // readable error that names the way out, never hang or panic.
    let err = match s
        .log
        .open_transactional_writer(&s.group, &s.writer_id)
        .await
    {
        Err(e) => e,
        Ok(mut w) => match w.commit(batch(&s.input, &s.output, 0..inputs.min(5))).await {
            Err(e) => e,
            Ok(_) => panic!(
                "KAFKA_BROKER=tansu, yet the broker committed a transaction: unset KAFKA_BROKER"
            ),
        },
    };
    assert!(matches!(err, LogError::Kafka { .. }), "{err}");
    assert!(
        err.to_string().contains("exactly_once = \"progress\""),
        "the refusal names the way out: {err}"
    );
    eprintln!("NOTICE: this broker has no transactions; it refuses them with: {err}");
    None
}

/// Runs `ops/tests/e2e/kafka_client.py tags` (the Python confluent-kafka
/// client) on `topic` with `isolation`; `None` (after a notice) when the
/// client is not installed outside CI.
fn python_tags(bootstrap: &str, topic: &str, isolation: &str) -> Option<serde_json::Value> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/tests/e2e/kafka_client.py");
    let has_client = std::process::Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_client {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but the Python confluent-kafka client is missing (ops/test.sh installs it)"
        );
        eprintln!("*** NOT CHECKED with the Python client: pip install confluent-kafka ***");
        return None;
    }
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(["tags", bootstrap, topic, isolation, "120"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

/// What a `read_committed` Python consumer and a `read_uncommitted` one see
/// of the outputs of `inputs` inputs: the first exactly one record per
/// output; returns the second's record count.
fn check_with_python_client(s: &Setup, inputs: i64) -> Option<i64> {
    let bootstrap = &s.log.config().bootstrap;
    let committed = python_tags(bootstrap, &s.output, "read_committed")?;
    assert_eq!(committed["records"], inputs * FAN_OUT, "{committed}");
    assert_eq!(committed["tags"], inputs * FAN_OUT, "{committed}");
    assert_eq!(committed["duplicated_tags"], 0, "{committed}");
    let uncommitted = python_tags(bootstrap, &s.output, "read_uncommitted")?;
    eprintln!("python client: {committed} / {uncommitted}");
    uncommitted["records"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_mode_sends_offsets_with_the_outputs_and_fences_a_zombie() {
    let Some(s) = txn_setup("txn", 20).await else {
        return;
    };
    let (input, output) = (&s.input, &s.output);
    let mut a = s.log.open_writer(&s.group, &s.writer_id).await.unwrap();
    a.commit(batch(input, output, 0..10)).await.unwrap();
    assert_eq!(
        committed(&s.log, &s.group, input).await,
        Some(10),
        "send_offsets_to_transaction committed the positions with the outputs"
    );
    let mut b = s.log.open_writer(&s.group, &s.writer_id).await.unwrap();
    assert!(b.epoch() > a.epoch());
    let err = a.commit(batch(input, output, 10..20)).await.unwrap_err();
    assert!(matches!(err, LogError::Fenced { .. }), "{err}");
    let err = a.commit(batch(input, output, 10..20)).await.unwrap_err();
    assert!(
        matches!(err, LogError::Fenced { .. }),
        "stays fenced: {err}"
    );
    assert_eq!(
        committed(&s.log, &s.group, input).await,
        Some(10),
        "the fenced commit moved nothing"
    );
    b.commit(batch(input, output, 10..20)).await.unwrap();
    assert_eq!(committed(&s.log, &s.group, input).await, Some(20));
    // read_committed readers see each output once.
    assert_exactly_once(&settled_outputs(&s, 20 * FAN_OUT).await, input, 20);
    check_with_python_client(&s, 20);
}

/// The outputs by source tag once all `expected` are visible: a commit's
/// markers are written by the transaction coordinator after
/// `commit_transaction` returns, so `read_committed` readers may see the
/// last transaction a moment later. Waiting can't hide a duplicate.
async fn settled_outputs(
    s: &Setup,
    expected: i64,
) -> std::collections::HashMap<String, Vec<(i32, i64, String, u64)>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let by_tag = outputs_by_tag(&s.log, &s.output).await;
        let records: usize = by_tag.values().map(Vec::len).sum();
        if records as i64 >= expected || std::time::Instant::now() >= deadline {
            return by_tag;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 30 s) until `topic[0]`'s end, as a `read_committed` reader
/// sees it, reaches `end`.
async fn wait_for_end(log: &KafkaLog, topic: &str, end: i64) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, high) = log.watermarks(topic, 0).await.unwrap();
        if high >= end || std::time::Instant::now() >= deadline {
            return high;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Produces `values` to `topic[0]` in one transaction of a raw transactional
/// producer, committed or aborted.
fn raw_transaction(bootstrap: &str, id: &str, topic: &str, values: &[String], commit: bool) {
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .create()
        .unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    producer.begin_transaction().unwrap();
    for v in values {
        producer
            .send(BaseRecord::<(), _>::to(topic).partition(0).payload(v))
            .unwrap();
    }
    producer.flush(timeout).unwrap();
    if commit {
        producer.commit_transaction(timeout).unwrap();
    } else {
        producer.abort_transaction(timeout).unwrap();
    }
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_skip_transaction_markers_and_aborted_records_without_waiting_for_them() {
    let Some(s) = txn_setup("markers", 0).await else {
        return;
    };
    let bootstrap = s.log.config().bootstrap.clone();
    let (topic, id) = (s.output.clone(), unique("markers-producer"));
    // Offsets: committed 0..5, marker 5, aborted 6..11, marker 11,
    // committed 12..17, marker 17.
    let b = bootstrap.clone();
    let (t, i) = (topic.clone(), id.clone());
    tokio::task::spawn_blocking(move || {
        raw_transaction(&b, &i, &t, &values("first", 5), true);
        raw_transaction(&b, &i, &t, &values("aborted", 5), false);
        raw_transaction(&b, &i, &t, &values("third", 5), true);
    })
    .await
    .unwrap();

    let high = wait_for_end(&s.log, &topic, 18).await;
    assert_eq!(high, 18, "the end includes the markers");
    let read: Vec<(i64, String)> = read_all(&s.log, &topic, 0)
        .await
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.record.value).unwrap()))
        .collect();
    let expected: Vec<(i64, String)> = (0..5)
        .map(|i| (i, format!("first-{i}")))
        .chain((0..5).map(|i| (12 + i, format!("third-{i}"))))
        .collect();
    assert_eq!(read, expected, "no aborted record, no marker");

    // Reading at a marker, or past the last record (only a marker left),
    // answers at once instead of failing after waiting for a record.
    for from in [5, 11, 17] {
        let got = s.log.read(&topic, 0, from, 100).await.unwrap();
        let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
        let want: Vec<i64> = (12..17).filter(|o| *o >= from).collect();
        assert_eq!(offsets, want, "read from {from}");
    }
    // The same reader, continuing: nothing more, then the next transaction.
    assert!(s.log.read(&topic, 0, 17, 100).await.unwrap().is_empty());
    let (b, t, i) = (bootstrap.clone(), topic.clone(), id.clone());
    tokio::task::spawn_blocking(move || raw_transaction(&b, &i, &t, &values("fourth", 3), true))
        .await
        .unwrap();
    let mut tail = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while tail.len() < 3 && std::time::Instant::now() < deadline {
        let from = tail.last().map_or(17, |r: &StoredRecord| r.offset + 1);
        let got = s.log.read(&topic, 0, from, 100).await.unwrap();
        if got.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tail.extend(got);
    }
    let tail: Vec<(i64, String)> = tail
        .into_iter()
        .map(|r| (r.offset, String::from_utf8(r.record.value).unwrap()))
        .collect();
    assert_eq!(
        tail,
        (0..3)
            .map(|i| (18 + i, format!("fourth-{i}")))
            .collect::<Vec<_>>(),
        "a tail behind a marker gets the next transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_zombie_is_fenced_by_its_transactional_id_and_its_outputs_stay_invisible() {
    const INPUTS: i64 = 200;
    let Some(s) = txn_setup("txn-zombie", INPUTS).await else {
        return;
    };
    // The zombie: stops inside its first transaction, its outputs sent.
    let mut zombie = ChildSpec {
        pause_after: Some("OutputsSent".into()),
        ..ChildSpec::new(&s, INPUTS)
    }
    .spawn();
    let mut zombie_lines = stdout_lines(&mut zombie);
    let paused = tokio::time::timeout(
        Duration::from_secs(60),
        wait_for(&mut zombie_lines, PAUSED, 1),
    )
    .await
    .expect("the zombie reaches its pause");
    assert!(
        paused,
        "the zombie exited before pausing: {:?}",
        zombie.wait_with_output().await
    );

    // A new incarnation takes over (fencing the zombie's transactional.id,
    // which aborts its open transaction) and does all the work.
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        ChildSpec::new(&s, INPUTS).spawn().wait_with_output(),
    )
    .await
    .expect("the new incarnation finishes")
    .unwrap();
    assert!(
        out.status.success(),
        "new incarnation failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(committed(&s.log, &s.group, &s.input).await, Some(INPUTS));

    // The zombie wakes up and goes on with its transaction: it is fenced.
    let mut stdin = zombie.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    stdin.flush().await.unwrap();
    let fenced = tokio::time::timeout(
        Duration::from_secs(60),
        wait_for(&mut zombie_lines, FENCED, 1),
    )
    .await
    .expect("the zombie gives up");
    assert!(
        fenced,
        "the zombie was not fenced: {:?}",
        zombie.wait_with_output().await
    );
    assert!(zombie.wait().await.unwrap().success());

    assert_eq!(
        committed(&s.log, &s.group, &s.input).await,
        Some(INPUTS),
        "the zombie moved nothing"
    );
    assert_exactly_once(
        &settled_outputs(&s, INPUTS * FAN_OUT).await,
        &s.input,
        INPUTS,
    );
    if let Some(all) = check_with_python_client(&s, INPUTS) {
        assert!(
            all > INPUTS * FAN_OUT,
            "the zombie's outputs are in the log ({all} records in all), aborted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: run as a child process by the tests of this file"]
async fn child_commit_loop() {
    child_main().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_transactional_writers_leave_every_output_exactly_once_for_read_committed_readers() {
    const KILLS: usize = 20;
    const INPUTS: i64 = 3000;
    let Some(s) = txn_setup("txn-sigkill", INPUTS).await else {
        return;
    };
    let spec = ChildSpec::new(&s, INPUTS);
    // Kills land anywhere in the loop, or right after one of the commit
    // steps of the 1st–3rd commit: inside the open transaction (outputs
    // sent, offsets sent) or right after its commit.
    let mut positions_seen = Vec::new();
    for kill in 0..KILLS {
        let mut c = spec.spawn();
        let mut lines = stdout_lines(&mut c);
        let alive = tokio::time::timeout(Duration::from_secs(60), wait_for(&mut lines, OPENED, 1))
            .await
            .expect("the child opens its writer");
        assert!(
            alive,
            "the child exited before opening: {:?}",
            c.wait_with_output().await
        );
        // Only now: while the killed one's transaction was open its offsets
        // were unstable (a read_committed offset fetch waits); opening the
        // new incarnation aborted it.
        if kill > 0 {
            positions_seen.push(committed(&s.log, &s.group, &s.input).await.unwrap_or(0));
        }
        let marker = match kill % 4 {
            0 => COMMITTING.to_string(),
            1 => format!("{STEP}Begun"),
            2 => format!("{STEP}OutputsSent"),
            _ => format!("{STEP}OffsetsSent"),
        };
        let alive = wait_for(&mut lines, &marker, rand::random_range(1..4)).await;
        let delay_us = if kill % 4 == 0 { 20_000 } else { 1_000 };
        tokio::time::sleep(Duration::from_micros(rand::random_range(0..delay_us))).await;
        assert!(
            alive,
            "the child ended before it was killed: {:?}",
            c.wait_with_output().await
        );
        c.start_kill().unwrap(); // SIGKILL
        c.wait().await.unwrap();
    }
    let out = tokio::time::timeout(Duration::from_secs(600), spec.spawn().wait_with_output())
        .await
        .expect("the last child finishes")
        .unwrap();
    assert!(
        out.status.success(),
        "last child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{KILLS} kills; committed positions after each: {positions_seen:?}");
    assert!(
        positions_seen.last().is_some_and(|&p| p > 0),
        "the killed children made progress: {positions_seen:?}"
    );

    assert_eq!(committed(&s.log, &s.group, &s.input).await, Some(INPUTS));
    assert_exactly_once(
        &settled_outputs(&s, INPUTS * FAN_OUT).await,
        &s.input,
        INPUTS,
    );
    if let Some(all) = check_with_python_client(&s, INPUTS) {
        assert!(
            all > INPUTS * FAN_OUT,
            "no kill landed inside a transaction with outputs sent ({all} records in all); the test proved nothing"
        );
    }
}

// ---------------------------------------------------------------------------
// rdkafka's mock cluster: the call sequence and the mapping of the broker's
// fencing answer, with no broker.

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
