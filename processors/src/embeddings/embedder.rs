//! Embedders: text in, L2-normalised vectors out, behind one trait so that
//! the stage and the benchmarks don't care which runs.

use super::config::{EmbedderKind, EmbeddingsConfig};
use super::hashed_ngrams::HashedNgrams;
use super::http::HttpEmbedder;
use super::minilm::{self, MiniLm};
use conductor_engine::enrich::CallError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Computes vectors for texts. Implementations are deterministic for a
/// given [`model`](Embedder::model): the content hash names the model, so
/// a recorded vector is valid for as long as the model id is the same.
pub trait Embedder: Send + Sync + 'static {
    /// Model id and version (`hashed-ngrams-d256@1`): part of every content
    /// hash, so two models never share a recorded vector.
    fn model(&self) -> &str;

    /// Length of every vector.
    fn dims(&self) -> usize;

    /// What embedding `text` costs, in tokens (what a price per token is
    /// charged on). The default counts words; a model with a tokenizer
    /// counts its tokens.
    fn count_tokens(&self, text: &str) -> u64 {
        text.split_whitespace().count() as u64
    }

    /// One vector per text, in order. An error is the embedder failing as a
    /// whole (the batch is retried); it never quotes a text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;

    /// [`embed`](Embedder::embed) for the enrichment stage, saying whether
    /// the service asked to be left alone (`RateLimited`, honoured by every
    /// call of the stage). Runs on a blocking thread.
    fn embed_call(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, CallError> {
        self.embed(texts).map_err(CallError::Unavailable)
    }

    /// [`embed_call`](Embedder::embed_call) with a verdict per text: `Err`
    /// is a text the embedder refuses for good (too long for the model),
    /// with a reason that does not quote it. The stage records it as
    /// refused, so one bad text never stalls the others.
    fn embed_each(&self, texts: &[&str]) -> Result<Vec<Result<Vec<f32>, String>>, CallError> {
        Ok(self.embed_call(texts)?.into_iter().map(Ok).collect())
    }
}

/// The embedder `config` names. A model that doesn't load (its config
/// check passed, so a file is corrupt) gives an embedder that fails every
/// call saying why: the stage waits on it as on any dependency that is
/// down, and `topology status` shows the reason.
pub fn build(config: &EmbeddingsConfig) -> Box<dyn Embedder> {
    try_build(config).unwrap_or_else(|why| {
        Box::new(Broken {
            model: model_id(config),
            why,
        })
    })
}

/// The embedder `config` names, or why it does not load.
pub fn try_build(config: &EmbeddingsConfig) -> Result<Box<dyn Embedder>, String> {
    Ok(match config.embedder {
        EmbedderKind::HashedNgrams => Box::new(HashedNgrams::new(config.dims)),
        EmbedderKind::Minilm => Box::new(MiniLm::load(&config.minilm_dir())?),
        EmbedderKind::Http => Box::new(HttpEmbedder::new(config.http.clone().unwrap_or_default())),
    })
}

/// The embedder `config` names, built once per process and shared: a
/// model is loaded once, not per search query.
pub fn shared(config: &EmbeddingsConfig) -> Arc<dyn Embedder> {
    static BUILT: OnceLock<Mutex<HashMap<String, Arc<dyn Embedder>>>> = OnceLock::new();
    let key = serde_json::to_string(config).unwrap_or_default();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(key)
        .or_insert_with(|| build(config).into())
        .clone()
}

/// The model id `config` gives, without building the embedder.
pub fn model_id(config: &EmbeddingsConfig) -> String {
    match config.embedder {
        EmbedderKind::HashedNgrams => HashedNgrams::model_id(config.dims),
        EmbedderKind::Minilm => minilm::MODEL_ID.to_string(),
        EmbedderKind::Http => config.http.clone().unwrap_or_default().model_id(),
    }
}

/// An embedder whose model did not load.
struct Broken {
    model: String,
    why: String,
}

impl Embedder for Broken {
    fn model(&self) -> &str {
        &self.model
    }

    fn dims(&self) -> usize {
        0
    }

    fn embed(&self, _: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Err(self.why.clone())
    }
}

/// Scales `v` to unit length (a zero vector stays zero).
pub fn l2_normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Cosine similarity of two unit vectors (their dot product).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
