//! The embedding writer's cost cap, as a user runs it: the shipped
//! `embeddings_enrich` and `embeddings` topologies with a tiny monthly cap
//! for one tenant (`[processor_config.cost] tenant_caps`), run by
//! `conductor run`. That tenant gets the 80 % alert once, then the stop
//! once, on `ig.quota.alerts`; its usage records on `ig.ingest.usage` add
//! up to what the stop says was used and never pass the cap; it has a
//! vector for exactly the texts it paid for; a new month embeds again; a
//! tenant without a cap is untouched. A second run changes nothing.

mod support;

use conductor_schemas::EventData;
use std::path::Path;
use support::*;

/// 1 per million tokens, so a cap of 0.0002 is 200 tokens (words, for
/// hashed-ngrams).
const COST: &str =
    "[processor_config.cost]\nprice_per_million_tokens = 1.0\ntenant_caps = { tiny = 0.0002 }\n";
const CAP_TOKENS: i64 = 200;

/// The shipped topology `name`, with the cost section above.
fn with_cost_cap(name: &str) -> String {
    let shipped =
        std::fs::read_to_string(repo().join("topologies").join(format!("{name}.toml"))).unwrap();
    let (before, _) = shipped
        .split_once("[processor_config.cost]")
        .expect("the shipped topology has a cost section");
    format!("{before}{COST}")
}

/// An entity with its own three-word text ("tiny02x7 surname7 town7"):
/// the same text under two tenants would be embedded once, charged to the
/// first that asked.
fn entity(tenant: &str, i: usize, month: &str) -> String {
    serde_json::json!({
        "tenant": tenant, "kind": "EntityUpserted", "subject": format!("{tenant}-{month}-{i}"),
        "occurred_at": format!("2026-{month}-10T12:00:00Z"),
        "data": {"entity_type": "Person", "version": 1, "attributes": {
            "given_name": format!("{tenant}{month}x{i}"), "surname": format!("surname{i}"),
            "suburb": format!("town{i}"),
        }}
    })
    .to_string()
}

/// (tenant, period, percent, action, used, limit) of every alert.
async fn read_alerts(dir: &Path) -> Vec<(String, String, i32, String, i64, i64)> {
    let mut out: Vec<_> = topic_events(dir, "ig.quota.alerts")
        .await
        .into_iter()
        .map(|e| match e.data {
            EventData::QuotaAlert(a) => (
                e.meta.tenant,
                a.period,
                a.threshold_percent,
                a.action,
                a.used,
                a.limit,
            ),
            other => panic!("only QuotaAlert on ig.quota.alerts: {other:?}"),
        })
        .collect();
    out.sort();
    out
}

/// (tenant, month of occurred_at, tokens) of every usage record.
async fn read_usage(dir: &Path) -> Vec<(String, String, i64)> {
    topic_events(dir, "ig.ingest.usage")
        .await
        .into_iter()
        .map(|e| match &e.data {
            EventData::UsageRecorded(u) => {
                assert_eq!(u.usage_kind, "embeddings");
                assert_eq!(u.unit.as_deref(), Some("tokens"));
                (
                    e.meta.tenant.clone(),
                    e.meta.occurred_at.format("%Y-%m").to_string(),
                    u.quantity,
                )
            }
            other => panic!("only UsageRecorded here: {other:?}"),
        })
        .collect()
}

fn vectors(dir: &Path, tenant: &str, month: &str) -> usize {
    let pattern = format!("{tenant}-{month}-%");
    sqlite_rows(
        &dir.join("projections.db"),
        "SELECT count(*) FROM entity_embeddings WHERE tenant_id = ? AND entity_id LIKE ? AND vector IS NOT NULL",
        &[tenant, &pattern],
    )[0]
    .parse()
    .unwrap()
}

fn run(dir: &Path, topologies: &Path) -> String {
    let out = conductor(dir)
        .arg("run")
        .arg("--topologies")
        .arg(topologies)
        .args(["--only", "embeddings_enrich", "--only", "embeddings"])
        .args(["--listen", "127.0.0.1:0", "--exit-when-idle"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "conductor run failed: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_cap_alerts_once_at_80_percent_then_stops_and_the_usage_adds_up() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let topologies = base.path().join("topologies");
    std::fs::create_dir_all(&topologies).unwrap();
    for name in ["embeddings_enrich", "embeddings"] {
        std::fs::write(topologies.join(format!("{name}.toml")), with_cost_cap(name)).unwrap();
    }
    let mut lines: Vec<String> = (0..100).map(|i| entity("tiny", i, "02")).collect();
    lines.extend((0..40).map(|i| entity("acme", i, "02")));
    lines.extend((0..10).map(|i| entity("tiny", i, "03")));
    let input = base.path().join("entities.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    produce_entities(&dir, &input);

    let log = run(&dir, &topologies);
    assert!(
        log.contains("spent its embeddings budget"),
        "the stop is logged: {log}"
    );

    let alerts = read_alerts(&dir).await;
    let usage = read_usage(&dir).await;
    let used = |tenant: &str, month: &str| -> (usize, i64) {
        let rows: Vec<i64> = usage
            .iter()
            .filter(|(t, m, _)| t == tenant && m == &format!("2026-{month}"))
            .map(|(_, _, n)| *n)
            .collect();
        (rows.len(), rows.iter().sum())
    };
    let (tiny_calls, tiny_tokens) = used("tiny", "02");
    assert!(
        tiny_tokens <= CAP_TOKENS && tiny_tokens * 100 >= CAP_TOKENS * 80,
        "tiny used {tiny_tokens} of {CAP_TOKENS} tokens"
    );
    assert!(
        tiny_calls < 100,
        "the cap stopped tiny before its 100 texts"
    );
    let alert = |percent: i32, action: &str| {
        (
            "tiny".to_string(),
            "2026-02".to_string(),
            percent,
            action.to_string(),
        )
    };
    let summary: Vec<_> = alerts
        .iter()
        .map(|(t, p, pc, a, _, _)| (t.clone(), p.clone(), *pc, a.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![alert(80, "alert"), alert(100, "stopped")],
        "each threshold once, for tiny in February only: {alerts:?}"
    );
    let stop = &alerts[1];
    assert_eq!(
        (stop.4, stop.5),
        (tiny_tokens, CAP_TOKENS),
        "the stop says what was used, and the usage records add up to it"
    );
    assert!(alerts[0].4 * 100 >= CAP_TOKENS * 80 && alerts[0].4 <= tiny_tokens);
    assert_eq!(
        vectors(&dir, "tiny", "02"),
        tiny_calls,
        "a vector for each text tiny paid for, none for the rest"
    );
    assert_eq!(used("tiny", "03").0, 10, "March starts afresh");
    assert_eq!(vectors(&dir, "tiny", "03"), 10);
    assert_eq!(used("acme", "02").0, 40, "acme has no cap");
    assert_eq!(vectors(&dir, "acme", "02"), 40);

    // A second run folds nothing new: no alert, no usage twice.
    run(&dir, &topologies);
    assert_eq!(read_alerts(&dir).await, alerts);
    assert_eq!(read_usage(&dir).await, usage);
}
