//! Operating topologies as a user does: demo, validate, status, pause/resume,
//! DLQ list/inspect/redrive, and the HTTP admin endpoints of `conductor run`.

mod support;

use std::time::Duration;
use support::*;

#[test]
fn demo_folds_the_sample_dataset_and_says_what_to_try_next() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_ok(conductor(dir.path()).current_dir(repo()).args([
        "demo",
        "--people",
        "300",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(out.contains("entities") && out.contains("rows"), "{out}");
    assert!(
        out.contains("4 dead-lettered records") || out.contains("      4 dead-lettered"),
        "{out}"
    );
    assert!(out.contains("what to try next"), "{out}");
    // The vector index holds the demo's vectors and answers a search.
    assert!(out.contains("HNSW index(es); recall@10"), "{out}");
    assert!(out.contains(" search \""), "{out}");
    // The embedder's usage is recorded: some calls, for the demo's tenants.
    let usage = out
        .lines()
        .find(|l| l.trim_start().starts_with("usage "))
        .unwrap_or_else(|| panic!("no usage line: {out}"));
    let calls: usize = usage
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(calls > 100 && usage.contains("tokens"), "{usage}");
    // Conductor's own lineage: the command the demo suggests shows the
    // topics and the topology that built the entities table.
    assert!(
        out.contains("entities table ← topology entities (run COMPLETE) ← ig.ingest.entities, ig.ingest.relationships"),
        "{out}"
    );
    let suggested = out
        .lines()
        .find(|l| l.contains("what built the table:"))
        .unwrap_or_else(|| panic!("no lineage suggestion: {out}"));
    let node = suggested
        .split_whitespace()
        .skip_while(|w| *w != "lineage")
        .nth(1)
        .unwrap()
        .trim_matches('\'');
    assert!(
        node.starts_with("dataset:sqlite://") && node.ends_with(":entities"),
        "{node}"
    );
    let upstream =
        run_ok(conductor(dir.path()).args(["lineage", node, "--direction", "upstream", "--json"]));
    let upstream: serde_json::Value = serde_json::from_str(&upstream).unwrap();
    let ids: Vec<&str> = upstream["graph"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"job:conductor:entities"), "{ids:?}");
    assert!(
        ids.iter().any(|id| id.ends_with("/log:ig.ingest.entities")),
        "{ids:?}"
    );
    // Running it again does not produce the dataset twice.
    let again = run_ok(conductor(dir.path()).current_dir(repo()).args([
        "demo",
        "--people",
        "300",
        "--listen",
        "127.0.0.1:0",
    ]));
    assert!(again.contains("dataset already loaded"), "{again}");
    let dlq = run_ok(conductor(dir.path()).args(["dlq", "list", "entities"]));
    assert!(dlq.starts_with("4 dead-lettered record(s)"), "{dlq}");
}

/// `topology validate` on a file holding `text`: asserts it fails with exit
/// code 1 and every `needle` in its message.
fn assert_validate_rejects(text: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, text).unwrap();
    let out = conductor(dir.path())
        .args(["topology", "validate"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in needles {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
}

#[test]
fn validates_topology_files_reporting_every_problem() {
    let ok = run_ok(
        conductor(std::path::Path::new("/nonexistent"))
            .arg("topology")
            .arg("validate")
            .arg(repo().join("topologies/entities.toml")),
    );
    assert!(ok.contains("ok (topology `entities`"), "{ok}");
    assert_validate_rejects(
        "name = \"Bad\"\nprocesor = \"entities\"\n[sources]\ntopics = []\n[batch]\nlinger_ms = 99999999\n",
        &[
            "procesor",
            "did you mean `processor`",
            "processor: is required",
        ],
    );
}

/// The shipped topologies are built in: `demo` then `topology status` work
/// from a directory that has no `topologies/` folder. The demo is quiet (no
/// dependency's WARN line: not sqlx's slow-statement or slow-acquire
/// notices, not librdkafka's), and every "what to try next" line works
/// exactly as printed, run by a shell in that directory.
#[test]
fn demo_and_status_work_outside_the_repository() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let (stdout, log) = run_ok_with_log(
        conductor(dir.path())
            .current_dir(elsewhere.path())
            .env_remove("CONDUCTOR_LOG_LEVEL")
            .args(["demo", "--people", "50", "--listen", "127.0.0.1:0"]),
    );
    assert_no_dependency_warnings(&stdout);
    assert_no_dependency_warnings(&log);
    let status: serde_json::Value = serde_json::from_str(&run_ok(
        conductor(dir.path())
            .current_dir(elsewhere.path())
            .args(["topology", "status", "--json"]),
    ))
    .unwrap();
    let names: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "entities",
            "embeddings_enrich",
            "embeddings",
            "vector_index",
            "er_by_tenant",
            "er_candidates",
            "lineage"
        ],
        "the shipped topologies: {status}"
    );
    assert!(
        status.as_array().unwrap().iter().all(|t| t["lag"] == 0),
        "the demo folded everything: {status}"
    );
    let listed = run_ok(
        conductor(dir.path())
            .current_dir(elsewhere.path())
            .args(["topology", "list"]),
    );
    assert!(listed.contains("entities"), "{listed}");

    // "what to try next": `  <what>:  <command>` lines.
    let commands: Vec<(&str, &str)> = stdout
        .split_once("what to try next:")
        .unwrap_or_else(|| panic!("no try-next section: {stdout}"))
        .1
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(what, command)| (what, command.trim()))
        .collect();
    let whats: Vec<&str> = commands.iter().map(|(w, _)| *w).collect();
    for expected in [
        "query the projection",
        "consume the changefeed",
        "search (hybrid)",
        "why a pair",
        "what built the table",
        "produce more and fold",
        "start over",
    ] {
        assert!(whats.contains(&expected), "no {expected:?} in {whats:?}");
    }
    // Nothing but the program the demo ran as (and sh) is needed.
    for (what, command) in &commands {
        assert!(command.starts_with(exe()), "{what}: {command}");
        let run = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(elsewhere.path())
            .env("CONDUCTOR_CURSOR_KEY", "test-cursor-key-0123456789")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{what}: `{command}` failed: {}\n{}",
            String::from_utf8_lossy(&run.stderr),
            String::from_utf8_lossy(&run.stdout)
        );
        let printed = String::from_utf8_lossy(&run.stdout);
        match *what {
            "query the projection" | "consume the changefeed" => {
                assert!(
                    printed.contains("acme") || printed.contains("globex"),
                    "{what}: {printed}"
                )
            }
            "produce more and fold" => {
                assert!(printed.contains("appended 40 events"), "{what}: {printed}");
                // The sample events (40 Febrl records, `rec-…` subjects) were folded by
                // the suggested `run`.
                let folded = run_ok(conductor(dir.path()).current_dir(elsewhere.path()).args([
                    "sql",
                    "SELECT count(*) AS n FROM entities WHERE entity_id LIKE 'rec-%'",
                    "--format",
                    "csv",
                ]));
                assert_eq!(folded.lines().nth(1), Some("40"), "{folded}");
            }
            _ => {}
        }
    }
}

