//! The enrichment stage against a real HTTP service that fails, times out and
//! answers 429 with `Retry-After`: the calls are retried and paced, the
//! stage is SIGKILLed mid-run again and again, the fold joins the recorded
//! results, and a rebuild of both topologies calls the service not once.
//! Every distinct input is recorded exactly once on the results topic; the
//! service counts what it was asked (per content hash) and how.
//!
//! The stage runs in a child process — this test binary again, with
//! `--ignored --exact enrichment_stage_child` — so that it can be killed;
//! the service runs in the test process so its counts survive the kills.

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use conductor_connectors::SqliteStore;
use conductor_engine::enrich::{
    CallError, CallPolicy, EnrichInput, EnrichStage, EnrichedJoin, Enrichment, InputOutcome,
    Recorded, results_topic,
};
use conductor_engine::log::Log;
use conductor_engine::log::file::{FileLog, FileLogOptions};
use conductor_engine::processor::{Effect, Processor, ProcessorError, ProcessorState};
use conductor_engine::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use conductor_engine::runtime::worker::ensure_topic;
use conductor_engine::runtime::{Topology, TopologyConfig};
use conductor_engine::store::ProjectionStore;
use conductor_engine::testing::pipe_json;
use conductor_replay::rebuild::{RebuildRequest, ReplayFrom, rebuild};
use conductor_replay::{Generation, GenerationHome};
use conductor_schemas::{AttributeValue, Event, EventData};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TOPIC: &str = "ig.ingest.entities";
const URL_ENV: &str = "CONDUCTOR_SHOUT_URL";
const DIR_ENV: &str = "CONDUCTOR_SHOUT_DIR";

// ---------------------------------------------------------------------------
// The service: upper-cases texts; fails, times out and rate-limits on a
// fixed schedule of request numbers; counts everything.

#[derive(Default)]
struct Counts {
    requests: u64,
    /// (arrived, client pid, status) of every request, in arrival order;
    /// status 0: held past the client's timeout.
    log: Vec<(Instant, u32, u16)>,
    /// Per content hash: answers given (200 responses that carried it).
    answered: HashMap<String, u64>,
    /// Per content hash: the texts it was asked with (must be one).
    texts: HashMap<String, String>,
}

type Service = Arc<Mutex<Counts>>;

async fn shout(State(service): State<Service>, headers: HeaderMap, body: String) -> Response {
    let n = {
        let mut c = service.lock().unwrap();
        c.requests += 1;
        c.requests
    };
    let pid: u32 = headers
        .get("x-client-pid")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let status =
        |s: u16, service: &Service| service.lock().unwrap().log.push((Instant::now(), pid, s));
    if headers.get("idempotency-key").is_none() {
        status(400, &service);
        return (StatusCode::BAD_REQUEST, "no Idempotency-Key").into_response();
    }
    match n % 10 {
        3 => {
            status(500, &service);
            return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
        }
        7 => {
            status(429, &service);
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response();
        }
        9 if n % 20 == 9 => {
            // Longer than the client's timeout: it gives up and retries;
            // this attempt never answers anything.
            status(0, &service);
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            return (StatusCode::GATEWAY_TIMEOUT, "too late").into_response();
        }
        _ => status(200, &service),
    }
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut results = Vec::new();
    let mut c = service.lock().unwrap();
    for input in body["inputs"].as_array().unwrap() {
        let (id, text) = (
            input["id"].as_str().unwrap(),
            input["text"].as_str().unwrap(),
        );
        let previous = c.texts.insert(id.to_string(), text.to_string());
        assert!(previous.is_none_or(|p| p == text), "one hash, one text");
        *c.answered.entry(id.to_string()).or_default() += 1;
        results.push(if text.contains("refuse") {
            serde_json::json!({"id": id, "error": "too quiet to shout"})
        } else {
            serde_json::json!({"id": id, "shout": text.to_uppercase()})
        });
    }
    axum::Json(serde_json::json!({ "results": results })).into_response()
}

