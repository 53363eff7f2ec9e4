//! `embeddings`: the fold of the embedding writer. It reads the entity
//! events and the stage's recorded vectors (`ig.enriched.embeddings`),
//! joins them by content hash, and keeps `entity_embeddings` — one row per
//! entity with the vector of its latest version — and `ig.embeddings`, one
//! `EmbeddingComputed` per change, in step. It never calls an embedder: a
//! replay, a warm-up or a rebuild reads recorded vectors.

use super::config::EmbeddingsConfig;
use super::embedder;
use super::packed::PackedVector;
use super::stage::{ENRICHMENT, EmbedEnrichment};
use super::text::Template;
use chrono::{DateTime, Utc};
use conductor_engine::enrich::{EnrichedJoin, Recorded};
use conductor_engine::processor::{Effect, EmitEvent, Processor, ProcessorError, ProcessorState};
use conductor_engine::projection::{ColumnSpec, ColumnType, RowUpsert, SqlValue, TableSpec};
use conductor_schemas::{EmbeddingComputed, Event, EventData, EventMetadata};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const ENTITY_EMBEDDINGS_TABLE: &str = "entity_embeddings";
/// Where every change of an entity's vector is emitted.
pub const EMBEDDINGS_TOPIC: &str = "ig.embeddings";

fn col(name: &'static str, ty: ColumnType, nullable: bool) -> ColumnSpec {
    ColumnSpec { name, ty, nullable }
}

/// `entity_embeddings(tenant_id, entity_id, version, entity_type, model,
/// dims, vector, input_hash, deleted, embedded_at)`: vectors only, never
/// the text. A removed vector keeps its row with `deleted = true` and no
/// vector.
pub fn embeddings_table() -> TableSpec {
    TableSpec {
        text_index: None,
        name: ENTITY_EMBEDDINGS_TABLE,
        key: vec![
            col("tenant_id", ColumnType::Text, false),
            col("entity_id", ColumnType::Text, false),
        ],
        columns: vec![
            col("entity_type", ColumnType::Text, false),
            col("model", ColumnType::Text, false),
            col("dims", ColumnType::BigInt, false),
            col("vector", ColumnType::Vector, true),
            col("input_hash", ColumnType::Text, true),
            col("deleted", ColumnType::Bool, false),
            col("embedded_at", ColumnType::Timestamp, false),
        ],
        indexes: vec![vec!["tenant_id", "input_hash"]],
    }
}

/// An entity's current embedding, as far as the fold knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Current {
    version: i64,
    entity_type: String,
    /// The hash of its text; `None`: no vector (deleted, empty text).
    input_hash: Option<String>,
    /// Whether the row holds the vector of `input_hash` (false while the
    /// recorded vector is awaited).
    embedded: bool,
}

/// An entity version waiting for its vector to be recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Waiting {
    tenant: String,
    entity_id: String,
    version: i64,
    event_id: String,
    occurred_at: DateTime<Utc>,
}

/// The fold's state: the join and every entity's current embedding.
#[derive(Default)]
pub struct EmbeddingsState {
    model: String,
    join: EnrichedJoin<PackedVector, Waiting>,
    entities: BTreeMap<(String, String), Current>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    model: String,
    entities: Vec<((String, String), Current)>,
    join: String,
}

impl ProcessorState for EmbeddingsState {
    fn format_version(&self) -> u32 {
        1
    }

    fn snapshot(&self) -> Vec<u8> {
        let snap = Snapshot {
            model: self.model.clone(),
            entities: self
                .entities
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            join: String::from_utf8(self.join.snapshot()).unwrap_or_default(),
        };
        serde_json::to_vec(&snap).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), String> {
        let snap: Snapshot = serde_json::from_slice(bytes)
            .map_err(|e| format!("not an embeddings snapshot: {e}"))?;
        if snap.model != self.model {
            return Err(format!(
                "the snapshot holds {} vectors, the topology now runs {}",
                snap.model, self.model
            ));
        }
        self.join.restore(snap.join.as_bytes())?;
        self.entities = snap.entities.into_iter().collect();
        Ok(())
    }

    fn clear(&mut self) {
        self.join.clear();
        self.entities.clear();
    }
}

