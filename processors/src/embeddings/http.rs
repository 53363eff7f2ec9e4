//! `http`: any OpenAI-compatible embeddings endpoint (`POST /v1/embeddings`
//! — OpenAI, Azure OpenAI, vLLM, Ollama, text-embeddings-inference,
//! LocalAI…). Called only from the enrichment stage, whose policy
//! (`[processor_config.http.calls]`) batches, bounds concurrency, paces,
//! and retries with backoff; a 429 or 503 answers `RateLimited` with the
//! `Retry-After` it gave, so every call of the stage waits it out.
//!
//! A 400, 413 or 422 refuses the request as a whole, which may be one bad
//! text (too long for the model: pgai's users see one such row stall
//! everything); the batch is halved until the refused texts stand alone,
//! and those are recorded as refused — never asked again — while the rest
//! are embedded.
//!
//! The API key is read from the environment variable the config names,
//! never from the config file, and never appears in a log, an error or the
//! model id. Errors never quote a text: a refused batch is reported by its
//! status and the service's error type/code, not its message (which may
//! echo the input).

use super::embedder::{Embedder, l2_normalise};
use conductor_engine::enrich::{CallError, CallPolicy};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[processor_config.http]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The endpoint, e.g. `https://api.openai.com/v1/embeddings`.
    pub url: String,
    /// The model the endpoint runs, e.g. `text-embedding-3-small`.
    pub model: String,
    /// The environment variable holding the API key (sent as a bearer
    /// token); absent: no `Authorization` header (a local server).
    pub api_key_env: Option<String>,
    /// Asks for vectors of this length (`dimensions`, for models that can
    /// shorten theirs); the answer must have it.
    pub dimensions: Option<usize>,
    /// Batching, concurrency, pacing and retries of the calls.
    pub calls: CallPolicy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            url: String::new(),
            model: String::new(),
            api_key_env: None,
            dimensions: None,
            calls: CallPolicy {
                max_batch: 64,
                max_concurrency: 4,
                requests_per_second: 10.0,
                ..CallPolicy::default()
            },
        }
    }
}

impl HttpConfig {
    /// Model id and version: the endpoint and the model (and a requested
    /// length), so that two services never share a recorded vector.
    pub fn model_id(&self) -> String {
        match self.dimensions {
            Some(d) => format!("{}@{}#d{d}", self.model, self.url),
            None => format!("{}@{}", self.model, self.url),
        }
    }

    /// Problems as (key under `http.`, message, hint).
    pub fn problems(&self) -> Vec<(String, String, Option<String>)> {
        let mut out = Vec::new();
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            out.push((
                "http.url".into(),
                format!("{:?} is not an http(s) URL", self.url),
                Some("e.g. url = \"https://api.openai.com/v1/embeddings\"".into()),
            ));
        }
        if self.model.trim().is_empty() {
            out.push((
                "http.model".into(),
                "no model named".into(),
                Some("e.g. model = \"text-embedding-3-small\"".into()),
            ));
        }
        if let Some(var) = &self.api_key_env
            && std::env::var_os(var).is_none()
        {
            out.push((
                "http.api_key_env".into(),
                format!("the environment variable {var} is not set"),
                Some(format!(
                    "export {var}=… before starting, or remove api_key_env for a server without keys"
                )),
            ));
        }
        if self.dimensions == Some(0) {
            out.push(("http.dimensions".into(), "0 dimensions".into(), None));
        }
        for p in self.calls.problems() {
            out.push(("http.calls".into(), p, None));
        }
        out
    }
}

/// Why one request failed.
enum Failure {
    /// Retry later (down, rate-limited, a 5xx, a bad answer).
    Call(CallError),
    /// The service refused what was sent (400, 413, 422): a text in it.
    Refused(String),
}

/// The embedder.
pub struct HttpEmbedder {
    config: HttpConfig,
    model: String,
    api_key: Option<String>,
    client: reqwest::Client,
    /// For calls made outside any Tokio runtime.
    own_runtime: std::sync::OnceLock<Option<tokio::runtime::Runtime>>,
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    index: usize,
}