async fn start_service() -> (Service, String) {
    let service: Service = Arc::default();
    let app = axum::Router::new()
        .route("/v1/shout", axum::routing::post(shout))
        .with_state(service.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1/shout", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (service, url)
}

// ---------------------------------------------------------------------------
// The enrichment: an EntityUpserted's `text` attribute, shouted by the service.

struct Shout {
    url: String,
    client: reqwest::Client,
}

fn text_of(event: &Event) -> Option<(&str, i64)> {
    let EventData::EntityUpserted(e) = &event.data else {
        return None;
    };
    match e.attributes.get("text") {
        Some(AttributeValue::String(t)) => Some((t.as_str(), e.version)),
        _ => None,
    }
}

/// blake3 of what the answer depends on: the model, the tenant, the text.
fn content_hash(tenant: &str, text: &str) -> String {
    blake3::hash(format!("shout-v1\n{tenant}\n{text}").as_bytes())
        .to_hex()
        .to_string()
}

#[async_trait]
impl Enrichment for Shout {
    fn name(&self) -> &str {
        "shout"
    }

    fn input(&self, event: &Event) -> Result<Option<EnrichInput>, ProcessorError> {
        Ok(text_of(event).map(|(text, _)| EnrichInput {
            content_hash: content_hash(&event.meta.tenant, text),
            request: serde_json::json!({ "text": text }),
        }))
    }

    fn dependency(&self) -> String {
        format!("shout {}", self.url)
    }

    fn policy(&self) -> CallPolicy {
        CallPolicy {
            max_batch: 8,
            max_concurrency: 2,
            requests_per_second: 10.0,
            max_attempts: 4,
            backoff_first_ms: 50,
            backoff_cap_ms: 400,
            timeout_ms: 500,
        }
    }

    async fn call(&self, inputs: &[EnrichInput]) -> Result<Vec<InputOutcome>, CallError> {
        let ids: Vec<&str> = inputs.iter().map(|i| i.content_hash.as_str()).collect();
        let body = serde_json::json!({
            "inputs": inputs.iter().map(|i| serde_json::json!({"id": i.content_hash, "text": i.request["text"]})).collect::<Vec<_>>()
        });
        let response = self
            .client
            .post(&self.url)
            .header(
                "idempotency-key",
                blake3::hash(ids.join(",").as_bytes()).to_hex().as_str(),
            )
            .header("x-client-pid", std::process::id().to_string())
            .json(&body)
            .send()
            .await
            .map_err(|e| CallError::Unavailable(format!("request failed: {e}")))?;
        let status = response.status();
        if status == 429 || status == 503 {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(CallError::RateLimited { retry_after });
        }
        if !status.is_success() {
            return Err(CallError::Unavailable(format!(
                "the service answered {status}"
            )));
        }
        let answer: serde_json::Value = response
            .json()
            .await
            .map_err(|e| CallError::Unavailable(format!("unreadable answer: {e}")))?;
        let by_id: HashMap<&str, &serde_json::Value> = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["id"].as_str()?, r)))
            .collect();
        ids.iter()
            .map(|id| match by_id.get(id) {
                Some(r) if r["shout"].is_string() => Ok(InputOutcome::Result(r["shout"].clone())),
                Some(r) => Ok(InputOutcome::Refused(
                    r["error"].as_str().unwrap_or("refused").into(),
                )),
                None => Err(CallError::Unavailable(format!("no answer for input {id}"))),
            })
            .collect()
    }
}

fn stage(url: &str) -> EnrichStage<Shout> {
    EnrichStage::new(
        "shout_enrich",
        Shout {
            url: url.to_string(),
            client: reqwest::Client::new(),
        },
    )
}

fn stage_topology() -> TopologyConfig {
    conductor_engine::runtime::parse_topology(
        &format!(
            "name = \"shout_enrich\"\nprocessor = \"shout_enrich\"\n[sources]\ntopics = [\"{TOPIC}\"]\n[batch]\nmax_events = 40\nlinger_ms = 0\n[state]\nsnapshot_every_batches = 3\n"
        ),
        &["shout_enrich"],
    )
    .unwrap()
}

// ---------------------------------------------------------------------------
// The fold: entities joined with their recorded shouts.

fn col(name: &'static str, ty: ColumnType) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        nullable: true,
    }
}