/// The `embeddings` fold (see the module doc).
pub struct EmbeddingsProcessor {
    config: EmbeddingsConfig,
    template: Template,
    state: EmbeddingsState,
}

impl EmbeddingsProcessor {
    pub fn new(config: EmbeddingsConfig) -> Self {
        let model = embedder::model_id(&config);
        EmbeddingsProcessor {
            template: Template::parse(&config.template).unwrap_or(Template::parse("").unwrap()),
            config,
            state: EmbeddingsState {
                model,
                ..Default::default()
            },
        }
    }

    fn upsert(&mut self, event: &Event, entity_type: &str, version: i64) -> Vec<Effect> {
        let tenant = event.meta.tenant.clone();
        let key = (tenant.clone(), event.meta.subject.clone());
        if self
            .state
            .entities
            .get(&key)
            .is_some_and(|c| c.version >= version)
        {
            return Vec::new(); // an older version, late: the newer one stands
        }
        let hash = EmbedEnrichment::text_of(&self.config, &self.template, &self.state.model, event)
            .map(|(_, h)| h);
        let previous = self.state.entities.get(&key).cloned();
        let Some(hash) = hash else {
            // No text any more: the vector goes.
            self.state.entities.insert(
                key,
                Current {
                    version,
                    entity_type: entity_type.into(),
                    input_hash: None,
                    embedded: false,
                },
            );
            return match previous {
                Some(p) if p.input_hash.is_some() => self.removed(event, entity_type, version),
                _ => Vec::new(),
            };
        };
        let same_text = previous
            .as_ref()
            .is_some_and(|p| p.embedded && p.input_hash.as_deref() == Some(&hash));
        self.state.entities.insert(
            key.clone(),
            Current {
                version,
                entity_type: entity_type.into(),
                input_hash: Some(hash.clone()),
                embedded: false,
            },
        );
        let waiting = Waiting {
            tenant,
            entity_id: event.meta.subject.clone(),
            version,
            event_id: event.meta.event_id.clone(),
            occurred_at: event.meta.occurred_at,
        };
        match self.state.join.result(&hash).cloned() {
            Some(Recorded::Result(v)) => self.embedded(&waiting, &hash, &v, !same_text),
            Some(Recorded::Refused(_)) => {
                metrics::counter!("conductor_embeddings_skipped_total", "reason" => "refused")
                    .increment(1);
                Vec::new()
            }
            None => {
                self.state.join.wait_for(&hash, waiting);
                Vec::new()
            }
        }
    }

    /// The row (and, when `announce`, the event) for `w`'s vector `v`.
    fn embedded(
        &mut self,
        w: &Waiting,
        hash: &str,
        v: &PackedVector,
        announce: bool,
    ) -> Vec<Effect> {
        let key = (w.tenant.clone(), w.entity_id.clone());
        let Some(current) = self.state.entities.get_mut(&key) else {
            return Vec::new();
        };
        if current.version != w.version || current.input_hash.as_deref() != Some(hash) {
            return Vec::new(); // superseded while it waited
        }
        current.embedded = true;
        let entity_type = current.entity_type.clone();
        let vector = match v.unpack() {
            Ok(vector) => vector,
            Err(_) => return Vec::new(),
        };
        let mut out = vec![Effect::Upsert(RowUpsert {
            table: ENTITY_EMBEDDINGS_TABLE,
            key: vec![w.tenant.clone(), w.entity_id.clone()],
            version: w.version,
            values: vec![
                SqlValue::Text(entity_type.clone()),
                SqlValue::Text(self.state.model.clone()),
                SqlValue::BigInt(vector.len() as i64),
                SqlValue::Vector(vector.clone()),
                SqlValue::Text(hash.into()),
                SqlValue::Bool(false),
                SqlValue::Timestamp(w.occurred_at),
            ],
            deleted: false,
        })];
        if announce {
            out.push(self.announce(w, &entity_type, "computed", vector, hash));
        }
        out
    }

