//! One tenant's records and blocking index: the state candidate generation
//! runs against, one record at a time.
//!
//! Records live in slots (never reused, so a slot names one record for the
//! index's life); a block is the list of slots sharing a key, in arrival
//! order. A block that outgrows `max_block_size` is purged: it is emptied
//! and the key stops proposing, for every record after (a common surname
//! or a city's postcode says little and would cost a lot).

use super::config::ErConfig;
use super::features::Features;
use super::keys::{KeyKind, keys};
use super::score::{Comparison, compare};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A record of the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub version: i64,
    pub entity_type: String,
    pub features: Features,
    pub keys: Vec<(KeyKind, u64)>,
    /// Slots of the records it has a standing proposal with.
    pub partners: BTreeSet<u32>,
}

/// The slots sharing one key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub members: Vec<u32>,
    /// Outgrew `max_block_size`: proposes nothing any more.
    pub purged: bool,
}

/// A scored candidate of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub slot: u32,
    /// Kinds of the keys the two share.
    pub kinds: u16,
    pub shared_keys: u32,
    pub comparison: Comparison,
}

/// One tenant's index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantIndex {
    pub slots: Vec<Option<Entry>>,
    pub by_id: HashMap<String, u32>,
    /// Keys are hashes already (FNV-1a): a cheap hasher is enough.
    pub blocks: FxHashMap<u64, Block>,
    /// Deleted records' versions, so a stale upsert can't bring one back.
    pub tombstones: BTreeMap<String, i64>,
    /// Last version given to a pair change of this tenant (pair rows are
    /// version-guarded; per tenant, so it doesn't depend on how tenants interleave).
    pub seq: i64,
}

impl TenantIndex {
    pub fn entry(&self, slot: u32) -> Option<&Entry> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub fn entry_mut(&mut self, slot: u32) -> Option<&mut Entry> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    pub fn live_records(&self) -> usize {
        self.by_id.len()
    }

    /// The candidates of a record with `keys` and `features` among the
    /// records indexed (not `exclude`): those sharing a key in an unpurged
    /// block, the `max_scored` sharing the most keys scored, the best
    /// `top_k` at or above `min_score`, best first (ties by id).
    pub fn candidates(
        &self,
        config: &ErConfig,
        keys: &[(KeyKind, u64)],
        features: &Features,
        exclude: Option<u32>,
    ) -> Vec<Candidate> {
        // Sized for the blocks it will walk, so it never grows while it fills.
        let members: usize = keys
            .iter()
            .filter_map(|(_, key)| self.blocks.get(key))
            .map(|b| b.members.len())
            .sum();
        let mut shared: FxHashMap<u32, (u32, u16)> =
            FxHashMap::with_capacity_and_hasher(members, Default::default());
        for (kind, key) in keys {
            let Some(block) = self.blocks.get(key) else {
                continue;
            };
            for &slot in &block.members {
                if Some(slot) == exclude {
                    continue;
                }
                let e = shared.entry(slot).or_default();
                e.0 += 1;
                e.1 |= kind.bit();
            }
        }
        let mut ranked: Vec<(u32, u32, u16)> =
            shared.into_iter().map(|(s, (n, k))| (s, n, k)).collect();
        // The `max_scored` sharing the most keys (ties: the older slot), found
        // in linear time: a popular record's sharers can number thousands.
        let order = |a: &(u32, u32, u16), b: &(u32, u32, u16)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        if ranked.len() > config.max_scored && config.max_scored > 0 {
            ranked.select_nth_unstable_by(config.max_scored - 1, order);
            ranked.truncate(config.max_scored);
        }
        ranked.sort_unstable_by(order);
        ranked.truncate(config.max_scored);
        let mut scored: Vec<Candidate> = ranked
            .into_iter()
            .filter_map(|(slot, shared_keys, kinds)| {
                let other = self.entry(slot)?;
                let comparison = compare(features, &other.features);
                (comparison.score >= config.min_score).then_some(Candidate {
                    slot,
                    kinds,
                    shared_keys,
                    comparison,
                })
            })
            .collect();
        scored.sort_by(|a, b| {
            b.comparison
                .score
                .total_cmp(&a.comparison.score)
                .then_with(|| self.id_of(a.slot).cmp(self.id_of(b.slot)))
        });
        scored.truncate(config.top_k);
        scored
    }

    fn id_of(&self, slot: u32) -> &str {
        self.entry(slot).map_or("", |e| e.id.as_str())
    }

    /// Adds a record (a new slot) and its keys to the blocks; returns its slot.
    pub fn insert(&mut self, config: &ErConfig, entry: Entry) -> u32 {
        let slot = self.slots.len() as u32;
        for (_, key) in &entry.keys {
            self.join_block(config, *key, slot);
        }
        self.by_id.insert(entry.id.clone(), slot);
        self.slots.push(Some(entry));
        slot
    }

    /// Adds keys to a record already indexed (its embedding's, which come
    /// after the record).
    pub fn add_keys(&mut self, config: &ErConfig, slot: u32, keys: Vec<(KeyKind, u64)>) {
        for (_, key) in &keys {
            self.join_block(config, *key, slot);
        }
        if let Some(e) = self.entry_mut(slot) {
            e.keys.extend(keys);
        }
    }

    /// Puts `slot` in the block of `key`, purging the block when it outgrows
    /// `max_block_size`.
    fn join_block(&mut self, config: &ErConfig, key: u64, slot: u32) {
        let block = self.blocks.entry(key).or_default();
        if block.purged {
            return;
        }
        block.members.push(slot);
        if block.members.len() > config.max_block_size {
            block.members = Vec::new();
            block.purged = true;
        }
    }

    /// Takes a record out of the index (its slot stays empty); returns it.
    pub fn remove(&mut self, slot: u32) -> Option<Entry> {
        let entry = self.slots.get_mut(slot as usize)?.take()?;
        for (_, key) in &entry.keys {
            if let Some(block) = self.blocks.get_mut(key) {
                block.members.retain(|s| *s != slot);
            }
        }
        self.by_id.remove(&entry.id);
        Some(entry)
    }
}

/// The keys and features of a record, computed once.
pub fn entry_of(id: &str, version: i64, entity_type: &str, features: Features) -> Entry {
    let keys = keys(entity_type, &features);
    Entry {
        id: id.to_string(),
        version,
        entity_type: entity_type.to_string(),
        features,
        keys,
        partners: BTreeSet::new(),
    }
}
