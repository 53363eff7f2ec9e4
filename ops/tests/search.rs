//! `conductor search` as a user runs it: produce the demo generator's
//! people, `conductor run --exit-when-idle` (stage → fold → vector index),
//! then search. The index holds one vector per live entity (the
//! `entity_embeddings` rows), an entity's own text finds it first (vector,
//! hybrid) and among the keyword matches, a vector stage without time
//! falls back to the keyword answer and says so, a rerun with nothing new
//! leaves the index as it was, and bad arguments get a clear error.

mod support;

use conductor_connectors::SqliteStore;
use conductor_engine::store::ProjectionStore;
use conductor_processors::embeddings::embeddings_table;
use std::collections::BTreeMap;
use std::path::Path;
use support::*;

fn run_to_end(dir: &Path) {
    run_topologies_to_end(
        dir,
        &[
            "entities",
            "embeddings_enrich",
            "embeddings",
            "vector_index",
        ],
    );
}

fn stats(dir: &Path) -> serde_json::Value {
    let out = run_ok(conductor(dir).args(["search", "--stats", "--json"]));
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_finds_an_entity_by_its_text_in_an_index_of_every_live_vector() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let input = base.path().join("people.jsonl");
    let lines = demo_entity_workload(env_or("SEARCH_RECORDS", 3000));
    std::fs::write(&input, &lines).unwrap();
    produce_entities(&dir, &input);
    run_ok(conductor(&dir).args([
        "topic",
        "create",
        "ig.ingest.relationships",
        "--partitions",
        "3",
    ]));
    run_to_end(&dir);

    // One vector per live row of entity_embeddings, per tenant.
    let store = SqliteStore::open(&dir.join("projections.db"))
        .await
        .unwrap();
    let rows = store.dump_table(&embeddings_table()).await.unwrap();
    store.close().await;
    let mut live: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r["deleted"] != true) {
        *live
            .entry(r["tenant_id"].as_str().unwrap().into())
            .or_default() += 1;
    }
    let before = stats(&dir);
    let indexed: BTreeMap<String, usize> = before
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["tenant"].as_str().unwrap().to_string(),
                s["vectors"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert!(!live.is_empty());
    assert_eq!(
        indexed, live,
        "the index holds every live vector, per tenant"
    );

    // An entity's own text (its latest version, rendered as the embedding
    // template renders it) finds it first.
    let latest = latest_texts(&lines);
    let mut asked = 0;
    for ((tenant, id), (_, text)) in latest
        .iter()
        .filter(|(_, (_, t))| t.is_some())
        .step_by(97)
        .take(8)
    {
        let text = text.as_deref().unwrap();
        let out = run_ok(
            conductor(&dir).args(["search", text, "--tenant", tenant, "--k", "5", "--json"]),
        );
        let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
        let hits = answer["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 5);
        let top = hits[0]["score"].as_f64().unwrap();
        assert!(top > 0.999, "its own text scores {top}");
        assert!(
            hits.iter()
                .any(|h| h["entity_id"] == id.as_str() && h["score"].as_f64().unwrap() > 0.999),
            "{id} is among the exact matches of its own text: {hits:?}"
        );
        asked += 1;
    }
    assert!(asked >= 5);

    // Keyword and hybrid: an entity's own text finds it first (hybrid), and
    // among the keyword matches; every keyword hit carries a keyword score.
    let ((tenant, id), (_, text)) = latest
        .iter()
        .filter(|(_, (_, t))| t.as_ref().is_some_and(|t| t.split(' ').count() >= 6))
        .nth(11)
        .unwrap();
    let text = text.as_deref().unwrap();
    let ask = |mode: &str, extra: &[&str]| -> serde_json::Value {
        let out = run_ok(
            conductor(&dir)
                .args([
                    "search", text, "--tenant", tenant, "--k", "10", "--mode", mode, "--json",
                ])
                .args(extra),
        );
        serde_json::from_str(&out).unwrap()
    };
    let keyword = ask("keyword", &[]);
    let hits = keyword["hits"].as_array().unwrap();
    assert!(
        !hits.is_empty()
            && hits
                .iter()
                .all(|h| h["keyword_score"].as_f64().unwrap() > 0.0)
    );
    assert!(
        hits.iter().any(|h| h["entity_id"] == id.as_str()),
        "{id} among its keyword matches: {keyword}"
    );
    let hybrid = ask("hybrid", &[]);
    assert_eq!(hybrid["alpha"], 0.7);
    assert!(hybrid["fallback"].is_null(), "{hybrid}");
    let top = &hybrid["hits"][0];
    assert!(
        top["vector_score"].as_f64().unwrap() > 0.999 && top["keyword_score"].as_f64().is_some(),
        "hybrid puts an exact match first: {hybrid}"
    );
    // No time for the vector stage: the keyword answer, saying so.
    let fallback = ask("hybrid", &["--budget-ms", "0"]);
    assert!(
        fallback["fallback"]
            .as_str()
            .unwrap()
            .contains("0 ms budget"),
        "{fallback}"
    );
    assert_eq!(
        fallback["hits"], keyword["hits"],
        "the fallback is the keyword answer"
    );

    // A run with nothing new changes nothing (the index is restored, not rebuilt twice).
    run_to_end(&dir);
    assert_eq!(stats(&dir), before);

    // Bad arguments say what is wrong.
    let out = conductor(&dir)
        .args(["search", "smith", "--tenant", "nobody", "--mode", "vector"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("tenant nobody has no vector index"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = conductor(&dir)
        .args(["search", "--tenant", "acme"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("search needs a TEXT"));
    let out = conductor(&dir)
        .args(["search", "smith", "--tenant", "acme", "--alpha", "1.5"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--alpha 1.5 is outside 0 to 1"));
    let out = conductor(&dir)
        .args(["search", "smith", "--tenant", "acme", "--k", "0"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--k 0 is outside 1 to 1000"));
}

const SECRET: &str = "search-e2e-secret-search-e2e-secret-0123";

/// `curl` GET of `/v1/search` with query parameters: (status, JSON body).
fn curl_search(
    addr: &str,
    token: Option<&str>,
    params: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-sS", "--get", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    for (k, v) in params {
        cmd.args(["--data-urlencode", &format!("{k}={v}")]);
    }
    let out = cmd
        .arg(format!("http://{addr}/v1/search"))
        .output()
        .expect("curl is installed (ops/test.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

/// `GET /v1/search` on `conductor serve` with `curl`: the token's tenant
/// only, pages by cursor without repeating an answer, refuses a missing
/// token, a token without `entity.search` and another tenant's cursor, and
/// finds an entity produced and folded after the server started (the
/// server follows `ig.embeddings`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_over_http_pages_by_cursor_for_the_tokens_tenant() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("data");
    let input = base.path().join("people.jsonl");
    std::fs::write(&input, demo_entity_workload(1500)).unwrap();
    produce_entities(&dir, &input);
    run_ok(conductor(&dir).args([
        "topic",
        "create",
        "ig.ingest.relationships",
        "--partitions",
        "3",
    ]));
    run_to_end(&dir);
    let (_server, addr) = spawn_server(&dir, "serve", &[("CONDUCTOR_JWT_SECRET", SECRET)]);
    let acme = bearer_token(SECRET, "acme", &["entity.search"]);

    let (status, first) = curl_search(
        &addr,
        Some(&acme),
        &[("q", "smith"), ("k", "3"), ("mode", "hybrid")],
    );
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["tenant"], "acme");
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["entity_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&first).len(), 3, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let (status, second) = curl_search(&addr, Some(&acme), &[("cursor", &cursor)]);
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["hits"][0]["rank"], 4,
        "page 2 continues the ranks: {second}"
    );
    assert!(
        ids(&second).iter().all(|id| !ids(&first).contains(id)),
        "no answer twice"
    );

    let (status, body) = curl_search(&addr, None, &[("q", "smith")]);
    assert_eq!(status, 401, "{body}");
    let (status, body) = curl_search(
        &addr,
        Some(&bearer_token(SECRET, "acme", &["changes:read"])),
        &[("q", "smith")],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("entity.search"));
    let (status, body) = curl_search(
        &addr,
        Some(&bearer_token(SECRET, "globex", &["entity.search"])),
        &[("cursor", &cursor)],
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = curl_search(&addr, Some(&acme), &[("q", "smith"), ("k", "0")]);
    assert_eq!(status, 400, "{body}");

    // An entity folded after the server started is found by its text.
    let late = base.path().join("late.jsonl");
    std::fs::write(
        &late,
        r#"{"tenant":"acme","kind":"EntityUpserted","subject":"late-1","occurred_at":"2026-02-01T12:00:00Z","data":{"entity_type":"Person","version":1,"attributes":{"given_name":"zebulon","surname":"quixotic","suburb":"xanadu"}}}"#.to_string() + "\n",
    )
    .unwrap();
    run_ok(
        conductor(&dir)
            .args(["produce", "--topic", "ig.ingest.entities"])
            .arg(&late),
    );
    run_to_end(&dir);
    let mut found = serde_json::Value::Null;
    for _ in 0..40 {
        let (status, body) = curl_search(
            &addr,
            Some(&acme),
            &[
                ("q", "zebulon quixotic xanadu"),
                ("k", "1"),
                ("mode", "vector"),
            ],
        );
        assert_eq!(status, 200, "{body}");
        if body["hits"][0]["entity_id"] == "late-1" {
            found = body;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert!(
        found["hits"][0]["score"].as_f64().unwrap() > 0.999,
        "the server's index follows ig.embeddings"
    );
}