    fn removed(&mut self, cause: &Event, entity_type: &str, version: i64) -> Vec<Effect> {
        let w = Waiting {
            tenant: cause.meta.tenant.clone(),
            entity_id: cause.meta.subject.clone(),
            version,
            event_id: cause.meta.event_id.clone(),
            occurred_at: cause.meta.occurred_at,
        };
        vec![
            Effect::Upsert(RowUpsert {
                table: ENTITY_EMBEDDINGS_TABLE,
                key: vec![w.tenant.clone(), w.entity_id.clone()],
                version,
                values: vec![
                    SqlValue::Text(entity_type.into()),
                    SqlValue::Text(self.state.model.clone()),
                    SqlValue::BigInt(0),
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Bool(true),
                    SqlValue::Timestamp(w.occurred_at),
                ],
                deleted: true,
            }),
            self.announce(&w, entity_type, "removed", Vec::new(), ""),
        ]
    }

    fn announce(
        &self,
        w: &Waiting,
        entity_type: &str,
        status: &str,
        vector: Vec<f32>,
        hash: &str,
    ) -> Effect {
        let id = blake3::hash(
            format!(
                "{}\n{}\n{}\n{status}\n{}",
                w.tenant, w.entity_id, w.version, self.state.model
            )
            .as_bytes(),
        )
        .to_hex();
        let mut meta = EventMetadata::new(&w.tenant, &w.entity_id, w.occurred_at);
        meta.event_id = format!("emb-{}", &id[..32]);
        meta.causation_id = Some(w.event_id.clone());
        meta.source = Some("conductor/embeddings".into());
        let event = Event::new(
            meta,
            EventData::EmbeddingComputed(EmbeddingComputed {
                entity_type: entity_type.into(),
                entity_id: w.entity_id.clone(),
                status: status.into(),
                entity_version: w.version,
                model: self.state.model.clone(),
                dims: vector.len() as i32,
                vector,
                input_hash: hash.into(),
            }),
        );
        Effect::Emit(Box::new(EmitEvent {
            topic: EMBEDDINGS_TOPIC.into(),
            event,
            key: None,
        }))
    }
}

impl Processor for EmbeddingsProcessor {
    fn name(&self) -> &str {
        "embeddings"
    }

    fn tables(&self) -> Vec<TableSpec> {
        vec![embeddings_table()]
    }

    fn output_topics(&self) -> Vec<(String, i32)> {
        vec![(EMBEDDINGS_TOPIC.into(), 3)]
    }

    /// The model: one projection never holds vectors of two models, so a
    /// model change is a rebuild into a shadow (a migration), not an edit.
    fn output_generation(&self) -> Option<String> {
        Some(self.state.model.clone())
    }

    fn process(&mut self, event: &Event) -> Result<Vec<Effect>, ProcessorError> {
        match &event.data {
            EventData::EntityUpserted(e) if self.config.embeds(&e.entity_type) => {
                if !self.config.opted_in(&event.meta.tenant) {
                    metrics::counter!("conductor_embeddings_skipped_total", "reason" => "not_opted_in")
                        .increment(1);
                    return Ok(Vec::new());
                }
                Ok(self.upsert(event, &e.entity_type, e.version))
            }
            EventData::EntityDeleted(e) if self.config.embeds(&e.entity_type) => {
                let key = (event.meta.tenant.clone(), event.meta.subject.clone());
                let Some(previous) = self.state.entities.get(&key).cloned() else {
                    return Ok(Vec::new());
                };
                if previous.version >= e.version {
                    return Ok(Vec::new());
                }
                self.state.entities.insert(
                    key,
                    Current {
                        version: e.version,
                        entity_type: e.entity_type.clone(),
                        input_hash: None,
                        embedded: false,
                    },
                );
                if previous.input_hash.is_none() {
                    return Ok(Vec::new());
                }
                Ok(self.removed(event, &e.entity_type, e.version))
            }
            EventData::EnrichmentRecorded(r) if r.enrichment == ENRICHMENT => {
                let (recorded, waiting) = self.state.join.record(r)?;
                let mut out = Vec::new();
                for w in waiting {
                    match &recorded {
                        Recorded::Result(v) => {
                            out.extend(self.embedded(&w, &r.content_hash, v, true))
                        }
                        Recorded::Refused(_) => {
                            metrics::counter!("conductor_embeddings_skipped_total", "reason" => "refused")
                                .increment(1);
                        }
                    }
                }
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }

    fn state(&mut self) -> Option<&mut dyn ProcessorState> {
        Some(&mut self.state)
    }
}
