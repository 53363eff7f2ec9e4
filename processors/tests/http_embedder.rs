//! The `http` embedder against an OpenAI-compatible `POST /v1/embeddings`
//! served over real HTTP in this process (no hosted embedding service is
//! reachable from a test machine): the request is OpenAI's (model, input,
//! encoding_format, dimensions, bearer key from the environment); answers
//! come back in input order whatever order `data` lists them in; a 429's
//! `Retry-After` is honoured by the embedding writer's stage, which then
//! embeds each distinct text exactly once; a bad key or a broken answer is
//! an `Unavailable` error that quotes no text; config problems name the key
//! at fault.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use conductor_engine::enrich::{CallError, EnrichStage};
use conductor_engine::processor::{Effect, Processor};
use conductor_processors::embeddings::EmbedEnrichment;
use conductor_processors::embeddings::config::{EmbedderKind, EmbeddingsConfig};
use conductor_processors::embeddings::embedder::{Embedder, l2_normalise};
use conductor_processors::embeddings::hashed_ngrams::HashedNgrams;
use conductor_processors::embeddings::http::{HttpConfig, HttpEmbedder};
use conductor_schemas::codec::decode_json;
use conductor_schemas::{Event, EventData};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY_ENV: &str = "CONDUCTOR_TEST_HTTP_EMBEDDER_KEY";
const KEY: &str = "sk-test-0123456789";

#[derive(Default)]
struct Served {
    requests: usize,
    /// Requests numbered here answer 429 with `Retry-After: 1`.
    rate_limit: Vec<usize>,
    /// Per text: how many 200 answers carried it.
    embedded: BTreeMap<String, usize>,
    /// The last request's body.
    last: serde_json::Value,
}

type Service = Arc<Mutex<Served>>;

