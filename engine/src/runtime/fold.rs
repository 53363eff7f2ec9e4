//! Folding one batch of input records into a [`StoreCommit`].
//!
//! Deterministic and boundary-independent: the effects, change events and
//! their ids depend only on the input records and the stored row versions,
//! never on where a batch happened to start or end. That is what makes a
//! crash-and-restart run produce the same projection and the same changefeed
//! as a straight run.

use super::change_event::change_event;
use super::config::{OnError, TopologyConfig};
use crate::envelope;
use crate::graph::{GRAPH_CONTENT_TYPE, GraphSpec};
use crate::log::{Header, InputPosition, SourcePosition, StoredRecord};
use crate::processor::{Effect, Processor, ProcessorError, ProcessorErrorKind};
use crate::projection::{RowUpsert, TableSpec};
use crate::store::{OutboxRecord, StoreCommit};
use conductor_schemas::{Event, SchemaError};
use std::collections::{BTreeMap, HashMap};

pub use super::change_event::{HEADER_CHANGE_ID, HEADER_TABLE, change_id};
pub const HEADER_DLQ_TOPOLOGY: &str = "ig-dlq-topology";
pub const HEADER_DLQ_SOURCE_TOPIC: &str = "ig-dlq-source-topic";
pub const HEADER_DLQ_SOURCE_PARTITION: &str = "ig-dlq-source-partition";
pub const HEADER_DLQ_SOURCE_OFFSET: &str = "ig-dlq-source-offset";
pub const HEADER_DLQ_ERROR_KIND: &str = "ig-dlq-error-kind";
pub const HEADER_DLQ_REASON: &str = "ig-dlq-reason";

