//! `embeddings_enrich`: the enrichment stage of the embedding writer. It
//! renders each entity's text, names it by content hash, and calls the
//! embedder only for hashes it has not recorded; each vector is recorded
//! once on `ig.enriched.embeddings` (hash → packed vector, never the text).
//! The machinery — batching, pacing, retries, the recorded-hash state — is
//! the engine's [`EnrichStage`]; this file says what to ask and how.

use super::config::{EmbedderKind, EmbeddingsConfig};
use super::embedder::{self, Embedder};
use super::packed::PackedVector;
use super::text::{Template, input_hash};
use async_trait::async_trait;
use conductor_engine::enrich::{
    CallError, CallPolicy, EnrichInput, Enrichment, InputOutcome, Metering,
};
use conductor_engine::processor::ProcessorError;
use conductor_schemas::{Event, EventData};
use std::sync::Arc;

/// The enrichment's name: results go to `ig.enriched.embeddings`.
pub const ENRICHMENT: &str = "embeddings";

/// What the stage asks of an entity event: its text's hash and the text.
pub struct EmbedEnrichment {
    config: EmbeddingsConfig,
    template: Template,
    embedder: Arc<dyn Embedder>,
}

impl EmbedEnrichment {
    pub fn new(config: EmbeddingsConfig) -> Self {
        let embedder: Arc<dyn Embedder> = embedder::build(&config).into();
        EmbedEnrichment {
            // `problems` has checked the template; an empty one embeds nothing.
            template: Template::parse(&config.template).unwrap_or(Template::parse("").unwrap()),
            config,
            embedder,
        }
    }

    /// The embedded text and its hash for `event`, if it is embedded at all.
    pub fn text_of(
        config: &EmbeddingsConfig,
        template: &Template,
        model: &str,
        event: &Event,
    ) -> Option<(String, String)> {
        let EventData::EntityUpserted(e) = &event.data else {
            return None;
        };
        if !config.opted_in(&event.meta.tenant) || !config.embeds(&e.entity_type) {
            return None;
        }
        let text = template.render(&e.attributes);
        if text.is_empty() {
            return None;
        }
        let hash = input_hash(&text, model);
        Some((text, hash))
    }
}

#[async_trait]
impl Enrichment for EmbedEnrichment {
    fn name(&self) -> &str {
        ENRICHMENT
    }

    fn input(&self, event: &Event) -> Result<Option<EnrichInput>, ProcessorError> {
        Ok(
            Self::text_of(&self.config, &self.template, self.embedder.model(), event).map(
                |(text, hash)| EnrichInput {
                    content_hash: hash,
                    request: serde_json::Value::String(text),
                },
            ),
        )
    }

    fn dependency(&self) -> String {
        match (&self.config.embedder, &self.config.http) {
            (EmbedderKind::Http, Some(http)) => {
                format!("embedder {} at {}", http.model, http.url)
            }
            _ => format!("embedder {}", self.embedder.model()),
        }
    }

    fn policy(&self) -> CallPolicy {
        match (&self.config.embedder, &self.config.http) {
            (EmbedderKind::Http, Some(http)) => http.calls.clone(),
            // In-process: big batches, no pacing; the CPU is the limit.
            _ => CallPolicy {
                max_batch: 256,
                requests_per_second: 0.0,
                ..CallPolicy::default()
            },
        }
    }

    /// The embedder's tokens for the text (only asked for texts not
    /// recorded yet: tokenizing is not free for minilm).
    fn units(&self, input: &EnrichInput) -> u64 {
        input
            .request
            .as_str()
            .map_or(0, |text| self.embedder.count_tokens(text))
    }

    /// Tokens, charged per tenant per month; capped when the config says so.
    fn metering(&self) -> Option<Metering> {
        let cost = &self.config.cost;
        Some(Metering {
            usage_kind: "embeddings".into(),
            unit: "tokens".into(),
            default_limit: cost.monthly_cap.map(|c| cost.cap_tokens(c)),
            tenant_limits: cost
                .tenant_caps
                .iter()
                .map(|(t, c)| (t.clone(), cost.cap_tokens(*c)))
                .collect(),
        })
    }

    async fn call(&self, inputs: &[EnrichInput]) -> Result<Vec<InputOutcome>, CallError> {
        let texts: Vec<String> = inputs
            .iter()
            .map(|i| i.request.as_str().unwrap_or_default().to_string())
            .collect();
        let embedder = self.embedder.clone();
        let vectors = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed_each(&refs)
        })
        .await
        .map_err(|e| CallError::Unavailable(format!("the embedder stopped: {e}")))??;
        metrics::counter!(conductor_engine::metrics::EMBEDDINGS_COMPUTED_TOTAL, "model" => self.embedder.model().to_string())
            .increment(vectors.iter().filter(|v| v.is_ok()).count() as u64);
        Ok(vectors
            .into_iter()
            .map(|v| match v {
                Ok(v) => InputOutcome::Result(serde_json::Value::String(PackedVector::pack(&v).0)),
                Err(why) => InputOutcome::Refused(why),
            })
            .collect())
    }
}
