//! `GET /v1/search` on the `run` / `serve` server: the search of
//! `conductor search` (keyword, vector, hybrid — see `commands::search`)
//! for the tenant of a bearer token with the scope `entity.search`.
//!
//! ```text
//! GET /v1/search?q=jane+smith&k=10&mode=hybrid&alpha=0.7
//! GET /v1/search?cursor=<next_cursor of the previous page>
//! ```
//!
//! The server keeps its own copy of the vector index: restored from the
//! vector_index topology's stored state when the server starts, then kept
//! current by a follower that folds `ig.embeddings` from there (read-only,
//! so `serve` can run it beside `run`). The keyword stage reads the store.
//! A page cursor is signed with the cursor key and names the query, the
//! tenant and the offset: page 2 is the same search asked for more, so a
//! change to the index between pages may shift answers by a rank.

use crate::cli::SearchMode;
use crate::commands::search::{SearchAnswer, SearchRequest, SharedIndex, search};
use conductor_engine::cursor::CursorKey;
use conductor_engine::log::Log;
use conductor_engine::runtime::TopologyConfig;
use conductor_engine::store::ProjectionStore;
use conductor_processors::embeddings::config::EmbeddingsConfig;
use conductor_replay::subscribe::auth::{AuthError, Authenticator, bearer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The scope a search needs.
pub const SCOPE_ENTITY_SEARCH: &str = "entity.search";
/// First byte of a page cursor (replay cursors use 1).
const PAGE_CURSOR: u8 = 0x53;
/// Answers a page may hold, and how deep pages may go.
const MAX_K: usize = 100;
const MAX_DEPTH: usize = 1000;

/// What `/v1/search` searches with.
pub struct SearchService {
    pub store: Arc<dyn ProjectionStore>,
    /// The vector index and the embedder's config; `None`: keyword only
    /// (no vector_index or embeddings topology), with the reason.
    pub vector: Result<(SharedIndex, EmbeddingsConfig), String>,
    pub auth: Authenticator,
    pub cursors: Arc<CursorKey>,
}

/// The query string.
#[derive(Debug, Default, Deserialize)]
pub struct SearchParams {
    pub q: Option<String>,
    pub k: Option<usize>,
    pub mode: Option<String>,
    pub alpha: Option<f64>,
    pub cursor: Option<String>,
}

/// What a page cursor carries.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Page {
    tenant: String,
    q: String,
    mode: String,
    alpha: f64,
    k: usize,
    offset: usize,
}

/// A page of answers.
#[derive(Debug, Serialize)]
pub struct SearchPage {
    #[serde(flatten)]
    pub answer: SearchAnswer,
    /// Pass it as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Why a request was refused: the HTTP status and a message.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub error: String,
}

fn bad(error: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        error: error.into(),
    }
}

