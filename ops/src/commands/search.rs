//! `conductor search "TEXT" --tenant T [--k 10] [--mode keyword|vector|hybrid]
//! [--alpha 0.7] [--json]`: a tenant's entities matching the text.
//!
//! - keyword: the store's full-text index over the `entities` projection's
//!   attributes (Postgres `tsvector` + GIN, SQLite FTS5): any word matches,
//!   ranked by `ts_rank` / BM25.
//! - vector: the nearest vectors in the vector_index topology's state (its
//!   stored snapshot plus a fold of what came after it, read from the log;
//!   nothing is written), the text embedded by the embedding writer's
//!   embedder, normalised as an entity's text is.
//! - hybrid (the default): both, each list's scores min-max normalised to
//!   0–1, fused as `alpha·keyword + (1 − alpha)·vector`.
//!
//! The vector stage (embedding the query, searching the graph) has a time
//! budget (`--budget-ms`, 150 by default); past it, or without a vector
//! index for the tenant, the answer is the keyword stage's and says so
//! (`fallback`; `conductor_search_fallbacks_total`). `--stats` prints each
//! index's figures instead.

use crate::backend::{Access, open_log, open_store};
use crate::cli::{SearchArgs, SearchMode};
use crate::error::CliError;
use crate::settings::Settings;
use conductor_engine::metrics as m;
use conductor_engine::runtime::TopologyConfig;
use conductor_engine::store::{ProjectionStore, StoreError};
use conductor_processors::embeddings::config::EmbeddingsConfig;
use conductor_processors::embeddings::embedder;
use conductor_processors::embeddings::text::normalise;
use conductor_processors::entities::entities_table;
use conductor_processors::search::{SearchHit, fuse, ranked};
use conductor_processors::vector_index::ann::Hit;
use conductor_processors::vector_index::{IndexStats, VectorIndexConfig, VectorIndexProcessor};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Candidates each stage brings to the fusion, per answer asked.
const CANDIDATES_PER_ANSWER: usize = 4;
const MIN_CANDIDATES: usize = 40;

/// What a search returns.
#[derive(Debug, Clone, Serialize)]
pub struct SearchAnswer {
    pub tenant: String,
    /// The mode asked for.
    pub mode: &'static str,
    /// Why the answer is the keyword stage's alone, when the vector stage
    /// was asked for but not used.
    pub fallback: Option<String>,
    /// The embedder's model (vector and hybrid).
    pub model: Option<String>,
    /// The fusion weight of the keyword score (hybrid).
    pub alpha: Option<f64>,
    pub hits: Vec<SearchHit>,
}

/// A vector index searched by requests while a follower folds new
/// vectors into it (the server), or alone (the CLI).
pub type SharedIndex = Arc<std::sync::RwLock<VectorIndexProcessor>>;

/// What to search for.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub tenant: String,
    pub text: String,
    pub k: usize,
    pub mode: SearchMode,
    pub alpha: f64,
    pub vector_budget: Duration,
}

pub async fn run(settings: &Settings, args: SearchArgs) -> Result<(), CliError> {
    let dir = args.topologies.clone();
    if args.stats {
        return print_stats(settings, &args).await;
    }
    let (Some(text), Some(tenant)) = (args.text.clone(), args.tenant.clone()) else {
        return Err(CliError::usage(
            "search needs a TEXT and --tenant",
            "conductor search \"jane smith 1970\" --tenant acme (or --stats for the index figures)",
        ));
    };
    if args.k == 0 || args.k > 1000 {
        return Err(CliError::usage(
            format!("--k {} is outside 1 to 1000", args.k),
            "pass --k 10",
        ));
    }
    if !(0.0..=1.0).contains(&args.alpha) {
        return Err(CliError::usage(
            format!("--alpha {} is outside 0 to 1", args.alpha),
            "--alpha weighs the keyword score against the vector score: 0.7 is usual",
        ));
    }
    let request = SearchRequest {
        tenant,
        text,
        k: args.k,
        mode: args.mode,
        alpha: args.alpha,
        vector_budget: Duration::from_millis(args.budget_ms),
    };
    let store = open_store(settings).await?;
    let (index, embeddings) = match args.mode {
        SearchMode::Keyword => (None, None),
        SearchMode::Vector | SearchMode::Hybrid => (
            Some(Arc::new(std::sync::RwLock::new(
                restore_index(settings, dir.clone(), &args.index_topology).await?,
            ))),
            Some(embeddings_config(settings, dir, &args.embeddings_topology)?),
        ),
    };
    let answer = search(index, embeddings.as_ref(), store.as_ref(), &request).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        print_answer(&answer);
    }
    Ok(())
}