impl HttpEmbedder {
    pub fn new(config: HttpConfig) -> Self {
        let api_key = config
            .api_key_env
            .as_ref()
            .and_then(|v| std::env::var(v).ok());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.calls.timeout_ms))
            .build()
            .unwrap_or_default();
        HttpEmbedder {
            model: config.model_id(),
            config,
            api_key,
            client,
            own_runtime: std::sync::OnceLock::new(),
        }
    }

    /// The endpoint, as `topology status` shows what the stage waits on.
    pub fn endpoint(&self) -> &str {
        &self.config.url
    }

    /// One call for `texts`, with what a failure means for the retry (a
    /// refused request is `Unavailable` here; [`call_each`](Self::call_each)
    /// finds the refused texts).
    pub async fn call(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, CallError> {
        self.request(texts).await.map_err(|f| match f {
            Failure::Call(e) => e,
            Failure::Refused(why) => CallError::Unavailable(why),
        })
    }

    /// A vector or a refusal per text: a refused request is halved until
    /// each refused text stands alone.
    pub async fn call_each(
        &self,
        texts: &[&str],
    ) -> Result<Vec<Result<Vec<f32>, String>>, CallError> {
        let mut out: Vec<Option<Result<Vec<f32>, String>>> = vec![None; texts.len()];
        let mut todo = vec![(0, texts.len())];
        while let Some((lo, hi)) = todo.pop() {
            if lo == hi {
                continue;
            }
            match self.request(&texts[lo..hi]).await {
                Ok(vectors) => {
                    for (i, v) in vectors.into_iter().enumerate() {
                        out[lo + i] = Some(Ok(v));
                    }
                }
                Err(Failure::Call(e)) => return Err(e),
                Err(Failure::Refused(why)) if hi - lo == 1 => out[lo] = Some(Err(why)),
                Err(Failure::Refused(_)) => {
                    let mid = lo + (hi - lo) / 2;
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    async fn request(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Failure> {
        let mut body = serde_json::json!({
            "model": self.config.model,
            "input": texts,
            "encoding_format": "float",
        });
        if let Some(d) = self.config.dimensions {
            body["dimensions"] = d.into();
        }
        let mut request = self.client.post(&self.config.url).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| {
            Failure::Call(CallError::Unavailable(format!(
                "{}: {}",
                self.config.url,
                if e.is_timeout() {
                    "no answer in time".to_string()
                } else if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    "the request failed".to_string()
                }
            )))
        })?;
        let status = response.status();
        if status.as_u16() == 429 || status.as_u16() == 503 {
            return Err(Failure::Call(CallError::RateLimited {
                retry_after: retry_after(response.headers()),
            }));
        }
        if !status.is_success() {
            let detail = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .map(|v| {
                    let e = &v["error"];
                    [e["type"].as_str(), e["code"].as_str()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .filter(|d| !d.is_empty())
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let why = format!("{} answered {status}{detail}", self.config.url);
            return Err(if matches!(status.as_u16(), 400 | 413 | 422) {
                Failure::Refused(why)
            } else {
                Failure::Call(CallError::Unavailable(why))
            });
        }
        let answer: Answer = response.json().await.map_err(|e| {
            Failure::Call(CallError::Unavailable(format!(
                "{} answered what is not an embeddings response: {e}",
                self.config.url
            )))
        })?;
        self.vectors(answer, texts.len()).map_err(Failure::Call)
    }

    /// The answer's vectors in input order, checked and normalised.
    fn vectors(&self, answer: Answer, asked: usize) -> Result<Vec<Vec<f32>>, CallError> {
        let bad = |why: String| CallError::Unavailable(format!("{}: {why}", self.config.url));
        if answer.data.len() != asked {
            return Err(bad(format!(
                "{} vectors for {asked} inputs",
                answer.data.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; asked];
        let mut dims = self.config.dimensions;
        for item in answer.data {
            let want = *dims.get_or_insert(item.embedding.len());
            if item.embedding.len() != want || want == 0 {
                return Err(bad(format!(
                    "a vector of {} dimensions where {want} were expected",
                    item.embedding.len()
                )));
            }
            if item.embedding.iter().any(|x| !x.is_finite()) {
                return Err(bad("a vector holds a non-finite number".into()));
            }
            match out.get_mut(item.index) {
                Some(slot @ None) => {
                    let mut v = item.embedding;
                    l2_normalise(&mut v);
                    *slot = Some(v);
                }
                _ => return Err(bad(format!("index {} is out of place", item.index))),
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

impl HttpEmbedder {
    /// Runs `call` from a blocking thread (the stage, `conductor search`):
    /// on the runtime this thread belongs to, or, outside any, on the
    /// embedder's own small one (kept, so its connections are reused).
    fn blocking<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, CallError>>,
    ) -> Result<T, CallError> {
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle.block_on(call),
            Err(_) => self
                .own_runtime
                .get_or_init(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()
                })
                .as_ref()
                .ok_or_else(|| CallError::Unavailable("no runtime for the call".into()))?
                .block_on(call),
        }
    }
}

impl Drop for HttpEmbedder {
    /// A runtime may not be dropped where blocking is not allowed (an async
    /// task dropping the stage): let it go in the background.
    fn drop(&mut self) {
        if let Some(Some(runtime)) = self.own_runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(secs) = value.trim().parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
}

impl Embedder for HttpEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    /// Known once the service answered (or `dimensions` says); 0 before.
    fn dims(&self) -> usize {
        self.config.dimensions.unwrap_or(0)
    }

    /// An estimate made before the call (the cap decides whether to call):
    /// a token per 4 characters, OpenAI's rule of thumb for English.
    fn count_tokens(&self, text: &str) -> u64 {
        text.chars().count().div_ceil(4) as u64
    }

    fn embed_call(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, CallError> {
        self.blocking(self.call(texts))
    }

    fn embed_each(&self, texts: &[&str]) -> Result<Vec<Result<Vec<f32>, String>>, CallError> {
        self.blocking(self.call_each(texts))
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        self.embed_call(texts).map_err(|e| e.to_string())
    }
}
