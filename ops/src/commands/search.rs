//! `conductor search "TEXT" --tenant T [--k 10] [--json]`: a tenant's
//! entities nearest the text, from the vector_index topology's state (its
//! stored snapshot plus a fold of what came after it, read from the log;
//! nothing is written). The text is embedded by the embedding writer's
//! embedder, normalised as its template normalises an entity's text.
//! `--stats` prints each index's figures instead.

use crate::backend::{Access, open_log, open_store};
use crate::cli::{SearchArgs, SearchMode};
use crate::error::CliError;
use crate::settings::Settings;
use crate::topologies;
use conductor_engine::runtime::TopologyConfig;
use conductor_processors::embeddings::config::EmbeddingsConfig;
use conductor_processors::embeddings::embedder;
use conductor_processors::embeddings::text::normalise;
use conductor_processors::vector_index::{IndexStats, VectorIndexConfig, VectorIndexProcessor};
use serde::Serialize;
use std::path::PathBuf;

/// One answer.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub rank: usize,
    pub entity_id: String,
    /// Cosine similarity of the entity's vector to the query's, -1 to 1.
    pub score: f32,
}

/// What a search returns.
#[derive(Debug, Clone, Serialize)]
pub struct SearchAnswer {
    pub tenant: String,
    pub mode: &'static str,
    pub model: String,
    /// Vectors of the tenant's index searched.
    pub indexed: usize,
    pub hits: Vec<SearchHit>,
}

pub async fn run(settings: &Settings, args: SearchArgs) -> Result<(), CliError> {
    let dir = args.topologies.clone();
    let index = restore_index(settings, dir.clone(), &args.index_topology).await?;
    if args.stats {
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
        return Ok(());
    }
    let (Some(text), Some(tenant)) = (args.text.as_deref(), args.tenant.as_deref()) else {
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
    let embeddings = embeddings_config(settings, dir, &args.embeddings_topology)?;
    let answer = search(&index, &embeddings, tenant, text, args.k, args.mode)?;
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

fn print_answer(a: &SearchAnswer) {
    println!(
        "{} search, tenant {}, model {} ({} vectors):",
        a.mode, a.tenant, a.model, a.indexed
    );
    if a.hits.is_empty() {
        println!("  no match");
    }
    for h in &a.hits {
        println!("  {:>3}. {:<32} {:.3}", h.rank, h.entity_id, h.score);
    }
}

/// The `k` entities of `tenant` nearest `text`.
pub fn search(
    index: &VectorIndexProcessor,
    embeddings: &EmbeddingsConfig,
    tenant: &str,
    text: &str,
    k: usize,
    mode: SearchMode,
) -> Result<SearchAnswer, CliError> {
    let SearchMode::Vector = mode;
    let embedder = embedder::build(embeddings);
    let model = embedder.model().to_string();
    let query = normalise(text);
    if query.is_empty() {
        return Err(CliError::usage(
            "the search text has no letter or digit",
            "search for a name, a date or an address",
        ));
    }
    let vector = embedder
        .embed(&[&query])
        .map_err(|e| CliError::plain(format!("embedding the query failed: {e}")))?
        .remove(0);
    let indexed = index
        .state
        .indexes
        .get(&(tenant.to_string(), model.clone()))
        .map_or(0, |i| i.live_count());
    if indexed == 0 {
        let models = index.models(tenant);
        let why = if models.is_empty() {
            format!("tenant {tenant} has no vector index")
        } else {
            format!(
                "tenant {tenant} has vectors of {} only, the embedder now is {model}",
                models.join(", ")
            )
        };
        return Err(CliError::new(
            why,
            "has the tenant opted in (embeddings [processor_config] tenants), and have the embeddings and vector_index topologies run? (`conductor run` or `conductor demo`)",
        ));
    }
    let hits = index
        .search(tenant, &model, &vector, k)
        .into_iter()
        .enumerate()
        .map(|(i, h)| SearchHit {
            rank: i + 1,
            entity_id: h.entity_id,
            score: h.similarity,
        })
        .collect();
    Ok(SearchAnswer {
        tenant: tenant.to_string(),
        mode: "vector",
        model,
        indexed,
        hits,
    })
}

fn find_topology(
    settings: &Settings,
    dir: Option<PathBuf>,
    name: &str,
    processor: &str,
) -> Result<TopologyConfig, CliError> {
    let configs = topologies::load(dir.clone(), settings.topologies.clone())?;
    let config = configs
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| {
            CliError::usage(
                format!(
                    "no topology named `{name}` in {}",
                    topologies::source(dir.as_ref(), settings.topologies.as_ref())
                ),
                "`conductor topology list` shows them",
            )
        })?;
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

/// The embedding writer's config (its embedder embeds the query).
pub fn embeddings_config(
    settings: &Settings,
    dir: Option<PathBuf>,
    topology: &str,
) -> Result<EmbeddingsConfig, CliError> {
    typed(&find_topology(settings, dir, topology, "embeddings")?)
}

/// The vector index as the `topology` worker last committed it.
pub async fn restore_index(
    settings: &Settings,
    dir: Option<PathBuf>,
    topology: &str,
) -> Result<VectorIndexProcessor, CliError> {
    let config = find_topology(settings, dir, topology, "vector_index")?;
    let mut processor = VectorIndexProcessor::new(typed::<VectorIndexConfig>(&config)?);
    let log = open_log(settings, Access::Read).await?;
    let store = open_store(settings).await?;
    conductor_engine::runtime::state::restore(
        &mut processor,
        &config,
        log.as_ref(),
        store.as_ref(),
    )
    .await?;
    Ok(processor)
}