fn shouted_table() -> TableSpec {
    TableSpec {
        text_index: None,
        name: "shouted",
        key: vec![
            col("tenant_id", ColumnType::Text),
            col("subject", ColumnType::Text),
        ],
        columns: vec![
            col("content_hash", ColumnType::Text),
            col("shout", ColumnType::Text),
            col("refused", ColumnType::Text),
        ],
        indexes: vec![],
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Waiting {
    tenant: String,
    subject: String,
    version: i64,
}

#[derive(Default)]
struct ShoutFold {
    join: JoinState,
}

#[derive(Default)]
struct JoinState(EnrichedJoin<String, Waiting>);

impl ProcessorState for JoinState {
    fn format_version(&self) -> u32 {
        1
    }
    fn snapshot(&self) -> Vec<u8> {
        self.0.snapshot()
    }
    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.0.restore(bytes)
    }
    fn clear(&mut self) {
        self.0.clear()
    }
}

fn row(w: &Waiting, hash: &str, recorded: &Recorded<String>) -> Effect {
    let (shout, refused) = match recorded {
        Recorded::Result(s) => (SqlValue::Text(s.clone()), SqlValue::Null),
        Recorded::Refused(why) => (SqlValue::Null, SqlValue::Text(why.clone())),
    };
    Effect::Upsert(RowUpsert {
        table: "shouted",
        key: vec![w.tenant.clone(), w.subject.clone()],
        version: w.version,
        values: vec![SqlValue::Text(hash.to_string()), shout, refused],
        deleted: false,
    })
}

impl Processor for ShoutFold {
    fn name(&self) -> &str {
        "shout_fold"
    }
    fn tables(&self) -> Vec<TableSpec> {
        vec![shouted_table()]
    }
    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        if let EventData::EnrichmentRecorded(r) = &event.data {
            let (recorded, waiting) = self.join.0.record(r)?;
            return Ok(waiting
                .iter()
                .map(|w| row(w, &r.content_hash, &recorded))
                .collect());
        }
        let Some((text, version)) = text_of(event) else {
            return Ok(Vec::new());
        };
        let hash = content_hash(&event.meta.tenant, text);
        let w = Waiting {
            tenant: event.meta.tenant.clone(),
            subject: event.meta.subject.clone(),
            version,
        };
        match self.join.0.result(&hash) {
            Some(recorded) => Ok(vec![row(&w, &hash, recorded)]),
            None => {
                self.join.0.wait_for(&hash, w);
                Ok(Vec::new())
            }
        }
    }
    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        Some(&mut self.join)
    }
}

fn fold_topology() -> TopologyConfig {
    conductor_engine::runtime::parse_topology(
        &format!(
            "name = \"shout_fold\"\nprocessor = \"shout_fold\"\n[sources]\ntopics = [\"{TOPIC}\", \"{}\"]\n[batch]\nmax_events = 64\nlinger_ms = 0\n",
            results_topic("shout")
        ),
        &["shout_fold"],
    )
    .unwrap()
}

// ---------------------------------------------------------------------------
// The workload: entities whose text changes, stays (other attributes
// change) or is shared with other entities; a few the service refuses.

fn workload() -> Vec<String> {
    let mut out = Vec::new();
    let mut x: u64 = 0x5eed_f00d;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut versions = vec![0i64; 150];
    let mut texts = vec![0u64; 150];
    for i in 0..900 {
        let e = next(150) as usize;
        versions[e] += 1;
        if versions[e] == 1 || next(3) == 0 {
            texts[e] = next(120); // shared vocabulary: the same text under several entities
        }
        let text = if texts[e].is_multiple_of(40) {
            format!("please refuse phrase {}", texts[e])
        } else {
            format!("quiet phrase number {}", texts[e])
        };
        out.push(format!(
            r#"{{"tenant":"acme","kind":"EntityUpserted","subject":"p{e}","occurred_at":"2026-02-01T12:00:00Z","data":{{"entity_type":"Person","version":{},"attributes":{{"text":"{text}","i":{i}}}}}}}"#,
            versions[e]
        ));
    }
    out
}