/// An output of one input record, before it gets an outbox seq.
enum Output {
    Change {
        upsert: RowUpsert,
        event_id: String,
    },
    Emit {
        topic: String,
        record: crate::log::Record,
    },
    /// A graph mutation: its row of the graph tables and its record.
    Graph {
        upsert: RowUpsert,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Dead {
        kind: String,
        reason: String,
    },
}

/// What folding one batch produced, before versions are resolved.
pub struct Folded {
    /// Per input record, in order: its source and outputs.
    items: Vec<(StoredRecord, Vec<Output>)>,
    pub events: usize,
    pub dead: usize,
}

impl Folded {
    /// Dead-lettered records by DLQ kind (for `conductor_dlq_events_total{kind}`).
    pub fn dead_by_kind(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for (_, outputs) in &self.items {
            for o in outputs {
                if let Output::Dead { kind, .. } = o {
                    *out.entry(kind.clone()).or_insert(0) += 1;
                }
            }
        }
        out
    }
}

/// Why a batch could not be folded: an internal error under
/// `on_processor_error = "halt"`, or an external one (a dependency is down),
/// which the worker retries. [`ProcessorError::kind`] tells which.
#[derive(Debug, thiserror::Error)]
#[error("processor `{processor}` failed on {}[{}]@{}: {error}", at.topic, at.partition, at.offset)]
pub struct HaltError {
    pub processor: String,
    pub at: SourcePosition,
    pub error: ProcessorError,
}

impl HaltError {
    /// Whether the batch may succeed later unchanged (a dependency came back).
    pub fn is_external(&self) -> bool {
        self.error.kind == ProcessorErrorKind::External
    }
}

/// The one spelling of error kinds in DLQ headers and metric labels:
/// the kind's name in snake_case (`InvalidJson` → `invalid_json`).
pub fn dlq_kind(kind: &impl std::fmt::Debug) -> String {
    let name = format!("{kind:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Batches at least this big are decoded on several threads.
const PARALLEL_DECODE_MIN: usize = 1024;

/// Decodes every record, in order. Decoding (JSON parse plus schema
/// validation) is most of a fold's CPU time and needs no state, so large
/// batches are split over the machine's cores; the fold itself stays
/// sequential, in input order.
pub fn decode_all(records: &[StoredRecord]) -> Vec<Result<Event, SchemaError>> {
    // Asked once: on Linux the answer reads cgroup files.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads =
        *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads < 2 || records.len() < PARALLEL_DECODE_MIN {
        return records
            .iter()
            .map(|r| envelope::decode_event(&r.record))
            .collect();
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|r| envelope::decode_event(&r.record))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(decoded) => decoded,
                // Decoding does not panic on any input (fuzzed); if it ever
                // did, re-raise it here rather than lose records.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Decodes and folds every record; bad input becomes a DLQ output.
pub fn fold(
    processor: &mut dyn Processor,
    config: &TopologyConfig,
    records: Vec<StoredRecord>,
) -> Result<Folded, HaltError> {
    let decoded = decode_all(&records);
    fold_decoded(processor, config, records, decoded)
}

/// [`fold`] of records already decoded ([`decode_all`], one per record).
pub fn fold_decoded(
    processor: &mut dyn Processor,
    config: &TopologyConfig,
    records: Vec<StoredRecord>,
    decoded: Vec<Result<Event, SchemaError>>,
) -> Result<Folded, HaltError> {
    let mut items = Vec::with_capacity(records.len());
    let (mut events, mut dead) = (0, 0);
    let graph = processor.graph();
    for (r, decoded) in records.into_iter().zip(decoded) {
        let outputs = match decoded {
            Err(e) => {
                dead += 1;
                vec![Output::Dead {
                    kind: dlq_kind(&e.kind()),
                    reason: e.to_string(),
                }]
            }
            Ok(event) => match processor
                .process(&event)
                .and_then(|effects| outputs_of(effects, &event, graph.as_ref()))
            {
                Ok(outputs) => {
                    events += 1;
                    outputs
                }
                Err(error)
                    if error.kind == ProcessorErrorKind::External
                        || (error.kind == ProcessorErrorKind::Internal
                            && config.errors.on_processor_error == OnError::Halt) =>
                {
                    return Err(HaltError {
                        processor: processor.name().to_string(),
                        at: SourcePosition {
                            topic: r.topic.clone(),
                            partition: r.partition,
                            offset: r.offset,
                        },
                        error,
                    });
                }
                Err(error) => {
                    dead += 1;
                    vec![Output::Dead {
                        kind: error.kind.dlq_kind(),
                        reason: error.message,
                    }]
                }
            },
        };
        items.push((r, outputs));
    }
    Ok(Folded {
        items,
        events,
        dead,
    })
}

/// The outputs of one event's effects; a graph mutation that is malformed,
/// or that a processor without a graph emits, is a processor bug.
fn outputs_of(
    effects: Vec<Effect>,
    event: &Event,
    graph: Option<&GraphSpec>,
) -> Result<Vec<Output>, ProcessorError> {
    effects
        .into_iter()
        .map(|e| {
            Ok(match e {
                Effect::Upsert(upsert) => Output::Change {
                    upsert,
                    event_id: event.meta.event_id.clone(),
                },
                Effect::Emit(emit) => {
                    let mut record = envelope::event_record(&emit.event, envelope::Encoding::Json);
                    if let Some(key) = emit.key {
                        record.key = Some(key.into_bytes());
                    }
                    Output::Emit {
                        topic: emit.topic,
                        record,
                    }
                }
                Effect::Graph(mutation) => {
                    let Some(spec) = graph else {
                        return Err(ProcessorError::internal(
                            "emitted a graph mutation but declares no graph (Processor::graph)",
                        ));
                    };
                    if let Some(problem) = mutation.problem() {
                        return Err(ProcessorError::internal(problem));
                    }
                    // Serializing strings, numbers and JSON values cannot fail.
                    let value = serde_json::to_vec(&mutation).unwrap_or_default();
                    Output::Graph {
                        upsert: spec.row(&mutation),
                        key: mutation.record_key().into_bytes(),
                        value,
                    }
                }
            })
        })
        .collect()
}

impl Folded {
    /// Keys each table's upserts touch (for one version look-up per table).
    pub fn keys_by_table(&self) -> BTreeMap<&'static str, Vec<Vec<String>>> {
        let mut m: BTreeMap<&'static str, Vec<Vec<String>>> = BTreeMap::new();
        for (_, outputs) in &self.items {
            for o in outputs {
                if let Output::Change { upsert, .. } | Output::Graph { upsert, .. } = o {
                    m.entry(upsert.table).or_default().push(upsert.key.clone());
                }
            }
        }
        for keys in m.values_mut() {
            keys.sort();
            keys.dedup();
        }
        m
    }

    /// Applies the version guard in input order against the stored versions,
    /// and lays out the outbox from `first_seq`. Returns the commit and the
    /// number of changes.
    pub fn resolve(
        self,
        config: &TopologyConfig,
        tables: &[TableSpec],
        mut versions: HashMap<(&'static str, Vec<String>), i64>,
        first_seq: i64,
    ) -> (StoreCommit, usize) {
        let changefeed = config.changefeed_topic();
        let dlq = config.dlq_topic();
        let graph_topic = config.graph_topic();
        let mut finals: BTreeMap<(&'static str, Vec<String>), RowUpsert> = BTreeMap::new();
        let mut outbox = Vec::new();
        let mut positions: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut changes = 0;
        let mut seq = first_seq;
        for (r, outputs) in self.items {
            let source = SourcePosition {
                topic: r.topic.clone(),
                partition: r.partition,
                offset: r.offset,
            };
            positions.insert((r.topic.clone(), r.partition), r.offset + 1);
            for (index, output) in outputs.into_iter().enumerate() {
                let (topic, key, value, headers) = match output {
                    Output::Change { upsert, event_id } => {
                        let id = (upsert.table, upsert.key.clone());
                        if versions.get(&id).is_some_and(|v| *v >= upsert.version) {
                            continue; // stale or replayed: changes nothing, no change event
                        }
                        versions.insert(id.clone(), upsert.version);
                        changes += 1;
                        if !config.changefeed.enabled {
                            finals.insert(id, upsert);
                            continue;
                        }
                        let spec = tables.iter().find(|t| t.name == upsert.table);
                        let (value, headers) =
                            change_event(config, spec, &upsert, &event_id, &source, index as u32);
                        let key = upsert.key.join("/").into_bytes();
                        finals.insert(id, upsert);
                        (changefeed.clone(), Some(key), value, headers)
                    }
                    Output::Emit { topic, record } => {
                        (topic, record.key, record.value, record.headers)
                    }
                    Output::Graph { upsert, key, value } => {
                        let id = (upsert.table, upsert.key.clone());
                        if versions.get(&id).is_some_and(|v| *v >= upsert.version) {
                            continue; // stale or replayed: the graph already has it
                        }
                        versions.insert(id.clone(), upsert.version);
                        changes += 1;
                        finals.insert(id, upsert);
                        let headers = vec![
                            Header {
                                key: HEADER_CHANGE_ID.into(),
                                value: change_id(&config.name, &source, index as u32).into_bytes(),
                            },
                            Header {
                                key: crate::envelope::HEADER_CONTENT_TYPE.into(),
                                value: GRAPH_CONTENT_TYPE.as_bytes().to_vec(),
                            },
                        ];
                        (graph_topic.clone(), Some(key), value, headers)
                    }
                    Output::Dead { kind, reason } => {
                        let mut headers = r.record.headers.clone();
                        for (k, v) in [
                            (HEADER_DLQ_TOPOLOGY, config.name.clone()),
                            (HEADER_DLQ_SOURCE_TOPIC, r.topic.clone()),
                            (HEADER_DLQ_SOURCE_PARTITION, r.partition.to_string()),
                            (HEADER_DLQ_SOURCE_OFFSET, r.offset.to_string()),
                            (HEADER_DLQ_ERROR_KIND, kind),
                            (HEADER_DLQ_REASON, reason),
                        ] {
                            headers.push(Header {
                                key: k.into(),
                                value: v.into_bytes(),
                            });
                        }
                        (
                            dlq.clone(),
                            r.record.key.clone(),
                            r.record.value.clone(),
                            headers,
                        )
                    }
                };
                outbox.push(OutboxRecord {
                    seq,
                    topic,
                    key,
                    value,
                    headers,
                    source: source.clone(),
                    source_index: index as u32,
                });
                seq += 1;
            }
        }
        let commit = StoreCommit {
            topology: config.name.clone(),
            upserts: finals.into_values().collect(),
            outbox,
            offsets: positions
                .into_iter()
                .map(|((topic, partition), next_offset)| InputPosition {
                    topic,
                    partition,
                    next_offset,
                })
                .collect(),
            epoch: None,
            state: None,
        };
        (commit, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::dlq_kind;
    use crate::processor::ProcessorErrorKind;

    #[test]
    fn spells_error_kinds_in_snake_case() {
        assert_eq!(dlq_kind(&ProcessorErrorKind::InvalidInput), "invalid_input");
        assert_eq!(dlq_kind(&ProcessorErrorKind::Internal), "internal");
        assert_eq!(
            dlq_kind(&conductor_schemas::ErrorKind::InvalidJson),
            "invalid_json"
        );
    }
}
