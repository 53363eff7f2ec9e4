//! No raw text leaves the entities projection: `conductor run` embeds
//! entities whose attribute values are unlike anything else (with debug
//! logging on), and the values are then looked for — byte for byte, in
//! any case — in everything the embedding writer and the vector index
//! write: the recorded vectors' topic, `ig.embeddings`, the usage records, their dead-letter
//! topics, the `entity_embeddings` table, the processors' stored state
//! snapshots and the process's log. None may hold them; the entities
//! projection must (else the search proves nothing).

mod support;

use std::path::Path;
use std::process::Stdio;
use support::*;

/// Attribute values no generator produces.
const SECRETS: [&str; 4] = ["zqxjvorlak", "wyvernholt", "qsmpfbgrue", "19021117"];

fn event(i: usize, version: i64, surname: &str) -> String {
    serde_json::json!({
        "tenant": "acme", "kind": "EntityUpserted", "subject": format!("secret-{i}"),
        "occurred_at": "2026-02-01T12:00:00Z",
        "data": {"entity_type": "Person", "version": version, "attributes": {
            "given_name": SECRETS[0], "surname": surname, "suburb": SECRETS[2],
            "date_of_birth": SECRETS[3], "street_number": format!("{i}"),
        }}
    })
    .to_string()
}

/// Every record of `topic` (values and headers), lower-cased.
async fn topic_text(dir: &Path, topic: &str) -> String {
    let mut out = String::new();
    for r in topic_records(dir, topic).await {
        out.push_str(&String::from_utf8_lossy(&r.value));
        for h in &r.headers {
            out.push_str(&String::from_utf8_lossy(&h.value));
        }
    }
    out.to_lowercase()
}

fn sqlite_text(db: &Path, sql: &str) -> String {
    sqlite_rows(db, sql, &[]).join("\n").to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_attribute_value_reaches_a_vector_a_derived_topic_a_state_or_a_log() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let input = base.path().join("secrets.jsonl");
    let mut lines: Vec<String> = (0..20).map(|i| event(i, 1, SECRETS[1])).collect();
    // Updates that change the text, and one that doesn't.
    lines.extend((0..5).map(|i| event(i, 2, "wyvernholtz")));
    lines.push(event(19, 2, SECRETS[1]));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    produce_entities(&dir, &input);
    run_ok(conductor(&dir).args([
        "topic",
        "create",
        "ig.ingest.relationships",
        "--partitions",
        "3",
    ]));
    let out = conductor(&dir)
        .args(["run", "--listen", "127.0.0.1:0", "--exit-when-idle"])
        .args(["--only", "entities", "--only", "embeddings_enrich"])
        .args(["--only", "embeddings", "--only", "vector_index"])
        .env("CONDUCTOR_LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log_text = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(out.status.success(), "conductor run failed: {log_text}");
    assert!(log_text.contains("debug"), "debug logging was on");

    let db = dir.join("projections.db");
    let entities = sqlite_text(&db, "SELECT attributes FROM entities");
    assert!(
        SECRETS.iter().all(|s| entities.contains(s)),
        "the entities projection holds the values, so the search below can find them"
    );
    let vectors = sqlite_text(&db, "SELECT * FROM entity_embeddings");
    assert!(vectors.contains("secret-"), "entity_embeddings has rows");
    let states = sqlite_text(
        &db,
        "SELECT topology, hex(state) FROM conductor_state WHERE topology IN ('embeddings_enrich', 'embeddings', 'vector_index')",
    );
    assert!(
        states.contains("vector_index"),
        "the index snapshotted its state: {states}"
    );
    // Snapshots are bytes: look for the values hex-encoded too.
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    // (place, text, whether it is a hex dump: then only the hex-encoded
    // values are meaningful to look for).
    let places = [
        ("entity_embeddings", vectors, false),
        ("processor state", states, true),
        ("the log (debug)", log_text, false),
        (
            "ig.enriched.embeddings",
            topic_text(&dir, "ig.enriched.embeddings").await,
            false,
        ),
        (
            "ig.embeddings",
            topic_text(&dir, "ig.embeddings").await,
            false,
        ),
        (
            "ig.ingest.usage",
            topic_text(&dir, "ig.ingest.usage").await,
            false,
        ),
        (
            "ig.dlq.embeddings_enrich",
            topic_text(&dir, "ig.dlq.embeddings_enrich").await,
            false,
        ),
        (
            "ig.dlq.embeddings",
            topic_text(&dir, "ig.dlq.embeddings").await,
            false,
        ),
        (
            "ig.dlq.vector_index",
            topic_text(&dir, "ig.dlq.vector_index").await,
            false,
        ),
    ];
    for (place, text, hexed) in &places {
        for secret in SECRETS {
            let needle = if *hexed {
                hex(secret)
            } else {
                secret.to_string()
            };
            assert!(
                !text.contains(&needle),
                "{place} holds the attribute value `{secret}`"
            );
        }
    }
}
