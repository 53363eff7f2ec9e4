//! The cheap comparison that ranks a record's candidates: a similarity per
//! field (0–1), turned into evidence for or against (agreement on a rare,
//! precise field weighs more than on a fuzzy one; a missing field is no
//! evidence), summed, and squashed into a 0–1 score. Fellegi–Sunter in
//! spirit, with fixed weights instead of EM-trained ones: the job here is
//! ranking for recall at a small budget; a model downstream decides merges.

use super::features::Features;
use serde::Serialize;
use std::collections::BTreeMap;
use strsim::jaro_winkler;

/// How two records compare.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// 0–1: `1 / (1 + e^-(evidence - MIDPOINT) / SCALE)`.
    pub score: f64,
    /// The summed evidence.
    pub evidence: f64,
    /// Similarity per field (`given_name`, `surname`, `date`, `identifier`,
    /// `postcode`, `text`), present only when both records have it. A
    /// small list, not a map: a comparison is made dozens of times per
    /// record and most are thrown away.
    #[serde(serialize_with = "as_map")]
    pub fields: Vec<(&'static str, f64)>,
}

impl Comparison {
    /// The similarity of `field`, if both records have it.
    pub fn field(&self, field: &str) -> Option<f64> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, s)| *s)
    }

    /// The fields as a sorted map (what rows and events carry).
    pub fn field_map(&self) -> BTreeMap<String, f64> {
        self.fields
            .iter()
            .map(|(f, s)| (f.to_string(), *s))
            .collect()
    }
}

fn as_map<S: serde::Serializer>(fields: &[(&'static str, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(fields.iter().map(|(k, v)| (*k, *v)))
}

/// Evidence at which the score is 0.5, and its spread.
const MIDPOINT: f64 = 4.0;
const SCALE: f64 = 1.5;

/// Maps a similarity to evidence: `-against` at or below `floor`, rising
/// linearly to `+for_` at 1.
fn evidence(sim: f64, floor: f64, for_: f64, against: f64) -> f64 {
    if sim <= floor {
        -against
    } else {
        -against + (for_ + against) * (sim - floor) / (1.0 - floor)
    }
}

/// Hamming distance of equal-length strings; `None` for other lengths.
fn hamming(a: &str, b: &str) -> Option<usize> {
    (a.len() == b.len()).then(|| a.bytes().zip(b.bytes()).filter(|(x, y)| x != y).count())
}

/// One adjacent transposition apart.
fn transposed(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() != b.len() {
        return false;
    }
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    matches!(diff.as_slice(), [i, j] if *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i])
}

/// Dates `YYYYMMDD`: equal 1, one digit 0.85, day/month swapped 0.8, same
/// year and month or day 0.5, same year 0.25, else 0.
pub fn date_similarity(a: &str, b: &str) -> f64 {
    if a == b {
        return 1.0;
    }
    if hamming(a, b) == Some(1) {
        return 0.85;
    }
    if a.len() == 8 && b.len() == 8 {
        let (ya, ma, da) = (&a[..4], &a[4..6], &a[6..8]);
        let (yb, mb, db) = (&b[..4], &b[4..6], &b[6..8]);
        if ya == yb && ma == db && da == mb {
            return 0.8;
        }
        if ya == yb && (ma == mb || da == db) {
            return 0.5;
        }
        if ya == yb {
            return 0.25;
        }
    }
    0.0
}

/// Identifiers: equal 1, one char 0.85, a transposition 0.8, one insertion
/// or deletion 0.7, else 0.
pub fn id_similarity(a: &str, b: &str) -> f64 {
    if a == b {
        1.0
    } else if hamming(a, b) == Some(1) {
        0.85
    } else if transposed(a, b) {
        0.8
    } else if strsim::levenshtein(a, b) == 1 {
        0.7
    } else {
        0.0
    }
}

/// The best similarity over every pair of values.
fn best(a: &[String], b: &[String], sim: impl Fn(&str, &str) -> f64) -> Option<f64> {
    let mut out: Option<f64> = None;
    for x in a {
        for y in b {
            let s = sim(x, y);
            out = Some(out.map_or(s, |o| o.max(s)));
        }
    }
    out
}

/// Tokens: the share of the smaller set's tokens with a close match
/// (Jaro–Winkler ≥ 0.9) in the other.
fn token_similarity(a: &[String], b: &[String]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    // Both lists are sorted: exact matches by a merge, then Jaro–Winkler
    // only for what is left (it is most of the cost of a comparison).
    let mut exact = vec![false; small.len()];
    let mut taken = vec![false; large.len()];
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                exact[i] = true;
                taken[j] = true;
                i += 1;
                j += 1;
            }
        }
    }
    let mut matched = exact.iter().filter(|e| **e).count();
    for (t, _) in small.iter().zip(&exact).filter(|(_, e)| !**e) {
        // A typo'd token keeps its first letter nearly always, and its length.
        let close = large.iter().zip(&taken).any(|(u, used)| {
            !used
                && t.as_bytes().first() == u.as_bytes().first()
                && t.len().abs_diff(u.len()) <= 2
                && jaro_winkler(t, u) >= 0.9
        });
        matched += close as usize;
    }
    Some(matched as f64 / small.len() as f64)
}

