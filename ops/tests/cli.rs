//! The `conductor` binary as a user runs it, on the file log.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/samples/entities.jsonl");

fn conductor(data: &Path, args: &[&str]) -> Output {
    conductor_with_input(data, args, None)
}

fn conductor_with_input(data: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("CONDUCTOR_LOG")
        .env("CONDUCTOR_CURSOR_KEY", "test-cursor-key-0123456789")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn setup(partitions: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    ok(&conductor(
        dir.path(),
        &[
            "topic",
            "create",
            "ig.ingest.entities",
            "--partitions",
            partitions,
        ],
    ));
    dir
}

#[test]
fn produces_sample_and_consumes_every_event_once() {
    let dir = setup("3");
    let out = ok(&conductor(
        dir.path(),
        &["produce", "--topic", "ig.ingest.entities", SAMPLE],
    ));
    assert!(out.contains("appended 40 events"), "{out}");
    let all = lines(&ok(&conductor(
        dir.path(),
        &["consume", "--topic", "ig.ingest.entities"],
    )));
    assert_eq!(all.len(), 40);
    let mut subjects: Vec<&str> = all
        .iter()
        .map(|l| l["event"]["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 40, "every event exactly once");
    for l in &all {
        let e = &l["event"];
        assert_eq!(
            l["key"],
            format!(
                "{}/{}",
                e["tenant"].as_str().unwrap(),
                e["subject"].as_str().unwrap()
            )
        );
        assert!(
            e["event_id"].as_str().unwrap().starts_with("b3-"),
            "derived event id"
        );
    }
    let described: Value = serde_json::from_str(&ok(&conductor(
        dir.path(),
        &["topic", "describe", "ig.ingest.entities", "--json"],
    )))
    .unwrap();
    let total: i64 = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 40);
}

#[test]
fn resumes_after_cursor_without_gap_or_repeat() {
    let dir = setup("3");
    ok(&conductor(
        dir.path(),
        &["produce", "--topic", "ig.ingest.entities", SAMPLE],
    ));
    let all = lines(&ok(&conductor(
        dir.path(),
        &["consume", "--topic", "ig.ingest.entities"],
    )));
    for k in [0usize, 7, 20, 39] {
        let cursor = all[k]["cursor"].as_str().unwrap();
        let rest = lines(&ok(&conductor(
            dir.path(),
            &["consume", "--topic", "ig.ingest.entities", "--from", cursor],
        )));
        let ids = |v: &[Value]| {
            v.iter()
                .map(|l| l["event"]["event_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&rest), ids(&all[k + 1..]), "resume after line {k}");
    }
    // New events appended later are picked up from the last cursor, once.
    let last = all[39]["cursor"].as_str().unwrap().to_string();
    let extra = r#"{"tenant":"acme","kind":"EntityDeleted","subject":"rec-1","occurred_at":"2026-03-01T00:00:00Z","data":{"entity_type":"Person","version":2}}"#;
    ok(&conductor_with_input(
        dir.path(),
        &["produce", "--topic", "ig.ingest.entities"],
        Some(extra),
    ));
    let more = lines(&ok(&conductor(
        dir.path(),
        &["consume", "--topic", "ig.ingest.entities", "--from", &last],
    )));
    assert_eq!(more.len(), 1);
    assert_eq!(more[0]["event"]["kind"], "EntityDeleted");
}

#[test]
fn scopes_consume_to_tenant_and_refuses_foreign_or_altered_cursors() {
    let dir = setup("2");
    ok(&conductor(
        dir.path(),
        &["produce", "--topic", "ig.ingest.entities", SAMPLE],
    ));
    let acme = lines(&ok(&conductor(
        dir.path(),
        &[
            "consume",
            "--topic",
            "ig.ingest.entities",
            "--tenant",
            "acme",
        ],
    )));
    assert_eq!(acme.len(), 30);
    assert!(acme.iter().all(|l| l["event"]["tenant"] == "acme"));
    let cursor = acme[3]["cursor"].as_str().unwrap();

    let foreign = conductor(
        dir.path(),
        &[
            "consume",
            "--topic",
            "ig.ingest.entities",
            "--tenant",
            "globex",
            "--from",
            cursor,
        ],
    );
    assert!(!foreign.status.success());
    assert!(String::from_utf8_lossy(&foreign.stderr).contains("another tenant"));

    let mut altered: Vec<char> = cursor.chars().collect();
    let i = altered.len() / 2;
    altered[i] = if altered[i] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let out = conductor(
        dir.path(),
        &[
            "consume",
            "--topic",
            "ig.ingest.entities",
            "--tenant",
            "acme",
            "--from",
            &altered,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cursor"), "{err}");
    assert!(out.stdout.is_empty(), "nothing is printed for a bad cursor");
}

#[test]
fn reports_rejected_lines_by_number_and_appends_the_valid_ones() {
    let dir = setup("1");
    let input = [
        r#"{"tenant":"acme","kind":"EntityUpserted","subject":"p1","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":1,"attributes":{}}}"#,
        r#"{"tenant":"acme","kind":"EntityUpserted","subject":"p2","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":"one"}}"#,
        r#"{not json"#,
        r#"{"tenant":"acme","kind":"Mystery","subject":"p3","occurred_at":"2026-02-01T12:00:00Z","data":{}}"#,
        r#"{"tenant":"acme","kind":"EntityDeleted","subject":"p4","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":2}}"#,
    ]
    .join("\n");
    let out = conductor_with_input(
        dir.path(),
        &["produce", "--topic", "ig.ingest.entities"],
        Some(&input),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("data.version"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 3") && stderr.contains("invalid JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 4") && stderr.contains("Mystery"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("appended 2 events"));
    let all = lines(&ok(&conductor(
        dir.path(),
        &["consume", "--topic", "ig.ingest.entities"],
    )));
    assert_eq!(
        all.iter()
            .map(|l| l["event"]["subject"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["p1", "p4"]
    );
}

#[test]
fn produces_avro_container_file() {
    let dir = setup("1");
    let events: Vec<_> = std::fs::read_to_string(SAMPLE)
        .unwrap()
        .lines()
        .take(5)
        .map(|l| conductor_schemas::codec::decode_json(l.as_bytes(), None).unwrap())
        .collect();
    let path = dir.path().join("events.avro");
    let mut file = std::fs::File::create(&path).unwrap();
    conductor_schemas::codec::write_ocf(&events, &mut file).unwrap();
    drop(file);
    let out = ok(&conductor(
        dir.path(),
        &[
            "produce",
            "--topic",
            "ig.ingest.entities",
            "--format",
            "avro",
            path.to_str().unwrap(),
        ],
    ));
    assert!(out.contains("appended 5 events"), "{out}");
    let all = lines(&ok(&conductor(
        dir.path(),
        &["consume", "--topic", "ig.ingest.entities"],
    )));
    let got: Vec<String> = all
        .iter()
        .map(|l| l["event"]["event_id"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = events.iter().map(|e| e.meta.event_id.clone()).collect();
    assert_eq!(got, want);
}

#[test]
fn explains_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let out = conductor(dir.path(), &["topic", "create", "t", "--partitions", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--partitions must be at least 1"));

    let out = conductor(dir.path(), &["--log", "kafka", "topic", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--kafka-bootstrap") && err.contains("CONDUCTOR_KAFKA_BOOTSTRAP"),
        "{err}"
    );

    let out = conductor(dir.path(), &["consume", "--topic", "ig.ingest.entities"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no file log"));

    let out = conductor(
        dir.path(),
        &["--fsync", "sometimes", "topic", "create", "t"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("every_batch"));

    let dir = setup("1");
    let out = conductor(
        dir.path(),
        &[
            "produce",
            "--topic",
            "ig.ingest.entities",
            "--partition",
            "4",
            SAMPLE,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));
}

#[test]
fn checks_schema_compatibility() {
    let dir = tempfile::tempdir().unwrap();
    let old = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/avro/EntityDeleted.avsc"
    );
    let text = std::fs::read_to_string(old).unwrap();
    let mut schema: Value = serde_json::from_str(&text).unwrap();
    let fields = schema["fields"].as_array_mut().unwrap();
    let data = fields.iter_mut().find(|f| f["name"] == "data").unwrap();
    data["type"]["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "reason", "type": "string"}));
    let breaking = dir.path().join("breaking.avsc");
    std::fs::write(&breaking, schema.to_string()).unwrap();

    let out = conductor(
        dir.path(),
        &["schema", "check", old, breaking.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reason") && err.contains("backward"), "{err}");

    // With a default, the same addition is backward compatible.
    let data = schema["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "data")
        .unwrap();
    let last = data["type"]["fields"]
        .as_array_mut()
        .unwrap()
        .last_mut()
        .unwrap();
    last["default"] = Value::String(String::new());
    let compatible = dir.path().join("compatible.avsc");
    std::fs::write(&compatible, schema.to_string()).unwrap();
    ok(&conductor(
        dir.path(),
        &[
            "schema",
            "check",
            old,
            compatible.to_str().unwrap(),
            "--mode",
            "full",
        ],
    ));

    let listed = ok(&conductor(dir.path(), &["schema", "list"]));
    for name in [
        "EntityUpserted",
        "EntityDeleted",
        "RelationshipUpserted",
        "RunEvent",
        "UsageRecorded",
    ] {
        assert!(listed.contains(name), "{listed}");
    }
}
