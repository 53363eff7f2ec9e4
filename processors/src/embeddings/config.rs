//! `[processor_config]` of the embedding writer (`embeddings_enrich` and
//! `embeddings` take the same table: both derive the content hash from it).

use conductor_engine::runtime::config::ConfigProblem;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which embedder computes the vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbedderKind {
    /// Character n-grams feature-hashed into `dims` dimensions: no model,
    /// deterministic, runs everywhere (the default).
    HashedNgrams,
    /// The sentence model all-MiniLM-L6-v2 (384 dimensions) in process:
    /// its files in `model_dir`, installed by `ops/install-minilm.sh`.
    Minilm,
    /// An OpenAI-compatible `POST /v1/embeddings` endpoint
    /// (`[processor_config.http]`), called by the enrichment stage.
    Http,
}

/// `[processor_config]` of `embeddings_enrich` / `embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddingsConfig {
    /// The embedder.
    pub embedder: EmbedderKind,
    /// Dimensions of `hashed-ngrams` vectors (a model has its own).
    pub dims: usize,
    /// The `minilm` model folder; absent: `$CONDUCTOR_MODELS/all-MiniLM-L6-v2`
    /// (`$HOME/.cache/conductor/models/all-MiniLM-L6-v2`), where
    /// `ops/install-minilm.sh` installs it.
    pub model_dir: Option<std::path::PathBuf>,
    /// The `http` embedder's endpoint, model, key and call policy.
    pub http: Option<super::http::HttpConfig>,
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
    /// What embedding costs and each tenant's monthly cap
    /// (`[processor_config.cost]`). Usage is recorded either way: one
    /// `UsageRecorded` (kind `embeddings`, unit `tokens`) per embedder call
    /// on `ig.ingest.usage`.
    pub cost: CostConfig,
}

/// `[processor_config.cost]`: price and caps. Caps are in the price's
/// currency per tenant per calendar month (of the events' `occurred_at`):
/// at 80 % a `QuotaAlert` goes to `ig.quota.alerts`; at 100 % the tenant's
/// texts are not embedded any more that month (a second alert says so).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostConfig {
    /// Price of one million tokens (any currency: the caps are in the same).
    pub price_per_million_tokens: f64,
    /// Every tenant's monthly cap; absent: no cap.
    pub monthly_cap: Option<f64>,
    /// Caps of named tenants, over `monthly_cap`.
    pub tenant_caps: BTreeMap<String, f64>,
}

impl Default for CostConfig {
    fn default() -> Self {
        CostConfig {
            // all-MiniLM-class hosted embeddings cost about this much.
            price_per_million_tokens: 0.02,
            monthly_cap: None,
            tenant_caps: BTreeMap::new(),
        }
    }
}

impl CostConfig {
    /// A cap in tokens: the most whole tokens it pays for.
    pub fn cap_tokens(&self, cap: f64) -> u64 {
        if self.price_per_million_tokens <= 0.0 {
            return u64::MAX;
        }
        (cap / self.price_per_million_tokens * 1e6).floor() as u64
    }

    fn problems(&self, bad: &mut impl FnMut(&str, String, Option<&str>)) {
        let p = self.price_per_million_tokens;
        if !p.is_finite() || p < 0.0 {
            bad(
                "cost.price_per_million_tokens",
                format!("{p} is not a price"),
                Some("a price of one million tokens, e.g. 0.02"),
            );
        }
        let has_caps = self.monthly_cap.is_some() || !self.tenant_caps.is_empty();
        if has_caps && p == 0.0 {
            bad(
                "cost.price_per_million_tokens",
                "is 0, so no cap is ever reached".into(),
                Some("set the price the caps are measured against"),
            );
        }
        let caps = self
            .monthly_cap
            .map(|c| ("cost.monthly_cap".to_string(), c))
            .into_iter()
            .chain(
                self.tenant_caps
                    .iter()
                    .map(|(t, c)| (format!("cost.tenant_caps.{t}"), *c)),
            );
        for (key, cap) in caps {
            if !cap.is_finite() || cap < 0.0 {
                bad(
                    &key,
                    format!("{cap} is not a cap"),
                    Some("an amount ≥ 0 in the price's currency"),
                );
            }
        }
    }
}

impl Default for EmbeddingsConfig {
    fn default() -> Self {
        EmbeddingsConfig {
            embedder: EmbedderKind::HashedNgrams,
            dims: 256,
            model_dir: None,
            http: None,
            template: "{given_name} {surname} {date_of_birth} {street_number} {address_1} \
                       {address_2} {suburb} {postcode} {state}"
                .into(),
            entity_types: Vec::new(),
            tenants: vec!["*".into()],
            cost: CostConfig::default(),
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
        if self.embedder == EmbedderKind::Minilm
            && let Some(why) = crate::embeddings::minilm::missing_files(&self.minilm_dir())
        {
            bad(
                "model_dir",
                why,
                Some("or set model_dir to the folder that holds them"),
            );
        }
        match (&self.embedder, &self.http) {
            (EmbedderKind::Http, None) => bad(
                "http",
                "embedder = \"http\" needs an endpoint".into(),
                Some("add [processor_config.http] with url and model"),
            ),
            (EmbedderKind::Http, Some(http)) => {
                for (key, message, hint) in http.problems() {
                    bad(&key, message, hint.as_deref());
                }
            }
            _ => {}
        }
        self.cost.problems(&mut bad);
        if self.tenants.is_empty() {
            bad(
                "tenants",
                "no tenant is opted in: nothing would be embedded".into(),
                Some("list the tenants that opted in, or [\"*\"] for all"),
            );
        }
        out
    }

    /// Where the `minilm` model's files are.
    pub fn minilm_dir(&self) -> std::path::PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(crate::embeddings::minilm::default_model_dir)
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
