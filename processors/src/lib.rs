//! Conductor's processors, registered in one explicit list ([`REGISTRY`]).
//! A topology file names its processor by the registered name.

pub mod entities;

use conductor_engine::processor::Processor;

/// Builds a processor from its topology's `[processor_config]` table.
pub type Factory = fn(&toml::Table) -> Result<Box<dyn Processor>, String>;

/// Every processor a topology may name: (name, what it does, factory).
pub const REGISTRY: &[(&str, &str, Factory)] = &[(
    "entities",
    "EntityUpserted / EntityDeleted / RelationshipUpserted → entities and relationships tables",
    entities::build,
)];

/// Looks a processor up by name.
pub fn factory(name: &str) -> Option<Factory> {
    REGISTRY
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, f)| *f)
}

/// Registered names, for hints.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|(n, _, _)| *n).collect()
}