/// Name parts compared in order, and swapped when that agrees better
/// (given name and surname exchanged). Returns per-part similarities in the
/// configured order, for the parts both records have.
fn name_similarities(a: &[String], b: &[String]) -> Vec<(usize, f64)> {
    let direct: Vec<(usize, f64)> = (0..a.len().min(b.len()))
        .filter(|&i| !a[i].is_empty() && !b[i].is_empty())
        .map(|i| (i, jaro_winkler(&a[i], &b[i])))
        .collect();
    if a.len() == 2 && b.len() == 2 {
        let swapped: Vec<(usize, f64)> = [(0, 1), (1, 0)]
            .into_iter()
            .filter(|&(i, j)| !a[i].is_empty() && !b[j].is_empty())
            .map(|(i, j)| (i, jaro_winkler(&a[i], &b[j])))
            .collect();
        let mean = |v: &[(usize, f64)]| v.iter().map(|x| x.1).sum::<f64>() / v.len().max(1) as f64;
        if direct.len() == 2 && mean(&direct) >= 0.9 {
            return direct; // agrees in order: no swap can do better enough
        }
        if swapped.len() >= direct.len() && mean(&swapped) > mean(&direct) + 0.1 {
            return swapped;
        }
    }
    direct
}

/// Field names of name parts for `fields` (with two parts, the first is
/// the given name and the second the surname).
fn part_name(i: usize, parts: usize) -> &'static str {
    const PARTS: [&str; 8] = [
        "name_0", "name_1", "name_2", "name_3", "name_4", "name_5", "name_6", "name_7",
    ];
    match (i, parts) {
        (0, 2) => "given_name",
        (1, 2) => "surname",
        (i, _) => PARTS.get(i).copied().unwrap_or("name_more"),
    }
}

/// Compares two records.
pub fn compare(a: &Features, b: &Features) -> Comparison {
    let mut fields = Vec::with_capacity(6);
    let mut total = 0.0;
    let parts = a.names.len().max(b.names.len());
    for (i, s) in name_similarities(&a.names, &b.names) {
        // The last part (the surname) is rarer than the first.
        let weight = if i + 1 == parts { 3.0 } else { 2.5 };
        total += evidence(s, 0.7, weight, 1.5);
        fields.push((part_name(i, parts), s));
    }
    if let Some(s) = best(&a.dates, &b.dates, date_similarity) {
        total += evidence(s, 0.3, 4.0, 1.5);
        fields.push(("date", s));
    }
    if let Some(s) = best(&a.ids, &b.ids, id_similarity) {
        total += evidence(s, 0.5, 6.0, 2.0);
        fields.push(("identifier", s));
    }
    if let Some(s) = best(&a.postcodes, &b.postcodes, |x, y| {
        if x == y {
            1.0
        } else if hamming(x, y) == Some(1) {
            0.6
        } else {
            0.0
        }
    }) {
        total += evidence(s, 0.0, 1.5, 0.5);
        fields.push(("postcode", s));
    }
    if let Some(s) = token_similarity(&a.tokens, &b.tokens) {
        total += evidence(s, 0.2, 2.0, 0.7);
        fields.push(("text", s));
    }
    Comparison {
        score: 1.0 / (1.0 + (-(total - MIDPOINT) / SCALE).exp()),
        evidence: total,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(given: &str, surname: &str, dob: &str, id: &str, pc: &str) -> Features {
        let v = |s: &str| {
            if s.is_empty() {
                vec![]
            } else {
                vec![s.to_string()]
            }
        };
        Features {
            names: vec![given.into(), surname.into()],
            dates: v(dob),
            ids: v(id),
            postcodes: v(pc),
            tokens: vec![],
        }
    }

    #[test]
    fn a_duplicate_with_typos_outscores_a_namesake() {
        let a = person("mitchell", "green", "19560409", "1804974", "2119");
        let dup = person("mitchel", "green", "19560490", "1804947", "2119");
        let namesake = person("mitchell", "green", "19771102", "5551234", "3000");
        let (d, n) = (compare(&a, &dup), compare(&a, &namesake));
        assert!(d.score > 0.9, "{d:?}");
        assert!(n.score < 0.5, "{n:?}");
        assert_eq!(d.field("identifier"), Some(0.8));
    }

    #[test]
    fn swapped_names_agree() {
        let a = person("harley", "mccarthy", "", "", "");
        let b = person("mccarthy", "harley", "", "", "");
        let c = compare(&a, &b);
        assert!(
            c.field("given_name") > Some(0.99) && c.field("surname") > Some(0.99),
            "{c:?}"
        );
    }

    #[test]
    fn similarities_of_dates_and_ids() {
        assert_eq!(date_similarity("19560409", "19560904"), 0.8);
        assert_eq!(date_similarity("19560409", "19560419"), 0.85);
        assert_eq!(id_similarity("1804974", "180497"), 0.7);
        assert_eq!(id_similarity("1804974", "9999999"), 0.0);
    }

    #[test]
    fn missing_fields_are_no_evidence() {
        let a = person("ada", "", "", "", "");
        let b = person("ada", "", "", "", "");
        let c = compare(&a, &b);
        assert_eq!(c.fields.len(), 1);
        assert!(c.evidence > 2.0 && c.evidence < 3.0, "{c:?}");
    }
}
