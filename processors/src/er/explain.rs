//! Why a pair was — or was not — proposed: the keys the two records share
//! (and which of those blocks are purged), each field's similarity, the
//! score against the floor, and the rank of each among the other's
//! candidates. What `conductor er explain` prints.

use super::ErCandidatesProcessor;
use super::score::{Comparison, compare};
use serde::Serialize;

/// The explanation of one pair.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub tenant: String,
    pub left: String,
    pub right: String,
    /// Whether the pair stands (either record proposed the other).
    pub proposed: bool,
    /// Key kinds the two share in blocks that still propose.
    pub shared_keys: Vec<&'static str>,
    /// Key kinds they share only in purged blocks (too common to propose).
    pub purged_keys: Vec<&'static str>,
    pub comparison: Comparison,
    pub min_score: f64,
    pub top_k: usize,
    /// 1-based rank of `right` among `left`'s candidates (key sharers, by
    /// score), as if `left` arrived now; `None`: not among them.
    pub rank_of_right_for_left: Option<usize>,
    pub rank_of_left_for_right: Option<usize>,
}

impl Explanation {
    /// One paragraph for a terminal.
    pub fn text(&self) -> String {
        let rank =
            |r: Option<usize>| r.map_or("not a candidate".to_string(), |r| format!("rank {r}"));
        let fields: Vec<String> = self
            .comparison
            .fields
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        format!(
            "{tenant}: {left} ↔ {right}: {status} (score {score:.3}, floor {floor}, top_k {k})\n  shared keys: {shared}{purged}\n  fields: {fields}\n  {right} for {left}: {r1}; {left} for {right}: {r2}",
            tenant = self.tenant,
            left = self.left,
            right = self.right,
            status = if self.proposed {
                "PROPOSED"
            } else {
                "not proposed"
            },
            score = self.comparison.score,
            floor = self.min_score,
            k = self.top_k,
            shared = if self.shared_keys.is_empty() {
                "none".to_string()
            } else {
                self.shared_keys.join(", ")
            },
            purged = if self.purged_keys.is_empty() {
                String::new()
            } else {
                format!(" (purged, too common: {})", self.purged_keys.join(", "))
            },
            fields = if fields.is_empty() {
                "nothing to compare".into()
            } else {
                fields.join(", ")
            },
            r1 = rank(self.rank_of_right_for_left),
            r2 = rank(self.rank_of_left_for_right),
        )
    }
}

/// Explains the pair (`left`, `right`) of `tenant` from the processor's state.
pub fn explain(
    p: &ErCandidatesProcessor,
    tenant: &str,
    left: &str,
    right: &str,
) -> Result<Explanation, String> {
    let idx = p
        .state
        .tenants
        .get(tenant)
        .ok_or_else(|| format!("no record of tenant `{tenant}` has been resolved"))?;
    let slot = |id: &str| {
        idx.by_id
            .get(id)
            .copied()
            .ok_or_else(|| format!("no live record `{id}` in tenant `{tenant}`"))
    };
    let (ls, rs) = (slot(left)?, slot(right)?);
    let (l, r) = (idx.entry(ls).unwrap(), idx.entry(rs).unwrap());
    let mut shared = Vec::new();
    let mut purged = Vec::new();
    for (kind, key) in &l.keys {
        if !r.keys.iter().any(|(_, k)| k == key) {
            continue;
        }
        let list = if idx.blocks.get(key).is_some_and(|b| b.purged) {
            &mut purged
        } else {
            &mut shared
        };
        if !list.contains(&kind.name()) {
            list.push(kind.name());
        }
    }
    let config = p.config();
    // Every key sharer scored, whatever its score, to rank the other among them.
    let mut wide = config.clone();
    wide.top_k = config.max_scored;
    wide.min_score = 0.0;
    let rank = |me: &super::index::Entry, my_slot: u32, other: u32| {
        idx.candidates(&wide, &me.keys, &me.features, Some(my_slot))
            .iter()
            .position(|c| c.slot == other)
            .map(|i| i + 1)
    };
    Ok(Explanation {
        tenant: tenant.into(),
        left: left.into(),
        right: right.into(),
        proposed: l.partners.contains(&rs),
        shared_keys: shared,
        purged_keys: purged,
        comparison: compare(&l.features, &r.features),
        min_score: config.min_score,
        top_k: config.top_k,
        rank_of_right_for_left: rank(l, ls, rs),
        rank_of_left_for_right: rank(r, rs, ls),
    })
}