async fn print_stats(settings: &Settings, args: &SearchArgs) -> Result<(), CliError> {
    let index = restore_index(settings, args.topologies.clone(), &args.index_topology).await?;
    let stats: Vec<IndexStats> = index
        .state
        .stats()
        .into_iter()
        .filter(|s| args.tenant.as_ref().is_none_or(|t| &s.tenant == t))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&stats).unwrap_or_default()
        );
    } else if stats.is_empty() {
        println!(
            "no vector index yet: has the vector_index topology run? (`conductor run` or `conductor demo`)"
        );
    } else {
        for s in stats {
            println!(
                "tenant {}  model {}  {} vectors of {} dims  ({} dead slots)  contents {}",
                s.tenant, s.model, s.vectors, s.dims, s.dead_slots, s.contents_digest
            );
        }
    }
    Ok(())
}

fn print_answer(a: &SearchAnswer) {
    let model = a
        .model
        .as_deref()
        .map(|m| format!(", model {m}"))
        .unwrap_or_default();
    let alpha = a.alpha.map(|x| format!(", alpha {x}")).unwrap_or_default();
    println!("{} search, tenant {}{model}{alpha}:", a.mode, a.tenant);
    if let Some(why) = &a.fallback {
        println!("  (keyword results only: {why})");
    }
    if a.hits.is_empty() {
        println!("  no match");
    }
    let show = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x:.3}"));
    for h in &a.hits {
        println!(
            "  {:>3}. {:<32} {:.3}   keyword {:>6}  vector {:>6}",
            h.rank,
            h.entity_id,
            h.score,
            show(h.keyword_score),
            show(h.vector_score)
        );
    }
}

/// Searches `request.tenant`'s entities. `index` and `embeddings` are
/// needed for the vector and hybrid modes.
pub async fn search(
    index: Option<SharedIndex>,
    embeddings: Option<&EmbeddingsConfig>,
    store: &dyn ProjectionStore,
    request: &SearchRequest,
) -> Result<SearchAnswer, CliError> {
    let query = normalise(&request.text);
    if query.is_empty() {
        return Err(CliError::usage(
            "the search text has no letter or digit",
            "search for a name, a date or an address",
        ));
    }
    let candidates = (request.k * CANDIDATES_PER_ANSWER).max(MIN_CANDIDATES);
    let mode = match request.mode {
        SearchMode::Keyword => "keyword",
        SearchMode::Vector => "vector",
        SearchMode::Hybrid => "hybrid",
    };
    let mut answer = SearchAnswer {
        tenant: request.tenant.clone(),
        mode,
        fallback: None,
        model: None,
        alpha: (request.mode == SearchMode::Hybrid).then_some(request.alpha),
        hits: Vec::new(),
    };
    let mut vector = None;
    if request.mode != SearchMode::Keyword {
        let (index, embeddings) = index.zip(embeddings).ok_or_else(|| {
            CliError::plain("the vector stage needs the vector index and the embedder")
        })?;
        let model = embedder::model_id(embeddings);
        answer.model = Some(model.clone());
        match vector_stage(index, embeddings.clone(), request, &query, candidates).await {
            Ok(hits) => vector = Some(hits),
            Err(Fallback { reason, why }) => {
                if request.mode == SearchMode::Vector && reason == "no_vector_index" {
                    return Err(CliError::new(
                        why,
                        "has the tenant opted in (embeddings [processor_config] tenants), and have the embeddings and vector_index topologies run? (`conductor run` or `conductor demo`)",
                    ));
                }
                metrics::counter!(m::SEARCH_FALLBACKS_TOTAL, "reason" => reason).increment(1);
                answer.fallback = Some(why);
            }
        }
    }
    let keyword = if request.mode == SearchMode::Vector && vector.is_some() {
        Vec::new()
    } else {
        let terms: Vec<String> = query.split(' ').map(str::to_string).collect();
        store
            .keyword_search(&entities_table(), &request.tenant, &terms, candidates)
            .await
            .map_err(keyword_error)?
    };
    answer.hits = match (request.mode, vector) {
        (SearchMode::Vector, Some(v)) => ranked(
            v.into_iter()
                .map(|h| (h.entity_id, None, Some(h.similarity as f64))),
        ),
        (SearchMode::Hybrid, Some(v)) => fuse(&keyword, &v, request.alpha),
        _ => ranked(keyword.into_iter().map(|h| (h.id, Some(h.score), None))),
    };
    answer.hits.truncate(request.k);
    Ok(answer)
}

/// Why the vector stage was not used.
struct Fallback {
    reason: &'static str,
    why: String,
}