/// OpenAI's embeddings endpoint, computing hashed n-gram vectors (64
/// dimensions, not normalised: the client normalises), listing `data` in
/// reverse order.
async fn embeddings(State(s): State<Service>, headers: HeaderMap, body: String) -> Response {
    let mut served = s.lock().unwrap();
    served.requests += 1;
    let n = served.requests;
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {KEY}"))
    {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})),
        )
            .into_response();
    }
    if body.contains("toolong") {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({"error": {"message": "This model's maximum context length is 8192 tokens (toolong)", "type": "invalid_request_error", "code": "context_length_exceeded"}})),
        )
            .into_response();
    }
    if served.rate_limit.contains(&n) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            "slow down",
        )
            .into_response();
    }
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    served.last = body.clone();
    let texts: Vec<String> = body["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let model = HashedNgrams::new(64);
    let mut data = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        *served.embedded.entry(text.clone()).or_default() += 1;
        let v: Vec<f32> = model.embed(&[text]).unwrap()[0]
            .iter()
            .map(|x| x * 3.0)
            .collect();
        data.push(serde_json::json!({"object": "embedding", "index": i, "embedding": v}));
    }
    data.reverse();
    axum::Json(serde_json::json!({
        "object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }))
    .into_response()
}

async fn serve(rate_limit: Vec<usize>) -> (Service, String) {
    let service: Service = Arc::new(Mutex::new(Served {
        rate_limit,
        ..Default::default()
    }));
    let app = axum::Router::new()
        .route("/v1/embeddings", axum::routing::post(embeddings))
        .with_state(service.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/embeddings", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (service, url)
}

fn http_config(url: &str) -> HttpConfig {
    // SAFETY (edition 2024 `set_var`): every test sets the same value.
    unsafe { std::env::set_var(KEY_ENV, KEY) };
    HttpConfig {
        url: url.into(),
        model: "text-embedding-3-small".into(),
        api_key_env: Some(KEY_ENV.into()),
        ..Default::default()
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    l2_normalise(&mut v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_in_input_order_normalised_with_the_key_from_the_environment() {
    let (service, url) = serve(vec![]).await;
    let embedder = HttpEmbedder::new(HttpConfig {
        dimensions: Some(64),
        ..http_config(&url)
    });
    let texts = ["ada lovelace", "charles babbage", "ada lovelace london"];
    let got = embedder.call(&texts).await.unwrap();
    let local = HashedNgrams::new(64);
    for (t, v) in texts.iter().zip(&got) {
        let want = unit(local.embed(&[t]).unwrap().remove(0));
        assert!(
            v.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{t}"
        );
    }
    let last = service.lock().unwrap().last.clone();
    assert_eq!(
        last,
        serde_json::json!({"model": "text-embedding-3-small", "input": texts, "encoding_format": "float", "dimensions": 64})
    );
    assert_eq!(
        embedder.model(),
        format!("text-embedding-3-small@{url}#d64")
    );
    assert_eq!(
        embedder.count_tokens("ada lovelace"),
        3,
        "12 characters, 4 a token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_says_when_to_retry_and_a_bad_key_or_answer_is_unavailable_without_the_text() {
    let (_, url) = serve(vec![1]).await;
    let embedder = HttpEmbedder::new(http_config(&url));
    assert_eq!(
        embedder.call(&["zqxjvorlak"]).await.unwrap_err(),
        CallError::RateLimited {
            retry_after: Some(Duration::from_secs(1))
        }
    );
    let wrong_key = HttpEmbedder::new(HttpConfig {
        api_key_env: None,
        ..http_config(&url)
    });
    let CallError::Unavailable(why) = wrong_key.call(&["zqxjvorlak"]).await.unwrap_err() else {
        panic!("a refused key is not a rate limit")
    };
    assert!(
        why.contains("401") && why.contains("invalid_api_key"),
        "{why}"
    );
    assert!(!why.contains("zqxjvorlak") && !why.contains(KEY), "{why}");
    let wrong_dims = HttpEmbedder::new(HttpConfig {
        dimensions: Some(32),
        ..http_config(&url)
    });
    let CallError::Unavailable(why) = wrong_dims.call(&["zqxjvorlak"]).await.unwrap_err() else {
        panic!()
    };
    assert!(why.contains("64 dimensions where 32"), "{why}");
    let nobody = HttpEmbedder::new(http_config("http://127.0.0.1:9/v1/embeddings"));
    assert!(matches!(
        nobody.call(&["x"]).await,
        Err(CallError::Unavailable(why)) if why.contains("cannot connect")
    ));
}

fn upsert(i: usize, surname: &str) -> Event {
    decode_json(
        serde_json::json!({
            "tenant": "acme", "kind": "EntityUpserted", "subject": format!("p{i}"),
            "occurred_at": "2026-02-01T12:00:00Z",
            "data": {"entity_type": "Person", "version": 1,
                     "attributes": {"given_name": format!("name{}", i % 7), "surname": surname}}
        })
        .to_string()
        .as_bytes(),
        None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_waits_out_retry_after_and_embeds_each_distinct_text_once() {
    let (service, url) = serve(vec![2]).await;
    let mut http = http_config(&url);
    http.calls.max_batch = 4;
    http.calls.max_concurrency = 1;
    let config = EmbeddingsConfig {
        embedder: EmbedderKind::Http,
        http: Some(http),
        ..Default::default()
    };
    assert!(config.problems().is_empty(), "{:?}", config.problems());
    let mut stage = EnrichStage::new("embeddings_enrich", EmbedEnrichment::new(config));
    // 30 events, 14 distinct texts (7 names × 2 surnames).
    let events: Vec<Event> = (0..30)
        .map(|i| upsert(i, if i % 2 == 0 { "lovelace" } else { "babbage" }))
        .collect();
    let refs: Vec<&Event> = events.iter().collect();
    let started = Instant::now();
    stage.prepare(&refs).unwrap().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "the second request's Retry-After: 1 was waited out ({:?})",
        started.elapsed()
    );
    let mut records = 0;
    for e in &events {
        for effect in stage.process(e).unwrap() {
            let Effect::Emit(emit) = effect else { panic!() };
            if let EventData::EnrichmentRecorded(r) = &emit.event.data {
                assert!(r.result.is_some(), "{r:?}");
                records += 1;
            }
        }
    }
    let served = service.lock().unwrap();
    assert_eq!(records, 14, "one record per distinct text");
    assert_eq!(served.embedded.len(), 14);
    assert!(
        served.embedded.values().all(|n| *n == 1),
        "each text embedded once: {:?}",
        served.embedded
    );
    assert_eq!(
        served.requests, 5,
        "4 batches of ≤4 and the rate-limited one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_text_is_found_by_halving_and_the_others_are_embedded() {
    let (service, url) = serve(vec![]).await;
    let embedder = HttpEmbedder::new(http_config(&url));
    let texts = [
        "ada",
        "toolong ada",
        "charles",
        "babbage",
        "toolong charles",
    ];
    let got = embedder.call_each(&texts).await.unwrap();
    let refused: Vec<usize> = (0..texts.len()).filter(|&i| got[i].is_err()).collect();
    assert_eq!(refused, [1, 4]);
    let why = got[1].as_ref().unwrap_err();
    assert!(
        why.contains("400") && why.contains("context_length_exceeded") && !why.contains("toolong"),
        "{why}"
    );
    let embedded: Vec<String> = service.lock().unwrap().embedded.keys().cloned().collect();
    assert_eq!(
        embedded,
        ["ada", "babbage", "charles"],
        "each good text once"
    );
}

#[test]
fn config_problems_name_the_key_at_fault() {
    let keys =
        |c: EmbeddingsConfig| -> Vec<String> { c.problems().into_iter().map(|p| p.key).collect() };
    assert_eq!(
        keys(EmbeddingsConfig {
            embedder: EmbedderKind::Http,
            ..Default::default()
        }),
        ["http"]
    );
    let problems = EmbeddingsConfig {
        embedder: EmbedderKind::Http,
        http: Some(HttpConfig {
            url: "api.example.com".into(),
            api_key_env: Some("CONDUCTOR_TEST_NO_SUCH_KEY_VAR".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
    .problems();
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["http.url", "http.model", "http.api_key_env"]);
    assert!(
        problems[2]
            .message
            .contains("CONDUCTOR_TEST_NO_SUCH_KEY_VAR is not set")
    );
}
