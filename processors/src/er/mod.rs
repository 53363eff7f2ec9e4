//! `er_candidates`: entity-resolution candidate generation, one record at a
//! time. As each entity event arrives it proposes the records of the same
//! tenant and type already seen that may be the same real-world entity —
//! the best `top_k` by a cheap comparison score among those sharing a
//! blocking key — each with its evidence (which keys proposed it, a
//! similarity per field). New→existing only: nothing already proposed is
//! recomputed. An update re-scores the record's pairs (retracting those that
//! fall below `min_score`) and proposes again; a delete retracts its pairs.
//!
//! Outputs: the `er_candidates` table, one row per unordered pair
//! (`left_id < right_id`), and one `ErCandidate` event per change on
//! `ig.er.candidates`. The index (records' features, blocks) is processor
//! state, snapshotted with the batches. A record's tenant must be all on
//! one input partition for the state to be partition-local: the source is
//! keyed `tenant/subject`, so in one worker it is; to scale out, put a
//! repartition-by-tenant topology in front (see the contract v2 note).
//!
//! With `[processor_config.ann]` on, an entity's embedding (an
//! `EmbeddingComputed` on the same tenant-keyed topic) adds locality-
//! sensitive keys to its record and proposes the best records sharing one
//! that no blocking key proposed ([`ann`]).
//!
//! Modules: [`config`] (roles and budget), [`features`] (normalisation),
//! [`keys`] (blocking keys), [`ann`] (the embeddings' LSH keys), [`score`]
//! (comparison), [`index`] (one tenant's records and blocks), [`explain`]
//! (why a pair was or was not proposed).

pub mod ann;
pub mod config;
pub mod explain;
pub mod features;
pub mod index;
pub mod keys;
pub mod quality;
pub mod score;

use conductor_engine::processor::{
    Effect, EmitEvent, Processor, ProcessorError, ProcessorSpec, ProcessorState,
};
use conductor_engine::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use conductor_engine::runtime::config::ConfigProblem;
use conductor_schemas::{EmbeddingComputed, ErCandidate, Event, EventData, EventMetadata};
use config::ErConfig;
use features::Features;
use index::{TenantIndex, entry_of};
use keys::KeyKind;
use score::Comparison;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

pub const ER_CANDIDATES_TABLE: &str = "er_candidates";
/// Where every change of a candidate pair is emitted.
pub const ER_CANDIDATES_TOPIC: &str = "ig.er.candidates";

fn col(name: &'static str, ty: ColumnType, nullable: bool) -> ColumnSpec {
    ColumnSpec { name, ty, nullable }
}

/// `er_candidates(tenant_id, left_id, right_id, version, entity_type, score,
/// status, methods, features, proposed_by)`; a retracted pair keeps its row
/// with `status = 'retracted'`.
pub fn candidates_table() -> TableSpec {
    TableSpec {
        text_index: None,
        name: ER_CANDIDATES_TABLE,
        key: vec![
            col("tenant_id", ColumnType::Text, false),
            col("left_id", ColumnType::Text, false),
            col("right_id", ColumnType::Text, false),
        ],
        columns: vec![
            col("entity_type", ColumnType::Text, false),
            col("score", ColumnType::Double, false),
            col("status", ColumnType::Text, false),
            col("methods", ColumnType::Json, false),
            col("features", ColumnType::Json, false),
            col("proposed_by", ColumnType::Text, false),
        ],
        indexes: vec![vec!["tenant_id", "right_id"], vec!["tenant_id", "status"]],
    }
}

/// The `er_candidates` spec.
pub struct ErCandidatesSpec;

impl ProcessorSpec for ErCandidatesSpec {
    type Config = ErConfig;
    const NAME: &'static str = "er_candidates";
    const DESCRIPTION: &'static str = "entity events → candidate pairs of the same tenant and type (blocking keys + top-K by score), with their evidence";

    fn check(config: &ErConfig) -> Vec<ConfigProblem> {
        config.problems()
    }

    fn tables(_: &ErConfig) -> Vec<TableSpec> {
        vec![candidates_table()]
    }

