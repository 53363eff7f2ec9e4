//! `[processor_config]` of `er_candidates`: which attributes play which
//! role, and the candidate budget. Any dataset works by configuration
//! alone; a record without some attribute is normal.

use conductor_engine::runtime::config::ConfigProblem;
use serde::{Deserialize, Serialize};

/// The attributes of each role, by name. A role may list several
/// attributes (a name is its parts; an address is several lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Roles {
    /// Name parts, in order (given name(s) first): compared part by part,
    /// and with the parts swapped.
    pub name: Vec<String>,
    /// Dates (birth, incorporation): `YYYYMMDD`, `YYYY-MM-DD` or `DD/MM/YYYY`.
    pub date: Vec<String>,
    /// Identifiers (national id, registration number): equal, or one typo apart.
    pub identifier: Vec<String>,
    /// Postcodes.
    pub postcode: Vec<String>,
    /// Free text compared by tokens (address lines, suburb, street number).
    pub text: Vec<String>,
}

impl Default for Roles {
    /// The Febrl / IntelGraph person attributes.
    fn default() -> Self {
        let v = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        Roles {
            name: v(&["given_name", "surname"]),
            date: v(&["date_of_birth"]),
            identifier: v(&["soc_sec_id"]),
            postcode: v(&["postcode"]),
            text: v(&["street_number", "address_1", "address_2", "suburb", "state"]),
        }
    }
}

/// `[processor_config]` of `er_candidates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErConfig {
    /// Entity types to resolve (`Person`); empty: every type, each against
    /// records of its own type only.
    pub entity_types: Vec<String>,
    /// Which attribute plays which role.
    pub attributes: Roles,
    /// Proposals per record at most (the best by score).
    pub top_k: usize,
    /// Proposals below this score (0–1) are not made.
    pub min_score: f64,
    /// A blocking key shared by more records than this stops proposing
    /// (block purging: one common surname can't explode the work).
    pub max_block_size: usize,
    /// Candidates scored per record at most (those sharing the most keys).
    pub max_scored: usize,
    /// The embeddings as an extra signal (`[processor_config.ann]`).
    pub ann: super::ann::AnnConfig,
}

impl Default for ErConfig {
    fn default() -> Self {
        ErConfig {
            entity_types: Vec::new(),
            attributes: Roles::default(),
            top_k: 5,
            min_score: 0.05,
            max_block_size: 200,
            max_scored: 16,
            ann: Default::default(),
        }
    }
}

impl ErConfig {
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: &str| {
            out.push(ConfigProblem {
                key: key.into(),
                message: message.into(),
                hint: None,
            })
        };
        if self.top_k == 0 {
            bad("top_k", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            bad("min_score", "must be between 0 and 1");
        }
        if self.max_block_size < 2 {
            bad("max_block_size", "must be at least 2");
        }
        if self.max_scored < self.top_k {
            bad("max_scored", "must be at least top_k");
        }
        let ann = &self.ann;
        if !(1..=256).contains(&ann.bands) {
            bad("ann.bands", "must be between 1 and 256");
        }
        if !(1..=64).contains(&ann.bits) {
            bad("ann.bits", "must be between 1 and 64");
        }
        if ann.enabled && ann.top_k == 0 {
            bad("ann.top_k", "must be at least 1 when ann is enabled");
        }
        let a = &self.attributes;
        if a.name.is_empty()
            && a.date.is_empty()
            && a.identifier.is_empty()
            && a.postcode.is_empty()
            && a.text.is_empty()
        {
            bad("attributes", "names no attribute: nothing to compare");
        }
        out
    }
}
