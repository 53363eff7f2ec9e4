//! Hybrid search's ranking, shared by `conductor search`, the demo and the
//! quality measurements: the keyword stage's and the vector stage's
//! answers, each min-max normalised to 0–1, fused as
//! `alpha·keyword + (1 − alpha)·vector` over the union of both (an entity
//! one stage did not find scores 0 there).

use crate::vector_index::ann::Hit;
use conductor_engine::store::KeywordHit;
use serde::Serialize;
use std::collections::BTreeMap;

/// One answer.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub rank: usize,
    pub entity_id: String,
    /// What the answers are ranked by: the keyword stage's relevance, the
    /// vector stage's cosine similarity, or the fused 0–1 score (hybrid).
    pub score: f64,
    /// The keyword stage's relevance (`ts_rank` / BM25), if it found it.
    pub keyword_score: Option<f64>,
    /// Cosine similarity to the query's vector, if the vector stage found it.
    pub vector_score: Option<f64>,
}

/// Hits in the order given, numbered; `score` is the stage's own.
pub fn ranked(hits: impl Iterator<Item = (String, Option<f64>, Option<f64>)>) -> Vec<SearchHit> {
    hits.enumerate()
        .map(|(i, (entity_id, keyword_score, vector_score))| SearchHit {
            rank: i + 1,
            score: keyword_score.or(vector_score).unwrap_or_default(),
            entity_id,
            keyword_score,
            vector_score,
        })
        .collect()
}

/// Min-max normalisation to 0–1 (a single value, or all equal: 1).
pub fn normalised(scores: &[f64]) -> Vec<f64> {
    let (lo, hi) = scores
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), s| {
            (lo.min(*s), hi.max(*s))
        });
    scores
        .iter()
        .map(|s| if hi > lo { (s - lo) / (hi - lo) } else { 1.0 })
        .collect()
}

/// `alpha·keyword + (1 − alpha)·vector` over the union of both lists, each
/// normalised; an entity one stage did not find scores 0 there.
pub fn fuse(keyword: &[KeywordHit], vector: &[Hit], alpha: f64) -> Vec<SearchHit> {
    #[derive(Default)]
    struct Both {
        keyword: Option<(f64, f64)>,
        vector: Option<(f64, f64)>,
    }
    let mut by_id: BTreeMap<&str, Both> = BTreeMap::new();
    let kn = normalised(&keyword.iter().map(|h| h.score).collect::<Vec<_>>());
    for (h, n) in keyword.iter().zip(kn) {
        by_id.entry(&h.id).or_default().keyword = Some((h.score, n));
    }
    let vn = normalised(
        &vector
            .iter()
            .map(|h| h.similarity as f64)
            .collect::<Vec<_>>(),
    );
    for (h, n) in vector.iter().zip(vn) {
        by_id.entry(&h.entity_id).or_default().vector = Some((h.similarity as f64, n));
    }
    let mut fused: Vec<(f64, &str, Both)> = by_id
        .into_iter()
        .map(|(id, b)| {
            let score = alpha * b.keyword.map_or(0.0, |k| k.1)
                + (1.0 - alpha) * b.vector.map_or(0.0, |v| v.1);
            (score, id, b)
        })
        .collect();
    fused.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    fused
        .into_iter()
        .enumerate()
        .map(|(i, (score, id, b))| SearchHit {
            rank: i + 1,
            entity_id: id.to_string(),
            score,
            keyword_score: b.keyword.map(|k| k.0),
            vector_score: b.vector.map(|v| v.0),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_weighs_normalised_scores_and_keeps_what_one_stage_found() {
        let keyword = vec![
            KeywordHit {
                id: "a".into(),
                score: 9.0,
            },
            KeywordHit {
                id: "b".into(),
                score: 3.0,
            },
        ];
        let vector = vec![
            Hit {
                entity_id: "c".into(),
                similarity: 0.9,
            },
            Hit {
                entity_id: "b".into(),
                similarity: 0.8,
            },
            Hit {
                entity_id: "a".into(),
                similarity: 0.5,
            },
        ];
        let fused = fuse(&keyword, &vector, 0.5);
        let order: Vec<&str> = fused.iter().map(|h| h.entity_id.as_str()).collect();
        // a: 0.5·1 + 0.5·0 = 0.5; b: 0.5·0 + 0.5·0.75 = 0.375; c: 0.5·1 = 0.5.
        assert_eq!(order, ["a", "c", "b"]);
        assert_eq!(fused[0].keyword_score, Some(9.0));
        assert_eq!(fused[1].keyword_score, None);
        assert!((fused[2].score - 0.375).abs() < 1e-6);
        // alpha 1: keyword order alone, vector-only finds last.
        let order: Vec<String> = fuse(&keyword, &vector, 1.0)
            .into_iter()
            .map(|h| h.entity_id)
            .collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn a_single_score_normalises_to_one() {
        assert_eq!(normalised(&[0.3]), vec![1.0]);
        assert_eq!(normalised(&[2.0, 1.0, 0.0]), vec![1.0, 0.5, 0.0]);
        assert!(normalised(&[]).is_empty());
    }
}
