//! Exactly-once read-process-write on the Kafka backend in progress mode
//! (the default, for any Kafka-protocol broker), beyond the conformance
//! suite: torn commits, crashes between the commit steps, zombie fencing,
//! concurrent opens and SIGKILLed writers, on the test broker (see
//! `kafka_support`). Transactions mode: `kafka_transactions.rs`.
mod kafka_support;

use conductor_engine::log::kafka::{CrashPoint, KafkaConfig, KafkaLog};
use conductor_engine::log::*;
use kafka_support::eos::*;
use kafka_support::unique;
use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper: run as a child process by killed_writers_leave_every_output_exactly_once"]
async fn child_commit_loop() {
    child_main().await;
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
        report: Some(report.display().to_string()),
        ..ChildSpec::new(&s, INPUTS)
    };
    let child = || spec.spawn();

    // Kills land anywhere in the loop, or right after one of the commit steps
    // (the child prints each step), i.e. while it writes outputs, while it
    // appends the Commit record, or before the group commit.
    let mut positions_seen = Vec::new();
    let mut slowest_open = Duration::ZERO;
    for kill in 0..KILLS {
        let mut c = child();
        let mut lines = stdout_lines(&mut c);
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
