//! Conductor's processors, registered in one explicit list ([`REGISTRY`]).
//! A topology file names its processor by the registered name; its
//! `[processor_config]` is checked against the processor's typed config.

pub mod demo_data;
pub mod embeddings;
pub mod entities;
pub mod entity_graph;
pub mod er;
pub mod lineage;
pub mod repartition;
pub mod search;
pub mod vector_index;

use conductor_engine::processor::RegisteredProcessor;
use conductor_engine::runtime::TopologyConfig;
use conductor_engine::runtime::config::ConfigProblem;

/// Every processor a topology may name.
pub const REGISTRY: &[RegisteredProcessor] = &[
    RegisteredProcessor::of::<entities::EntitiesSpec>(),
    RegisteredProcessor::of::<embeddings::EmbeddingsEnrichSpec>(),
    RegisteredProcessor::of::<embeddings::EmbeddingsSpec>(),
    RegisteredProcessor::of::<er::ErCandidatesSpec>(),
    RegisteredProcessor::of::<lineage::LineageSpec>(),
    RegisteredProcessor::of::<repartition::RepartitionSpec>(),
    RegisteredProcessor::of::<vector_index::VectorIndexSpec>(),
];

/// Looks a processor up by name.
pub fn find(name: &str) -> Option<&'static RegisteredProcessor> {
    REGISTRY.iter().find(|r| r.name == name)
}

/// Registered names, for hints.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|r| r.name).collect()
}

/// Parses a topology file and checks its `[processor_config]` against the
/// named processor's config: every problem of the file, at once.
pub fn parse_topology(text: &str) -> Result<TopologyConfig, Vec<ConfigProblem>> {
    let parsed = conductor_engine::runtime::parse_topology(text, &names());
    // Checked from the raw table too, so that a bad `[processor_config]` is
    // reported along with the rest of the file's problems.
    let raw: Option<toml::Table> = text.parse().ok();
    let config_problems = raw
        .as_ref()
        .and_then(|t| Some((t.get("processor")?.as_str()?, t)))
        .and_then(|(name, t)| {
            let empty = toml::Table::new();
            let section = match t.get("processor_config") {
                Some(v) => v.as_table()?,
                None => &empty,
            };
            Some(find(name)?.validate(section))
        })
        .unwrap_or_default();
    match parsed {
        Ok(config) if config_problems.is_empty() => Ok(config),
        Ok(_) => Err(config_problems),
        Err(mut problems) => {
            problems.extend(config_problems);
            Err(problems)
        }
    }
}