impl SearchService {
    /// Answers one request with the `Authorization` header's value.
    pub async fn answer(
        &self,
        authorization: Option<&str>,
        params: SearchParams,
    ) -> Result<SearchPage, Refusal> {
        let principal = self
            .auth
            .verify(bearer(authorization), SCOPE_ENTITY_SEARCH)
            .map_err(|e| Refusal {
                status: match e {
                    AuthError::MissingScope(_) => 403,
                    AuthError::NotConfigured => 503,
                    _ => 401,
                },
                error: e.to_string(),
            })?;
        let page = match &params.cursor {
            Some(token) => {
                let body = self
                    .cursors
                    .open(PAGE_CURSOR, token)
                    .map_err(|e| bad(format!("cursor: {e}")))?;
                let page: Page =
                    serde_json::from_slice(&body).map_err(|_| bad("cursor: bad body"))?;
                if page.tenant != principal.tenant {
                    return Err(bad("cursor: it belongs to another tenant"));
                }
                page
            }
            None => Page {
                tenant: principal.tenant.clone(),
                q: params
                    .q
                    .clone()
                    .filter(|q| !q.trim().is_empty())
                    .ok_or_else(|| bad("`q` is required: the text to search for"))?,
                mode: params.mode.clone().unwrap_or_else(|| "hybrid".into()),
                alpha: params.alpha.unwrap_or(0.7),
                k: params.k.unwrap_or(10),
                offset: 0,
            },
        };
        if page.k == 0 || page.k > MAX_K {
            return Err(bad(format!("`k` {} is outside 1 to {MAX_K}", page.k)));
        }
        if !(0.0..=1.0).contains(&page.alpha) {
            return Err(bad(format!("`alpha` {} is outside 0 to 1", page.alpha)));
        }
        let mode = match page.mode.as_str() {
            "keyword" => SearchMode::Keyword,
            "vector" => SearchMode::Vector,
            "hybrid" => SearchMode::Hybrid,
            other => {
                return Err(bad(format!(
                    "`mode` `{other}` is not keyword, vector or hybrid"
                )));
            }
        };
        let want = page.offset + page.k;
        if want > MAX_DEPTH {
            return Err(bad(format!("pages end at {MAX_DEPTH} answers")));
        }
        let (index, embeddings) = match (&self.vector, mode) {
            (Ok((index, embeddings)), _) => (Some(index.clone()), Some(embeddings)),
            (Err(why), SearchMode::Vector) => {
                return Err(Refusal {
                    status: 503,
                    error: format!("vector search is off on this server: {why}"),
                });
            }
            (Err(_), _) => (None, None),
        };
        // Keyword only when the vector stage can't run here (hybrid falls
        // back as it would on a timeout, and says so).
        let effective = if index.is_none() {
            SearchMode::Keyword
        } else {
            mode
        };
        let request = SearchRequest {
            tenant: principal.tenant.clone(),
            text: page.q.clone(),
            k: want + 1,
            mode: effective,
            alpha: page.alpha,
            vector_budget: Duration::from_millis(150),
        };
        let mut answer = search(index, embeddings, self.store.as_ref(), &request)
            .await
            .map_err(|e| Refusal {
                status: if e.exit_code == 2 { 400 } else { 503 },
                error: e.message,
            })?;
        if effective != mode {
            answer.mode = if mode == SearchMode::Hybrid {
                "hybrid"
            } else {
                answer.mode
            };
            answer.fallback = self.vector.as_ref().err().cloned();
        }
        let more = answer.hits.len() > want;
        answer.hits = answer
            .hits
            .into_iter()
            .skip(page.offset)
            .take(page.k)
            .collect();
        let next_cursor = more.then(|| {
            let next = Page {
                offset: want,
                ..page
            };
            self.cursors
                .seal(PAGE_CURSOR, &serde_json::to_vec(&next).unwrap_or_default())
        });
        Ok(SearchPage {
            answer,
            next_cursor,
        })
    }
}

/// Keeps `index` current: folds `ig.embeddings` (the vector_index
/// topology's sources) from `positions` on, every quarter second.
pub fn follow(
    index: SharedIndex,
    config: TopologyConfig,
    log: Arc<dyn Log>,
    mut positions: BTreeMap<(String, i32), i64>,
) {
    tokio::spawn(async move {
        loop {
            let mut read = 0usize;
            for topic in &config.sources.topics {
                let Ok(d) = log.describe_topic(topic).await else {
                    continue; // not created yet
                };
                for p in d.partitions {
                    let at = positions
                        .entry((topic.clone(), p.partition))
                        .or_insert(p.low_watermark);
                    match log.read(topic, p.partition, *at, 500).await {
                        Ok(records) if !records.is_empty() => {
                            *at = records.last().map_or(*at, |r| r.offset + 1);
                            read += records.len();
                            let mut guard = index.write().unwrap_or_else(|e| e.into_inner());
                            // Bad records went to the topology's DLQ; here they are skipped.
                            let _ = conductor_engine::runtime::fold::fold(
                                &mut *guard,
                                &config,
                                records,
                            );
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(topic = %topic, partition = p.partition, error = %error, "search index follower could not read");
                        }
                    }
                }
            }
            if read == 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    });
}

/// The service of a server over `log` and `store`: the vector index
/// restored and followed when the shipped (or `--topologies`) vector_index
/// and embeddings topologies are there, keyword only otherwise.
pub async fn start(
    settings: &crate::settings::Settings,
    dir: Option<std::path::PathBuf>,
    log: Arc<dyn Log>,
    store: Arc<dyn ProjectionStore>,
) -> Result<Arc<SearchService>, crate::error::CliError> {
    use crate::commands::search::{restore_index_from, search_topologies};
    let vector = match search_topologies(settings, dir, "vector_index", "embeddings") {
        Ok((config, embeddings)) => {
            match restore_index_from(&config, log.as_ref(), store.as_ref()).await {
                Ok(index) => {
                    let positions = store.load_offsets(&config.name).await.unwrap_or_default();
                    let shared: SharedIndex = Arc::new(std::sync::RwLock::new(index));
                    follow(shared.clone(), config, log.clone(), positions);
                    Ok((shared, embeddings))
                }
                Err(e) => Err(format!(
                    "the vector index could not be restored: {}",
                    e.message
                )),
            }
        }
        Err(e) => Err(e.message),
    };
    Ok(Arc::new(SearchService {
        store,
        vector,
        auth: Authenticator::new(settings.jwt_secret.as_deref().map(str::as_bytes)),
        cursors: Arc::new(crate::backend::cursor_key(settings)?),
    }))
}
