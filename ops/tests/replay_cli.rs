//! `conductor replay` as an operator uses it on the embedded defaults:
//! rebuild → verify → swap → rollback after `conductor demo`, a
//! point-in-time rebuild, and the errors of a wrong order or bad input.

mod support;

use support::*;

fn replay(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    conductor(dir)
        .current_dir(repo())
        .arg("replay")
        .args(args)
        .args(["--topology", "entities"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn rebuild_verify_swap_and_rollback_after_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        conductor(dir.path())
            .current_dir(repo())
            .args(["demo", "--people", "300"]),
    );

    let out = replay(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no shadow"), "{}", text(&out));
    assert!(
        text(&out).contains("conductor replay rebuild"),
        "{}",
        text(&out)
    );

    let out = replay(dir.path(), &["rebuild"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("rebuilt entities into the shadow"),
        "{}",
        text(&out)
    );
    assert!(dir.path().join("projections.shadow-entities.db").exists());

    let out = replay(dir.path(), &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(text(&out).matches("EQUAL").count(), 2, "{}", text(&out));

    let out = replay(dir.path(), &["swap"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("the shadow is live"), "{}", text(&out));
    assert!(!dir.path().join("projections.shadow-entities.db").exists());
    assert!(dir.path().join("projections.previous-entities.db").exists());

    let out = replay(dir.path(), &["rollback"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the previous generation is live"),
        "{}",
        text(&out)
    );

    // Point in time: before any event, so the shadow is empty.
    let out = replay(dir.path(), &["rebuild", "--to", "2000-01-01T00:00:00Z"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(" 0 records"), "{}", text(&out));
    let out = replay(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("point-in-time"), "{}", text(&out));
    let out = replay(dir.path(), &["swap"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("--rewind"), "{}", text(&out));
    let status = run_ok(
        conductor(dir.path())
            .current_dir(repo())
            .args(["topology", "status", "entities"]),
    );
    assert!(
        status.contains("active"),
        "a refused swap leaves the topology running: {status}"
    );
}

#[test]
fn bad_replay_arguments_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let out = replay(dir.path(), &["rebuild", "--from", "yesterday-ish"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--from"), "{}", text(&out));
    assert!(text(&out).contains("hint:"), "{}", text(&out));
    let out = replay(dir.path(), &["rebuild", "--to", "noon"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("RFC 3339"), "{}", text(&out));
}

#[test]
fn sql_over_a_topic_and_a_projection_after_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        conductor(dir.path())
            .current_dir(repo())
            .args(["demo", "--people", "200"]),
    );
    let sql = |args: &[&str]| {
        conductor(dir.path())
            .arg("sql")
            .args(args)
            .output()
            .unwrap()
    };
    // The number of live entities, from the topic and from the projection.
    let out = sql(&[
        "SELECT count(*) AS n FROM entities WHERE NOT deleted",
        "--format",
        "csv",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let live: i64 = text(&out).lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(live > 200, "{}", text(&out));
    let out = sql(&[
        r#"SELECT kind, count(*) AS n FROM "ig.ingest.entities" WHERE decode_error IS NULL GROUP BY kind ORDER BY kind"#,
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "EntityUpserted" && r["n"].as_i64().unwrap() > 200),
        "{rows:?}"
    );

    let parquet = dir.path().join("entities.parquet");
    let out = sql(&["SELECT * FROM entities", "--format", "parquet", "--out"]
        .into_iter()
        .chain([parquet.to_str().unwrap()])
        .collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out));
    let bytes = std::fs::read(&parquet).unwrap();
    assert!(
        bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"),
        "a Parquet file"
    );

    let out = sql(&["SELECT 1", "--format", "parquet"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--out"), "{}", text(&out));
    let out = sql(&["SELECT * FROM ingest_entities"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("\"ig.ingest.entities\""),
        "{}",
        text(&out)
    );
}
