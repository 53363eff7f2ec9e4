//! Embedders: text in, L2-normalised vectors out, behind one trait so that
//! the stage and the benchmarks don't care which runs.

use super::config::{EmbedderKind, EmbeddingsConfig};
use super::hashed_ngrams::HashedNgrams;

/// Computes vectors for texts. Implementations are deterministic for a
/// given [`model`](Embedder::model): the content hash names the model, so
/// a recorded vector is valid for as long as the model id is the same.
pub trait Embedder: Send + Sync + 'static {
    /// Model id and version (`hashed-ngrams-d256@1`): part of every content
    /// hash, so two models never share a recorded vector.
    fn model(&self) -> &str;

    /// Length of every vector.
    fn dims(&self) -> usize;

    /// One vector per text, in order. An error is the embedder failing as a
    /// whole (the batch is retried); it never quotes a text.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

/// The embedder `config` names.
pub fn build(config: &EmbeddingsConfig) -> Box<dyn Embedder> {
    match config.embedder {
        EmbedderKind::HashedNgrams => Box::new(HashedNgrams::new(config.dims)),
    }
}

/// The model id `config` gives, without building the embedder.
pub fn model_id(config: &EmbeddingsConfig) -> String {
    match config.embedder {
        EmbedderKind::HashedNgrams => HashedNgrams::model_id(config.dims),
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