    fn build(config: ErConfig) -> Box<dyn Processor> {
        Box::new(ErCandidatesProcessor::new(config))
    }
}

/// The processor's state: every tenant's index.
#[derive(Debug, Default)]
pub struct ErState {
    config: ErConfig,
    pub tenants: BTreeMap<String, TenantIndex>,
}

/// What a snapshot holds: records by slot (keys and blocks are recomputed
/// from them on restore) and the purged keys.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    /// The configuration the index was built with: another one's snapshot
    /// is not used (its keys would be other keys).
    config: String,
    tenants: Vec<(String, TenantSnapshot)>,
}

#[derive(Serialize, Deserialize)]
struct TenantSnapshot {
    slots: Vec<Option<EntrySnapshot>>,
    purged: Vec<u64>,
    tombstones: BTreeMap<String, i64>,
    seq: i64,
}

#[derive(Serialize, Deserialize)]
struct EntrySnapshot {
    id: String,
    version: i64,
    entity_type: String,
    features: Features,
    partners: Vec<u32>,
    /// The LSH keys of its embedding, once that came (see [`ann`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ann_keys: Vec<u64>,
}

fn config_fingerprint(config: &ErConfig) -> String {
    serde_json::to_string(config).unwrap_or_default()
}

impl ProcessorState for ErState {
    fn format_version(&self) -> u32 {
        1
    }

    fn snapshot(&self) -> Vec<u8> {
        let tenants = self
            .tenants
            .iter()
            .map(|(t, idx)| {
                let slots = idx
                    .slots
                    .iter()
                    .map(|s| {
                        s.as_ref().map(|e| EntrySnapshot {
                            id: e.id.clone(),
                            version: e.version,
                            entity_type: e.entity_type.clone(),
                            features: e.features.clone(),
                            partners: e.partners.iter().copied().collect(),
                            ann_keys: e
                                .keys
                                .iter()
                                .filter(|(kind, _)| *kind == KeyKind::Ann)
                                .map(|(_, key)| *key)
                                .collect(),
                        })
                    })
                    .collect();
                let mut purged: Vec<u64> = idx
                    .blocks
                    .iter()
                    .filter(|(_, b)| b.purged)
                    .map(|(k, _)| *k)
                    .collect();
                purged.sort_unstable();
                let tombstones = idx.tombstones.clone();
                (
                    t.clone(),
                    TenantSnapshot {
                        slots,
                        purged,
                        tombstones,
                        seq: idx.seq,
                    },
                )
            })
            .collect();
        serde_json::to_vec(&Snapshot {
            config: config_fingerprint(&self.config),
            tenants,
        })
        .unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snap: Snapshot = serde_json::from_slice(bytes)
            .map_err(|e| format!("not an er_candidates snapshot: {e}"))?;
        if snap.config != config_fingerprint(&self.config) {
            return Err("the snapshot was made with another [processor_config]".into());
        }
        self.tenants.clear();
        for (tenant, t) in snap.tenants {
            let mut idx = TenantIndex {
                tombstones: t.tombstones,
                seq: t.seq,
                ..Default::default()
            };
            for key in t.purged {
                idx.blocks.entry(key).or_default().purged = true;
            }
            for slot in t.slots {
                match slot {
                    None => idx.slots.push(None),
                    Some(e) => {
                        let mut entry = entry_of(&e.id, e.version, &e.entity_type, e.features);
                        entry.partners = e.partners.into_iter().collect();
                        entry
                            .keys
                            .extend(e.ann_keys.into_iter().map(|k| (KeyKind::Ann, k)));
                        idx.insert(&self.config, entry);
                    }
                }
            }
            self.tenants.insert(tenant, idx);
        }
        Ok(())
    }

    fn clear(&mut self) {
        self.tenants.clear();
    }
}

/// The `er_candidates` fold.
pub struct ErCandidatesProcessor {
    pub state: ErState,
    /// The ANN signal's hyperplanes (derived from a seed: not state).
    planes: ann::Hyperplanes,
}