/// Embeds the query and searches the tenant's graph, within the budget.
async fn vector_stage(
    index: SharedIndex,
    embeddings: EmbeddingsConfig,
    request: &SearchRequest,
    query: &str,
    candidates: usize,
) -> Result<Vec<Hit>, Fallback> {
    let model = embedder::model_id(&embeddings);
    let tenant = request.tenant.clone();
    let (indexed, models) = {
        let index = index.read().unwrap_or_else(|e| e.into_inner());
        let indexed = index
            .state
            .indexes
            .get(&(tenant.clone(), model.clone()))
            .map_or(0, |i| i.live_count());
        (indexed, index.models(&tenant))
    };
    if indexed == 0 {
        let why = if models.is_empty() {
            format!("tenant {tenant} has no vector index")
        } else {
            format!(
                "tenant {tenant} has vectors of {} only, the embedder now is {model}",
                models.join(", ")
            )
        };
        return Err(Fallback {
            reason: "no_vector_index",
            why,
        });
    }
    let budget = request.vector_budget;
    let over_budget = || Fallback {
        reason: "vector_budget",
        why: format!(
            "the vector stage took longer than its {} ms budget",
            budget.as_millis()
        ),
    };
    if budget.is_zero() {
        return Err(over_budget());
    }
    let query = query.to_string();
    let work = tokio::task::spawn_blocking(move || {
        let embedder = embedder::shared(&embeddings);
        let vector = embedder.embed(&[&query])?.remove(0);
        let index = index.read().unwrap_or_else(|e| e.into_inner());
        Ok::<_, String>(index.search(&tenant, &model, &vector, candidates))
    });
    match tokio::time::timeout(budget, work).await {
        Err(_) => Err(over_budget()),
        Ok(Ok(Ok(hits))) => Ok(hits),
        Ok(Ok(Err(e))) => Err(Fallback {
            reason: "vector_error",
            why: format!("embedding the query failed: {e}"),
        }),
        Ok(Err(e)) => Err(Fallback {
            reason: "vector_error",
            why: format!("the vector stage failed: {e}"),
        }),
    }
}

fn keyword_error(e: StoreError) -> CliError {
    match e {
        StoreError::UnknownTable(_) => CliError::new(
            "no entities projection in this store yet",
            "run the entities topology first (`conductor run` or `conductor demo`)",
        ),
        e => CliError::plain(format!("keyword search failed: {e}")),
    }
}

fn find_topology(
    settings: &Settings,
    dir: Option<PathBuf>,
    name: &str,
    processor: &str,
) -> Result<TopologyConfig, CliError> {
    let config = super::topology::find(settings, dir, name)?;
    if config.processor != processor {
        return Err(CliError::usage(
            format!(
                "topology `{name}` runs `{}`, not {processor}",
                config.processor
            ),
            format!("name a {processor} topology"),
        ));
    }
    Ok(config)
}

fn typed<T: serde::de::DeserializeOwned>(config: &TopologyConfig) -> Result<T, CliError> {
    config
        .processor_config
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| {
            CliError::plain(format!(
                "topology {}: bad [processor_config]: {}",
                config.name,
                e.message()
            ))
        })
}

/// The embedding writer's config (its embedder embeds the query). The
/// embedder is built here, before any query: loading a model must not eat
/// the vector stage's time budget.
pub fn embeddings_config(
    settings: &Settings,
    dir: Option<PathBuf>,
    topology: &str,
) -> Result<EmbeddingsConfig, CliError> {
    let config: EmbeddingsConfig = typed(&find_topology(settings, dir, topology, "embeddings")?)?;
    embedder::shared(&config);
    Ok(config)
}

/// The vector index as the `topology` worker last committed it.
pub async fn restore_index(
    settings: &Settings,
    dir: Option<PathBuf>,
    topology: &str,
) -> Result<VectorIndexProcessor, CliError> {
    let config = find_topology(settings, dir, topology, "vector_index")?;
    let log = open_log(settings, Access::Read).await?;
    let store = open_store(settings).await?;
    restore_index_from(&config, log.as_ref(), store.as_ref()).await
}

/// The vector index of topology `config` at its stored positions.
pub async fn restore_index_from(
    config: &TopologyConfig,
    log: &dyn conductor_engine::log::Log,
    store: &dyn ProjectionStore,
) -> Result<VectorIndexProcessor, CliError> {
    let mut processor = VectorIndexProcessor::new(typed::<VectorIndexConfig>(config)?);
    conductor_engine::runtime::state::restore(&mut processor, config, log, store).await?;
    Ok(processor)
}

/// The vector index topology and the embeddings topology's config, by name.
pub fn search_topologies(
    settings: &Settings,
    dir: Option<PathBuf>,
    index: &str,
    embeddings: &str,
) -> Result<(TopologyConfig, EmbeddingsConfig), CliError> {
    Ok((
        find_topology(settings, dir.clone(), index, "vector_index")?,
        embeddings_config(settings, dir, embeddings)?,
    ))
}
