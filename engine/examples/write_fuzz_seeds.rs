//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`)
//! from the project's test data: the fixture events in JSON, Avro and
//! container form, segments and a journal written by the real file log,
//! cursors, token claims, topologies, schemas and subscribe messages.
//!
//! `cargo run -p conductor-engine --example write_fuzz_seeds -- fuzz/corpus`
//! (ops/fuzz.sh --seeds does this). Seeds are named `seed-*`, so rerunning
//! replaces them and leaves what the fuzzer found.

use conductor_engine::cursor::{Cursor, CursorKey};
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::log::*;
use conductor_schemas::Event;
use conductor_schemas::codec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

struct Corpus(PathBuf);

impl Corpus {
    fn put(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.0.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
    }
}

fn fixture_events() -> Vec<(String, Event)> {
    let mut out = Vec::new();
    for file in [
        "schemas/tests/fixtures/events.jsonl",
        "ops/samples/entities.jsonl",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect(file);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let event =
                codec::decode_json(line.as_bytes(), None).expect("fixture events are valid");
            out.push((line.to_string(), event));
        }
    }
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let corpus = Corpus(PathBuf::from(out));
    let events = fixture_events();

    for (i, (line, event)) in events.iter().enumerate() {
        corpus.put("event_json", &format!("{i:02}-{}.json", event.kind()), line);
        corpus.put(
            "event_avro",
            &format!("{i:02}-{}.avro", event.kind()),
            codec::encode_avro(event),
        );
        // The embedded OpenLineage event of a lineage fixture is a client's body.
        if let Some(Ok(json)) = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| {
                v["data"]["event"]
                    .as_str()
                    .map(serde_json::from_str::<serde_json::Value>)
            })
        {
            corpus.put("openlineage", &format!("{i:02}.json"), json.to_string());
            corpus.put(
                "event_json",
                &format!("{i:02}-plain-openlineage.json"),
                json.to_string(),
            );
        }
    }
    let mut by_kind: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for (_, e) in &events {
        by_kind.entry(e.kind()).or_default().push(e);
    }
    for (kind, list) in &by_kind {
        let file = codec::write_ocf(list.iter().copied(), Vec::new()).expect("write a container");
        corpus.put("avro_container", &format!("{kind}.avro"), file);
    }

    write_log_seeds(&corpus, &events).await;

    let key = CursorKey::new(b"conductor-fuzz-secret-0123456789abcdef").expect("key");
    let cursor = Cursor {
        tenant: "acme".into(),
        topic: "ig.changefeed.entities".into(),
        positions: [(0, 17), (1, 0), (2, i64::MAX)].into_iter().collect(),
    };
    corpus.put("cursor", "token", key.encode(&cursor));

    for (name, claims) in [
        (
            "subscribe",
            r#"{"tenant":"acme","scopes":["subscribe"],"exp":4102444800}"#,
        ),
        (
            "lineage",
            r#"{"tenant":"acme","scope":"lineage:write subscribe","tier":"gold","exp":4102444800}"#,
        ),
        (
            "bronze",
            r#"{"tenant":"globex","scopes":["subscribe"],"tier":"bronze","exp":4102444800,"nbf":0}"#,
        ),
    ] {
        corpus.put("jwt", name, claims);
    }

    for entry in std::fs::read_dir(repo().join("topologies")).expect("topologies") {
        let path = entry.expect("entry").path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        corpus.put("topology", &name, std::fs::read(&path).expect("topology"));
    }
    let avsc =
        |name: &str| std::fs::read_to_string(repo().join("schemas/avro").join(name)).expect(name);
    for name in ["EntityUpserted.avsc", "UsageRecorded.avsc", "RunEvent.avsc"] {
        corpus.put(
            "schema_change",
            &format!("same-{name}"),
            format!("{}\0{}", avsc(name), avsc(name)),
        );
    }
    let old = avsc("EntityUpserted.avsc");
    // A field added with a default: compatible; without one: not.
    let marker = r#""fields": ["#;
    if old.contains(marker) {
        let added = old.replacen(
            marker,
            &format!(
                r#"{marker} {{"name": "note", "type": ["null", "string"], "default": null}},"#
            ),
            1,
        );
        corpus.put("schema_change", "added-field", format!("{old}\0{added}"));
    }
    corpus.put(
        "schema_change",
        "renamed",
        format!("{old}\0{}", avsc("EntityDeleted.avsc")),
    );

    for (name, message) in [
        (
            "plain",
            r#"{"op":"subscribe","topic":"ig.changefeed.entities"}"#,
        ),
        (
            "earliest-filter",
            r#"{"op":"subscribe","topic":"ig.changefeed.entities","from":"earliest","filter":{"table":"entities","op":"upsert","attributes":{"name":"Ada"}}}"#,
        ),
        (
            "cursor-token",
            r#"{"op":"subscribe","topic":"t","cursor":"AQ","token":"x.y.z"}"#,
        ),
    ] {
        corpus.put("subscribe_message", name, message);
    }
    println!("seeds written to {}", corpus.0.display());
}

/// Segments and a journal written by the real file log.
async fn write_log_seeds(corpus: &Corpus, events: &[(String, Event)]) {
    let dir = tempfile_dir();
    let options = FileLogOptions {
        segment_bytes: 64 * 1024,
        ..FileLogOptions::default()
    };
    let log = FileLog::open(&dir, options).expect("open a log");
    for (topic, partitions) in [("t", 1), ("in", 1), ("out", 2)] {
        log.create_topic(topic, &TopicConfig::with_partitions(partitions))
            .await
            .expect("create topic");
    }
    for chunk in events.chunks(7) {
        let batch = chunk
            .iter()
            .map(|(_, e)| {
                Record::new(
                    Some(e.meta.subject.clone().into_bytes()),
                    codec::encode_avro(e),
                )
            })
            .collect();
        log.append("t", 0, batch).await.expect("append");
    }
    log.append(
        "in",
        0,
        (0..10).map(|i| Record::new(None, vec![i])).collect(),
    )
    .await
    .expect("append inputs");
    let mut writer = log.open_writer("g", "w").await.expect("writer");
    for next in [4_i64, 10] {
        let outputs = (next - 4..next)
            .map(|o| OutputRecord {
                topic: "out".into(),
                partition: (o % 2) as i32,
                record: Record::new(None, format!("from-{o}").into_bytes()),
                source: Some((
                    SourcePosition {
                        topic: "in".into(),
                        partition: 0,
                        offset: o,
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
                    next_offset: next,
                }],
            })
            .await
            .expect("commit");
    }
    drop(writer);
    drop(log);
    let segment = std::fs::read(dir.join("topics/t/0/00000000000000000000.log")).expect("segment");
    corpus.put("file_log_segment", "events", &segment);
    corpus.put("file_log_segment", "torn", &segment[..segment.len() - 5]);
    corpus.put(
        "file_log_journal",
        "two-transactions",
        std::fs::read(dir.join("txn/journal.log")).expect("journal"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conductor-fuzz-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