/// A pair change to emit.
struct PairChange<'a> {
    tenant: &'a str,
    entity_type: &'a str,
    a: &'a str,
    b: &'a str,
    status: &'static str,
    comparison: Option<&'a Comparison>,
    kinds: u16,
    proposed_by: &'a str,
}

impl ErCandidatesProcessor {
    pub fn new(config: ErConfig) -> Self {
        ErCandidatesProcessor {
            state: ErState {
                config,
                ..Default::default()
            },
            planes: ann::Hyperplanes::default(),
        }
    }

    pub fn config(&self) -> &ErConfig {
        &self.state.config
    }

    fn resolves(&self, entity_type: &str) -> bool {
        let types = &self.state.config.entity_types;
        types.is_empty() || types.iter().any(|t| t == entity_type)
    }

    /// The row and the event of one pair change.
    fn change(&mut self, cause: &Event, c: PairChange<'_>, out: &mut Vec<Effect>) {
        let idx = self.state.tenants.entry(c.tenant.to_string()).or_default();
        idx.seq += 1;
        let version = idx.seq;
        let (left, right) = if c.a < c.b { (c.a, c.b) } else { (c.b, c.a) };
        let score = c.comparison.map_or(0.0, |x| x.score);
        let features = c.comparison.map(Comparison::field_map).unwrap_or_default();
        let methods: Vec<String> = KeyKind::of_bits(c.kinds)
            .into_iter()
            .map(|k| k.name().to_string())
            .collect();
        out.push(Effect::Upsert(RowUpsert {
            table: ER_CANDIDATES_TABLE,
            key: vec![c.tenant.to_string(), left.to_string(), right.to_string()],
            version,
            values: vec![
                SqlValue::Text(c.entity_type.to_string()),
                SqlValue::Double(score),
                SqlValue::Text(c.status.to_string()),
                SqlValue::Json(serde_json::json!(methods)),
                SqlValue::Json(serde_json::json!(features)),
                SqlValue::Text(c.proposed_by.to_string()),
            ],
            deleted: c.status == "retracted",
        }));
        let subject = format!("{left}|{right}");
        let id = blake3::hash(format!("{}\n{subject}\n{version}", c.tenant).as_bytes()).to_hex();
        let mut meta = EventMetadata::new(c.tenant, &subject, cause.meta.occurred_at);
        meta.event_id = format!("erc-{}", &id[..32]);
        meta.causation_id = Some(cause.meta.event_id.clone());
        meta.correlation_id = cause.meta.correlation_id.clone();
        meta.source = Some("conductor/er_candidates".into());
        let event = Event::new(
            meta,
            EventData::ErCandidate(ErCandidate {
                entity_type: c.entity_type.to_string(),
                left_id: left.to_string(),
                right_id: right.to_string(),
                status: c.status.to_string(),
                score,
                version,
                methods,
                features,
            }),
        );
        out.push(Effect::Emit(Box::new(EmitEvent {
            topic: ER_CANDIDATES_TOPIC.into(),
            event,
            key: None,
        })));
    }

    /// Takes `subject` out of its tenant's index: re-scores its pairs against
    /// `features` (a newer version) and returns those still above the floor,
    /// retracting the rest; with `None` (a delete) retracts all.
    fn take_out(
        &mut self,
        cause: &Event,
        tenant: &str,
        slot: u32,
        features: Option<&Features>,
        out: &mut Vec<Effect>,
    ) -> Vec<(u32, Comparison)> {
        let min = self.state.config.min_score;
        let Some(idx) = self.state.tenants.get_mut(tenant) else {
            return Vec::new();
        };
        let Some(old) = idx.remove(slot) else {
            return Vec::new();
        };
        let mut kept = Vec::new();
        let mut retract = Vec::new();
        for p in &old.partners {
            let Some(partner) = idx.entry_mut(*p) else {
                continue;
            };
            partner.partners.remove(&slot);
            let comparison = features
                .filter(|f| !f.is_empty())
                .map(|f| score::compare(f, &partner.features));
            match comparison {
                Some(c) if c.score >= min => kept.push((*p, c)),
                _ => retract.push((partner.id.clone(), partner.entity_type.clone())),
            }
        }
        for (partner, entity_type) in retract {
            self.change(
                cause,
                PairChange {
                    tenant,
                    entity_type: &entity_type,
                    a: &old.id,
                    b: &partner,
                    status: "retracted",
                    comparison: None,
                    kinds: 0,
                    proposed_by: &old.id,
                },
                out,
            );
        }
        kept
    }