/// Steps a topology's worker and relay until both are idle, then drains.
async fn run_to_end(
    config: TopologyConfig,
    processor: Box<dyn Processor>,
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
    mut after_batch: impl FnMut(),
) {
    let (mut worker, mut relay) = Topology::prepare(config, processor, log, store)
        .await
        .unwrap();
    loop {
        let worked = worker.step().await.unwrap().records;
        let relayed = relay.step().await.unwrap();
        if worked == 0 && relayed == 0 {
            break;
        }
        after_batch();
    }
    worker.drain().await.unwrap();
    while relay.step().await.unwrap() > 0 {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the crash test's child process; run by the enrichment stage test"]
async fn enrichment_stage_child() {
    let dir = std::path::PathBuf::from(std::env::var(DIR_ENV).unwrap());
    let url = std::env::var(URL_ENV).unwrap();
    let log: Arc<dyn Log> =
        Arc::new(FileLog::open(dir.join("log"), FileLogOptions::default()).unwrap());
    let store: Arc<dyn ProjectionStore> =
        Arc::new(SqliteStore::open(&dir.join("stage.db")).await.unwrap());
    let mut batches = 0;
    run_to_end(stage_topology(), Box::new(stage(&url)), log, store, || {
        batches += 1;
        println!("BATCH {batches}");
    })
    .await;
    println!("DONE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrichment_is_called_once_per_distinct_input_through_faults_kills_and_rebuilds() {
    let (service, url) = start_service().await;
    let dir = tempfile::tempdir().unwrap();
    let events = workload();
    {
        let log = FileLog::open(dir.path().join("log"), FileLogOptions::default()).unwrap();
        ensure_topic(&log, TOPIC, 3).await.unwrap();
        for e in &events {
            pipe_json(&log, TOPIC, e).await;
        }
    }
    // Distinct inputs and what the fold must end with, from the events.
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for e in &events {
        let event = conductor_schemas::codec::decode_json(e.as_bytes(), None).unwrap();
        let (text, version) = text_of(&event).unwrap();
        let entry = latest
            .entry(event.meta.subject.clone())
            .or_insert((0, String::new()));
        if version > entry.0 {
            *entry = (version, text.to_string());
        }
    }
    let distinct: std::collections::BTreeSet<String> = events
        .iter()
        .map(|e| {
            let event = conductor_schemas::codec::decode_json(e.as_bytes(), None).unwrap();
            content_hash("acme", text_of(&event).unwrap().0)
        })
        .collect();

    // The stage, killed mid-run a few times, then run to the end.
    let exe = std::env::current_exe().unwrap();
    let dir_path = dir.path().to_path_buf();
    let child_url = url.clone();
    let kills = tokio::task::spawn_blocking(move || {
        let run_child = |kill_after: Option<usize>| {
            let mut child = Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "enrichment_stage_child",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(DIR_ENV, &dir_path)
                .env(URL_ENV, &child_url)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut done = false;
            for line in BufReader::new(child.stdout.take().unwrap())
                .lines()
                .map_while(Result::ok)
            {
                done |= line == "DONE";
                let batch = line
                    .strip_prefix("BATCH ")
                    .and_then(|n| n.parse::<usize>().ok());
                if let (Some(n), Some(k)) = (batch, kill_after)
                    && n >= k
                {
                    child.kill().unwrap(); // SIGKILL: the next batch's calls or commit are under way
                    break;
                }
            }
            let _ = child.wait();
            done
        };
        let schedule = [2, 3, 1, 4];
        for k in schedule {
            assert!(!run_child(Some(k)), "the child finished before its kill");
        }
        assert!(run_child(None), "the last child ran to the end");
        schedule.len()
    })
    .await
    .unwrap();

    let log: Arc<dyn Log> =
        Arc::new(FileLog::open(dir.path().join("log"), FileLogOptions::default()).unwrap());
    // Each distinct input is recorded exactly once, with no text in it.
    let results = results_topic("shout");
    let mut recorded: BTreeMap<String, usize> = BTreeMap::new();
    for p in log.describe_topic(&results).await.unwrap().partitions {
        for r in log
            .read(&results, p.partition, 0, usize::MAX)
            .await
            .unwrap()
        {
            let text = String::from_utf8_lossy(&r.record.value).to_string();
            assert!(
                !text.contains("phrase"),
                "a recorded result carries its input: {text}"
            );
            let event = conductor_engine::envelope::decode_event(&r.record).unwrap();
            let EventData::EnrichmentRecorded(d) = event.data else {
                panic!()
            };
            *recorded.entry(d.content_hash).or_default() += 1;
        }
    }
    assert_eq!(
        recorded
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        distinct,
        "every distinct input recorded"
    );
    assert!(
        recorded.values().all(|n| *n == 1),
        "an input recorded twice: {:?}",
        recorded.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );

    // What the service saw.
    let (requests, answered_repeats, statuses, log_of_requests) = {
        let c = service.lock().unwrap();
        assert_eq!(
            c.answered.len(),
            distinct.len(),
            "the service was asked about every distinct input"
        );
        let repeats: u64 = c.answered.values().map(|n| n - 1).sum();
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        for (_, _, s) in &c.log {
            *statuses.entry(*s).or_default() += 1;
        }
        (c.requests, repeats, statuses, c.log.clone())
    };
    eprintln!(
        "service: {requests} requests for {} distinct inputs, statuses {statuses:?} (0 = held past the timeout), {answered_repeats} inputs answered again after {kills} kills",
        distinct.len()
    );
    for (status, what) in [(500, "failures"), (429, "rate limits"), (0, "timeouts")] {
        assert!(
            statuses.get(&status).is_some_and(|n| *n > 0),
            "the run met no {what}: {statuses:?}"
        );
    }
    for (i, (at, pid, status)) in log_of_requests.iter().enumerate() {
        let later = log_of_requests[i + 1..]
            .iter()
            .filter(|(t, p, _)| p == pid && *t > *at);
        if *status == 429 {
            // `Retry-After: 1`: this client starts nothing for a second
            // (a request it had already sent may land within a few ms).
            let early: Vec<_> = later
                .filter(|(t, _, _)| {
                    *t - *at > Duration::from_millis(50) && *t - *at < Duration::from_millis(900)
                })
                .collect();
            assert!(
                early.is_empty(),
                "request {i} got 429 with Retry-After: 1, yet {} requests followed within a second",
                early.len()
            );
        } else {
            // The token bucket: at most 10 calls a second (+1 of burst) per client.
            let window = later
                .filter(|(t, _, _)| *t - *at < Duration::from_secs(1))
                .count()
                + 1;
            assert!(
                window <= 12,
                "{window} requests within a second from one client: not paced"
            );
        }
    }
    // Repeats only from kills between an answer and its commit: at most one
    // batch of calls (max_batch × max_concurrency inputs) per kill.
    assert!(
        answered_repeats <= (kills * 8 * 2) as u64,
        "{answered_repeats} inputs answered again"
    );

    // The fold joins events with the recorded results.
    let fold_store: Arc<dyn ProjectionStore> = Arc::new(
        SqliteStore::open(&dir.path().join("fold.db"))
            .await
            .unwrap(),
    );
    run_to_end(
        fold_topology(),
        Box::<ShoutFold>::default(),
        log.clone(),
        fold_store.clone(),
        || {},
    )
    .await;
    let rows = fold_store.dump_table(&shouted_table()).await.unwrap();
    assert_eq!(rows.len(), latest.len(), "one row per entity");
    for row in &rows {
        let (version, text) = &latest[row["subject"].as_str().unwrap()];
        assert_eq!(row["version"], *version);
        if text.contains("refuse") {
            assert_eq!(row["refused"], "too quiet to shout", "{row}");
        } else {
            assert_eq!(row["shout"], text.to_uppercase(), "{row}");
        }
    }

    // Rebuilding either topology reads what was recorded: no call at all.
    let before = service.lock().unwrap().requests;
    let request = RebuildRequest {
        from: ReplayFrom::Earliest,
        to_ms: None,
    };
    let home = GenerationHome::sqlite(&dir.path().join("fold.db"))
        .await
        .unwrap();
    rebuild(
        log.clone(),
        &home,
        &fold_topology(),
        Box::<ShoutFold>::default(),
        &request,
        |_, _| {},
    )
    .await
    .unwrap();
    let shadow = home.open("shout_fold", Generation::Shadow).await.unwrap();
    assert_eq!(
        shadow.dump_table(&shouted_table()).await.unwrap(),
        rows,
        "the rebuilt fold equals live"
    );
    let stage_home = GenerationHome::sqlite(&dir.path().join("stage.db"))
        .await
        .unwrap();
    let report = rebuild(
        log.clone(),
        &stage_home,
        &stage_topology(),
        Box::new(stage(&url)),
        &request,
        |_, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.folded.records, events.len() as u64);
    assert_eq!(
        service.lock().unwrap().requests,
        before,
        "a rebuild called the service"
    );
}
