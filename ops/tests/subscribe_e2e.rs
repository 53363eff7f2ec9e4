//! Subscriptions end to end with a client nobody on the team wrote: `curl`
//! follows the entities changefeed over SSE from `conductor run`, stops,
//! and resumes with `Last-Event-ID` exactly after the last event it saw.

mod support;

use conductor_replay::subscribe::auth::{Claims, SCOPE_CHANGES_READ, issue, now_secs};
use std::process::Command;
use support::*;

const SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-0123";

fn token(tenant: &str) -> String {
    issue(
        SECRET.as_bytes(),
        &Claims {
            tenant: tenant.into(),
            scopes: vec![SCOPE_CHANGES_READ.into()],
            scope: None,
            exp: now_secs() + 300,
            tier: Some("gold".into()),
        },
    )
}

/// (id, event) of every SSE message event `curl` printed in `seconds`.
fn curl_sse(
    url: &str,
    headers: &[String],
    seconds: u32,
) -> (Vec<(String, serde_json::Value)>, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-N", "--max-time", &seconds.to_string()]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("curl is installed (ops/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut events = Vec::new();
    for block in text.split("\n\n") {
        let (mut id, mut data, mut kind) = (String::new(), String::new(), "message");
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.to_string();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data = v.to_string();
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = if v == "subscribed" {
                    "subscribed"
                } else {
                    "other"
                };
            }
        }
        if kind == "message" && !data.is_empty() {
            events.push((id, serde_json::from_str(&data).unwrap()));
        }
    }
    (events, text)
}

/// A data dir holding the demo's folded dataset (and its changefeed).
fn demo_data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(conductor(dir.path()).current_dir(repo()).args([
        "demo",
        "--people",
        "60",
        "--listen",
        "127.0.0.1:0",
    ]));
    dir
}

