//! The `minilm` embedder (all-MiniLM-L6-v2 in process) on the model files
//! `ops/install-minilm.sh` installs: 384 unit-length dimensions, the same
//! vector for a text alone or padded in a batch, sentence-level meaning
//! (sentence-transformers' published similarities, to 3 decimals), WordPiece token counts,
//! and a missing model folder reported by `topology validate`'s check with
//! the script that fixes it. Under CI=true a missing model is a failure.

use conductor_processors::embeddings::config::{EmbedderKind, EmbeddingsConfig};
use conductor_processors::embeddings::embedder::{self, Embedder, cosine};
use conductor_processors::embeddings::minilm::{DIMS, MODEL_ID, default_model_dir, missing_files};

fn minilm() -> Option<Box<dyn Embedder>> {
    let dir = default_model_dir();
    if let Some(why) = missing_files(&dir) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true but {why}");
        }
        eprintln!("\n*** NOT RUN: {why} ***\n");
        return None;
    }
    let config = EmbeddingsConfig {
        embedder: EmbedderKind::Minilm,
        ..Default::default()
    };
    Some(embedder::try_build(&config).expect("the installed model loads"))
}

#[test]
fn vectors_are_384_unit_dimensions_and_the_same_alone_or_in_a_batch() {
    let Some(m) = minilm() else { return };
    assert_eq!((m.model(), m.dims()), (MODEL_ID, DIMS));
    let texts = [
        "ada lovelace",
        "charles babbage 12 analytical engine street marylebone london",
        "x",
    ];
    let batch = m.embed(&texts).unwrap();
    assert_eq!(batch.len(), 3);
    for (text, v) in texts.iter().zip(&batch) {
        assert_eq!(v.len(), DIMS);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        let alone = &m.embed(&[text]).unwrap()[0];
        let drift = v
            .iter()
            .zip(alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(
            drift < 1e-4,
            "{text:?}: padding moved the vector by {drift}"
        );
    }
    assert_eq!(
        m.embed(&texts).unwrap(),
        batch,
        "deterministic from call to call"
    );
}

/// sentence-transformers' own usage example
/// (sbert.net/docs/sentence_transformer/usage/usage.html) prints these
/// similarities for all-MiniLM-L6-v2: the same model run by PyTorch.
#[test]
fn similarities_match_the_ones_sentence_transformers_publishes() {
    let Some(m) = minilm() else { return };
    let v = m
        .embed(&[
            "The weather is lovely today.",
            "It's so sunny outside!",
            "He drove to the stadium.",
        ])
        .unwrap();
    let got = [
        cosine(&v[0], &v[1]),
        cosine(&v[0], &v[2]),
        cosine(&v[1], &v[2]),
    ];
    let published = [0.6660, 0.1046, 0.1411];
    for (g, p) in got.iter().zip(published) {
        assert!((g - p).abs() < 0.001, "{got:?} vs published {published:?}");
    }
}

#[test]
fn similar_sentences_are_nearer_than_unrelated_ones() {
    let Some(m) = minilm() else { return };
    let v = m
        .embed(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "A man is riding a horse.",
            "The new movie is awesome.",
        ])
        .unwrap();
    let (bread, horse, movie) = (
        cosine(&v[0], &v[1]),
        cosine(&v[0], &v[2]),
        cosine(&v[0], &v[3]),
    );
    eprintln!("food~bread {bread:.4}, food~horse {horse:.4}, food~movie {movie:.4}");
    assert!(
        bread > horse + 0.2 && horse > movie,
        "food~bread {bread:.4}, food~horse {horse:.4}, food~movie {movie:.4}"
    );
}

#[test]
fn tokens_are_wordpieces_with_cls_and_sep() {
    let Some(m) = minilm() else { return };
    assert_eq!(m.count_tokens("hello world"), 4);
    assert!(m.count_tokens("lovelace") >= 3, "an unusual word splits");
    assert_eq!(
        m.count_tokens(&"word ".repeat(1000)),
        256,
        "truncated as the model reads it"
    );
}

#[test]
fn a_missing_model_folder_is_a_config_problem_naming_the_install_script() {
    let config = EmbeddingsConfig {
        embedder: EmbedderKind::Minilm,
        model_dir: Some("/nonexistent/minilm".into()),
        ..Default::default()
    };
    let problems = config.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "model_dir");
    assert!(
        problems[0]
            .message
            .contains("ops/install-minilm.sh /nonexistent/minilm")
            && problems[0].message.contains("model.safetensors"),
        "{}",
        problems[0].message
    );
    let broken = embedder::build(&config);
    assert_eq!(
        broken.model(),
        MODEL_ID,
        "the content hash still names the model"
    );
    let err = broken.embed(&["a"]).unwrap_err();
    assert!(err.contains("install-minilm.sh"), "{err}");
}
