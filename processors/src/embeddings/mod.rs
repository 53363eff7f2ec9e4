//! The embedding writer: a vector embedding of every entity, kept in step
//! with the entity's changes — vectors only, never the raw text; per-tenant
//! opt-in. Two topologies chained by a topic (the contract v2 enrichment
//! stage, see `conductor_engine::enrich`):
//!
//! ```text
//! ig.ingest.entities ─▶ embeddings_enrich ─▶ ig.enriched.embeddings ─┐
//!        │      (embeds each distinct text once)                       ├─▶ embeddings ─▶ entity_embeddings
//!        └────────────────────────────────────────────────────────────┘      (fold)   └▶ ig.embeddings
//! ```
//!
//! The text is a template over named attributes, normalised; its content
//! hash is blake3(model id + version + text). An update that doesn't change
//! the text embeds nothing; the same text under two entities is embedded
//! once; a crash, a replay or a rebuild of the fold embeds nothing again.
//!
//! Modules: [`config`], [`text`] (template, normalisation, hash),
//! [`embedder`] (the trait), [`hashed_ngrams`] (the default embedder),
//! [`minilm`] (all-MiniLM-L6-v2 in process), [`http`] (an
//! OpenAI-compatible endpoint),
//! [`stage`] (what the stage asks), [`fold`] (the projection and events),
//! [`packed`] (vectors as base64 of f32 LE).

pub mod config;
pub mod embedder;
pub mod fold;
pub mod hashed_ngrams;
pub mod http;
pub mod minilm;
pub mod packed;
pub mod stage;
pub mod text;

use conductor_engine::enrich::EnrichStage;
use conductor_engine::processor::{Processor, ProcessorSpec};
use conductor_engine::projection::TableSpec;
use conductor_engine::runtime::config::ConfigProblem;
use config::EmbeddingsConfig;

pub use fold::{EMBEDDINGS_TOPIC, ENTITY_EMBEDDINGS_TABLE, EmbeddingsProcessor, embeddings_table};
pub use stage::EmbedEnrichment;

/// `embeddings_enrich`: the stage that calls the embedder.
pub struct EmbeddingsEnrichSpec;

impl ProcessorSpec for EmbeddingsEnrichSpec {
    type Config = EmbeddingsConfig;
    const NAME: &'static str = "embeddings_enrich";
    const DESCRIPTION: &'static str = "entity events → one embedder call per distinct text, recorded on ig.enriched.embeddings (vectors only)";

    fn check(config: &EmbeddingsConfig) -> Vec<ConfigProblem> {
        config.problems()
    }

    fn tables(_: &EmbeddingsConfig) -> Vec<TableSpec> {
        Vec::new()
    }

    fn build(config: EmbeddingsConfig) -> Box<dyn Processor> {
        Box::new(EnrichStage::new(Self::NAME, EmbedEnrichment::new(config)))
    }
}

/// `embeddings`: the fold into `entity_embeddings` and `ig.embeddings`.
pub struct EmbeddingsSpec;

impl ProcessorSpec for EmbeddingsSpec {
    type Config = EmbeddingsConfig;
    const NAME: &'static str = "embeddings";
    const DESCRIPTION: &'static str = "entity events + recorded vectors → entity_embeddings (one vector per entity, latest version) and EmbeddingComputed on ig.embeddings";

    fn check(config: &EmbeddingsConfig) -> Vec<ConfigProblem> {
        config.problems()
    }

    fn tables(_: &EmbeddingsConfig) -> Vec<TableSpec> {
        vec![embeddings_table()]
    }

    fn build(config: EmbeddingsConfig) -> Box<dyn Processor> {
        Box::new(EmbeddingsProcessor::new(config))
    }
}