#[test]
fn curl_follows_the_changefeed_over_sse_and_resumes_with_last_event_id() {
    let dir = demo_data_dir();
    let (mut child, addr) = spawn_run(dir.path(), &[("CONDUCTOR_JWT_SECRET", SECRET)]);
    let url = format!("http://{addr}/v1/changes?topic=ig.changefeed.entities&from=earliest");

    let (events, raw) = curl_sse(
        &url,
        &[format!("Authorization: Bearer {}", token("acme"))],
        3,
    );
    assert!(events.len() > 20, "acme's changes arrive: {raw}");
    assert!(
        events.iter().all(|(_, e)| e["tenant"] == "acme"),
        "only acme's"
    );
    let ids: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["change_id"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "no change twice");

    // Resume after the 10th event: the stream continues with the 11th.
    let (resumed, raw) = curl_sse(
        &url,
        &[
            format!("Authorization: Bearer {}", token("acme")),
            format!("Last-Event-ID: {}", events[9].0),
        ],
        3,
    );
    let resumed_ids: Vec<&str> = resumed
        .iter()
        .map(|(_, e)| e["change_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        resumed_ids,
        ids[10..],
        "resumed exactly after the cursor: {raw}"
    );

    // Another tenant's cursor is refused; no token is refused.
    let (_, raw) = curl_sse(
        &url,
        &[
            format!("Authorization: Bearer {}", token("globex")),
            format!("Last-Event-ID: {}", events[9].0),
        ],
        3,
    );
    assert!(
        raw.contains("cursor_invalid") && raw.contains("another tenant"),
        "{raw}"
    );
    let (_, raw) = curl_sse(&url, &[], 3);
    assert!(
        raw.contains("unauthorized") && raw.contains("Bearer"),
        "{raw}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The graphql-ws client of `ops/e2e/graphql` (installed by ops/test.sh),
/// or `None` outside CI when it is not installed.
fn graphql_client() -> Option<std::path::PathBuf> {
    let dir = repo().join("ops/e2e/graphql");
    if dir.join("node_modules/graphql-ws").is_dir() {
        return Some(dir.join("subscribe.mjs"));
    }
    let message = "the graphql-ws client is not installed: run `npm ci --prefix ops/e2e/graphql` (ops/test.sh does)";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
    eprintln!("*** NOT RUN: {message} ***");
    None
}

fn node_subscribe(
    script: &std::path::Path,
    url: &str,
    token: &str,
    count: usize,
    cursor: Option<&str>,
) -> (bool, Vec<serde_json::Value>) {
    let mut cmd = Command::new("node");
    cmd.arg(script).args([url, token, &count.to_string()]);
    if let Some(c) = cursor {
        cmd.arg(c);
    }
    let out = cmd.output().expect("node is installed");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.success(), lines)
}

#[test]
fn the_graphql_ws_client_subscribes_and_resumes_from_its_cursor() {
    let Some(script) = graphql_client() else {
        return;
    };
    let dir = demo_data_dir();
    let (mut child, addr) = spawn_run(dir.path(), &[("CONDUCTOR_JWT_SECRET", SECRET)]);
    let url = format!("ws://{addr}/graphql");

    let (ok, first) = node_subscribe(&script, &url, &token("acme"), 12, None);
    assert!(ok, "{first:?}");
    assert_eq!(first.len(), 12);
    for c in &first {
        assert_eq!(c["event"]["tenant"], "acme", "{c}");
        assert_eq!(c["event"]["table"], "entities", "{c}");
        assert!(c["cursor"].as_str().is_some_and(|s| s.len() > 20));
    }
    let (ok, resumed) = node_subscribe(
        &script,
        &url,
        &token("acme"),
        6,
        first[5]["cursor"].as_str(),
    );
    assert!(ok, "{resumed:?}");
    let ids = |v: &[serde_json::Value]| -> Vec<String> {
        v.iter()
            .map(|c| c["event"]["change_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&resumed),
        ids(&first[6..]),
        "resumed exactly after the cursor"
    );

    // The server is killed and started again: the cursor still resumes
    // exactly after its change.
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let (restarted, addr) = spawn_run(dir.path(), &[("CONDUCTOR_JWT_SECRET", SECRET)]);
    child = restarted;
    let url = format!("ws://{addr}/graphql");
    let (ok, after_restart) = node_subscribe(
        &script,
        &url,
        &token("acme"),
        3,
        first[8]["cursor"].as_str(),
    );
    assert!(ok, "{after_restart:?}");
    assert_eq!(
        ids(&after_restart),
        ids(&first[9..]),
        "resumed exactly after the cursor on a restarted server"
    );

    // Tenant isolation: globex's token can't read acme's entityChanged.
    let (ok, refused) = node_subscribe(&script, &url, &token("globex"), 1, None);
    assert!(
        !ok && refused[0]["error"].to_string().contains("forbidden"),
        "{refused:?}"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn http_get(addr: &str, path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", &format!("http://{addr}{path}")])
        .output()
        .expect("curl is installed (ops/test.sh installs it)");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The value of the Prometheus sample whose line starts with `series`
/// (name plus labels as rendered), summed over matching lines.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `/metrics` until `ok` holds for it (up to `seconds`).
fn metrics_until(addr: &str, seconds: u64, ok: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let m = http_get(addr, "/metrics");
        if ok(&m) || std::time::Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

fn event_line(tenant: &str, subject: &str) -> String {
    format!(
        r#"{{"tenant":"{tenant}","kind":"EntityUpserted","subject":"{subject}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"Person","version":1,"attributes":{{"given_name":"Ada"}}}}}}"#
    )
}

#[test]
fn serve_follows_appends_of_another_process_and_reports_subscription_metrics() {
    let dir = demo_data_dir();
    // `serve` reads the file log without its writer lock...
    let (mut server, addr) = spawn_server(dir.path(), "serve", &[("CONDUCTOR_JWT_SECRET", SECRET)]);
    let url = format!("http://{addr}/v1/changes?topic=ig.ingest.entities");
    let follower = {
        let (url, auth) = (
            url.clone(),
            format!("Authorization: Bearer {}", token("acme")),
        );
        std::thread::spawn(move || curl_sse(&url, &[auth], 6))
    };
    let m = metrics_until(&addr, 5, |m| {
        sample(m, "conductor_subscriptions_active") >= 1.0
    });
    assert_eq!(sample(&m, "conductor_subscriptions_active"), 1.0, "{m}");

    // ...so another process can append while it serves.
    let mut produce = conductor(dir.path())
        .args(["produce", "--topic", "ig.ingest.entities", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = produce.stdin.take().unwrap();
        for (tenant, subject) in [("acme", "live-1"), ("globex", "live-2"), ("acme", "live-3")] {
            writeln!(stdin, "{}", event_line(tenant, subject)).unwrap();
        }
    }
    ok(produce.wait_with_output().unwrap());

    let (events, raw) = follower.join().unwrap();
    // Keyed by subject, so on different partitions: no order between them.
    let mut subjects: Vec<&str> = events
        .iter()
        .map(|(_, e)| e["subject"].as_str().unwrap_or_default())
        .collect();
    subjects.sort();
    assert_eq!(
        subjects,
        ["live-1", "live-3"],
        "acme's new events, live: {raw}"
    );

    let (_, refused) = curl_sse(&url, &[], 2);
    assert!(refused.contains("unauthorized"), "{refused}");
    let m = metrics_until(&addr, 25, |m| {
        sample(m, "conductor_subscriptions_active") == 0.0
    });
    assert_eq!(
        sample(&m, "conductor_subscriptions_active"),
        0.0,
        "the gauge falls when the client leaves: {m}"
    );
    assert_eq!(
        sample(&m, "conductor_subscription_events_total"),
        2.0,
        "{m}"
    );
    assert_eq!(
        sample(&m, "conductor_fanout_latency_seconds_count"),
        2.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "conductor_subscribe_rejections_total{reason=\"unauthorized\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        m.contains(
            "conductor_subscription_disconnects_total{transport=\"sse\",reason=\"client_gone\"} 1"
        ),
        "{m}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
}
