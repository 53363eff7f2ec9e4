//! The embedding writer with `embedder = "http"`, as a user runs it: the
//! shipped `embeddings_enrich` and `embeddings` topologies pointed at an
//! OpenAI-compatible `/v1/embeddings` (served by this test over real HTTP:
//! no hosted service is reachable here), the API key in an environment
//! variable, `conductor run` to the end. Every entity gets the service's
//! vector under the endpoint's model id; each distinct text is sent once
//! even though the service rate-limits one call (`Retry-After`); the key is
//! sent as a bearer token and appears in no log; a text the service
//! refuses (400) is found by halving its batch and recorded as refused
//! while the rest are embedded; `topology validate` names
//! a missing key variable.

mod support;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use support::*;

const KEY: &str = "sk-conductor-test-7f3a9c";

#[derive(Default)]
struct Served {
    requests: usize,
    authorised: usize,
    texts: BTreeMap<String, usize>,
}

async fn embeddings(
    State(s): State<Arc<Mutex<Served>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut s = s.lock().unwrap();
    s.requests += 1;
    if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {KEY}"))
    {
        s.authorised += 1;
    }
    if body.contains("toolong") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": {"type": "invalid_request_error", "code": "context_length_exceeded"}})),
        )
            .into_response();
    }
    if s.requests == 2 {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut data = Vec::new();
    for (i, text) in body["input"].as_array().unwrap().iter().enumerate() {
        let text = text.as_str().unwrap();
        *s.texts.entry(text.to_string()).or_default() += 1;
        // A vector from the text's bytes: any deterministic function will do.
        let mut v = vec![0.0f32; 16];
        for (j, b) in text.bytes().enumerate() {
            v[(j + b as usize) % 16] += 1.0;
        }
        data.push(serde_json::json!({"object": "embedding", "index": i, "embedding": v}));
    }
    axum::Json(serde_json::json!({"object": "list", "data": data, "model": body["model"]}))
        .into_response()
}

/// The shipped topology `name` with `config` as its `[processor_config]`.
fn with_config(name: &str, config: &str) -> String {
    let shipped =
        std::fs::read_to_string(repo().join("topologies").join(format!("{name}.toml"))).unwrap();
    let (before, _) = shipped.split_once("\n[processor_config]\n").unwrap();
    format!("{before}\n{config}")
}

fn write_topologies(dir: &Path, config: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for name in ["embeddings_enrich", "embeddings"] {
        std::fs::write(dir.join(format!("{name}.toml")), with_config(name, config)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conductor_run_embeds_through_an_openai_compatible_endpoint() {
    let served = Arc::new(Mutex::new(Served::default()));
    let app = axum::Router::new()
        .route("/v1/embeddings", axum::routing::post(embeddings))
        .with_state(served.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let base = tempfile::tempdir().unwrap();
    let (dir, topologies) = (base.path().join("data"), base.path().join("topologies"));
    let config = format!(
        "[processor_config]\nembedder = \"http\"\ntemplate = \"{{given_name}} {{surname}}\"\n\
         [processor_config.http]\nurl = \"{url}\"\nmodel = \"text-embedding-3-small\"\n\
         api_key_env = \"CONDUCTOR_TEST_EMBEDDINGS_KEY\"\n\
         [processor_config.http.calls]\nmax_batch = 8\n"
    );
    write_topologies(&topologies, &config);
    // 40 entities, 20 distinct texts (two entities share each), and one
    // whose text the service refuses.
    let lines: Vec<String> = (0..41)
        .map(|i| {
            serde_json::json!({
                "tenant": "acme", "kind": "EntityUpserted", "subject": format!("p{i}"),
                "occurred_at": "2026-02-01T12:00:00Z",
                "data": {"entity_type": "Person", "version": 1,
                         "attributes": {"given_name": if i == 40 { "toolong".to_string() } else { format!("name{}", i % 20) }, "surname": "lovelace"}}
            })
            .to_string()
        })
        .collect();
    let input = base.path().join("entities.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    produce_entities(&dir, &input);

    // Without the key variable the topology does not validate.
    let out = conductor(&dir)
        .args(["topology", "validate"])
        .arg(topologies.join("embeddings_enrich.toml"))
        .env_remove("CONDUCTOR_TEST_EMBEDDINGS_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "validated without the key");
    assert!(
        err.contains("http.api_key_env")
            && err.contains("CONDUCTOR_TEST_EMBEDDINGS_KEY is not set"),
        "{err}"
    );

    let out = conductor(&dir)
        .arg("run")
        .arg("--topologies")
        .arg(&topologies)
        .args(["--only", "embeddings_enrich", "--only", "embeddings"])
        .args(["--listen", "127.0.0.1:0", "--exit-when-idle"])
        .env("CONDUCTOR_TEST_EMBEDDINGS_KEY", KEY)
        .env("CONDUCTOR_LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "conductor run failed: {log}");
    assert!(!log.contains(KEY), "the API key is in the log");

    let served = served.lock().unwrap();
    assert_eq!(served.texts.len(), 20, "{:?}", served.texts);
    assert!(
        served.texts.values().all(|n| *n == 1),
        "each distinct text sent once: {:?}",
        served.texts
    );
    assert!(
        served.requests >= 4,
        "batches of 8 and one rate-limited call"
    );
    assert_eq!(
        served.authorised, served.requests,
        "every call carried the key"
    );
    let rows = sqlite_rows(
        &dir.join("projections.db"),
        "SELECT model, dims, count(*) FROM entity_embeddings WHERE vector IS NOT NULL GROUP BY model, dims",
        &[],
    );
    assert_eq!(
        rows,
        vec![format!("text-embedding-3-small@{url}|16|40")],
        "every entity but the refused one has its vector"
    );
}
