//! `[processor_config]` of the embedding writer (`embeddings_enrich` and
//! `embeddings` take the same table: both derive the content hash from it).

use conductor_engine::runtime::config::ConfigProblem;
use serde::{Deserialize, Serialize};

/// Which embedder computes the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedderKind {
    /// Character n-grams feature-hashed into `dims` dimensions: no model,
    /// deterministic, runs everywhere (the default).
    HashedNgrams,
}

/// `[processor_config]` of `embeddings_enrich` / `embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// The embedder.
    pub embedder: EmbedderKind,
    /// Dimensions of `hashed-ngrams` vectors.
    pub dims: usize,
    /// The text embedded for an entity: `{attribute}` placeholders over its
    /// attributes (a missing one renders empty), normalised (lower case,
    /// punctuation dropped, spaces collapsed). An entity whose text is empty
    /// has no vector.
    pub template: String,
    /// Entity types to embed; empty: every type.
    pub entity_types: Vec<String>,
    /// Tenants that opted in; `["*"]`: every tenant. Others are skipped
    /// and counted (`conductor_embeddings_skipped_total`).
    pub tenants: Vec<String>,
}

impl Default for EmbeddingsConfig {
    fn default() -> Self {
        EmbeddingsConfig {
            embedder: EmbedderKind::HashedNgrams,
            dims: 256,
            template: "{given_name} {surname} {date_of_birth} {street_number} {address_1} \
                       {address_2} {suburb} {postcode} {state}"
                .into(),
            entity_types: Vec::new(),
            tenants: vec!["*".into()],
        }
    }
}

impl EmbeddingsConfig {
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String, hint: Option<&str>| {
            out.push(ConfigProblem {
                key: key.into(),
                message,
                hint: hint.map(Into::into),
            });
        };
        if !(8..=4096).contains(&self.dims) {
            bad(
                "dims",
                format!("{} dimensions is outside 8 to 4096", self.dims),
                Some("256 is a good start for hashed-ngrams"),
            );
        }
        match crate::embeddings::text::Template::parse(&self.template) {
            Ok(t) if t.attributes().is_empty() => bad(
                "template",
                "the template names no attribute".into(),
                Some("name attributes in braces: \"{given_name} {surname}\""),
            ),
            Ok(_) => {}
            Err(why) => bad("template", why, None),
        }
        if self.tenants.is_empty() {
            bad(
                "tenants",
                "no tenant is opted in: nothing would be embedded".into(),
                Some("list the tenants that opted in, or [\"*\"] for all"),
            );
        }
        out
    }

    /// Whether `tenant` opted in.
    pub fn opted_in(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant)
    }

    /// Whether entities of `entity_type` are embedded.
    pub fn embeds(&self, entity_type: &str) -> bool {
        self.entity_types.is_empty() || self.entity_types.iter().any(|t| t == entity_type)
    }
}