    fn upsert(
        &mut self,
        event: &Event,
        entity_type: &str,
        version: i64,
        attributes: &conductor_schemas::Attributes,
    ) -> Vec<Effect> {
        let tenant = event.meta.tenant.as_str();
        let subject = event.meta.subject.as_str();
        let features = Features::of(attributes, &self.state.config.attributes);
        let mut out = Vec::new();
        let idx = self.state.tenants.entry(tenant.to_string()).or_default();
        let existing = idx.by_id.get(subject).copied();
        if let Some(slot) = existing
            && idx.entry(slot).is_some_and(|e| e.version >= version)
        {
            return out; // stale or replayed
        }
        if idx.tombstones.get(subject).is_some_and(|v| *v >= version) {
            return out; // older than its delete
        }
        idx.tombstones.remove(subject);
        let kept = match existing {
            Some(slot) => self.take_out(event, tenant, slot, Some(&features), &mut out),
            None => Vec::new(),
        };
        if features.is_empty() {
            // Nothing to compare: it proposes nothing, and keeps nothing.
            for (p, _) in kept {
                let partner = self.state.tenants[tenant]
                    .entry(p)
                    .map(|e| e.id.clone())
                    .unwrap_or_default();
                self.change(
                    event,
                    PairChange {
                        tenant,
                        entity_type,
                        a: subject,
                        b: &partner,
                        status: "retracted",
                        comparison: None,
                        kinds: 0,
                        proposed_by: subject,
                    },
                    &mut out,
                );
            }
            return out;
        }
        let entry = entry_of(subject, version, entity_type, features);
        let config = self.state.config.clone();
        let idx = self
            .state
            .tenants
            .get_mut(tenant)
            .expect("tenant index made above");
        let candidates = idx.candidates(&config, &entry.keys, &entry.features, None);
        let my_keys: HashSet<u64> = entry.keys.iter().map(|(_, k)| *k).collect();
        let slot = idx.insert(&config, entry);
        let mut changes: Vec<(u32, String, Comparison, u16, &'static str)> = Vec::new();
        for (p, comparison) in kept {
            let Some(partner) = idx.entry_mut(p) else {
                continue;
            };
            partner.partners.insert(slot);
            let kinds = partner
                .keys
                .iter()
                .filter(|(_, k)| my_keys.contains(k))
                .fold(0u16, |bits, (kind, _)| bits | kind.bit());
            changes.push((p, partner.id.clone(), comparison, kinds, "updated"));
        }
        for c in candidates {
            if changes.iter().any(|(p, ..)| *p == c.slot) {
                continue;
            }
            let Some(partner) = idx.entry_mut(c.slot) else {
                continue;
            };
            partner.partners.insert(slot);
            changes.push((
                c.slot,
                partner.id.clone(),
                c.comparison,
                c.kinds,
                "proposed",
            ));
        }
        if let Some(me) = idx.entry_mut(slot) {
            me.partners.extend(changes.iter().map(|(p, ..)| *p));
        }
        for (_, partner, comparison, kinds, status) in changes {
            self.change(
                event,
                PairChange {
                    tenant,
                    entity_type,
                    a: subject,
                    b: &partner,
                    status,
                    comparison: Some(&comparison),
                    kinds,
                    proposed_by: subject,
                },
                &mut out,
            );
        }
        out
    }
}

impl ErCandidatesProcessor {
    /// An entity's embedding came: its LSH keys join the blocks, and the
    /// best `ann.top_k` records sharing a band that are not partners yet
    /// are proposed (new→existing, like a record's blocking candidates).
    /// Only the vector of the record's current version counts, once.
    fn embedded(&mut self, event: &Event, e: &EmbeddingComputed) -> Vec<Effect> {
        let tenant = event.meta.tenant.as_str();
        let mut out = Vec::new();
        let Some(idx) = self.state.tenants.get_mut(tenant) else {
            return out;
        };
        let Some(slot) = idx.by_id.get(&e.entity_id).copied() else {
            return out; // deleted, or not seen (yet)
        };
        let Some(me) = idx.entry(slot) else {
            return out;
        };
        let has_ann = me.keys.iter().any(|(kind, _)| *kind == KeyKind::Ann);
        if me.version != e.entity_version || has_ann || e.vector.is_empty() {
            return out; // another version's vector, or this one's again
        }
        let config = &self.state.config;
        let ann_keys = self
            .planes
            .keys(&config.ann, &me.entity_type, &e.model, &e.vector);
        let (entity_type, features, partners) = (
            me.entity_type.clone(),
            me.features.clone(),
            me.partners.clone(),
        );
        let my_keys: HashSet<u64> = me.keys.iter().map(|(_, k)| *k).collect();
        // Scored: the partners (skipped after) and twice the proposals
        // wanted, those sharing the most bands (the nearest, likely).
        let mut wide = config.clone();
        wide.top_k = config.ann.top_k + partners.len();
        wide.max_scored = wide.top_k + config.ann.top_k;
        let found: Vec<_> = idx
            .candidates(&wide, &ann_keys, &features, Some(slot))
            .into_iter()
            .filter(|c| !partners.contains(&c.slot))
            .take(config.ann.top_k)
            .collect();
        idx.add_keys(&self.state.config, slot, ann_keys);
        let mut changes = Vec::new();
        for c in found {
            let Some(partner) = idx.entry_mut(c.slot) else {
                continue;
            };
            partner.partners.insert(slot);
            // The evidence: the bands and any blocking keys the two share.
            let kinds = partner
                .keys
                .iter()
                .filter(|(_, k)| my_keys.contains(k))
                .fold(c.kinds, |bits, (kind, _)| bits | kind.bit());
            changes.push((c.slot, partner.id.clone(), c.comparison, kinds));
        }
        if let Some(me) = idx.entry_mut(slot) {
            me.partners.extend(changes.iter().map(|(p, ..)| *p));
        }
        let subject = e.entity_id.clone();
        for (_, partner, comparison, kinds) in changes {
            self.change(
                event,
                PairChange {
                    tenant,
                    entity_type: &entity_type,
                    a: &subject,
                    b: &partner,
                    status: "proposed",
                    comparison: Some(&comparison),
                    kinds,
                    proposed_by: &subject,
                },
                &mut out,
            );
        }
        out
    }
}

impl Processor for ErCandidatesProcessor {
    fn name(&self) -> &str {
        "er_candidates"
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![candidates_table()]
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        match &event.data {
            EventData::EntityUpserted(e) if self.resolves(&e.entity_type) => {
                Ok(self.upsert(event, &e.entity_type, e.version, &e.attributes))
            }
            EventData::EntityDeleted(e) if self.resolves(&e.entity_type) => {
                let tenant = event.meta.tenant.as_str();
                let slot = self.state.tenants.get(tenant).and_then(|idx| {
                    let slot = *idx.by_id.get(&event.meta.subject)?;
                    (idx.entry(slot)?.version < e.version).then_some(slot)
                });
                let mut out = Vec::new();
                if let Some(slot) = slot {
                    self.take_out(event, tenant, slot, None, &mut out);
                }
                let idx = self.state.tenants.entry(tenant.to_string()).or_default();
                let v = idx
                    .tombstones
                    .entry(event.meta.subject.clone())
                    .or_insert(e.version);
                *v = (*v).max(e.version);
                Ok(out)
            }
            EventData::EmbeddingComputed(e)
                if self.state.config.ann.enabled
                    && e.status == "computed"
                    && self
                        .state
                        .config
                        .ann
                        .model
                        .as_ref()
                        .is_none_or(|m| *m == e.model) =>
            {
                Ok(self.embedded(event, e))
            }
            // Relationships and other types are not this processor's.
            _ => Ok(Vec::new()),
        }
    }

    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        Some(&mut self.state)
    }
}