#[test]
fn validate_rejects_a_bad_processor_config_naming_the_key() {
    // A bad batch key and a processor_config key that `entities` doesn't take:
    // both are reported in one run.
    assert_validate_rejects(
        "name = \"entities_b\"\nprocessor = \"entities\"\n[sources]\ntopics = [\"ig.ingest.entities\"]\n[batch]\nlinger_mss = 5\n[processor_config]\ntables = \"entities_v2\"\ntable = \"Entities V2\"\n",
        &[
            "batch.linger_mss",
            "processor_config.tables: unknown field `tables`",
            "entities takes: graph, graph_node_label, relationships_table, table",
        ],
    );
}

#[test]
fn operates_a_running_topology_over_http_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(conductor(dir.path()).current_dir(repo()).args([
        "demo",
        "--people",
        "100",
        "--listen",
        "127.0.0.1:0",
    ]));

    // Pause is stored, so it holds across processes and restarts.
    run_ok(
        conductor(dir.path())
            .current_dir(repo())
            .args(["topology", "pause", "entities"]),
    );
    let status: serde_json::Value = serde_json::from_str(&run_ok(
        conductor(dir.path())
            .current_dir(repo())
            .args(["topology", "status", "--json"]),
    ))
    .unwrap();
    assert_eq!(status[0]["paused"], true);
    assert_eq!(status[0]["lag"], 0);
    let again = conductor(dir.path())
        .current_dir(repo())
        .args(["topology", "pause", "entities"])
        .output()
        .unwrap();
    assert!(
        !again.status.success()
            && String::from_utf8_lossy(&again.stderr).contains("already paused")
    );
    run_ok(
        conductor(dir.path())
            .current_dir(repo())
            .args(["topology", "resume", "entities"]),
    );

    // Redrive a dead letter back to its source topic (the run dead-letters it again).
    let inspect: serde_json::Value = serde_json::from_str(&run_ok(
        conductor(dir.path()).args(["dlq", "inspect", "entities", "0"]),
    ))
    .unwrap();
    assert!(
        inspect["reason"].as_str().unwrap().contains("data.version"),
        "{inspect}"
    );
    let redrive =
        run_ok(conductor(dir.path()).args(["dlq", "redrive", "entities", "--offset", "0"]));
    assert!(
        redrive.contains("redrove dlq offset 0 to ig.ingest.entities"),
        "{redrive}"
    );

    let (mut child, addr) = spawn_run(dir.path(), &[]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let (code, ready) = http_get(&addr, "/readyz");
    assert_eq!(code, 200, "{ready}");
    let (_, topologies) = http_get(&addr, "/v1/topologies");
    let topologies: serde_json::Value = serde_json::from_str(&topologies).unwrap();
    assert_eq!(topologies[0]["name"], "entities");
    assert_eq!(topologies[0]["state"], "running");
    assert_eq!(
        topologies[0]["dlq_events"], 1,
        "the redriven record was dead-lettered again"
    );
    let (_, metrics) = http_get(&addr, "/metrics");
    for name in [
        "conductor_dlq_events_total",
        "conductor_batch_size_events",
        "conductor_processing_latency_seconds",
        "conductor_consumer_lag_records",
        // The share of the topologies' datasets registered in the catalog.
        "conductor_catalog_coverage_ratio",
    ] {
        assert!(metrics.contains(name), "missing {name} in /metrics");
    }
    assert_eq!(http_get(&addr, "/v1/topologies/nope").0, 404);
    unsafe_sigterm(child.id());
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM stops run gracefully");
    let dlq = run_ok(conductor(dir.path()).args(["dlq", "list", "entities"]));
    assert!(dlq.starts_with("5 dead-lettered record(s)"), "{dlq}");
}

fn unsafe_sigterm(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}
